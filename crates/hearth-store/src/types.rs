//! The values the store takes and gives: conversations and messages as read, what a new
//! or imported one starts with, the changes a call may make, and which conversations a list
//! returns. Plain data; every rule about them lives with the calls that read and write them.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{ConversationId, MessageId};

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

/// A conversation kept up to one message by [`crate::ConversationStore::truncate_after`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Truncated {
    /// The message everything after was removed from (with its new content, if replaced).
    pub message: Message,
    /// How many later messages were removed.
    pub removed: usize,
}

/// A conversation to recreate from an export ([`crate::export::parse_json`]).
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
    /// At most this many, newest first (default [`crate::DEFAULT_LIST_LIMIT`]).
    pub limit: Option<u32>,
}
