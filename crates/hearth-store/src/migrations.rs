//! The schema and its history. Each entry of [`MIGRATIONS`] moves the database one version
//! forward; `PRAGMA user_version` records how far a file has come. Entries are never edited
//! once released (a user's file was made by them): a change is a new entry at the end.

use std::path::Path;

use rusqlite::Connection;

use crate::StoreError;

/// Version 1: conversations and their messages.
const V1_CONVERSATIONS_AND_MESSAGES: &str = "
CREATE TABLE conversations (
    id            INTEGER PRIMARY KEY,
    title         TEXT NOT NULL,
    model         TEXT,
    system_prompt TEXT,
    settings      TEXT NOT NULL DEFAULT '{}',
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE TABLE messages (
    id              INTEGER PRIMARY KEY,
    conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    role            TEXT NOT NULL,
    content         TEXT NOT NULL,
    status          TEXT NOT NULL,
    metrics         TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX messages_by_conversation ON messages(conversation_id, id);
";

/// Version 2: delete with undo (a deleted conversation stays until purged) and an index for
/// the conversation list, newest first.
const V2_SOFT_DELETE: &str = "
ALTER TABLE conversations ADD COLUMN deleted_at INTEGER;
CREATE INDEX conversations_by_update ON conversations(deleted_at, updated_at);
";

/// Version 3: message ids are never reused. Regenerate and edit remove the last messages of a
/// conversation; with a plain rowid the next message would get a removed one's id again, and a
/// client (or an answer task still finishing) holding the old id would address the new
/// message. AUTOINCREMENT needs the table rebuilt; nothing references messages, so the copy
/// keeps every id.
const V3_MESSAGE_IDS_NEVER_REUSED: &str = "
CREATE TABLE messages_v3 (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    role            TEXT NOT NULL,
    content         TEXT NOT NULL,
    status          TEXT NOT NULL,
    metrics         TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
INSERT INTO messages_v3 (id, conversation_id, role, content, status, metrics, created_at, updated_at)
    SELECT id, conversation_id, role, content, status, metrics, created_at, updated_at FROM messages;
DROP TABLE messages;
ALTER TABLE messages_v3 RENAME TO messages;
CREATE INDEX messages_by_conversation ON messages(conversation_id, id);
";

/// Version 4: an answer's thinking (reasoning models), its token count and how long it took,
/// kept apart from its text so the history shows it collapsed and never sends it back to the
/// model. Existing rows get none.
const V4_MESSAGE_REASONING: &str = "
ALTER TABLE messages ADD COLUMN reasoning TEXT NOT NULL DEFAULT '';
ALTER TABLE messages ADD COLUMN reasoning_tokens INTEGER NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN reasoning_ms INTEGER NOT NULL DEFAULT 0;
";

/// Every migration, in order: entry `i` takes a database from version `i` to `i + 1`.
pub(crate) const MIGRATIONS: &[&str] = &[
    V1_CONVERSATIONS_AND_MESSAGES,
    V2_SOFT_DELETE,
    V3_MESSAGE_IDS_NEVER_REUSED,
    V4_MESSAGE_REASONING,
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

pub(crate) fn schema_version(connection: &Connection) -> rusqlite::Result<u32> {
    connection.query_row("PRAGMA user_version", [], |row| row.get(0))
}

/// Brings the database up to `target_version`, one transaction per step, so a crash during a
/// migration leaves the file at the last completed version (`user_version` is written in the
/// same transaction as the step's changes).
pub(crate) fn migrate_to(
    connection: &mut Connection,
    path: &Path,
    target_version: u32,
) -> Result<(), StoreError> {
    let found = schema_version(connection).map_err(|source| StoreError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            path: path.to_path_buf(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    for version in found..target_version.min(SCHEMA_VERSION) {
        let next_version = version + 1;
        apply_step(connection, version).map_err(|source| StoreError::Migration {
            path: path.to_path_buf(),
            version: next_version,
            source,
        })?;
    }
    Ok(())
}

/// Applies the migration from `version` to `version + 1` and records the new version.
fn apply_step(connection: &mut Connection, version: u32) -> rusqlite::Result<()> {
    let transaction = connection.transaction()?;
    transaction.execute_batch(MIGRATIONS[version as usize])?;
    transaction.pragma_update(None, "user_version", version + 1)?;
    transaction.commit()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ConversationStore, ListQuery, MessageStatus, NewMessage, Reasoning, Role};

    /// A database as version 1 of Hearth left it, with one conversation in it.
    fn version_1_database(path: &Path) {
        let mut connection = Connection::open(path).unwrap();
        migrate_to(&mut connection, path, 1).unwrap();
        assert_eq!(schema_version(&connection).unwrap(), 1);
        connection
            .execute_batch(
                "INSERT INTO conversations (id, title, model, settings, created_at, updated_at)
                 VALUES (7, 'Old chat', 'smollm2', '{\"temperature\":0.5}', 1000, 2000);
                 INSERT INTO messages (conversation_id, role, content, status, created_at, updated_at)
                 VALUES (7, 'user', 'hello from v1', 'complete', 1000, 1000);",
            )
            .unwrap();
    }

    #[test]
    fn an_old_database_is_migrated_and_keeps_its_conversations() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("hearth.sqlite3");
        version_1_database(&path);

        let store = ConversationStore::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        let listed = store.list_conversations(&ListQuery::default()).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].title, "Old chat");
        assert_eq!(listed[0].deleted_at, None);
        assert_eq!(listed[0].settings["temperature"], 0.5);
        let messages = store.messages(7).unwrap();
        assert_eq!(messages[0].content, "hello from v1");
        assert_eq!(
            messages[0].reasoning,
            Reasoning::default(),
            "old answers have no thinking"
        );

        // The new version's features work on the migrated file.
        store.soft_delete(7).unwrap();
        assert!(store
            .list_conversations(&ListQuery::default())
            .unwrap()
            .is_empty());
        store.restore(7).unwrap();
        store
            .append_message(
                7,
                NewMessage {
                    role: Role::Assistant,
                    content: "hi".into(),
                    status: MessageStatus::Complete,
                    metrics: None,
                },
            )
            .unwrap();
        drop(store);
        // Opening again is a no-op.
        let store = ConversationStore::open(&path).unwrap();
        assert_eq!(store.messages(7).unwrap().len(), 2);
    }

    #[test]
    fn message_ids_survive_the_migration_and_are_never_reused() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("hearth.sqlite3");
        version_1_database(&path);
        let store = ConversationStore::open(&path).unwrap();
        let old = store.messages(7).unwrap();
        assert_eq!(old.len(), 1, "the message kept its id through the rebuild");
        let answer = |content: &str| NewMessage {
            role: Role::Assistant,
            content: content.into(),
            status: MessageStatus::Complete,
            metrics: None,
        };
        let removed = store.append_message(7, answer("first")).unwrap();
        store.truncate_after(7, old[0].id, None).unwrap();
        let next = store.append_message(7, answer("second")).unwrap();
        assert!(next.id > removed.id, "{} reused", next.id);
    }

    #[test]
    fn a_database_from_a_newer_hearth_is_refused_untouched() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("hearth.sqlite3");
        {
            let connection = Connection::open(&path).unwrap();
            connection
                .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
                .unwrap();
        }
        let error = ConversationStore::open(&path).unwrap_err();
        assert!(
            matches!(error, StoreError::NewerSchema { found, .. } if found == SCHEMA_VERSION + 1),
            "{error}"
        );
        let connection = Connection::open(&path).unwrap();
        assert_eq!(schema_version(&connection).unwrap(), SCHEMA_VERSION + 1);
    }
}
