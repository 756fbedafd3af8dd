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
//!
//! This file opens the database and holds the connection; the rest is split by job:
//! `conversations` and `messages` hold the calls on each, `queries` the SQL they share,
//! `validate` the rules for what callers give, `types` the values, `error` what fails,
//! `rows` the reading of one row without trusting it, `migrations` the schema's history.

mod conversations;
mod error;
pub mod export;
mod messages;
mod migrations;
mod queries;
mod rows;
mod types;
mod validate;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::Connection;

pub use error::{Result, StoreError};
pub use migrations::SCHEMA_VERSION;
pub use types::{
    Conversation, ConversationWithMessages, ImportedConversation, ImportedMessage, ListQuery,
    Message, MessageStatus, NewConversation, NewMessage, Reasoning, Role, SettingsUpdate,
    Truncated,
};

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
}
