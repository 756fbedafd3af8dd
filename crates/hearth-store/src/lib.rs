//! Hearth's conversation history: every conversation and message in one SQLite file
//! (`<data dir>/hearth.sqlite3`), owned by the server, so the UI never holds the only copy.
//!
//! The file is in WAL mode and every change is its own transaction, so a crash (even SIGKILL)
//! loses nothing that was saved: an answer is saved while it streams
//! ([`ConversationStore::update_streaming_message`], called by the server at least every
//! second), so a crash costs at most the last second of one answer. Answers left `streaming`
//! by a crash are marked `stopped` the next time the file is opened. The schema is versioned
//! (`PRAGMA user_version`) and migrated forward on open; a file from a newer Hearth is
//! refused, untouched.
//!
//! Reading never fails because of one bad row: a message whose text is not UTF-8, whose
//! metrics are not JSON, or with NULL where a value belongs comes back hidden (empty, with a
//! `notice` saying why), and the rest of the history is intact. Conversations and messages
//! export as Markdown and JSON ([`export`]).

pub mod export;
mod migrations;
mod rows;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use migrations::SCHEMA_VERSION;

/// A conversation's id (SQLite rowid).
pub type ConversationId = i64;
/// A message's id (SQLite rowid).
pub type MessageId = i64;

/// The longest title accepted: a sidebar shows far less, and a title is not a document.
pub const MAX_TITLE_CHARS: usize = 200;
/// A conversation created without a title is named after its first user message, cut here.
pub const TITLE_FROM_MESSAGE_CHARS: usize = 60;
/// Most conversations one list call returns when the caller gives no limit.
pub const DEFAULT_LIST_LIMIT: u32 = 200;
/// How long a write waits for another connection's lock (another Hearth on the same file)
/// before it fails.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Everything that can go wrong, with the file or id it concerns.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the folder {path} for the conversation database: {source}")]
    CreateFolder {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the conversation database {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("the conversation database {path} has schema version {found}, newer than this Hearth understands ({supported}); it was left untouched: update Hearth to read it")]
    NewerSchema {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error(
        "cannot migrate the conversation database {path} to schema version {version}: {source}"
    )]
    Migration {
        path: PathBuf,
        version: u32,
        #[source]
        source: rusqlite::Error,
    },
    #[error("there is no conversation with id {0}")]
    ConversationNotFound(ConversationId),
    #[error("conversation {0} is deleted; restore it first")]
    ConversationDeleted(ConversationId),
    #[error("there is no message with id {0}")]
    MessageNotFound(MessageId),
    #[error("message {0} is no longer streaming")]
    MessageNotStreaming(MessageId),
    #[error("invalid {field}: {reason}")]
    InvalidInput { field: &'static str, reason: String },
    #[error("not a Hearth conversation export: {field}: {reason}")]
    InvalidImport { field: String, reason: String },
    #[error("conversation database error: {0}")]
    Database(#[from] rusqlite::Error),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "system" => Some(Role::System),
            "user" => Some(Role::User),
            "assistant" => Some(Role::Assistant),
            _ => None,
        }
    }
}

/// Where a message stands: an answer is `streaming` while tokens arrive, then `complete`
/// (the model finished), `stopped` (the user or a disconnect stopped it, or the server died
/// mid-answer) or `error` (the model failed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageStatus {
    Streaming,
    Complete,
    Stopped,
    Error,
}

impl MessageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Streaming => "streaming",
            MessageStatus::Complete => "complete",
            MessageStatus::Stopped => "stopped",
            MessageStatus::Error => "error",
        }
    }

    pub fn parse(text: &str) -> Option<MessageStatus> {
        match text {
            "streaming" => Some(MessageStatus::Streaming),
            "complete" => Some(MessageStatus::Complete),
            "stopped" => Some(MessageStatus::Stopped),
            "error" => Some(MessageStatus::Error),
            _ => None,
        }
    }
}

