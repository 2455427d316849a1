//! Parse, don't validate: credentials become these types only when valid, and
//! every rejection names the field and says what is wrong.

use service_kit::ApiError;

/// 3–32 characters of `[a-z0-9_]`, stored lower-case (case-insensitive unique).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Username(String);

impl Username {
    pub const MIN: usize = 3;
    pub const MAX: usize = 32;

    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        let name = raw.trim().to_ascii_lowercase();
        let length = name.chars().count();
        if !(Self::MIN..=Self::MAX).contains(&length) {
            return Err(ApiError::invalid(
                "username",
                format!(
                    "username must be {}-{} characters long",
                    Self::MIN,
                    Self::MAX
                ),
            ));
        }
        if let Some(bad) = name
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_'))
        {
            return Err(ApiError::invalid(
                "username",
                format!("username may contain only letters a-z, digits and '_' (found {bad:?})"),
            ));
        }
        Ok(Self(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A normalised (trimmed, lower-cased) address of a plausible shape: one `@`,
/// a dot-atom local part of 1–64 characters, and a domain of dot-separated
/// labels (letters, digits, hyphens; not at a label's ends) ending in a
/// 2+-letter top-level label. At most 254 characters (RFC 5321).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    pub const MAX: usize = 254;

    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        let email = raw.trim().to_lowercase();
        let invalid = |why: &str| ApiError::invalid("email", format!("email {why}"));
        if email.is_empty() {
            return Err(invalid("is required"));
        }
        if email.len() > Self::MAX {
            return Err(invalid("must be at most 254 characters long"));
        }
        let Some((local, domain)) = email.split_once('@') else {
            return Err(invalid("must look like name@example.com"));
        };
        if local.is_empty() || local.len() > 64 {
            return Err(invalid("must have 1-64 characters before the @"));
        }
        let local_ok = local.split('.').all(|atom| {
            !atom.is_empty()
                && atom
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~-".contains(c))
        });
        if !local_ok {
            return Err(invalid("has an invalid part before the @"));
        }
        let labels: Vec<&str> = domain.split('.').collect();
        if labels.len() < 2 {
            return Err(invalid("must have a domain like example.com"));
        }
        let label_ok = |label: &&str| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        };
        if !labels.iter().all(label_ok) {
            return Err(invalid("has an invalid domain"));
        }
        let tld = labels.last().copied().unwrap_or_default();
        if tld.len() < 2 || !tld.chars().all(|c| c.is_ascii_alphabetic()) {
            return Err(invalid("must end in a top-level domain like .com"));
        }
        Ok(Self(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password that meets the policy. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(..)")
    }
}

/// Bundled list of passwords that are common yet long enough to pass the
/// length rule (shorter ones fail that rule already).
const COMMON_PASSWORDS: &str = include_str!("common_passwords.txt");

impl Password {
    pub const MIN: usize = 10;
    /// bcrypt ignores everything after 72 bytes; longer would silently weaken.
    pub const MAX_BYTES: usize = 72;

    /// Checks the policy; `field` names the request field ("password",
    /// "new_password").
    pub fn parse(raw: &str, field: &str, username: &str, email: &str) -> Result<Self, ApiError> {
        let invalid = |why: String| ApiError::invalid(field, why);
        if raw.chars().count() < Self::MIN {
            return Err(invalid(format!(
                "{field} must be at least {} characters long",
                Self::MIN
            )));
        }
        if raw.len() > Self::MAX_BYTES {
            return Err(invalid(format!(
                "{field} must be at most {} bytes long",
                Self::MAX_BYTES
            )));
        }
        let lowered = raw.to_lowercase();
        if lowered == username.to_lowercase() || lowered == email.to_lowercase() {
            return Err(invalid(format!(
                "{field} must not equal the username or email"
            )));
        }
        if is_common(&lowered) {
            return Err(invalid(format!("{field} is too common; choose another")));
        }
        if raw.chars().collect::<std::collections::HashSet<_>>().len() < 4 {
            return Err(invalid(format!(
                "{field} must use at least 4 different characters"
            )));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

fn is_common(lowered: &str) -> bool {
    COMMON_PASSWORDS
        .lines()
        .map(str::trim)
        .any(|common| common == lowered)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn usernames() {
        assert_eq!(Username::parse("  Alice_99 ").unwrap().as_str(), "alice_99");
        for bad in [
            "ab",
            "",
            "a-b-c",
            "имя_юзера",
            "with space",
            &"x".repeat(33),
        ] {
            let error = Username::parse(bad).unwrap_err();
            assert_eq!(error.field.as_deref(), Some("username"), "{bad}");
        }
    }

    #[test]
    fn emails() {
        assert_eq!(
            Email::parse(" Alice.B+tag@Example.COM ").unwrap().as_str(),
            "alice.b+tag@example.com"
        );
        for good in ["a@b.io", "first.last@sub.domain.org", "x_y-z@my-host.co.uk"] {
            assert!(Email::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "plain",
            "@example.com",
            "a@",
            "a@b",
            "a@b.c",
            "a@-b.com",
            "a@b-.com",
            "a..b@c.com",
            ".a@c.com",
            "a@b..com",
            "a b@c.com",
            "a@b.c0m",
            "a@@b.com",
        ] {
            let error = Email::parse(bad).unwrap_err();
            assert_eq!(error.field.as_deref(), Some("email"), "{bad}");
        }
        assert!(Email::parse(&format!("{}@example.com", "a".repeat(65))).is_err());
    }

    #[test]
    fn passwords() {
        assert!(Password::parse("correct horse battery", "password", "alice", "a@b.io").is_ok());
        let cases = [
            ("short", "at least 10"),
            ("aaaaabbbbbaaaa", "at least 4 different"),
            ("password123", "too common"),
            ("Password1234", "too common"),
            ("a@example.com", "must not equal"),
        ];
        for (bad, why) in cases {
            let error =
                Password::parse(bad, "password", "aliceALICE", "a@example.com").unwrap_err();
            assert_eq!(error.field.as_deref(), Some("password"));
            assert!(error.message.contains(why), "{bad}: {}", error.message);
        }
        let error = Password::parse("aliceinwonder", "new_password", "AliceInWonder", "x@y.io")
            .unwrap_err();
        assert_eq!(error.field.as_deref(), Some("new_password"));
        assert!(
            Password::parse(&"é".repeat(40), "password", "u", "e@x.io").is_err(),
            "80 bytes"
        );
        assert!(
            !format!(
                "{:?}",
                Password::parse("correct horse battery", "p", "u", "e@x.io").unwrap()
            )
            .contains("horse")
        );
    }

    proptest! {
        #[test]
        fn valid_usernames_are_accepted_and_normalised(name in "[a-zA-Z0-9_]{3,32}") {
            let parsed = Username::parse(&name).unwrap();
            prop_assert_eq!(parsed.as_str(), name.to_ascii_lowercase());
            prop_assert_eq!(Username::parse(parsed.as_str()).unwrap(), parsed);
        }

        #[test]
        fn usernames_with_any_other_character_are_rejected(
            prefix in "[a-z0-9_]{0,10}", bad in "[^a-zA-Z0-9_\\s]", suffix in "[a-z0-9_]{0,10}"
        ) {
            let name = format!("{prefix}{bad}{suffix}");
            prop_assume!(name.trim() == name);
            prop_assert!(Username::parse(&name).is_err());
        }

        #[test]
        fn username_length_bounds(len in 0usize..64) {
            let name = "a".repeat(len);
            prop_assert_eq!(Username::parse(&name).is_ok(), (3..=32).contains(&len));
        }

        #[test]
        fn generated_emails_parse_to_lowercase(
            local in "[a-zA-Z0-9_+-]{1,20}(\\.[a-zA-Z0-9_+-]{1,10})?",
            host in "[a-zA-Z0-9]([a-zA-Z0-9-]{0,10}[a-zA-Z0-9])?",
            tld in "[a-zA-Z]{2,6}",
        ) {
            let raw = format!("{local}@{host}.{tld}");
            let email = Email::parse(&raw).unwrap();
            prop_assert_eq!(email.as_str(), raw.to_lowercase());
        }

        #[test]
        fn arbitrary_strings_never_panic_and_errors_name_their_field(s in "\\PC{0,80}") {
            for (result, field) in [
                (Username::parse(&s).err(), "username"),
                (Email::parse(&s).err(), "email"),
                (Password::parse(&s, "password", "user", "e@x.io").err(), "password"),
            ] {
                if let Some(error) = result {
                    prop_assert_eq!(error.field.as_deref(), Some(field));
                }
            }
        }

        #[test]
        fn passwords_shorter_than_ten_are_always_rejected(pw in "\\PC{0,9}") {
            prop_assert!(Password::parse(&pw, "password", "user", "e@x.io").is_err());
        }
    }
}
