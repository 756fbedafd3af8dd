//! Export of one conversation: Markdown for people, JSON for programs, and the JSON read back
//! ([`parse_json`]) to restore a conversation from an export.

use serde_json::{json, Map, Value};

use crate::{
    ConversationWithMessages, ImportedConversation, ImportedMessage, MessageStatus,
    NewConversation, NewMessage, Reasoning, Result, Role, StoreError, SCHEMA_VERSION,
};

/// The `format` field of a JSON export, so a reader can tell what it holds.
pub const JSON_EXPORT_FORMAT: &str = "hearth-conversation";
/// The most messages one import may hold (a request body is capped well below this anyway).
pub const MAX_IMPORT_MESSAGES: usize = 100_000;

/// A Markdown document: the title, the model and system prompt, then each message under its
/// role. Message text is Markdown already and is kept as written.
pub fn markdown(conversation: &ConversationWithMessages) -> String {
    let header = &conversation.conversation;
    let title = if header.title.is_empty() {
        "Untitled"
    } else {
        header.title.as_str()
    };
    let mut out = format!("# {title}\n\n");
    if let Some(model) = &header.model {
        out.push_str(&format!("Model: `{model}`\n\n"));
    }
    if let Some(system_prompt) = header.system_prompt.as_deref().filter(|s| !s.is_empty()) {
        out.push_str(&format!("## System\n\n{system_prompt}\n\n"));
    }
    for message in &conversation.messages {
        let role = match message.role {
            Role::System => "System",
            Role::User => "User",
            Role::Assistant => "Assistant",
        };
        out.push_str(&format!("## {role}\n\n"));
        if let Some(notice) = &message.notice {
            out.push_str(&format!("> {notice}\n\n"));
            continue;
        }
        if !message.reasoning.text.is_empty() {
            out.push_str("<details><summary>Thinking</summary>\n\n");
            out.push_str(message.reasoning.text.trim_end());
            out.push_str("\n\n</details>\n\n");
        }
        out.push_str(message.content.trim_end());
        out.push_str("\n\n");
    }
    out
}

/// One JSON object: the conversation's fields, its messages, and the format and schema
/// version it was written with.
pub fn json(conversation: &ConversationWithMessages) -> Value {
    let mut value = serde_json::to_value(conversation).unwrap_or_else(|_| json!({}));
    if let Some(object) = value.as_object_mut() {
        object.insert("format".into(), json!(JSON_EXPORT_FORMAT));
        object.insert("schema_version".into(), json!(SCHEMA_VERSION));
    }
    value
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> StoreError {
    StoreError::InvalidImport {
        field: field.into(),
        reason: reason.into(),
    }
}

/// A string, `null` or absent member of `object`.
fn optional_text(object: &Map<String, Value>, key: &str, field: &str) -> Result<Option<String>> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(invalid(field, "must be a string or null")),
    }
}

/// A Unix-milliseconds time, `null` or absent.
fn optional_time(object: &Map<String, Value>, key: &str, field: &str) -> Result<Option<i64>> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_i64()
            .filter(|millis| *millis >= 0)
            .map(Some)
            .ok_or_else(|| invalid(field, "must be a non-negative whole number of milliseconds")),
    }
}

/// An optional non-negative whole number (a count or a duration).
fn optional_count(object: &Map<String, Value>, key: &str, field: &str) -> Result<Option<u64>> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_u64()
            .map(Some)
            .ok_or_else(|| invalid(field, "must be a non-negative whole number")),
    }
}

