//! The calls on conversations as a whole: create, read, list and search, rename, change
//! their settings, delete with undo, purge, and import and export one with its messages.

use rusqlite::params;
use serde_json::Value;

use crate::queries::{insert_message, read_conversation, read_messages, CONVERSATION_COLUMNS};
use crate::validate::{
    empty_object, like_pattern, title_from_message, validate_settings, validate_title,
};
use crate::{
    export, now_millis, rows, Conversation, ConversationId, ConversationStore,
    ConversationWithMessages, ImportedConversation, ListQuery, MessageStatus, NewConversation,
    Reasoning, Result, Role, SettingsUpdate, StoreError, DEFAULT_LIST_LIMIT,
};

impl ConversationStore {
    pub fn create_conversation(&self, new: NewConversation) -> Result<Conversation> {
        let title = match new.title {
            Some(title) => validate_title(&title)?,
            None => String::new(),
        };
        let settings = validate_settings(new.settings.unwrap_or_else(empty_object))?;
        let now = now_millis();
        let connection = self.lock();
        connection.execute(
            "INSERT INTO conversations (title, model, system_prompt, settings, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
            params![title, new.model, new.system_prompt, settings.to_string(), now],
        )?;
        let id = connection.last_insert_rowid();
        read_conversation(&connection, id)
    }

    /// A conversation's header, deleted or not.
    pub fn conversation(&self, id: ConversationId) -> Result<Conversation> {
        read_conversation(&self.lock(), id)
    }

    /// A conversation with its messages, oldest first.
    pub fn conversation_with_messages(
        &self,
        id: ConversationId,
    ) -> Result<ConversationWithMessages> {
        let connection = self.lock();
        let conversation = read_conversation(&connection, id)?;
        let messages = read_messages(&connection, id)?;
        Ok(ConversationWithMessages {
            conversation,
            messages,
        })
    }

    /// Live (or, with `deleted`, deleted) conversations, most recently updated first.
    pub fn list_conversations(&self, query: &ListQuery) -> Result<Vec<Conversation>> {
        let limit = query.limit.unwrap_or(DEFAULT_LIST_LIMIT);
        let deleted_filter = if query.deleted {
            "deleted_at IS NOT NULL"
        } else {
            "deleted_at IS NULL"
        };
        let pattern = query
            .search
            .as_deref()
            .map(str::trim)
            .filter(|text| !text.is_empty())
            .map(like_pattern);
        let sql = format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations c WHERE {deleted_filter}
             AND (?1 IS NULL OR c.title LIKE ?1 ESCAPE '\\' OR EXISTS (
                 SELECT 1 FROM messages m WHERE m.conversation_id = c.id
                 AND m.content LIKE ?1 ESCAPE '\\'))
             ORDER BY updated_at DESC, id DESC LIMIT ?2"
        );
        let connection = self.lock();
        let mut statement = connection.prepare(&sql)?;
        let rows = statement.query_map(params![pattern, limit], rows::conversation_from_row)?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    pub fn rename_conversation(&self, id: ConversationId, title: &str) -> Result<Conversation> {
        let title = validate_title(title)?;
        let connection = self.lock();
        let changed = connection.execute(
            "UPDATE conversations SET title = ?1, updated_at = ?2 WHERE id = ?3",
            params![title, now_millis(), id],
        )?;
        if changed == 0 {
            return Err(StoreError::ConversationNotFound(id));
        }
        read_conversation(&connection, id)
    }

    pub fn update_settings(
        &self,
        id: ConversationId,
        update: SettingsUpdate,
    ) -> Result<Conversation> {
        let settings = update.settings.map(validate_settings).transpose()?;
        let mut connection = self.lock();
        let transaction = connection.transaction()?;
        let now = now_millis();
        read_conversation(&transaction, id)?;
        if let Some(model) = update.model {
            transaction.execute(
                "UPDATE conversations SET model = ?1, updated_at = ?2 WHERE id = ?3",
                params![model, now, id],
            )?;
        }
        if let Some(system_prompt) = update.system_prompt {
            transaction.execute(
                "UPDATE conversations SET system_prompt = ?1, updated_at = ?2 WHERE id = ?3",
                params![system_prompt, now, id],
            )?;
        }
        if let Some(settings) = settings {
            transaction.execute(
                "UPDATE conversations SET settings = ?1, updated_at = ?2 WHERE id = ?3",
                params![settings.to_string(), now, id],
            )?;
        }
        let conversation = read_conversation(&transaction, id)?;
        transaction.commit()?;
        Ok(conversation)
    }

