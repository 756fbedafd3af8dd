//! Request bodies within the limit, and a 413 the client sees when one is not.
//!
//! A handler that refuses an oversize body without reading it leaves the rest of the body in
//! the socket; closing a socket with unread data makes the kernel send a reset, and a client
//! still sending its 50 MB body got "connection reset" instead of the 413 that says why. Here
//! every body is read before the handlers run (they parse JSON from memory anyway): a body
//! within [`MAX_REQUEST_BODY_BYTES`] is handed on whole; a larger one, declared or found while
//! reading, is read and discarded for at most [`DRAIN_MAX_BYTES`] and [`DRAIN_TIME`], then
//! answered 413 with `Connection: close`. A body that does not arrive within [`BODY_READ_TIME`]
//! is a 408.

use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody as _};
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt};

use crate::error::{ApiError, TYPE_INVALID_REQUEST};
use crate::MAX_REQUEST_BODY_BYTES;

/// Most bytes of an oversize body read (and thrown away) so the client gets its 413.
pub const DRAIN_MAX_BYTES: u64 = 128 * 1024 * 1024;
/// Longest time spent reading an oversize body before the connection closes.
pub const DRAIN_TIME: Duration = Duration::from_secs(10);
/// Longest time a body within the limit may take to arrive.
pub const BODY_READ_TIME: Duration = Duration::from_secs(60);

/// Middleware: reads the body within the limits above (see the module comment).
pub async fn bound_body(request: Request, next: Next) -> Response {
    if request.body().size_hint().exact() == Some(0) {
        return next.run(request).await;
    }
    let declared = content_length(request.headers());
    let expects_continue = request
        .headers()
        .get(header::EXPECT)
        .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let (parts, body) = request.into_parts();
    let mut stream = body.into_data_stream();
    if declared.is_some_and(|length| length > MAX_REQUEST_BODY_BYTES as u64) {
        // A client waiting for "100 Continue" has sent nothing yet: answer at once.
        if !expects_continue {
            drain(&mut stream, 0).await;
        }
        return too_large();
    }
    let capacity = declared.map_or(0, |length| length as usize);
    let read = async {
        let mut buffer = Vec::with_capacity(capacity);
        while let Some(chunk) = stream.next().await {
            let Ok(chunk) = chunk else {
                return Err(ApiError::bad_request(
                    "invalid_body",
                    "The request body could not be read.",
                )
                .into_response());
            };
            if buffer.len() + chunk.len() > MAX_REQUEST_BODY_BYTES {
                let so_far = (buffer.len() + chunk.len()) as u64;
                drain(&mut stream, so_far).await;
                return Err(too_large());
            }
            buffer.extend_from_slice(&chunk);
        }
        Ok(buffer)
    };
    match tokio::time::timeout(BODY_READ_TIME, read).await {
        Ok(Ok(buffer)) => {
            next.run(Request::from_parts(parts, Body::from(buffer)))
                .await
        }
        Ok(Err(response)) => response,
        Err(_) => with_connection_close(
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                TYPE_INVALID_REQUEST,
                "The request body did not arrive in time.",
            )
            .with_code("body_timeout")
            .into_response(),
        ),
    }
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok())
}

/// Reads and discards the rest of a body, within [`DRAIN_MAX_BYTES`] (counting `already`
/// bytes read) and [`DRAIN_TIME`].
async fn drain(
    stream: &mut (impl Stream<Item = Result<Bytes, axum::Error>> + Unpin),
    already: u64,
) {
    let deadline = tokio::time::Instant::now() + DRAIN_TIME;
    let mut read = already;
    while read < DRAIN_MAX_BYTES {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(Ok(chunk))) => read += chunk.len() as u64,
            _ => break,
        }
    }
}

fn too_large() -> Response {
    with_connection_close(ApiError::payload_too_large(MAX_REQUEST_BODY_BYTES).into_response())
}

fn with_connection_close(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}
