//! What can go wrong in the store, each error with the file or id it concerns.

use std::path::PathBuf;

use crate::{ConversationId, MessageId};

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