/// Reads a JSON export (as [`json`] writes it) back, checking every field it uses: the
/// format marker, a schema version this Hearth knows, and each message's role, text and
/// status. Ids are ignored (the import gets new ones); messages exported hidden (unreadable
/// when exported) are left out.
pub fn parse_json(value: &Value) -> Result<ImportedConversation> {
    let object = value
        .as_object()
        .ok_or_else(|| invalid("(document)", "must be a JSON object"))?;
    match object.get("format") {
        Some(Value::String(format)) if format == JSON_EXPORT_FORMAT => {}
        _ => {
            return Err(invalid(
                "format",
                format!("must be \"{JSON_EXPORT_FORMAT}\" (a conversation exported as JSON)"),
            ))
        }
    }
    match object.get("schema_version").map(Value::as_u64) {
        None => {}
        Some(Some(version)) if version <= u64::from(SCHEMA_VERSION) => {}
        Some(Some(version)) => {
            return Err(invalid(
                "schema_version",
                format!("{version} is newer than this Hearth understands ({SCHEMA_VERSION})"),
            ))
        }
        Some(None) => return Err(invalid("schema_version", "must be a whole number")),
    }
    let settings = match object.get("settings") {
        None | Some(Value::Null) => None,
        Some(settings @ Value::Object(_)) => Some(settings.clone()),
        Some(_) => return Err(invalid("settings", "must be a JSON object")),
    };
    let conversation = NewConversation {
        title: optional_text(object, "title", "title")?,
        model: optional_text(object, "model", "model")?,
        system_prompt: optional_text(object, "system_prompt", "system_prompt")?,
        settings,
    };
    let created_at = optional_time(object, "created_at", "created_at")?;
    let listed = match object.get("messages") {
        Some(Value::Array(messages)) => messages,
        _ => return Err(invalid("messages", "must be an array")),
    };
    if listed.len() > MAX_IMPORT_MESSAGES {
        return Err(invalid(
            "messages",
            format!("holds more than {MAX_IMPORT_MESSAGES} messages"),
        ));
    }
    let mut messages = Vec::with_capacity(listed.len());
    for (index, message) in listed.iter().enumerate() {
        let field = |name: &str| format!("messages[{index}].{name}");
        let message = message
            .as_object()
            .ok_or_else(|| invalid(format!("messages[{index}]"), "must be a JSON object"))?;
        if message.get("hidden") == Some(&Value::Bool(true)) {
            continue;
        }
        let role = message
            .get("role")
            .and_then(Value::as_str)
            .and_then(Role::parse)
            .ok_or_else(|| {
                invalid(
                    field("role"),
                    "must be \"user\", \"assistant\" or \"system\"",
                )
            })?;
        let content = match message.get("content") {
            Some(Value::String(content)) => content.clone(),
            _ => return Err(invalid(field("content"), "must be a string")),
        };
        let status = match message.get("status") {
            None | Some(Value::Null) => MessageStatus::Complete,
            Some(status) => status
                .as_str()
                .and_then(MessageStatus::parse)
                .ok_or_else(|| {
                    invalid(
                        field("status"),
                        "must be \"complete\", \"stopped\", \"error\" or \"streaming\"",
                    )
                })?,
        };
        let reasoning = Reasoning {
            text: match message.get("reasoning") {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(reasoning)) => reasoning.clone(),
                Some(_) => return Err(invalid(field("reasoning"), "must be a string")),
            },
            tokens: optional_count(message, "reasoning_tokens", &field("reasoning_tokens"))?
                .and_then(|count| u32::try_from(count).ok())
                .unwrap_or(0),
            ms: optional_count(message, "reasoning_ms", &field("reasoning_ms"))?.unwrap_or(0),
        };
        let metrics = match message.get("metrics") {
            None | Some(Value::Null) => None,
            Some(metrics @ Value::Object(_)) => Some(metrics.clone()),
            Some(_) => return Err(invalid(field("metrics"), "must be a JSON object or null")),
        };
        messages.push(ImportedMessage {
            message: NewMessage {
                role,
                content,
                status,
                metrics,
            },
            reasoning,
            created_at: optional_time(message, "created_at", &field("created_at"))?,
        });
    }
    Ok(ImportedConversation {
        conversation,
        created_at,
        messages,
    })
}
