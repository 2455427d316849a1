//! Validation of everything a user can write to their profile, with errors
//! that name the field.

use proto::users::v1::{Audience, ProfileSettings};
use serde::{Deserialize, Serialize};
use service_kit::ApiError;

pub const DISPLAY_NAME_MAX: usize = 64;
pub const BIO_MAX: usize = 500;
pub const AVATAR_URL_MAX: usize = 2048;
pub const SEARCH_QUERY_MAX: usize = 64;

fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// 1–64 characters, no control characters, trimmed.
pub fn display_name(raw: &str) -> Result<String, ApiError> {
    let name = raw.trim();
    let length = name.chars().count();
    if length == 0 || length > DISPLAY_NAME_MAX {
        return Err(ApiError::invalid(
            "display_name",
            format!("display_name must be 1-{DISPLAY_NAME_MAX} characters"),
        ));
    }
    if has_control(name) {
        return Err(ApiError::invalid(
            "display_name",
            "display_name must not contain control characters",
        ));
    }
    Ok(name.to_owned())
}

/// Empty (no avatar) or an absolute http(s) URL with a host.
pub fn avatar_url(raw: &str) -> Result<String, ApiError> {
    let url = raw.trim();
    if url.is_empty() {
        return Ok(String::new());
    }
    let invalid = |why: &str| ApiError::invalid("avatar_url", format!("avatar_url {why}"));
    if url.len() > AVATAR_URL_MAX {
        return Err(invalid("must be at most 2048 characters"));
    }
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| invalid("must be an http:// or https:// URL"))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = host.rsplit('@').next().unwrap_or_default();
    let host_name = host.split(':').next().unwrap_or_default();
    if host_name.is_empty()
        || !host_name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        || url.chars().any(char::is_whitespace)
    {
        return Err(invalid("must have a valid host and no spaces"));
    }
    Ok(url.to_owned())
}

/// At most 500 characters; newlines allowed, other control characters not.
pub fn bio(raw: &str) -> Result<String, ApiError> {
    let bio = raw.trim();
    if bio.chars().count() > BIO_MAX {
        return Err(ApiError::invalid(
            "bio",
            format!("bio must be at most {BIO_MAX} characters"),
        ));
    }
    if bio.chars().any(|c| c.is_control() && c != '\n') {
        return Err(ApiError::invalid(
            "bio",
            "bio must not contain control characters",
        ));
    }
    Ok(bio.to_owned())
}

/// The known shape of `user_profiles.settings`. Unknown keys are rejected
/// when read from JSON (the gateway's REST body), so typos fail loudly.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub language: String,
    pub theme: String,
    pub notifications_enabled: bool,
    pub time_zone: String,
}

impl Settings {
    pub const THEMES: [&'static str; 3] = ["light", "dark", "system"];

    pub fn validate(self) -> Result<Self, ApiError> {
        let language_ok = self.language.is_empty() || {
            let mut parts = self.language.split('-');
            let primary = parts.next().unwrap_or_default();
            (2..=3).contains(&primary.len())
                && primary.chars().all(|c| c.is_ascii_lowercase())
                && parts.all(|p| {
                    (2..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric())
                })
        };
        if !language_ok {
            return Err(ApiError::invalid(
                "settings.language",
                "settings.language must be a language tag like en or pt-BR",
            ));
        }
        if !self.theme.is_empty() && !Self::THEMES.contains(&self.theme.as_str()) {
            return Err(ApiError::invalid(
                "settings.theme",
                "settings.theme must be light, dark or system",
            ));
        }
        let zone_ok = self.time_zone.is_empty()
            || (self.time_zone.len() <= 64
                && self
                    .time_zone
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "/_+-".contains(c))
                && !self.time_zone.starts_with('/'));
        if !zone_ok {
            return Err(ApiError::invalid(
                "settings.time_zone",
                "settings.time_zone must be an IANA zone like Europe/Berlin",
            ));
        }
        Ok(self)
    }

    pub fn from_proto(settings: &ProfileSettings) -> Self {
        Self {
            language: settings.language.trim().to_owned(),
            theme: settings.theme.trim().to_owned(),
            notifications_enabled: settings.notifications_enabled,
            time_zone: settings.time_zone.trim().to_owned(),
        }
    }

    pub fn to_proto(&self) -> ProfileSettings {
        ProfileSettings {
            language: self.language.clone(),
            theme: self.theme.clone(),
            notifications_enabled: self.notifications_enabled,
            time_zone: self.time_zone.clone(),
        }
    }

