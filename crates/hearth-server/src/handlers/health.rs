//! `GET /health` (ready, or 503 while a model loads; model ids only with a key) and
//! `GET /metrics` (Prometheus text, with each loaded model's scheduler figures).

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::error::{ApiError, ErrorObject, LOADING_RETRY_AFTER_SECS};
use crate::metrics::SchedulerGauges;
use crate::models::ModelState;
use crate::AppState;

/// How long `/metrics` waits for a model's scheduler figures. The engine answers between two
/// steps, and one step of prefill on a CPU can take seconds; this stays under Prometheus'
/// default scrape timeout (10 s).
const STATS_TIMEOUT: Duration = Duration::from_secs(8);

/// `GET /health` when no model is loading: `{"models": [...], "status": "ok"}`.
#[derive(Debug, Serialize)]
pub struct Health {
    /// The models loaded or loading; left out without a key (the rest of the machine need
    /// not learn which models are here).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<HealthModel>>,
    pub status: &'static str,
}

/// `GET /health` while a model loads (503): OpenAI's error object, and what `Health` says.
#[derive(Debug, Serialize)]
pub struct HealthLoading {
    pub error: ErrorObject,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<HealthModel>>,
    pub status: &'static str,
}

#[derive(Debug, Serialize)]
pub struct HealthModel {
    pub id: String,
    /// `loading` or `loaded`.
    pub state: &'static str,
}

/// 200 when ready (a model can be served or loaded on demand), 503 with `Retry-After` while a
/// model is loading.
pub async fn health(State(state): State<AppState>, headers: HeaderMap) -> Response {
    // Without a key, only ready or loading: no model ids.
    let models: Option<Vec<HealthModel>> =
        state.security.key_accepted(&headers).is_ok().then(|| {
            state
                .models
                .list()
                .into_iter()
                .filter(|model| model.state != ModelState::Available)
                .map(|model| HealthModel {
                    id: model.id,
                    state: model.state.as_str(),
                })
                .collect()
        });
    if state.models.loading_count() > 0 {
        let error = ApiError::unavailable(
            "model_loading",
            "A model is loading.",
            LOADING_RETRY_AFTER_SECS,
        );
        let body = HealthLoading {
            error: error.object(),
            models,
            status: "loading",
        };
        let mut response = (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(LOADING_RETRY_AFTER_SECS),
        );
        return response;
    }
    Json(Health {
        models,
        status: "ok",
    })
    .into_response()
}

pub async fn metrics(State(state): State<AppState>) -> Response {
    let mut gauges = Vec::new();
    for model in state.models.loaded() {
        match tokio::time::timeout(STATS_TIMEOUT, model.supervisor.stats()).await {
            Ok(Ok(stats)) => gauges.push(SchedulerGauges {
                model: model.id.clone(),
                queued: stats.queued,
                running: stats.running,
                n_parallel: stats.n_parallel,
                steps: stats.steps,
            }),
            Ok(Err(error)) => tracing::warn!(model = %model.id, %error, "no scheduler stats"),
            Err(_) => tracing::warn!(model = %model.id, "scheduler stats timed out"),
        }
    }
    gauges.sort_by(|a, b| a.model.cmp(&b.model));
    let text = state.metrics.render(&gauges, state.models.loading_count());
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        text,
    )
        .into_response()
}
