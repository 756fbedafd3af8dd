//! What the router tests share: an application state on 127.0.0.1:4327 whose models point at
//! a worker program that does not exist (every path up to the engine runs; the engine's
//! failure is a clean error), and requests with the right Host header.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Method, Request};
use hearth_protocol::LoadParams;
use hearth_supervisor::WorkerCommand;
use serde_json::Value;

use crate::{AppState, Metrics, ModelManager, ModelManagerConfig, SecurityPolicy, ServableModel};

/// The port the test state is bound to (no socket is opened).
const PORT: u16 = 4327;
/// The Host header of a request to that server.
pub const HOST: &str = "127.0.0.1:4327";

/// The access token every test state accepts (as `hearth serve`'s web UI token): `/api/*`
/// always needs it or a key.
pub const TOKEN: &str = "test-access-token";

/// A program that does not exist.
pub const MISSING_PROGRAM: &str = "/nonexistent/hearth-for-tests";

/// A worker command whose program does not exist.
pub fn missing_worker() -> WorkerCommand {
    WorkerCommand {
        program: MISSING_PROGRAM.into(),
        args: Vec::new(),
        envs: Vec::new(),
    }
}

/// The state of a loopback server serving `models`, requiring `api_keys` (none: `/v1/*` needs
/// no key), accepting [`TOKEN`] too, and allowing the browser origins `allowed_origins`; no history, no downloads.
pub fn loopback_state(
    models: Vec<ServableModel>,
    api_keys: Vec<String>,
    allowed_origins: &[String],
) -> AppState {
    loopback_state_with_providers(models, api_keys, allowed_origins, None)
}

/// [`loopback_state`] with remote providers.
pub fn loopback_state_with_providers(
    models: Vec<ServableModel>,
    api_keys: Vec<String>,
    allowed_origins: &[String],
    providers: Option<Arc<crate::ProviderRegistry>>,
) -> AppState {
    let metrics = Arc::new(Metrics::default());
    let models = ModelManager::new(
        ModelManagerConfig {
            models,
            library: None,
            worker_command: missing_worker(),
            load_params: LoadParams::default(),
            idle_unload: None,
            load_wait: Duration::from_millis(200),
            max_loaded_models: 1,
            catalog_drafts: true,
            providers,
        },
        metrics.clone(),
    );
    let security = SecurityPolicy::for_bound_address(
        SocketAddr::from(([127, 0, 0, 1], PORT)),
        api_keys,
        allowed_origins,
    )
    .unwrap()
    .with_access_token(TOKEN.to_string())
    .unwrap();
    AppState::new(models, metrics, Arc::new(security))
}

/// A request to the test server with [`TOKEN`], with a JSON body when there is one.
pub fn request(method: Method, path: &str, body: Option<Value>) -> Request<Body> {
    let builder = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, HOST)
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"));
    match body {
        Some(body) => builder
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap(),
        None => builder.body(Body::empty()).unwrap(),
    }
}

/// Sends `request` through the whole router: the status and the body as JSON (`Null` when it
/// is not JSON).
pub async fn send_json(
    state: &AppState,
    request: Request<Body>,
) -> (axum::http::StatusCode, Value) {
    use tower::ServiceExt;
    let response = crate::router(state.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}