    /// Deletes with undo: the conversation leaves the list but stays until [`Self::purge`].
    pub fn soft_delete(&self, id: ConversationId) -> Result<Conversation> {
        let connection = self.lock();
        let changed = connection.execute(
            "UPDATE conversations SET deleted_at = COALESCE(deleted_at, ?1) WHERE id = ?2",
            params![now_millis(), id],
        )?;
        if changed == 0 {
            return Err(StoreError::ConversationNotFound(id));
        }
        read_conversation(&connection, id)
    }

    /// Undoes [`Self::soft_delete`].
    pub fn restore(&self, id: ConversationId) -> Result<Conversation> {
        let connection = self.lock();
        let changed = connection.execute(
            "UPDATE conversations SET deleted_at = NULL WHERE id = ?1",
            params![id],
        )?;
        if changed == 0 {
            return Err(StoreError::ConversationNotFound(id));
        }
        read_conversation(&connection, id)
    }

    /// Removes a conversation and its messages for good.
    pub fn purge(&self, id: ConversationId) -> Result<()> {
        let changed = self
            .lock()
            .execute("DELETE FROM conversations WHERE id = ?1", params![id])?;
        if changed == 0 {
            return Err(StoreError::ConversationNotFound(id));
        }
        Ok(())
    }

    /// Removes for good every conversation deleted before `cutoff` (Unix milliseconds);
    /// returns how many.
    pub fn purge_deleted_before(&self, cutoff: i64) -> Result<usize> {
        Ok(self.lock().execute(
            "DELETE FROM conversations WHERE deleted_at IS NOT NULL AND deleted_at < ?1",
            params![cutoff],
        )?)
    }

    /// Creates a conversation with all its messages in one transaction (nothing is created if
    /// any part fails). An untitled import is named after its first user message; an answer
    /// exported while `streaming` comes back `stopped`.
    pub fn import_conversation(
        &self,
        imported: ImportedConversation,
    ) -> Result<ConversationWithMessages> {
        let ImportedConversation {
            conversation,
            created_at,
            messages,
        } = imported;
        let mut title = match conversation.title {
            Some(title) if !title.trim().is_empty() => validate_title(&title)?,
            _ => String::new(),
        };
        if title.is_empty() {
            if let Some(first) = messages.iter().find(|m| m.message.role == Role::User) {
                title = title_from_message(&first.message.content);
            }
        }
        let settings = validate_settings(conversation.settings.unwrap_or_else(empty_object))?;
        let now = now_millis();
        let created_at = created_at.unwrap_or(now);
        let mut connection = self.lock();
        let transaction = connection.transaction()?;
        transaction.execute(
            "INSERT INTO conversations (title, model, system_prompt, settings, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                title,
                conversation.model,
                conversation.system_prompt,
                settings.to_string(),
                created_at,
                now
            ],
        )?;
        let id = transaction.last_insert_rowid();
        for imported in messages {
            let mut message = imported.message;
            if message.status == MessageStatus::Streaming {
                message.status = MessageStatus::Stopped;
            }
            let message_id = insert_message(
                &transaction,
                id,
                &message,
                imported.created_at.unwrap_or(now),
            )?;
            if imported.reasoning != Reasoning::default() {
                let reasoning = &imported.reasoning;
                transaction.execute(
                    "UPDATE messages SET reasoning = ?1, reasoning_tokens = ?2, reasoning_ms = ?3
                     WHERE id = ?4",
                    params![reasoning.text, reasoning.tokens, reasoning.ms, message_id],
                )?;
            }
        }
        let conversation = read_conversation(&transaction, id)?;
        let messages = read_messages(&transaction, id)?;
        transaction.commit()?;
        Ok(ConversationWithMessages {
            conversation,
            messages,
        })
    }

    /// The conversation as a Markdown document.
    pub fn export_markdown(&self, id: ConversationId) -> Result<String> {
        Ok(export::markdown(&self.conversation_with_messages(id)?))
    }

    /// The conversation and its messages as one JSON document.
    pub fn export_json(&self, id: ConversationId) -> Result<Value> {
        Ok(export::json(&self.conversation_with_messages(id)?))
    }
}
