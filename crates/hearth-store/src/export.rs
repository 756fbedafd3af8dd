//! Export of one conversation: Markdown for people, JSON for programs (and re-import later).

use serde_json::{json, Value};

use crate::{ConversationWithMessages, Role, SCHEMA_VERSION};

/// The `format` field of a JSON export, so a reader can tell what it holds.
pub const JSON_EXPORT_FORMAT: &str = "hearth-conversation";

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
