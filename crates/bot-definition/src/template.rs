//! Reply templates: text with `{{name}}` placeholders, checked when the
//! definitions load (so an unknown name is a load error, not an odd reply).

use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Placeholder(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

/// The longest reply a bot sends (chat's message limit is larger).
const MAX_RENDERED: usize = 4_000;

impl Template {
    pub fn parse(source: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = source;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Text(rest[..start].to_owned()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| format!("unclosed placeholder after {:?}", &rest[..start]))?;
            let name = after[..end].trim();
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("invalid placeholder {{{{{}}}}}", &after[..end]));
            }
            parts.push(Part::Placeholder(name.to_owned()));
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Self { parts })
    }

    pub fn placeholders(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|part| match part {
            Part::Placeholder(name) => Some(name.as_str()),
            Part::Text(_) => None,
        })
    }

    /// Fills the placeholders; a value the context lacks renders empty.
    pub fn render(&self, values: &HashMap<String, String>) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Placeholder(name) => {
                    out.push_str(values.get(name).map_or("", String::as_str));
                }
            }
        }
        if out.len() > MAX_RENDERED {
            let mut cut = MAX_RENDERED;
            while !out.is_char_boundary(cut) {
                cut -= 1;
            }
            out.truncate(cut);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_placeholders_and_rejects_broken_ones() {
        let template = Template::parse("Hi {{ sender }}, {{1}}!").unwrap();
        assert_eq!(template.placeholders().collect::<Vec<_>>(), ["sender", "1"]);
        let values = HashMap::from([
            ("sender".to_owned(), "Ann".to_owned()),
            ("1".to_owned(), "x".to_owned()),
        ]);
        assert_eq!(template.render(&values), "Hi Ann, x!");
        assert!(Template::parse("Hi {{sender").is_err());
        assert!(Template::parse("Hi {{a b}}").is_err());
        assert_eq!(Template::parse("plain").unwrap().render(&values), "plain");
    }
}
