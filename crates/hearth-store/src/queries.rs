//! The SQL the store's calls share: a conversation or its messages read by id (through
//! `rows`, so a bad row never fails the read), a message inserted, a conversation marked
//! changed, and why an update of a streaming answer touched nothing.

use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value;

use crate::{
    rows, Conversation, ConversationId, Message, MessageId, NewMessage, Result, StoreError,
};

pub(crate) const CONVERSATION_COLUMNS: &str =
    "id, title, model, system_prompt, settings, created_at, updated_at, deleted_at";
pub(crate) const MESSAGE_COLUMNS: &str =
    "id, conversation_id, role, content, status, metrics, created_at, updated_at, reasoning, \
     reasoning_tokens, reasoning_ms";

/// Inserts one message (created and updated at `at`); returns its id.
pub(crate) fn insert_message(
    connection: &Connection,
    conversation_id: ConversationId,
    message: &NewMessage,
    at: i64,
) -> rusqlite::Result<MessageId> {
    connection.execute(
        "INSERT INTO messages (conversation_id, role, content, status, metrics, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
        params![
            conversation_id,
            message.role.as_str(),
            message.content,
            message.status.as_str(),
            message.metrics.as_ref().map(Value::to_string),
            at
        ],
    )?;
    Ok(connection.last_insert_rowid())
}

/// Marks a conversation changed at `now` (the list shows the most recently changed first).
pub(crate) fn touch_conversation(
    connection: &Connection,
    id: ConversationId,
    now: i64,
) -> rusqlite::Result<()> {
    connection.execute(
        "UPDATE conversations SET updated_at = ?1 WHERE id = ?2",
        params![now, id],
    )?;
    Ok(())
}

/// A message the update did not touch: missing, or finished already.
pub(crate) fn not_streaming_or_missing(connection: &Connection, id: MessageId) -> StoreError {
    let exists = connection
        .query_row("SELECT 1 FROM messages WHERE id = ?1", params![id], |_| {
            Ok(())
        })
        .optional();
    match exists {
        Ok(Some(())) => StoreError::MessageNotStreaming(id),
        Ok(None) => StoreError::MessageNotFound(id),
        Err(error) => StoreError::Database(error),
    }
}

pub(crate) fn read_conversation(
    connection: &Connection,
    id: ConversationId,
) -> Result<Conversation> {
    connection
        .query_row(
            &format!("SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE id = ?1"),
            params![id],
            rows::conversation_from_row,
        )
        .optional()?
        .ok_or(StoreError::ConversationNotFound(id))
}

pub(crate) fn read_messages(connection: &Connection, id: ConversationId) -> Result<Vec<Message>> {
    let mut statement = connection.prepare(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ?1 ORDER BY id"
    ))?;
    let rows = statement.query_map(params![id], rows::message_from_row)?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

pub(crate) fn read_message(connection: &Connection, id: MessageId) -> Result<Message> {
    connection
        .query_row(
            &format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ?1"),
            params![id],
            rows::message_from_row,
        )
        .optional()?
        .ok_or(StoreError::MessageNotFound(id))
}
