//! `POST /v1/embeddings` bodies (and the input of Ollama's `/api/embed`): the input (a string,
//! a list of strings, a list of token ids, or a list of such lists), `encoding_format` and
//! `dimensions`. Every input is checked here, with its index in `param`, before anything
//! reaches the engine; the engine still refuses an input longer than the model embeds at once.

use hearth_protocol::{EmbeddingInput, MAX_EMBEDDING_INPUTS, MAX_EMBEDDING_INPUT_TOKENS};
use serde_json::Value;

use super::fields::{as_object, type_name, Fields};
use super::parse_model;
use crate::error::ApiError;

/// How the vectors are sent: arrays of numbers, or base64 of little-endian `f32`s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodingFormat {
    Float,
    Base64,
}

/// A validated embeddings request.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingsRequest {
    pub model: String,
    pub inputs: Vec<EmbeddingInput>,
    pub encoding_format: EncodingFormat,
    /// The length asked for; only the model's own is accepted (checked with the model).
    pub dimensions: Option<u32>,
}

/// Parses and validates a `POST /v1/embeddings` body.
pub fn parse_embeddings_request(body: &Value) -> Result<EmbeddingsRequest, ApiError> {
    let fields = Fields::new(as_object(body)?, "");
    let model = parse_model(&fields)?;
    let inputs = parse_embedding_input(&fields, "input")?;
    let encoding_format = match fields.string("encoding_format")? {
        None | Some("float") => EncodingFormat::Float,
        Some("base64") => EncodingFormat::Base64,
        Some(_) => {
            return Err(ApiError::invalid_param(
                "encoding_format",
                "'encoding_format' must be \"float\" or \"base64\".",
            ))
        }
    };
    let dimensions = fields
        .integer("dimensions", 1, i64::from(u32::MAX))?
        .map(|dimensions| dimensions as u32);
    fields.string("user")?;
    Ok(EmbeddingsRequest {
        model,
        inputs,
        encoding_format,
        dimensions,
    })
}

/// Reads the inputs in field `name`: a string, a list of strings, a list of token ids, or a
/// list of lists of token ids; at least one, at most [`MAX_EMBEDDING_INPUTS`], none empty.
pub(crate) fn parse_embedding_input(
    fields: &Fields<'_>,
    name: &str,
) -> Result<Vec<EmbeddingInput>, ApiError> {
    let param = fields.param(name);
    let value = fields.get(name).ok_or_else(|| {
        ApiError::invalid_param(
            param.clone(),
            format!("'{param}' is required: a string or an array of strings."),
        )
        .with_code("missing_required_parameter")
    })?;
    let items = match value {
        Value::String(text) => return Ok(vec![text_input(text, &param)?]),
        Value::Array(items) => items,
        other => {
            return Err(fields.wrong_type(
                name,
                "a string, an array of strings, or an array of token arrays",
                other,
            ))
        }
    };
    if items.is_empty() {
        return Err(ApiError::invalid_param(
            param.clone(),
            format!("'{param}' must hold at least one input."),
        ));
    }
    if items.len() > MAX_EMBEDDING_INPUTS {
        return Err(ApiError::invalid_param(
            param.clone(),
            format!(
                "'{param}' may hold at most {MAX_EMBEDDING_INPUTS} inputs, got {}.",
                items.len()
            ),
        ));
    }
    // A flat list of numbers is one input of token ids.
    if items.iter().all(Value::is_number) {
        return Ok(vec![tokens_input(items, &param)?]);
    }
    items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let item_param = format!("{param}[{index}]");
            match item {
                Value::String(text) => text_input(text, &item_param),
                Value::Array(tokens) => tokens_input(tokens, &item_param),
                other => Err(ApiError::invalid_param(
                    item_param.clone(),
                    format!(
                        "'{item_param}' must be a string or an array of token ids, got {}.",
                        type_name(other)
                    ),
                )
                .with_code("invalid_type")),
            }
        })
        .collect()
}

fn text_input(text: &str, param: &str) -> Result<EmbeddingInput, ApiError> {
    if text.is_empty() {
        return Err(ApiError::invalid_param(
            param,
            format!("'{param}' must not be empty."),
        ));
    }
    Ok(EmbeddingInput::Text {
        text: text.to_string(),
    })
}

fn tokens_input(items: &[Value], param: &str) -> Result<EmbeddingInput, ApiError> {
    if items.is_empty() {
        return Err(ApiError::invalid_param(
            param,
            format!("'{param}' must hold at least one token id."),
        ));
    }
    if items.len() > MAX_EMBEDDING_INPUT_TOKENS as usize {
        return Err(ApiError::invalid_param(
            param,
            format!(
                "'{param}' may hold at most {MAX_EMBEDDING_INPUT_TOKENS} tokens, got {}.",
                items.len()
            ),
        ));
    }
    let tokens = items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            item.as_i64()
                .and_then(|id| i32::try_from(id).ok())
                .filter(|id| *id >= 0)
                .ok_or_else(|| {
                    ApiError::invalid_param(
                        format!("{param}[{index}]"),
                        format!("'{param}[{index}]' must be a token id (a non-negative integer), got {item}."),
                    )
                })
        })
        .collect::<Result<Vec<i32>, _>>()?;
    Ok(EmbeddingInput::Tokens { tokens })
}

/// `dimensions` may only be the model's own length: Hearth does not shorten embeddings.
pub fn check_dimensions(requested: Option<u32>, model_length: u32) -> Result<(), ApiError> {
    match requested {
        Some(dimensions) if model_length > 0 && dimensions != model_length => {
            Err(ApiError::invalid_param(
                "dimensions",
                format!(
                    "This model's embeddings have {model_length} dimensions and cannot be shortened; 'dimensions' may only be {model_length}, got {dimensions}."
                ),
            )
            .with_code("unsupported_value"))
        }
        _ => Ok(()),
    }
}