    /// Reads stored JSON; anything unreadable falls back to defaults rather
    /// than failing every read of the profile.
    pub fn from_stored(value: &serde_json::Value) -> Self {
        serde_json::from_value(value.clone()).unwrap_or_default()
    }
}

/// Privacy audiences as stored (SMALLINT).
pub fn audience_to_db(
    audience: Audience,
    field: &str,
    allow_nobody: bool,
) -> Result<i16, ApiError> {
    match audience {
        Audience::Everyone => Ok(1),
        Audience::Contacts => Ok(2),
        Audience::Nobody if allow_nobody => Ok(3),
        Audience::Nobody => Err(ApiError::invalid(
            field,
            format!("{field} cannot be nobody"),
        )),
        Audience::Unspecified => Err(ApiError::invalid(
            field,
            format!("{field} must be everyone or contacts"),
        )),
    }
}

pub fn audience_from_db(value: i16) -> Audience {
    match value {
        2 => Audience::Contacts,
        3 => Audience::Nobody,
        _ => Audience::Everyone,
    }
}

/// A search query: trimmed, lower-cased, 1–64 characters.
pub fn search_query(raw: &str) -> Result<String, ApiError> {
    let query = raw.trim().to_lowercase();
    let length = query.chars().count();
    if length == 0 || length > SEARCH_QUERY_MAX {
        return Err(ApiError::invalid(
            "query",
            format!("query must be 1-{SEARCH_QUERY_MAX} characters"),
        ));
    }
    if has_control(&query) {
        return Err(ApiError::invalid(
            "query",
            "query must not contain control characters",
        ));
    }
    Ok(query)
}

/// Escapes LIKE wildcards (usernames may contain `_`).
pub fn like_prefix(query: &str) -> String {
    let mut escaped = String::with_capacity(query.len() + 1);
    for c in query.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped.push('%');
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn profile_fields() {
        assert_eq!(display_name("  Ada Lovelace ").unwrap(), "Ada Lovelace");
        assert_eq!(
            display_name("").unwrap_err().field.as_deref(),
            Some("display_name")
        );
        assert!(display_name(&"x".repeat(65)).is_err());
        assert!(display_name("tab\there").is_err());
        assert_eq!(
            avatar_url("https://cdn.example.com/a.png?s=64").unwrap(),
            "https://cdn.example.com/a.png?s=64"
        );
        assert_eq!(avatar_url("").unwrap(), "");
        for bad in [
            "ftp://x.org/a.png",
            "javascript:alert(1)",
            "https://",
            "https://exa mple.com/a",
            "//x.org/a",
        ] {
            assert_eq!(
                avatar_url(bad).unwrap_err().field.as_deref(),
                Some("avatar_url"),
                "{bad}"
            );
        }
        assert!(bio("line one\nline two").is_ok());
        assert_eq!(
            bio(&"b".repeat(501)).unwrap_err().field.as_deref(),
            Some("bio")
        );
    }

    #[test]
    fn settings_shape() {
        let ok = Settings {
            language: "pt-BR".into(),
            theme: "dark".into(),
            notifications_enabled: true,
            time_zone: "America/Sao_Paulo".into(),
        };
        assert!(ok.clone().validate().is_ok());
        let bad_theme = Settings {
            theme: "neon".into(),
            ..ok.clone()
        };
        assert_eq!(
            bad_theme.validate().unwrap_err().field.as_deref(),
            Some("settings.theme")
        );
        let bad_lang = Settings {
            language: "English".into(),
            ..ok
        };
        assert_eq!(
            bad_lang.validate().unwrap_err().field.as_deref(),
            Some("settings.language")
        );
        let error =
            serde_json::from_str::<Settings>(r#"{"theme":"dark","colour":"red"}"#).unwrap_err();
        assert!(
            error.to_string().contains("unknown field `colour`"),
            "{error}"
        );
    }

    #[test]
    fn like_wildcards_are_escaped() {
        assert_eq!(like_prefix("a_b%c"), "a\\_b\\%c%");
    }

    proptest! {
        #[test]
        fn validators_never_panic_and_name_their_field(s in "\\PC{0,600}") {
            for (result, field) in [
                (display_name(&s).err(), "display_name"),
                (avatar_url(&s).err(), "avatar_url"),
                (bio(&s).err(), "bio"),
                (search_query(&s).err(), "query"),
            ] {
                if let Some(error) = result {
                    prop_assert_eq!(error.field.as_deref(), Some(field));
                }
            }
        }
    }
}