/// A conversation's header (its messages come separately).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Conversation {
    pub id: ConversationId,
    pub title: String,
    pub model: Option<String>,
    pub system_prompt: Option<String>,
    /// Sampling settings as the UI sent them (a JSON object: temperature, top_p, ...).
    pub settings: Value,
    /// Unix time in milliseconds.
    pub created_at: i64,
    pub updated_at: i64,
    /// Set while the conversation is deleted but can still be restored.
    pub deleted_at: Option<i64>,
    /// Why part of this row could not be read (the rest is shown as well as it could be).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notice: Option<String>,
}

/// One message. A message that could not be read is `hidden`: empty, with a `notice`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Message {
    pub id: MessageId,
    pub conversation_id: ConversationId,
    pub role: Role,
    pub content: String,
    /// A reasoning model's thinking before its answer (its fields absent when it did not
    /// think).
    #[serde(flatten)]
    pub reasoning: Reasoning,
    pub status: MessageStatus,
    /// The answer's figures (TTFT, tokens/s, token counts) as the server recorded them.
    pub metrics: Option<Value>,
    pub created_at: i64,
    pub updated_at: i64,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub hidden: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notice: Option<String>,
}

/// An answer's thinking: its text, token count and time. In a message it is the fields
/// `reasoning`, `reasoning_tokens` and `reasoning_ms`, all absent when it did not think.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reasoning {
    pub text: String,
    pub tokens: u32,
    pub ms: u64,
}

impl Serialize for Reasoning {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        if *self != Reasoning::default() {
            map.serialize_entry("reasoning", &self.text)?;
            map.serialize_entry("reasoning_ms", &self.ms)?;
            map.serialize_entry("reasoning_tokens", &self.tokens)?;
        }
        map.end()
    }
}

/// A conversation with all its messages, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConversationWithMessages {
    #[serde(flatten)]
    pub conversation: Conversation,
    pub messages: Vec<Message>,
}

/// What a new conversation starts with. A missing title is taken from the first user message.
#[derive(Debug, Clone, Default)]
pub struct NewConversation {
    pub title: Option<String>,
    pub model: Option<String>,
    pub system_prompt: Option<String>,
    /// A JSON object, or `None` for `{}`.
    pub settings: Option<Value>,
}

/// Changes to a conversation's settings: `None` leaves a field alone, `Some(None)` clears it.
#[derive(Debug, Clone, Default)]
pub struct SettingsUpdate {
    pub model: Option<Option<String>>,
    pub system_prompt: Option<Option<String>>,
    pub settings: Option<Value>,
}

/// A message to append.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub role: Role,
    pub content: String,
    pub status: MessageStatus,
    pub metrics: Option<Value>,
}

/// A conversation kept up to one message by [`ConversationStore::truncate_after`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Truncated {
    /// The message everything after was removed from (with its new content, if replaced).
    pub message: Message,
    /// How many later messages were removed.
    pub removed: usize,
}

/// A conversation to recreate from an export ([`export::parse_json`]).
#[derive(Debug, Clone, Default)]
pub struct ImportedConversation {
    pub conversation: NewConversation,
    /// Unix milliseconds, as exported (`None`: now).
    pub created_at: Option<i64>,
    pub messages: Vec<ImportedMessage>,
}

/// One message of an import, with its original time.
#[derive(Debug, Clone)]
pub struct ImportedMessage {
    pub message: NewMessage,
    /// The answer's thinking, as exported (empty: none).
    pub reasoning: Reasoning,
    /// Unix milliseconds, as exported (`None`: now).
    pub created_at: Option<i64>,
}

/// Which conversations to list.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// Only conversations whose title or any message contains this text (case-insensitive
    /// for ASCII, as SQLite's LIKE).
    pub search: Option<String>,
    /// List the deleted conversations (the trash) instead of the live ones.
    pub deleted: bool,
    /// At most this many, newest first (default [`DEFAULT_LIST_LIMIT`]).
    pub limit: Option<u32>,
}

