//! The route handlers: completions (whole or streamed), models, health and metrics.
//!
//! A completion waits for the engine's first event before it answers: `Started` (the prompt
//! fits and has a slot) or an error. So `context_length_exceeded`, a full queue or an invalid
//! schema are plain HTTP errors sent before any SSE byte. After the 200, a failure is an
//! `{"error": ...}` event and the stream ends. Dropping the response body (the client went
//! away) drops the `GenerationStream`, which cancels the generation in the engine within one
//! step; a client that leaves while its request is queued drops the handler itself, with the
//! same effect.
//!
//! Split by job: `body` reads JSON bodies, `completion` answers the two completion routes
//! (and holds what the other APIs share with them), `streaming` turns a generation into SSE,
//! `model_list` lists the models, `health` answers `/health` and `/metrics`; the fallbacks
//! for unknown routes and methods are here.

mod body;
mod completion;
mod health;
mod model_list;
mod streaming;

use axum::http::StatusCode;

use crate::error::ApiError;

pub use body::{JsonBody, OptionalJsonBody};
pub(crate) use completion::{answer_calls, collect_answer, split_calls, wait_for_start, Started};
pub use completion::{chat_completions, completions};
pub use health::{health, metrics};
#[cfg(test)]
pub(crate) use health::{Health, HealthLoading, HealthModel};
pub use model_list::{get_model, list_models};

/// Unknown routes. The path is not repeated back (it could be anything, a file path too).
pub async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        crate::error::TYPE_INVALID_REQUEST,
        "There is no such route. The OpenAI API is under /v1 (chat/completions, completions, models); also /health and /metrics.",
    )
    .with_code("unknown_url")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        crate::error::TYPE_INVALID_REQUEST,
        "This route does not accept this method.",
    )
    .with_code("method_not_allowed")
}
