//! Validated inputs of the chat API. Every check names the field it refused.

use proto::chat::v1::{ConversationKind, MessageKind as ProtoMessageKind, Role as ProtoRole};
use proto::events::v1::Attachment;
use serde::{Deserialize, Serialize};
use service_kit::ApiError;
use uuid::Uuid;

/// Text of a message (or caption of a media message), in characters; as
/// Telegram's 4,096.
pub const MAX_TEXT_CHARS: usize = 4096;
pub const MAX_TITLE_CHARS: usize = 128;
pub const MAX_CLIENT_MSG_ID: usize = 64;
pub const MAX_FILE_NAME_CHARS: usize = 255;
pub const MAX_URL_CHARS: usize = 2048;
/// Largest attachment a message may describe (2 GiB, Telegram's file limit).
pub const MAX_ATTACHMENT_BYTES: u64 = 2 * 1024 * 1024 * 1024;
/// Preview of the last message kept on a conversation, in characters.
pub const PREVIEW_CHARS: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Private,
    Group,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Private => "private",
            Kind::Group => "group",
        }
    }

    pub fn to_proto(self) -> ConversationKind {
        match self {
            Kind::Private => ConversationKind::Private,
            Kind::Group => ConversationKind::Group,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Member,
    Admin,
    Owner,
}

impl Role {
    pub fn to_proto(self) -> ProtoRole {
        match self {
            Role::Member => ProtoRole::Member,
            Role::Admin => ProtoRole::Admin,
            Role::Owner => ProtoRole::Owner,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::Admin => "admin",
            Role::Owner => "owner",
        }
    }

    pub fn can_manage(self) -> bool {
        self >= Role::Admin
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageKind {
    Text,
    Image,
    File,
}

impl MessageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Text => "text",
            MessageKind::Image => "image",
            MessageKind::File => "file",
        }
    }

    pub fn to_proto(self) -> ProtoMessageKind {
        match self {
            MessageKind::Text => ProtoMessageKind::Text,
            MessageKind::Image => ProtoMessageKind::Image,
            MessageKind::File => ProtoMessageKind::File,
        }
    }
}

/// A user or conversation id: a UUID, kept in its canonical text form.
pub fn parse_id(raw: &str, field: &str) -> Result<String, ApiError> {
    Uuid::parse_str(raw.trim())
        .map(|id| id.to_string())
        .map_err(|_| ApiError::invalid(field, format!("{field} must be a UUID")))
}

/// Distinct ids, in the order given.
pub fn parse_ids(raw: &[String], field: &str, max: usize) -> Result<Vec<String>, ApiError> {
    if raw.len() > max {
        return Err(ApiError::invalid(
            field,
            format!("at most {max} ids per call"),
        ));
    }
    let mut ids: Vec<String> = Vec::with_capacity(raw.len());
    for (i, id) in raw.iter().enumerate() {
        let id = parse_id(id, &format!("{field}[{i}]"))?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    Ok(ids)
}

/// The canonical key of a private conversation: both ids, smaller first, so
/// either side computes the same key.
pub fn pair_key(a: &str, b: &str) -> String {
    if a <= b {
        format!("{a}:{b}")
    } else {
        format!("{b}:{a}")
    }
}

pub fn parse_title(raw: &str) -> Result<String, ApiError> {
    let title = raw.trim();
    if title.is_empty() {
        return Err(ApiError::invalid("title", "title must not be empty"));
    }
    if title.chars().count() > MAX_TITLE_CHARS {
        return Err(ApiError::invalid(
            "title",
            format!("title must be at most {MAX_TITLE_CHARS} characters"),
        ));
    }
    if title.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "title",
            "title must not contain control characters",
        ));
    }
    Ok(title.to_owned())
}

pub fn parse_client_msg_id(raw: &str) -> Result<Option<String>, ApiError> {
    if raw.is_empty() {
        return Ok(None);
    }
    let valid_chars = raw
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
    if raw.len() > MAX_CLIENT_MSG_ID || !valid_chars {
        return Err(ApiError::invalid(
            "client_msg_id",
            format!(
                "client_msg_id must be 1-{MAX_CLIENT_MSG_ID} characters of letters, digits, '-', '_', '.', ':'"
            ),
        ));
    }
    Ok(Some(raw.to_owned()))
}

