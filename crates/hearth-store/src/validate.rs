//! The rules for what a caller gives the store: a title (trimmed, not empty, not too long,
//! no control characters), settings (a JSON object), the title taken from a first message,
//! and a search text made into a LIKE pattern that takes its wildcards literally.

use serde_json::Value;

use crate::{Result, StoreError, MAX_TITLE_CHARS, TITLE_FROM_MESSAGE_CHARS};

pub(crate) fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

pub(crate) fn validate_title(title: &str) -> Result<String> {
    let title = title.trim();
    if title.is_empty() {
        return Err(StoreError::InvalidInput {
            field: "title",
            reason: "it is empty".into(),
        });
    }
    if title.chars().count() > MAX_TITLE_CHARS {
        return Err(StoreError::InvalidInput {
            field: "title",
            reason: format!("it is longer than {MAX_TITLE_CHARS} characters"),
        });
    }
    if title.chars().any(char::is_control) {
        return Err(StoreError::InvalidInput {
            field: "title",
            reason: "it contains control characters".into(),
        });
    }
    Ok(title.to_string())
}

pub(crate) fn validate_settings(settings: Value) -> Result<Value> {
    if settings.is_object() {
        Ok(settings)
    } else {
        Err(StoreError::InvalidInput {
            field: "settings",
            reason: "it must be a JSON object".into(),
        })
    }
}

/// The first line of a message, cut at a word boundary near [`TITLE_FROM_MESSAGE_CHARS`].
pub(crate) fn title_from_message(content: &str) -> String {
    let first_line = content
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .unwrap_or("");
    let cleaned: String = first_line
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if cleaned.chars().count() <= TITLE_FROM_MESSAGE_CHARS {
        return if cleaned.is_empty() {
            "Untitled".into()
        } else {
            cleaned
        };
    }
    let cut: String = cleaned.chars().take(TITLE_FROM_MESSAGE_CHARS).collect();
    let at_word = match cut.rfind(' ') {
        Some(space) if space > TITLE_FROM_MESSAGE_CHARS / 2 => &cut[..space],
        _ => cut.as_str(),
    };
    format!("{}…", at_word.trim_end())
}

/// A LIKE pattern matching `text` anywhere, with LIKE's wildcards in `text` taken literally.
pub(crate) fn like_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_from_messages_are_short_first_lines() {
        assert_eq!(title_from_message("\n  Hello there \nmore"), "Hello there");
        assert_eq!(title_from_message("   "), "Untitled");
        let long = "word ".repeat(40);
        let title = title_from_message(&long);
        assert!(title.ends_with('…'));
        assert!(title.chars().count() <= TITLE_FROM_MESSAGE_CHARS + 1);
    }

    #[test]
    fn like_patterns_take_wildcards_literally() {
        assert_eq!(like_pattern("50%_a\\"), "%50\\%\\_a\\\\%");
    }

    #[test]
    fn titles_are_validated() {
        assert!(validate_title("  ").is_err());
        assert!(validate_title(&"x".repeat(MAX_TITLE_CHARS + 1)).is_err());
        assert!(validate_title("a\u{7}b").is_err());
        assert_eq!(validate_title("  Plans ").unwrap(), "Plans");
    }
}
