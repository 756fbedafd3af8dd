//! Ollama's API, on a listener of its own (`hearth serve --ollama`: 127.0.0.1:11434, where
//! Ollama clients look first), so tools that speak only Ollama use Hearth's models.
//!
//! [`router`] is a separate application with only Ollama's routes: `GET`/`HEAD /` ("Ollama
//! is running", what clients probe), `/api/version`, `/api/tags`, `/api/show`, `/api/ps`,
//! `/api/chat` and `/api/generate` (NDJSON streamed by default, whole with `stream: false`),
//! `/api/embed` and `/api/embeddings`, and `/api/pull` (Hearth's catalog and hub
//! references). Hearth's own `/api/*` (conversations, settings, library management) is not
//! among them, so it cannot be reached through this listener whatever the key. The same
//! layers as the main router apply (Host and Origin checks, the body limit, request
//! counting in `/metrics` under the route's pattern with an `ollama` prefix), and the key
//! rules of `/v1`: keyless on a loopback server unless the user set a key or the
//! `require_key_for_openai_api` setting. Errors are Ollama's `{"error": "..."}`.

mod catalog;
mod chat;
mod embed;
mod wire;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::{Stream, StreamExt};
use serde::Serialize;

use crate::error::{reshape_error_response, ApiError};
use crate::{AppState, MAX_REQUEST_BODY_BYTES};

/// Ollama's own port, where its clients look by default.
pub const DEFAULT_OLLAMA_PORT: u16 = 11434;
/// The Ollama API version reported by `/api/version`: the version of Ollama whose API this
/// listener follows (some clients check it before using a feature).
pub const OLLAMA_API_VERSION: &str = "0.12.0";
/// What `GET /` answers, word for word as Ollama does (clients compare it).
const ROOT_TEXT: &str = "Ollama is running";
/// The prefix of this listener's routes in `/metrics` (`ollama /api/chat`).
const METRICS_ROUTE_PREFIX: &str = "ollama ";

/// The Ollama application: its routes and the main router's layers.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(root))
        .route("/api/version", get(version))
        .route("/api/tags", get(catalog::tags))
        .route("/api/show", post(catalog::show))
        .route("/api/ps", get(catalog::running))
        .route("/api/pull", post(catalog::pull))
        .route("/api/chat", post(chat::chat))
        .route("/api/generate", post(chat::generate))
        .route("/api/embed", post(embed::embed))
        .route("/api/embeddings", post(embed::legacy_embeddings))
        .fallback(not_found)
        .method_not_allowed_fallback(crate::handlers::method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BODY_BYTES))
        .layer(middleware::from_fn(crate::body_limit::bound_body))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::security::enforce_ollama,
        ))
        .layer(middleware::from_fn(ollama_errors))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_responses,
        ))
        .with_state(state)
}

/// `GET /` (and `HEAD /`, which axum answers from it without the body).
async fn root() -> &'static str {
    ROOT_TEXT
}

async fn version() -> Json<wire::Version> {
    Json(wire::Version {
        version: OLLAMA_API_VERSION,
    })
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        crate::error::TYPE_INVALID_REQUEST,
        "There is no such route on Hearth's Ollama listener.",
    )
    .with_code("unknown_url")
}

/// Counts every response as the main router does, under `ollama <route>`.
async fn count_responses(State(state): State<AppState>, request: Request, next: Next) -> Response {
    crate::count_responses_under(METRICS_ROUTE_PREFIX, &state, request, next).await
}

/// Rewrites every error answer (the handlers', the security layer's, the body limit's) from
/// OpenAI's `{"error": {"message": ...}}` to Ollama's `{"error": "..."}`.
async fn ollama_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    reshape_error_response(response, |_, message| wire::ErrorBody { error: message }).await
}

/// An NDJSON response: one JSON object per line, sent as each is ready.
fn ndjson<T: Serialize>(lines: impl Stream<Item = T> + Send + 'static) -> Response {
    let body = Body::from_stream(lines.map(|line| {
        let mut bytes = serde_json::to_vec(&line).unwrap_or_else(|error| {
            tracing::error!(%error, "an NDJSON line could not be serialized");
            b"null".to_vec()
        });
        bytes.push(b'\n');
        Ok::<Bytes, std::convert::Infallible>(Bytes::from(bytes))
    }));
    let mut response = Response::new(body);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    response
}

/// The model id an Ollama name stands for: Ollama names carry a tag (`name:latest`), Hearth's
/// ids none, so `:latest` is dropped when the name without it is a model here.
fn model_id(state: &AppState, name: &str) -> String {
    match name.strip_suffix(":latest") {
        Some(bare)
            if state.models.resolve(name).is_none() && state.models.resolve(bare).is_some() =>
        {
            bare.to_string()
        }
        _ => name.to_string(),
    }
}

/// Now, as Ollama writes times (RFC 3339, UTC).
fn now_rfc3339() -> String {
    hearth_models::format_rfc3339_utc(crate::models::unix_now())
}

/// Milliseconds as Ollama's nanoseconds.
fn nanos(milliseconds: f64) -> u64 {
    if milliseconds.is_finite() && milliseconds > 0.0 {
        (milliseconds * 1e6) as u64
    } else {
        0
    }
}

#[cfg(test)]
mod tests;

/// The Ollama listener of a running server: its own accept loop (with the main listener's
/// header timeout, connection cap and body limit) over [`router`], on the main server's
/// state with a security policy for its own port.
#[derive(Debug)]
pub(crate) struct OllamaListener {
    local_addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl OllamaListener {
    /// Serves [`router`] on `listener` on a task of its own.
    pub(crate) fn spawn(
        listener: tokio::net::TcpListener,
        state: &AppState,
        limits: crate::ConnectionLimits,
    ) -> std::io::Result<Self> {
        let local_addr = listener.local_addr()?;
        let state = AppState {
            security: std::sync::Arc::new(state.security.for_port(local_addr.port())),
            ..state.clone()
        };
        let (stop, stop_receiver) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(crate::listener::serve(
            listener,
            router(state),
            limits,
            stop_receiver,
        ));
        Ok(Self {
            local_addr,
            stop: Some(stop),
            task,
        })
    }

    pub(crate) fn local_addr(&self) -> std::net::SocketAddr {
        self.local_addr
    }

    /// Closes the listener, giving requests in flight `grace`.
    pub(crate) async fn stop(mut self, grace: std::time::Duration) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if tokio::time::timeout(grace, &mut self.task).await.is_err() {
            self.task.abort();
        }
    }
}