/// Message text: at most [`MAX_TEXT_CHARS`], no control characters other
/// than newlines and tabs. Empty is allowed only where `required` is false
/// (a media caption).
pub fn parse_content(raw: &str, required: bool) -> Result<String, ApiError> {
    if required && raw.trim().is_empty() {
        return Err(ApiError::invalid(
            "content",
            "content must not be empty for a text message",
        ));
    }
    let chars = raw.chars().count();
    if chars > MAX_TEXT_CHARS {
        return Err(ApiError::invalid(
            "content",
            format!("content is {chars} characters; the limit is {MAX_TEXT_CHARS}"),
        ));
    }
    if raw
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(ApiError::invalid(
            "content",
            "content must not contain control characters",
        ));
    }
    Ok(raw.to_owned())
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentDoc {
    pub url: String,
    pub name: String,
    pub size_bytes: i64,
    pub mime_type: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub width: i32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub height: i32,
}

fn is_zero(value: &i32) -> bool {
    *value == 0
}

impl AttachmentDoc {
    pub fn to_proto(&self) -> Attachment {
        Attachment {
            url: self.url.clone(),
            name: self.name.clone(),
            size_bytes: u64::try_from(self.size_bytes).unwrap_or(0),
            mime_type: self.mime_type.clone(),
            width: u32::try_from(self.width).unwrap_or(0),
            height: u32::try_from(self.height).unwrap_or(0),
        }
    }
}

fn is_mime_token(part: &str) -> bool {
    !part.is_empty()
        && part.len() <= 127
        && part
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$&^_.+-".contains(c))
}

/// The kind of a message to send, from the request's kind and attachment.
pub fn parse_kind(raw: i32) -> Result<MessageKind, ApiError> {
    match ProtoMessageKind::try_from(raw) {
        Ok(ProtoMessageKind::Text | ProtoMessageKind::Unspecified) => Ok(MessageKind::Text),
        Ok(ProtoMessageKind::Image) => Ok(MessageKind::Image),
        Ok(ProtoMessageKind::File) => Ok(MessageKind::File),
        Err(_) => Err(ApiError::invalid(
            "kind",
            "kind must be MESSAGE_KIND_TEXT, MESSAGE_KIND_IMAGE or MESSAGE_KIND_FILE",
        )),
    }
}

/// Media metadata: an http(s) URL, a file name, a size within limits, a
/// `type/subtype` MIME type (image/* for images), dimensions for images.
pub fn parse_attachment(
    kind: MessageKind,
    raw: Option<&Attachment>,
) -> Result<Option<AttachmentDoc>, ApiError> {
    let raw = match (kind, raw) {
        (MessageKind::Text, None) => return Ok(None),
        (MessageKind::Text, Some(_)) => {
            return Err(ApiError::invalid(
                "attachment",
                "a text message cannot carry an attachment; use MESSAGE_KIND_IMAGE or MESSAGE_KIND_FILE",
            ));
        }
        (_, None) => {
            return Err(ApiError::invalid(
                "attachment",
                format!("an {} message needs an attachment", kind.as_str()),
            ));
        }
        (_, Some(raw)) => raw,
    };
    let url = raw.url.trim();
    let scheme_ok = url
        .split_once("://")
        .is_some_and(|(scheme, rest)| matches!(scheme, "http" | "https") && !rest.is_empty());
    if !scheme_ok || url.len() > MAX_URL_CHARS || url.chars().any(char::is_whitespace) {
        return Err(ApiError::invalid(
            "attachment.url",
            format!("attachment.url must be an http(s) URL of at most {MAX_URL_CHARS} characters"),
        ));
    }
    let name = raw.name.trim();
    if name.is_empty()
        || name.chars().count() > MAX_FILE_NAME_CHARS
        || name
            .chars()
            .any(|c| c.is_control() || c == '/' || c == '\\')
    {
        return Err(ApiError::invalid(
            "attachment.name",
            format!(
                "attachment.name must be 1-{MAX_FILE_NAME_CHARS} characters without slashes or control characters"
            ),
        ));
    }
    if raw.size_bytes == 0 || raw.size_bytes > MAX_ATTACHMENT_BYTES {
        return Err(ApiError::invalid(
            "attachment.size_bytes",
            format!("attachment.size_bytes must be between 1 and {MAX_ATTACHMENT_BYTES}"),
        ));
    }
    let mime = raw.mime_type.trim().to_ascii_lowercase();
    let mime_ok = mime
        .split_once('/')
        .is_some_and(|(kind, sub)| is_mime_token(kind) && is_mime_token(sub));
    if !mime_ok {
        return Err(ApiError::invalid(
            "attachment.mime_type",
            "attachment.mime_type must look like type/subtype",
        ));
    }
    if kind == MessageKind::Image {
        if !mime.starts_with("image/") {
            return Err(ApiError::invalid(
                "attachment.mime_type",
                "an image message needs an image/* MIME type",
            ));
        }
        if raw.width == 0 || raw.height == 0 || raw.width > 20_000 || raw.height > 20_000 {
            return Err(ApiError::invalid(
                "attachment.width",
                "an image needs width and height between 1 and 20000 pixels",
            ));
        }
    }
    Ok(Some(AttachmentDoc {
        url: url.to_owned(),
        name: name.to_owned(),
        size_bytes: i64::try_from(raw.size_bytes).unwrap_or(i64::MAX),
        mime_type: mime,
        width: i32::try_from(raw.width).unwrap_or(0),
        height: i32::try_from(raw.height).unwrap_or(0),
    }))
}