/// The conversation database. One connection behind a mutex: SQLite serialises writers
/// anyway, and every call is short (no call holds the lock across an await or a generation).
#[derive(Debug)]
pub struct ConversationStore {
    connection: Mutex<Connection>,
    path: PathBuf,
}

/// Unix time in milliseconds.
pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}

const CONVERSATION_COLUMNS: &str =
    "id, title, model, system_prompt, settings, created_at, updated_at, deleted_at";
const MESSAGE_COLUMNS: &str =
    "id, conversation_id, role, content, status, metrics, created_at, updated_at, reasoning, \
     reasoning_tokens, reasoning_ms";

impl ConversationStore {
    /// Opens (creating it and its folder if needed) and migrates the database at `path`, and
    /// marks answers a crash left `streaming` as `stopped`.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(folder) = path.parent().filter(|f| !f.as_os_str().is_empty()) {
            std::fs::create_dir_all(folder).map_err(|source| StoreError::CreateFolder {
                path: folder.to_path_buf(),
                source,
            })?;
        }
        let open_error = |source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        };
        let mut connection = Connection::open(path).map_err(open_error)?;
        connection.busy_timeout(BUSY_TIMEOUT).map_err(open_error)?;
        // WAL: a commit is an append to the log, so a killed process never leaves a
        // half-written page, and readers do not block the writer. synchronous=NORMAL keeps
        // every commit through a process crash (the log is in the OS's cache); only a power
        // loss can drop the last commits, and it never corrupts the file.
        let journal_mode: String = connection
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
            .map_err(open_error)?;
        if !journal_mode.eq_ignore_ascii_case("wal") {
            // A file system without WAL support still keeps history, with less concurrency.
            tracing::warn!(path = %path.display(), %journal_mode, "the conversation database is not in WAL mode");
        }
        connection
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_error)?;
        connection
            .pragma_update(None, "foreign_keys", true)
            .map_err(open_error)?;
        migrations::migrate_to(&mut connection, path, SCHEMA_VERSION)?;
        connection
            .execute(
                "UPDATE messages SET status = 'stopped' WHERE status = 'streaming'",
                [],
            )
            .map_err(open_error)?;
        Ok(ConversationStore {
            connection: Mutex::new(connection),
            path: path.to_path_buf(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn schema_version(&self) -> Result<u32> {
        Ok(migrations::schema_version(&self.lock())?)
    }

    /// The connection. A panic elsewhere while holding it cannot leave it half-changed (every
    /// change is a transaction), so a poisoned lock is used as is.
    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.connection
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

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

    pub fn messages(&self, id: ConversationId) -> Result<Vec<Message>> {
        let connection = self.lock();
        read_conversation(&connection, id)?;
        read_messages(&connection, id)
    }

    pub fn message(&self, id: MessageId) -> Result<Message> {
        read_message(&self.lock(), id)
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

/// Inserts one message (created and updated at `at`); returns its id.
fn insert_message(
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
fn touch_conversation(
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
fn not_streaming_or_missing(connection: &Connection, id: MessageId) -> StoreError {
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

fn read_conversation(connection: &Connection, id: ConversationId) -> Result<Conversation> {
    connection
        .query_row(
            &format!("SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE id = ?1"),
            params![id],
            rows::conversation_from_row,
        )
        .optional()?
        .ok_or(StoreError::ConversationNotFound(id))
}

fn read_messages(connection: &Connection, id: ConversationId) -> Result<Vec<Message>> {
    let mut statement = connection.prepare(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ?1 ORDER BY id"
    ))?;
    let rows = statement.query_map(params![id], rows::message_from_row)?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

fn read_message(connection: &Connection, id: MessageId) -> Result<Message> {
    connection
        .query_row(
            &format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ?1"),
            params![id],
            rows::message_from_row,
        )
        .optional()?
        .ok_or(StoreError::MessageNotFound(id))
}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

fn validate_title(title: &str) -> Result<String> {
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

fn validate_settings(settings: Value) -> Result<Value> {
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
fn title_from_message(content: &str) -> String {
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
fn like_pattern(text: &str) -> String {
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
