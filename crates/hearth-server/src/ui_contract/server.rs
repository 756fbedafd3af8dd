//! The server's side of the contract: settings, the KV cache, about, health (ready and
//! loading), a loaded model's plan, remote providers and their models, the model list, and
//! the sampling settings a conversation may hold.

use axum::http::Method;
use serde_json::{json, Value};

use super::{call_sorted, data_of, Samples};
use crate::conversations::SAMPLING_SETTING_KEYS;
use crate::error::ApiError;
use crate::handlers::{Health, HealthLoading, HealthModel};
use crate::AppState;

/// The settings, KV cache, about, health and model-list routes.
pub(super) async fn server_samples(state: &AppState, samples: &mut Samples) {
    samples.add(
        "ServerSettings",
        "GET /api/settings",
        call_sorted(state, Method::GET, "/api/settings", None).await,
    );
    samples.add(
        "ServerSettings",
        "PATCH /api/settings",
        call_sorted(
            state,
            Method::PATCH,
            "/api/settings",
            Some(
                json!({"default_model": "m", "api_key": "sk-x", "theme": "dark",
                "check_for_updates": true, "ollama_api": true}),
            ),
        )
        .await,
    );
    samples.add(
        "KvCacheStatus",
        "GET /api/kv-cache",
        call_sorted(state, Method::GET, "/api/kv-cache", None).await,
    );
    samples.add(
        "KvCacheCleared",
        "DELETE /api/kv-cache",
        call_sorted(state, Method::DELETE, "/api/kv-cache", None).await,
    );
    samples.add(
        "About",
        "GET /api/about",
        call_sorted(state, Method::GET, "/api/about", None).await,
    );
    samples.add(
        "Health",
        "GET /health",
        call_sorted(state, Method::GET, "/health", None).await,
    );
    let loaded = Health {
        models: Some(vec![HealthModel {
            id: "m".into(),
            state: "loaded",
        }]),
        status: "ok",
    };
    samples.add_typed("Health", "a model loaded", &loaded);
    let loading = HealthLoading {
        error: ApiError::unavailable("model_loading", "A model is loading.", 1).object(),
        models: Some(vec![HealthModel {
            id: "m".into(),
            state: "loading",
        }]),
        status: "loading",
    };
    samples.add_typed("Health", "a model loading (503)", &loading);
    // A loaded model's plan on `/api/system`, speculating with a draft and without.
    for (speculative, draft_model) in [
        (
            hearth_protocol::SpeculativeMode::Draft,
            Some("smollm2-135m-instruct".to_string()),
        ),
        (hearth_protocol::SpeculativeMode::Ngram, None),
    ] {
        let plan = crate::system::LoadedPlanJson {
            architecture: "llama".into(),
            draft_model,
            flash_attention: hearth_protocol::FlashAttention::Auto,
            kv_cache_type: hearth_protocol::KvCacheType::F16,
            kv_host_budget_bytes: 1 << 30,
            memory_bytes: Some(1 << 27),
            n_ctx: 4096,
            n_ctx_total: 4096,
            n_gpu_layers: 0,
            n_parallel: 1,
            n_threads: 2,
            speculative,
        };
        samples.add_typed("Plan", format!("a loaded model, {speculative:?}"), &plan);
    }
    samples.add_typed(
        "ServableModel",
        "a remote provider's model",
        &crate::openai::remote_model_object("lab/big", 1, "lab"),
    );
    for (what, models) in [
        ("a provider that answers", Ok(Vec::new())),
        (
            "a provider that is down",
            Err("it refused the connection".to_string()),
        ),
    ] {
        let status = crate::providers::ProviderStatus {
            config: crate::providers::ProviderConfig {
                name: "lab".into(),
                base_url: "http://127.0.0.1:9/v1".into(),
            },
            key_storage: Some("file".into()),
            models,
        };
        samples.add_typed(
            "ProviderView",
            what,
            &crate::providers::ProviderView::from(status),
        );
    }
    for item in data_of(&call_sorted(state, Method::GET, "/v1/models", None).await) {
        samples.add("ServableModel", "GET /v1/models", item);
    }
    // A conversation's settings hold exactly the chat completion fields it may.
    let settings: serde_json::Map<String, Value> = SAMPLING_SETTING_KEYS
        .iter()
        .map(|key| {
            let value = match *key {
                "stop" => json!(["\n\n"]),
                "ignore_eos" => json!(true),
                "reasoning_effort" => json!("none"),
                "seed" | "top_k" | "max_tokens" => json!(7),
                _ => json!(0.5),
            };
            (key.to_string(), value)
        })
        .collect();
    crate::request::parse_sampling_settings(&settings).expect("valid settings");
    samples.add(
        "SamplingSettings",
        "SAMPLING_SETTING_KEYS",
        Value::Object(settings),
    );
}
