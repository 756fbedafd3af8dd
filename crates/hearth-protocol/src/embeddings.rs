//! Embedding requests of the worker protocol: texts (or token ids) in, one pooled and
//! L2-normalized vector per input out, each sent as soon as its batch is decoded, so no
//! event line grows with the number of inputs.
//!
//! The bounds are here, shared by the engine and the server's request validation: how many
//! inputs one request may hold, and the most tokens one input may have (the engine refuses
//! more against the embedding context it built, which may be smaller).

use serde::{Deserialize, Serialize};

/// The most inputs one embedding request may hold (OpenAI's limit).
pub const MAX_EMBEDDING_INPUTS: usize = 2048;

/// The most tokens the engine embeds in one input (and so in one `llama_decode`): the
/// embedding context's size, unless the model was trained on fewer. Encoder models (BERT
/// and its kin) need a whole input in one micro-batch, so this is also its micro-batch.
pub const MAX_EMBEDDING_INPUT_TOKENS: u32 = 2048;

/// One input to embed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EmbeddingInput {
    /// Text, tokenized with the model's special tokens (its BOS, a BERT model's CLS/SEP).
    Text { text: String },
    /// Token ids, used as they are.
    Tokens { tokens: Vec<i32> },
}

impl EmbeddingInput {
    /// The input's length before tokenization: bytes of text, or tokens.
    pub fn len_hint(&self) -> usize {
        match self {
            EmbeddingInput::Text { text } => text.len(),
            EmbeddingInput::Tokens { tokens } => tokens.len(),
        }
    }
}

/// A request to embed `inputs`; the engine answers with one `Embedding` event per input (in
/// any order, each with its index), then `Embedded` with the token count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbedRequest {
    pub request_id: u64,
    pub inputs: Vec<EmbeddingInput>,
}

/// Scales `vector` to unit length (as OpenAI's embeddings are), so a dot product is the cosine
/// similarity. A zero vector stays zero.
pub fn l2_normalize(vector: &mut [f32]) {
    let norm = vector
        .iter()
        .map(|value| f64::from(*value) * f64::from(*value))
        .sum::<f64>()
        .sqrt();
    if norm > 0.0 && norm.is_finite() {
        for value in vector.iter_mut() {
            *value = (f64::from(*value) / norm) as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalized_vectors_have_unit_length_and_zero_stays_zero() {
        let mut vector = vec![3.0, 4.0];
        l2_normalize(&mut vector);
        assert_eq!(vector, vec![0.6, 0.8]);
        let mut zero = vec![0.0; 4];
        l2_normalize(&mut zero);
        assert_eq!(zero, vec![0.0; 4]);
    }

    #[test]
    fn inputs_round_trip_tagged_by_kind() {
        let request = EmbedRequest {
            request_id: 3,
            inputs: vec![
                EmbeddingInput::Text { text: "hi".into() },
                EmbeddingInput::Tokens { tokens: vec![1, 2] },
            ],
        };
        let line = serde_json::to_string(&request).unwrap();
        assert!(line.contains(r#""kind":"text""#), "{line}");
        assert_eq!(
            serde_json::from_str::<EmbedRequest>(&line).unwrap(),
            request
        );
    }
}
