//! Request bodies read as JSON within the size limit, as axum extractors: every way a body
//! can be wrong (too large, empty, not UTF-8, not JSON) is an OpenAI error, never axum's own.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};
use serde_json::Value;

use crate::error::ApiError;
use crate::MAX_REQUEST_BODY_BYTES;

/// A request body parsed as JSON, within the size limit, with OpenAI errors for everything
/// that can go wrong (too large: 413; empty, not UTF-8, not JSON: 400).
#[derive(Debug)]
pub struct JsonBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        read_json(request, state, None).await.map(JsonBody)
    }
}

/// Like [`JsonBody`], but an empty body is `{}` (for requests whose fields are all optional).
#[derive(Debug)]
pub struct OptionalJsonBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for OptionalJsonBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        read_json(request, state, Some(Value::Object(serde_json::Map::new())))
            .await
            .map(OptionalJsonBody)
    }
}

/// Reads a JSON body within the size limit; an empty one is `if_empty`, or a 400 without it.
async fn read_json<S: Send + Sync>(
    request: Request,
    state: &S,
    if_empty: Option<Value>,
) -> Result<Value, ApiError> {
    // Refuse a declared oversize body before reading a byte of it.
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_REQUEST_BODY_BYTES as u64) {
        return Err(ApiError::payload_too_large(MAX_REQUEST_BODY_BYTES));
    }
    let bytes = Bytes::from_request(request, state)
        .await
        .map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::payload_too_large(MAX_REQUEST_BODY_BYTES)
            } else {
                ApiError::bad_request("invalid_body", "The request body could not be read.")
            }
        })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return if_empty.ok_or_else(|| {
            ApiError::bad_request(
                "invalid_json",
                "The request body is empty; expected a JSON object.",
            )
        });
    }
    serde_json::from_slice(&bytes).map_err(|error| {
        ApiError::bad_request(
            "invalid_json",
            format!("We could not parse the JSON body of your request: {error}."),
        )
    })
}
