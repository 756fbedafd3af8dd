//! The calls on one conversation's messages: read them, append one, save an answer while it
//! streams and when it ends, and cut a conversation back to one message (regenerate, edit).

use rusqlite::params;
use serde_json::Value;

use crate::queries::{
    insert_message, not_streaming_or_missing, read_conversation, read_message, read_messages,
    touch_conversation,
};
use crate::validate::title_from_message;
use crate::{
    now_millis, ConversationId, ConversationStore, Message, MessageId, MessageStatus, NewMessage,
    Reasoning, Result, Role, StoreError, Truncated,
};

impl ConversationStore {
    pub fn messages(&self, id: ConversationId) -> Result<Vec<Message>> {
        let connection = self.lock();
        read_conversation(&connection, id)?;
        read_messages(&connection, id)
    }

    pub fn message(&self, id: MessageId) -> Result<Message> {
        read_message(&self.lock(), id)
    }

    /// Appends a message to a live conversation. The first user message names an untitled
    /// conversation.
    pub fn append_message(
        &self,
        conversation_id: ConversationId,
        message: NewMessage,
    ) -> Result<Message> {
        let mut connection = self.lock();
        let transaction = connection.transaction()?;
        let conversation = read_conversation(&transaction, conversation_id)?;
        if conversation.deleted_at.is_some() {
            return Err(StoreError::ConversationDeleted(conversation_id));
        }
        let now = now_millis();
        let id = insert_message(&transaction, conversation_id, &message, now)?;
        if conversation.title.is_empty() && message.role == Role::User {
            let title = title_from_message(&message.content);
            transaction.execute(
                "UPDATE conversations SET title = ?1 WHERE id = ?2",
                params![title, conversation_id],
            )?;
        }
        touch_conversation(&transaction, conversation_id, now)?;
        let saved = read_message(&transaction, id)?;
        transaction.commit()?;
        Ok(saved)
    }

    /// Saves the text and thinking of an answer that is still streaming (the whole of both so
    /// far). The server calls this at least every second, so a crash loses at most that much.
    pub fn update_streaming_message(
        &self,
        id: MessageId,
        content: &str,
        reasoning: &Reasoning,
    ) -> Result<()> {
        let connection = self.lock();
        let changed = connection.execute(
            "UPDATE messages SET content = ?1, reasoning = ?2, reasoning_tokens = ?3,
                 reasoning_ms = ?4, updated_at = ?5
             WHERE id = ?6 AND status = 'streaming'",
            params![
                content,
                reasoning.text,
                reasoning.tokens,
                reasoning.ms,
                now_millis(),
                id
            ],
        )?;
        if changed == 0 {
            return Err(not_streaming_or_missing(&connection, id));
        }
        Ok(())
    }

    /// Saves an answer's final text, thinking, status and figures.
    pub fn finish_message(
        &self,
        id: MessageId,
        content: &str,
        reasoning: &Reasoning,
        status: MessageStatus,
        metrics: Option<&Value>,
    ) -> Result<Message> {
        let metrics = metrics.map(Value::to_string);
        let mut connection = self.lock();
        let transaction = connection.transaction()?;
        let now = now_millis();
        let changed = transaction.execute(
            "UPDATE messages SET content = ?1, reasoning = ?2, reasoning_tokens = ?3,
                 reasoning_ms = ?4, status = ?5, metrics = ?6, updated_at = ?7
             WHERE id = ?8 AND status = 'streaming'",
            params![
                content,
                reasoning.text,
                reasoning.tokens,
                reasoning.ms,
                status.as_str(),
                metrics,
                now,
                id
            ],
        )?;
        if changed == 0 {
            return Err(not_streaming_or_missing(&transaction, id));
        }
        transaction.execute(
            "UPDATE conversations SET updated_at = ?1
             WHERE id = (SELECT conversation_id FROM messages WHERE id = ?2)",
            params![now, id],
        )?;
        let saved = read_message(&transaction, id)?;
        transaction.commit()?;
        Ok(saved)
    }

    /// Removes every message after `message_id` from its conversation and, with
    /// `replace_content`, gives that message new text (only a user message can be edited), all
    /// in one transaction: a crash leaves either the old conversation or the new one. Used to
    /// regenerate an answer and to edit a question.
    pub fn truncate_after(
        &self,
        conversation_id: ConversationId,
        message_id: MessageId,
        replace_content: Option<&str>,
    ) -> Result<Truncated> {
        let mut connection = self.lock();
        let transaction = connection.transaction()?;
        let conversation = read_conversation(&transaction, conversation_id)?;
        if conversation.deleted_at.is_some() {
            return Err(StoreError::ConversationDeleted(conversation_id));
        }
        let message = read_message(&transaction, message_id)?;
        if message.conversation_id != conversation_id {
            return Err(StoreError::MessageNotFound(message_id));
        }
        let now = now_millis();
        if let Some(content) = replace_content {
            if message.role != Role::User {
                return Err(StoreError::InvalidInput {
                    field: "message_id",
                    reason: format!("message {message_id} is not a user message; only what the user wrote can be edited"),
                });
            }
            transaction.execute(
                "UPDATE messages SET content = ?1, updated_at = ?2 WHERE id = ?3",
                params![content, now, message_id],
            )?;
        }
        let removed = transaction.execute(
            "DELETE FROM messages WHERE conversation_id = ?1 AND id > ?2",
            params![conversation_id, message_id],
        )?;
        touch_conversation(&transaction, conversation_id, now)?;
        let message = read_message(&transaction, message_id)?;
        transaction.commit()?;
        Ok(Truncated { message, removed })
    }
}
