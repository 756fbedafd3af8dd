//! Rows to values, one column at a time, without trusting the file: a column that is not
//! what the schema says (text that is not UTF-8, JSON that does not parse, NULL where a value
//! belongs, a role nobody wrote) is reported, not propagated. A bad message comes back hidden
//! with a notice; a bad conversation header is shown as well as it can be, with a notice.

use rusqlite::types::ValueRef;
use rusqlite::Row;
use serde_json::Value;

use crate::{Conversation, Message, MessageStatus, Reasoning, Role};

/// What a hidden message's notice starts with.
pub const UNREADABLE_MESSAGE_NOTICE: &str = "This message could not be read and is hidden";

fn text(row: &Row<'_>, index: usize, name: &str) -> Result<String, String> {
    match row.get_ref(index) {
        Ok(ValueRef::Text(bytes)) => std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| format!("{name} is not valid UTF-8")),
        Ok(ValueRef::Null) => Err(format!("{name} is missing")),
        Ok(_) => Err(format!("{name} is not text")),
        Err(error) => Err(format!("{name}: {error}")),
    }
}

fn optional_text(row: &Row<'_>, index: usize, name: &str) -> Result<Option<String>, String> {
    match row.get_ref(index) {
        Ok(ValueRef::Null) => Ok(None),
        _ => text(row, index, name).map(Some),
    }
}

fn integer(row: &Row<'_>, index: usize, name: &str) -> Result<i64, String> {
    match row.get_ref(index) {
        Ok(ValueRef::Integer(value)) => Ok(value),
        Ok(ValueRef::Null) => Err(format!("{name} is missing")),
        Ok(_) => Err(format!("{name} is not an integer")),
        Err(error) => Err(format!("{name}: {error}")),
    }
}

fn optional_integer(row: &Row<'_>, index: usize, name: &str) -> Result<Option<i64>, String> {
    match row.get_ref(index) {
        Ok(ValueRef::Null) => Ok(None),
        _ => integer(row, index, name).map(Some),
    }
}

fn json(text: &str, name: &str) -> Result<Value, String> {
    serde_json::from_str(text).map_err(|error| format!("{name} is not valid JSON ({error})"))
}

/// Collects the problems of one row while reading it.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn take<T>(&mut self, result: Result<T, String>, fallback: T) -> T {
        result.unwrap_or_else(|problem| {
            self.0.push(problem);
            fallback
        })
    }

    fn notice(self, prefix: &str) -> Option<String> {
        (!self.0.is_empty()).then(|| format!("{prefix}: {}.", self.0.join("; ")))
    }
}

pub(crate) fn conversation_from_row(row: &Row<'_>) -> rusqlite::Result<Conversation> {
    // The id is the rowid: SQLite guarantees it is an integer.
    let id: i64 = row.get(0)?;
    let mut problems = Problems::default();
    let title = problems.take(text(row, 1, "the title"), "Unreadable title".into());
    let model = problems.take(optional_text(row, 2, "the model"), None);
    let system_prompt = problems.take(optional_text(row, 3, "the system prompt"), None);
    let settings_text = problems.take(text(row, 4, "the settings").map(Some), None);
    let settings = match settings_text {
        Some(settings_text) => problems.take(
            json(&settings_text, "the settings").and_then(|value| {
                if value.is_object() {
                    Ok(value)
                } else {
                    Err("the settings are not a JSON object".into())
                }
            }),
            Value::Object(serde_json::Map::new()),
        ),
        None => Value::Object(serde_json::Map::new()),
    };
    let created_at = problems.take(integer(row, 5, "the creation time"), 0);
    let updated_at = problems.take(integer(row, 6, "the update time"), created_at);
    let deleted_at = problems.take(optional_integer(row, 7, "the deletion time"), None);
    Ok(Conversation {
        id,
        title,
        model,
        system_prompt,
        settings,
        created_at,
        updated_at,
        deleted_at,
        notice: problems.notice("Part of this conversation's details could not be read"),
    })
}

pub(crate) fn message_from_row(row: &Row<'_>) -> rusqlite::Result<Message> {
    let id: i64 = row.get(0)?;
    let mut problems = Problems::default();
    let conversation_id = problems.take(integer(row, 1, "the conversation id"), 0);
    let role_text = problems.take(text(row, 2, "the role"), String::new());
    let role = match Role::parse(&role_text) {
        Some(role) => role,
        None => {
            if !role_text.is_empty() {
                problems.0.push("the role is unknown".into());
            }
            Role::Assistant
        }
    };
    let content = problems.take(text(row, 3, "the text"), String::new());
    let status_text = problems.take(text(row, 4, "the status"), String::new());
    let status = match MessageStatus::parse(&status_text) {
        Some(status) => status,
        None => {
            if !status_text.is_empty() {
                problems.0.push("the status is unknown".into());
            }
            MessageStatus::Error
        }
    };
    let metrics_text = problems.take(optional_text(row, 5, "the metrics"), None);
    let metrics = match metrics_text {
        Some(metrics_text) => problems.take(json(&metrics_text, "the metrics").map(Some), None),
        None => None,
    };
    let created_at = problems.take(integer(row, 6, "the creation time"), 0);
    let updated_at = problems.take(integer(row, 7, "the update time"), created_at);
    let reasoning = Reasoning {
        text: problems.take(text(row, 8, "the thinking"), String::new()),
        tokens: problems.take(
            integer(row, 9, "the thinking's token count").and_then(|count| {
                u32::try_from(count)
                    .map_err(|_| "the thinking's token count is out of range".into())
            }),
            0,
        ),
        ms: problems.take(
            integer(row, 10, "the thinking's time").and_then(|ms| {
                u64::try_from(ms).map_err(|_| "the thinking's time is out of range".into())
            }),
            0,
        ),
    };
    let notice = problems.notice(UNREADABLE_MESSAGE_NOTICE);
    let hidden = notice.is_some();
    Ok(Message {
        id,
        conversation_id,
        role,
        // A hidden message shows none of its (possibly garbled) text.
        content: if hidden { String::new() } else { content },
        reasoning: if hidden {
            Reasoning::default()
        } else {
            reasoning
        },
        status: if hidden { MessageStatus::Error } else { status },
        metrics: if hidden { None } else { metrics },
        created_at,
        updated_at,
        hidden,
        notice,
    })
}
