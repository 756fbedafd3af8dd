//! Hearth's local HTTP API: how other programs (coding assistants, notebooks, scripts, the
//! official OpenAI SDKs, and Hearth's own UI) use the models on this machine.
//!
//! It serves OpenAI's `POST /v1/chat/completions` (with tool calling) and `POST
//! /v1/completions` (whole or streamed as server-sent events), `GET /v1/models` and `GET
//! /v1/models/{id}`, Anthropic's `POST /v1/messages`, plus `GET /health` and Prometheus `GET
//! /metrics`. Every failure is OpenAI's error object with the
//! matching status. Models are chosen by name and loaded on demand, each in an engine worker
//! process of its own that the server reaches only through `hearth-supervisor`: nothing here
//! links llama.cpp, and nothing outside this crate knows HTTP.
//!
//! It is secure by default ([`SecurityPolicy`]): it binds 127.0.0.1, refuses foreign Host
//! headers (DNS rebinding) and foreign browser origins, never answers CORS with a wildcard or
//! with credentials, needs an API key to listen beyond loopback, and caps request bodies.
//!
//! [`router`] builds the whole application from an [`AppState`], so tests drive the handlers
//! without a socket; [`start`] builds the state from [`ServerOptions`], binds and serves (both
//! `hearth serve` and the desktop shell start the server this way) until
//! [`RunningServer::shutdown`].
//!
//! The modules are private; what other crates use is re-exported below: starting and stopping
//! the server and its options, the state [`router`] is built from, and the settings file the
//! desktop app reads its port and key from.

mod about;
mod access_token;
mod anthropic;
mod app;
mod body_limit;
mod conversations;
pub mod draft_acceptance;
mod embeddings;
mod error;
mod fit;
mod handlers;
mod kv_cache;
mod listener;
mod management;
mod metrics;
mod models;
mod ollama;
mod openai;
mod private_file;
mod providers;
mod reasoning;
mod request;
mod security;
mod settings;
mod sse;
mod system;
mod tools;
mod ui;
mod wire;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;

pub use about::{About, LlamaCppVersion, THIRD_PARTY_LICENSES};
pub use access_token::{
    access_token_path, load_or_create_access_token, AccessTokenError, ACCESS_TOKEN_FILE_NAME,
};
pub use app::{
    start, RunningServer, ServerOptions, StartError, DEFAULT_IDLE_UNLOAD, DEFAULT_LOAD_WAIT,
    DEFAULT_MAX_LOADED, DEFAULT_PARALLEL,
};
pub use conversations::STREAMING_SAVE_INTERVAL;
pub use listener::{ConnectionLimits, DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_MAX_CONNECTIONS};
pub use metrics::Metrics;
pub use models::{ModelManager, ModelManagerConfig, ServableModel};
pub use ollama::{DEFAULT_OLLAMA_PORT, OLLAMA_API_VERSION};
pub use providers::{
    normalize_base_url, validate_provider_name, ProviderConfig, ProviderRegistry, ProviderStore,
    ProviderStoreError, RemoteTimeouts, PROVIDERS_FILE_NAME, PROVIDER_KEYS_FILE_NAME,
};
pub use security::{SecurityConfigError, SecurityPolicy};
pub use settings::{Settings, SettingsStore};

use conversations::AnswerTasks;

/// Hearth's own port (`HEAR` on a phone keypad), clear of the ports other local model servers
/// use (1234, 1337, 8080, 11434).
pub const DEFAULT_PORT: u16 = 4327;
/// Loopback only, unless the user asks for more (and gives a key).
pub const DEFAULT_HOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// The largest request body. A chat filling a 128k-token context is well under 1 MB of text;
/// 8 MiB leaves room for long chats while a 50 MB upload is refused (413, after reading and
/// discarding it within bounds so the client sees the answer: `body_limit`).
pub const MAX_REQUEST_BODY_BYTES: usize = 8 * 1024 * 1024;
/// How long in-flight answers may run after a shutdown signal before the server stops anyway.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Everything the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    pub models: Arc<ModelManager>,
    pub metrics: Arc<Metrics>,
    pub security: Arc<SecurityPolicy>,
    /// The conversation history behind `/api/conversations` (`None`: the server keeps none
    /// and those routes answer 503).
    pub conversations: Option<Arc<hearth_store::ConversationStore>>,
    /// The model library and background downloads behind `/api/models` and
    /// `/api/downloads` (`None`: those routes answer 503).
    pub downloads: Option<Arc<hearth_models::DownloadManager>>,
    /// The conversation answers being generated, so a shutdown can stop and save them.
    pub answers: Arc<AnswerTasks>,
    /// The data directory, the bound address and the probed machine (`/api/system`, fits).
    pub machine: Arc<system::MachineInfo>,
    /// The app's settings behind `/api/settings` (`None`: that route answers 503).
    pub settings: Option<Arc<settings::SettingsStore>>,
}

impl AppState {
    /// A state with models, metrics and security, and no history or model management (those
    /// routes answer 503 until the fields are set).
    pub fn new(
        models: Arc<ModelManager>,
        metrics: Arc<Metrics>,
        security: Arc<SecurityPolicy>,
    ) -> Self {
        Self {
            models,
            metrics,
            security,
            conversations: None,
            downloads: None,
            answers: Arc::new(AnswerTasks::default()),
            machine: Arc::new(system::MachineInfo::unknown()),
            settings: None,
        }
    }
}

/// The whole application: routes, security checks, body limit, request metrics.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(handlers::chat_completions))
        .route("/v1/completions", post(handlers::completions))
        .route(anthropic::MESSAGES_PATH, post(anthropic::messages))
        .route("/v1/embeddings", post(embeddings::embeddings))
        .route("/v1/models", get(handlers::list_models))
        .route("/v1/models/{id}", get(handlers::get_model))
        .route("/health", get(handlers::health))
        .route("/metrics", get(handlers::metrics))
        .merge(conversations::router())
        .merge(management::router())
        .merge(system::router())
        .merge(settings::router())
        .merge(kv_cache::router())
        .merge(about::router())
        .merge(providers::router())
        // Anything else: the web UI's files (GET), or the API's 404.
        .fallback(ui::fallback)
        .method_not_allowed_fallback(handlers::method_not_allowed)
        // Inner to outer: the body limit applies to the handlers, whose bodies are read (or
        // an oversize one drained for its 413) once security has let the request in; the
        // request counter sees every response, refusals included.
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BODY_BYTES))
        .layer(middleware::from_fn(body_limit::bound_body))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            security::enforce,
        ))
        .layer(middleware::from_fn(anthropic::anthropic_error_shape))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_responses,
        ))
        .with_state(state)
}

/// Counts every response by route pattern and status.
async fn count_responses(State(state): State<AppState>, request: Request, next: Next) -> Response {
    count_responses_under("", &state, request, next).await
}

/// Runs the request and counts its response under `prefix` + its route pattern (`unmatched`
/// when no route matched). Shared by the main router and the Ollama listener.
pub(crate) async fn count_responses_under(
    prefix: &str,
    state: &AppState,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |path| path.as_str())
        .to_string();
    let response = next.run(request).await;
    state
        .metrics
        .record_response(&format!("{prefix}{route}"), response.status().as_u16());
    response
}

#[cfg(test)]
mod router_tests;
#[cfg(test)]
mod test_support;
#[cfg(test)]
mod ui_contract;
