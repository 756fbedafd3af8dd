//! The server-sent events of an answer (`/messages`, `/regenerate`, `/edit`): `start`, then
//! `reasoning`… (a thinking model's thinking), `token`…, then `done` or `error`, each saying what it is in `type`. Fields are declared in
//! sorted order and the store's messages are sent with sorted keys, as the `json!` objects
//! these types replaced were ([`crate::wire`]).

use hearth_store::{ConversationId, Message};
use serde::Serialize;

use crate::error::{ApiError, ErrorObject};
use crate::wire::SortedKeys;

/// Which event it is: its `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChatEventType {
    Start,
    Token,
    /// A piece of the model's thinking (before its answer's tokens).
    Reasoning,
    Done,
    Error,
}

/// One event of an answer's stream.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum ChatEvent {
    Start(Box<StartEvent>),
    Token(TokenEvent),
    Reasoning(TokenEvent),
    Done(DoneEvent),
    Error(Box<ErrorEvent>),
}

/// The answer has begun: the saved question, the (empty, `streaming`) answer, and how the
/// prompt fits the context.
#[derive(Debug, Serialize)]
pub struct StartEvent {
    pub assistant_message: SortedKeys<Message>,
    pub conversation_id: ConversationId,
    /// The oldest turns left out so the prompt fits.
    pub dropped_messages: u32,
    pub model: String,
    /// The context one answer may fill, for the UI's context meter (unknown for a remote
    /// provider's model).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n_ctx: Option<u32>,
    pub prompt_tokens: u32,
    #[serde(rename = "type")]
    pub event_type: ChatEventType,
    pub user_message: SortedKeys<Message>,
}

/// A piece of the answer's text.
#[derive(Debug, Serialize)]
pub struct TokenEvent {
    pub text: String,
    #[serde(rename = "type")]
    pub event_type: ChatEventType,
}

/// The answer, saved.
#[derive(Debug, Serialize)]
pub struct DoneEvent {
    pub message: SortedKeys<Message>,
    #[serde(rename = "type")]
    pub event_type: ChatEventType,
}

/// The answer failed; `message` is what was saved of it, when it could be saved.
#[derive(Debug, Serialize)]
pub struct ErrorEvent {
    pub error: ErrorObject,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<SortedKeys<Message>>,
    #[serde(rename = "type")]
    pub event_type: ChatEventType,
}

impl ChatEvent {
    pub fn token(text: String) -> Self {
        Self::Token(TokenEvent {
            text,
            event_type: ChatEventType::Token,
        })
    }

    pub fn reasoning(text: String) -> Self {
        Self::Reasoning(TokenEvent {
            text,
            event_type: ChatEventType::Reasoning,
        })
    }

    pub fn done(message: Message) -> Self {
        Self::Done(DoneEvent {
            message: SortedKeys(message),
            event_type: ChatEventType::Done,
        })
    }

    pub fn error(error: &ApiError, saved: Option<Message>) -> Self {
        Self::Error(Box::new(ErrorEvent {
            error: error.object(),
            message: saved.map(SortedKeys),
            event_type: ChatEventType::Error,
        }))
    }
}
