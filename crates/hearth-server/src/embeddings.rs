//! `POST /v1/embeddings`: texts (or token ids) to vectors, in OpenAI's shape. The model's
//! engine pools and normalizes them (`hearth_engine`'s embedding context); this layer checks
//! the body, refuses a `dimensions` other than the model's own, and encodes the vectors as
//! numbers or as base64 of little-endian `f32`s (what the `openai` SDK asks for by default).

use axum::extract::State;
use axum::Json;
use hearth_protocol::EmbeddingInput;
use hearth_supervisor::Embeddings;
use serde::Serialize;

use crate::error::ApiError;
use crate::handlers::JsonBody;
use crate::models::ModelLease;
use crate::request::{check_dimensions, parse_embeddings_request, EncodingFormat};
use crate::AppState;

/// The field errors about the prompt name.
const INPUT_PARAM: &str = "input";

/// OpenAI's embedding list. Fields in sorted order ([`crate::wire`]).
#[derive(Debug, Serialize)]
pub struct EmbeddingList {
    pub data: Vec<EmbeddingObject>,
    pub model: String,
    pub object: &'static str,
    pub usage: EmbeddingUsage,
}

#[derive(Debug, Serialize)]
pub struct EmbeddingObject {
    pub embedding: EmbeddingVector,
    pub index: u32,
    pub object: &'static str,
}

/// A vector as numbers (each `f32` in its shortest form, half the text of its `f64`), or as
/// base64 of its little-endian `f32`s.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum EmbeddingVector {
    Float(Vec<f32>),
    Base64(String),
}

#[derive(Debug, Serialize)]
pub struct EmbeddingUsage {
    pub prompt_tokens: u32,
    pub total_tokens: u32,
}

/// Embeds `inputs` with the leased model; a `dimensions` other than the model's is refused
/// before any work (and checked against the vectors, for a model that reported no length).
pub(crate) async fn embed_with(
    lease: &ModelLease,
    inputs: Vec<EmbeddingInput>,
    dimensions: Option<u32>,
) -> Result<Embeddings, ApiError> {
    let (Some(supervisor), Some(info)) = (lease.local_supervisor(), lease.info()) else {
        return Err(ApiError::invalid_param(
            "model",
            format!(
                "'{}' is a remote provider's model: embeddings are computed by local models only.",
                lease.id()
            ),
        )
        .with_code("embeddings_not_supported"));
    };
    check_dimensions(dimensions, info.n_embd)?;
    let embeddings = supervisor
        .embed(inputs)
        .await
        .map_err(|error| ApiError::from_supervisor(error, INPUT_PARAM))?;
    if let Some(first) = embeddings.vectors.first() {
        check_dimensions(dimensions, u32::try_from(first.len()).unwrap_or(u32::MAX))?;
    }
    Ok(embeddings)
}

pub async fn embeddings(
    State(state): State<AppState>,
    JsonBody(body): JsonBody,
) -> Result<Json<EmbeddingList>, ApiError> {
    let request = parse_embeddings_request(&body)?;
    let lease = state.models.acquire(&request.model).await?;
    let embeddings = embed_with(&lease, request.inputs, request.dimensions).await?;
    state.metrics.record_embeddings(
        lease.id(),
        embeddings.vectors.len(),
        embeddings.prompt_tokens,
    );
    let data = embeddings
        .vectors
        .into_iter()
        .enumerate()
        .map(|(index, vector)| EmbeddingObject {
            embedding: match request.encoding_format {
                EncodingFormat::Float => EmbeddingVector::Float(vector),
                EncodingFormat::Base64 => EmbeddingVector::Base64(base64_f32_le(&vector)),
            },
            index: u32::try_from(index).unwrap_or(u32::MAX),
            object: "embedding",
        })
        .collect();
    Ok(Json(EmbeddingList {
        data,
        model: lease.id().to_string(),
        object: "list",
        usage: EmbeddingUsage {
            prompt_tokens: embeddings.prompt_tokens,
            total_tokens: embeddings.prompt_tokens,
        },
    }))
}