/// The first [`PREVIEW_CHARS`] characters, for conversation lists.
pub fn preview(content: &str) -> String {
    match content.char_indices().nth(PREVIEW_CHARS) {
        Some((end, _)) => format!("{}…", &content[..end]),
        None => content.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn pair_key_is_symmetric() {
        assert_eq!(pair_key("a", "b"), pair_key("b", "a"));
        assert_eq!(pair_key("a", "b"), "a:b");
    }

    #[test]
    fn content_limits_name_the_field() {
        let too_long = "x".repeat(MAX_TEXT_CHARS + 1);
        let error = parse_content(&too_long, true).unwrap_err();
        assert_eq!(error.field.as_deref(), Some("content"));
        assert!(error.message.contains("4096"), "{}", error.message);
        assert!(parse_content("  ", true).is_err());
        assert!(parse_content("", false).is_ok());
        assert!(parse_content("line\nline\ttab", true).is_ok());
        assert!(parse_content("bell\u{7}", true).is_err());
    }

    #[test]
    fn attachments_are_checked() {
        let good = Attachment {
            url: "https://cdn.example.com/a.png".into(),
            name: "a.png".into(),
            size_bytes: 1234,
            mime_type: "image/png".into(),
            width: 10,
            height: 20,
        };
        assert!(parse_attachment(MessageKind::Image, Some(&good)).is_ok());
        assert!(parse_attachment(MessageKind::Text, Some(&good)).is_err());
        assert!(parse_attachment(MessageKind::File, None).is_err());
        let cases = [
            (
                "attachment.url",
                Attachment {
                    url: "ftp://x/y".into(),
                    ..good.clone()
                },
            ),
            (
                "attachment.url",
                Attachment {
                    url: "javascript:alert(1)".into(),
                    ..good.clone()
                },
            ),
            (
                "attachment.name",
                Attachment {
                    name: "../etc/passwd".into(),
                    ..good.clone()
                },
            ),
            (
                "attachment.size_bytes",
                Attachment {
                    size_bytes: 0,
                    ..good.clone()
                },
            ),
            (
                "attachment.mime_type",
                Attachment {
                    mime_type: "png".into(),
                    ..good.clone()
                },
            ),
            (
                "attachment.mime_type",
                Attachment {
                    mime_type: "application/pdf".into(),
                    ..good.clone()
                },
            ),
            (
                "attachment.width",
                Attachment {
                    width: 0,
                    ..good.clone()
                },
            ),
        ];
        for (field, attachment) in cases {
            let error = parse_attachment(MessageKind::Image, Some(&attachment)).unwrap_err();
            assert_eq!(error.field.as_deref(), Some(field), "{attachment:?}");
        }
        let pdf = Attachment {
            mime_type: "application/pdf".into(),
            width: 0,
            height: 0,
            ..good
        };
        assert!(parse_attachment(MessageKind::File, Some(&pdf)).is_ok());
    }

    #[test]
    fn client_msg_ids() {
        assert_eq!(parse_client_msg_id("").unwrap(), None);
        assert_eq!(
            parse_client_msg_id("abc-1:2").unwrap().as_deref(),
            Some("abc-1:2")
        );
        assert!(parse_client_msg_id(&"a".repeat(65)).is_err());
        assert!(parse_client_msg_id("has space").is_err());
    }

    proptest! {
        #[test]
        fn preview_never_splits_a_character(text in "\\PC{0,300}") {
            let shown = preview(&text);
            prop_assert!(shown.chars().count() <= PREVIEW_CHARS + 1);
            prop_assert!(text.starts_with(shown.trim_end_matches('…')));
        }

        #[test]
        fn content_validation_never_panics(text in "\\PC{0,5000}") {
            let _ = parse_content(&text, true);
        }
    }
}
