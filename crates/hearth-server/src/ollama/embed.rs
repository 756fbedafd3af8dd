//! `POST /api/embed` (`input`: a string or strings; `embeddings`) and the older
//! `POST /api/embeddings` (`prompt`: one string; `embedding`), through the same engine path
//! as `/v1/embeddings`: pooled and L2-normalized vectors, the same limits and errors.

use std::time::Instant;

use axum::extract::State;
use axum::Json;

use super::wire::{EmbedAnswer, LegacyEmbedAnswer};
use super::{model_id, nanos};
use crate::embeddings::embed_with;
use crate::error::ApiError;
use crate::handlers::JsonBody;
use crate::request::{parse_ollama_embed, OllamaEmbed};
use crate::AppState;

pub async fn embed(
    State(state): State<AppState>,
    JsonBody(body): JsonBody,
) -> Result<Json<EmbedAnswer>, ApiError> {
    let started = Instant::now();
    let request = parse_ollama_embed(&body, false)?;
    let model = request.model.clone();
    let (vectors, prompt_tokens) = run(&state, request).await?;
    Ok(Json(EmbedAnswer {
        model,
        embeddings: vectors,
        total_duration: nanos(started.elapsed().as_secs_f64() * 1000.0),
        load_duration: 0,
        prompt_eval_count: prompt_tokens,
    }))
}

pub async fn legacy_embeddings(
    State(state): State<AppState>,
    JsonBody(body): JsonBody,
) -> Result<Json<LegacyEmbedAnswer>, ApiError> {
    let request = parse_ollama_embed(&body, true)?;
    if request.inputs.len() != 1 {
        return Err(ApiError::invalid_param(
            "prompt",
            "'prompt' must be one string; /api/embed takes several.",
        ));
    }
    let (mut vectors, _) = run(&state, request).await?;
    Ok(Json(LegacyEmbedAnswer {
        embedding: vectors.pop().unwrap_or_default(),
    }))
}

async fn run(state: &AppState, request: OllamaEmbed) -> Result<(Vec<Vec<f32>>, u32), ApiError> {
    let id = model_id(state, &request.model);
    let lease = state.models.acquire(&id).await?;
    if let Some(keep_alive) = request.keep_alive {
        lease.set_keep_alive(keep_alive);
    }
    let embeddings = embed_with(&lease, request.inputs, request.dimensions).await?;
    state.metrics.record_embeddings(
        lease.id(),
        embeddings.vectors.len(),
        embeddings.prompt_tokens,
    );
    drop(lease);
    if request.keep_alive == Some(crate::models::KeepAlive::For(std::time::Duration::ZERO)) {
        state.models.unload_idle(Instant::now());
    }
    Ok((embeddings.vectors, embeddings.prompt_tokens))
}