/// Standard base64 (with padding) of the vector's little-endian `f32` bytes, as OpenAI sends
/// `encoding_format: "base64"`.
pub fn base64_f32_le(vector: &[f32]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes: Vec<u8> = vector
        .iter()
        .flat_map(|value| value.to_le_bytes())
        .collect();
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let word = (u32::from(chunk[0]) << 16)
            | (u32::from(chunk.get(1).copied().unwrap_or(0)) << 8)
            | u32::from(chunk.get(2).copied().unwrap_or(0));
        for position in 0..4 {
            if position <= chunk.len() {
                out.push(char::from(
                    ALPHABET[((word >> (18 - 6 * position)) & 63) as usize],
                ));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{loopback_state, request, send_json};
    use axum::http::{Method, StatusCode};
    use serde_json::{json, Value};

    fn served() -> crate::AppState {
        loopback_state(
            vec![crate::ServableModel {
                id: "m".into(),
                path: "/home/someone/secret/m.gguf".into(),
                created: 0,
            }],
            Vec::new(),
            &[],
        )
    }

    async fn refusal(body: Value) -> (StatusCode, Value) {
        send_json(
            &served(),
            request(Method::POST, "/v1/embeddings", Some(body)),
        )
        .await
    }

    #[tokio::test]
    async fn hostile_embedding_bodies_get_400_naming_the_field() {
        let many: Vec<String> = (0..hearth_protocol::MAX_EMBEDDING_INPUTS + 1)
            .map(|i| format!("text {i}"))
            .collect();
        let long_tokens: Vec<u32> =
            vec![1; hearth_protocol::MAX_EMBEDDING_INPUT_TOKENS as usize + 1];
        let cases = [
            (
                json!({"model": "m", "input": many}),
                "input",
                "at most 2048 inputs",
            ),
            (
                json!({"model": "m", "input": []}),
                "input",
                "at least one input",
            ),
            (
                json!({"model": "m", "input": ""}),
                "input",
                "must not be empty",
            ),
            (
                json!({"model": "m", "input": ["a", ""]}),
                "input[1]",
                "must not be empty",
            ),
            (
                json!({"model": "m", "input": 7}),
                "input",
                "must be a string",
            ),
            (
                json!({"model": "m", "input": ["a", {"x": 1}]}),
                "input[1]",
                "must be a string or an array",
            ),
            (
                json!({"model": "m", "input": [1, -2]}),
                "input[1]",
                "token id",
            ),
            (
                json!({"model": "m", "input": [[1, 2], []]}),
                "input[1]",
                "at least one token",
            ),
            (
                json!({"model": "m", "input": [long_tokens]}),
                "input[0]",
                "at most 2048 tokens",
            ),
            (json!({"model": "m"}), "input", "is required"),
            (json!({"input": "a"}), "model", "is required"),
            (
                json!({"model": "m", "input": "a", "encoding_format": "hex"}),
                "encoding_format",
                "\"float\" or \"base64\"",
            ),
            (
                json!({"model": "m", "input": "a", "dimensions": "big"}),
                "dimensions",
                "an integer",
            ),
            (
                json!({"model": "m", "input": "a", "dimensions": 0}),
                "dimensions",
                "between 1",
            ),
        ];
        for (body, param, message) in cases {
            let (status, answer) = refusal(body.clone()).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
            assert_eq!(answer["error"]["param"], param, "{body}: {answer}");
            let text = answer["error"]["message"].as_str().unwrap();
            assert!(text.contains(message), "{body}: {text}");
            assert!(!text.contains("/home/"), "{text}");
        }
    }

    #[test]
    fn dimensions_other_than_the_models_are_refused() {
        assert!(check_dimensions(None, 576).is_ok());
        assert!(check_dimensions(Some(576), 576).is_ok());
        let error = check_dimensions(Some(256), 576).unwrap_err();
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
        assert_eq!(error.param.as_deref(), Some("dimensions"));
        assert!(error.message.contains("576"), "{}", error.message);
    }

    #[test]
    fn base64_is_the_little_endian_bytes_with_padding() {
        // 1.0f32 = 00 00 80 3f; -2.0f32 = 00 00 00 c0.
        assert_eq!(base64_f32_le(&[1.0]), "AACAPw==");
        assert_eq!(base64_f32_le(&[1.0, -2.0]), "AACAPwAAAMA=");
        assert_eq!(base64_f32_le(&[]), "");
    }

    #[test]
    fn the_list_is_sent_in_sorted_order() {
        crate::wire::assert_sorted(&EmbeddingList {
            data: vec![EmbeddingObject {
                embedding: EmbeddingVector::Base64(base64_f32_le(&[0.5])),
                index: 0,
                object: "embedding",
            }],
            model: "m".into(),
            object: "list",
            usage: EmbeddingUsage {
                prompt_tokens: 1,
                total_tokens: 1,
            },
        });
    }
}
