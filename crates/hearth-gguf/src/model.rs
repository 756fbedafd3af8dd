//! The model facts the fit planner reads: architecture hyperparameters stored under
//! `{architecture}.*` keys, tokenizer facts, and file type. Defaults follow llama.cpp's loader
//! so the planner predicts what llama.cpp will actually allocate.

use crate::file::{missing, type_mismatch, GgufFile};
use crate::limits::{MAX_EXPERTS, MAX_LAYERS};
use crate::value::{MetadataArray, MetadataValue};
use crate::GgufError;

/// A hyperparameter that is either one value for every layer or one value per layer (for
/// example `head_count_kv` in models that mix attention layouts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PerLayerValue {
    Uniform(u64),
    /// Exactly one value per layer (checked against `block_count`).
    PerLayer(Vec<u64>),
}

impl PerLayerValue {
    /// The value for layer `layer`, or `None` past the last layer of a per-layer list.
    pub fn for_layer(&self, layer: usize) -> Option<u64> {
        match self {
            PerLayerValue::Uniform(value) => Some(*value),
            PerLayerValue::PerLayer(values) => values.get(layer).copied(),
        }
    }

    /// The largest value over all layers (0 for an empty list).
    pub fn max(&self) -> u64 {
        match self {
            PerLayerValue::Uniform(value) => *value,
            PerLayerValue::PerLayer(values) => values.iter().copied().max().unwrap_or(0),
        }
    }

    /// One value per layer for a model of `block_count` layers.
    pub fn to_vec(&self, block_count: usize) -> Vec<u64> {
        match self {
            PerLayerValue::Uniform(value) => vec![*value; block_count],
            PerLayerValue::PerLayer(values) => values.clone(),
        }
    }
}

/// How sliding-window attention applies to a model's layers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlidingWindowAttention {
    /// Tokens each sliding-window layer attends to (`{arch}.attention.sliding_window`).
    pub window_length: u64,
    /// One entry per layer: `true` where the layer uses the sliding window, `false` where it
    /// attends to the whole context.
    pub layer_uses_sliding_window: Vec<bool>,
}

/// Layer patterns of architectures whose sliding-window layout llama.cpp hard-codes when the
/// file has no `{arch}.attention.sliding_window_pattern`: with pattern `n`, layer `i` uses the
/// window unless `i % n == n - 1`. Copied from llama.cpp's per-architecture loaders.
const DEFAULT_SLIDING_WINDOW_PATTERNS: &[(&str, u64)] = &[
    ("gemma2", 2),
    ("gemma3", 6),
    ("gemma3n", 5),
    ("gemma-embedding", 6),
    ("cohere2", 4),
    ("olmo2", 4),
    ("exaone4", 4),
    ("gpt-oss", 2),
];

/// Names of llama.cpp's `general.file_type` values (`enum llama_ftype`).
const FILE_TYPE_NAMES: &[(u32, &str)] = &[
    (0, "F32"),
    (1, "F16"),
    (2, "Q4_0"),
    (3, "Q4_1"),
    (7, "Q8_0"),
    (8, "Q5_0"),
    (9, "Q5_1"),
    (10, "Q2_K"),
    (11, "Q3_K_S"),
    (12, "Q3_K_M"),
    (13, "Q3_K_L"),
    (14, "Q4_K_S"),
    (15, "Q4_K_M"),
    (16, "Q5_K_S"),
    (17, "Q5_K_M"),
    (18, "Q6_K"),
    (19, "IQ2_XXS"),
    (20, "IQ2_XS"),
    (21, "Q2_K_S"),
    (22, "IQ3_XS"),
    (23, "IQ3_XXS"),
    (24, "IQ1_S"),
    (25, "IQ4_NL"),
    (26, "IQ3_S"),
    (27, "IQ3_M"),
    (28, "IQ2_S"),
    (29, "IQ2_M"),
    (30, "IQ4_XS"),
    (31, "IQ1_M"),
    (32, "BF16"),
    (36, "TQ1_0"),
    (37, "TQ2_0"),
    (38, "MXFP4_MOE"),
    (39, "NVFP4"),
    (40, "Q1_0"),
    (41, "Q2_0"),
];

/// The conventional name of a `general.file_type` value, e.g. `Q4_K_M` for 15.
pub fn file_type_name(file_type: u32) -> Option<&'static str> {
    FILE_TYPE_NAMES
        .iter()
        .find(|(id, _)| *id == file_type)
        .map(|(_, name)| *name)
}

impl GgufFile {
    /// `general.architecture`, e.g. `llama` or `gemma3`; the prefix of the hyperparameter keys.
    pub fn architecture(&self) -> Result<&str, GgufError> {
        self.require_str("general.architecture")
    }

    /// `general.name`, the model's display name.
    pub fn model_name(&self) -> Result<Option<&str>, GgufError> {
        self.get_str("general.name")
    }

    /// The key `{architecture}.{suffix}`.
    pub fn architecture_key(&self, suffix: &str) -> Result<String, GgufError> {
        Ok(format!("{}.{suffix}", self.architecture()?))
    }

    fn architecture_u64(&self, suffix: &str) -> Result<Option<u64>, GgufError> {
        self.get_u64(&self.architecture_key(suffix)?)
    }

    fn require_architecture_u64(&self, suffix: &str) -> Result<u64, GgufError> {
        let key = self.architecture_key(suffix)?;
        self.get_u64(&key)?.ok_or_else(|| missing(&key))
    }

    /// Number of transformer blocks (layers), `{arch}.block_count`. Must be between 1 and
    /// [`MAX_LAYERS`]: llama.cpp aborts the process on anything else, and a per-layer list of
    /// 2^31 entries is no model.
    pub fn block_count(&self) -> Result<u64, GgufError> {
        let block_count = self.require_architecture_u64("block_count")?;
        if !(1..=MAX_LAYERS).contains(&block_count) {
            return Err(GgufError::ValueOutOfRange {
                key: self.architecture_key("block_count")?,
                value: block_count.to_string(),
                expected: format!("between 1 and {MAX_LAYERS} layers"),
            });
        }
        Ok(block_count)
    }

    /// The context length the model was trained for, `{arch}.context_length`.
    pub fn context_length(&self) -> Result<u64, GgufError> {
        self.require_architecture_u64("context_length")
    }

    /// Width of the residual stream, `{arch}.embedding_length`.
    pub fn embedding_length(&self) -> Result<u64, GgufError> {
        self.require_architecture_u64("embedding_length")
    }

    /// Width of the feed-forward layers, `{arch}.feed_forward_length`; may be per layer.
    pub fn feed_forward_length(&self) -> Result<Option<PerLayerValue>, GgufError> {
        self.per_layer("feed_forward_length")
    }

    /// Query heads, `{arch}.attention.head_count`; may be per layer.
    pub fn head_count(&self) -> Result<Option<PerLayerValue>, GgufError> {
        self.per_layer("attention.head_count")
    }

    /// Key/value heads, `{arch}.attention.head_count_kv`; may be per layer (0 for layers
    /// without attention). Defaults to the query head count, as in llama.cpp.
    pub fn head_count_kv(&self) -> Result<Option<PerLayerValue>, GgufError> {
        match self.per_layer("attention.head_count_kv")? {
            Some(head_count_kv) => Ok(Some(head_count_kv)),
            None => self.head_count(),
        }
    }

    /// Dimension of one key head, `{arch}.attention.key_length`; defaults to embedding length
    /// divided by layer 0's head count, as in llama.cpp.
    pub fn key_length(&self) -> Result<Option<u64>, GgufError> {
        self.head_length("attention.key_length")
    }

    /// Dimension of one value head, `{arch}.attention.value_length`; same default as
    /// [`GgufFile::key_length`].
    pub fn value_length(&self) -> Result<Option<u64>, GgufError> {
        self.head_length("attention.value_length")
    }

    fn head_length(&self, suffix: &str) -> Result<Option<u64>, GgufError> {
        if let Some(length) = self.architecture_u64(suffix)? {
            return Ok(Some(length));
        }
        let head_count = self
            .head_count()?
            .and_then(|head_count| head_count.for_layer(0))
            .filter(|head_count| *head_count > 0);
        match head_count {
            Some(head_count) => Ok(Some(self.embedding_length()? / head_count)),
            None => Ok(None),
        }
    }

    /// Experts per MoE layer, `{arch}.expert_count`; `None` for dense models. At most
    /// [`MAX_EXPERTS`], where llama.cpp aborts.
    pub fn expert_count(&self) -> Result<Option<u64>, GgufError> {
        let expert_count = self.architecture_u64("expert_count")?;
        if let Some(count) = expert_count.filter(|count| *count > MAX_EXPERTS) {
            return Err(GgufError::ValueOutOfRange {
                key: self.architecture_key("expert_count")?,
                value: count.to_string(),
                expected: format!("at most {MAX_EXPERTS} experts"),
            });
        }
        Ok(expert_count)
    }

    /// Experts active per token, `{arch}.expert_used_count`.
    pub fn expert_used_count(&self) -> Result<Option<u64>, GgufError> {
        self.architecture_u64("expert_used_count")
    }

    /// `{arch}.attention.sliding_window`, the window length in tokens, as stored.
    pub fn sliding_window(&self) -> Result<Option<u64>, GgufError> {
        self.architecture_u64("attention.sliding_window")
    }

    /// Which layers use sliding-window attention, and the window length. `None` when the model
    /// attends to the whole context in every layer (no window, a zero window, or an
    /// architecture for which llama.cpp ignores the window).
    ///
    /// The layout comes from `{arch}.attention.sliding_window_pattern` (an array of bools per
    /// layer, or a period `n` where every `n`th layer is global), else from llama.cpp's
    /// built-in period for the architecture (gemma3: 5 sliding layers then 1 global).
    pub fn sliding_window_attention(&self) -> Result<Option<SlidingWindowAttention>, GgufError> {
        let Some(window_length) = self.sliding_window()?.filter(|window| *window > 0) else {
            return Ok(None);
        };
        let block_count = self.block_count()?;
        let pattern_key = self.architecture_key("attention.sliding_window_pattern")?;
        let period = match self.get(&pattern_key) {
            Some(MetadataValue::Array(MetadataArray::Bool(layers))) => {
                if layers.len() as u64 != block_count {
                    return Err(GgufError::PerLayerLengthMismatch {
                        key: pattern_key,
                        length: layers.len() as u64,
                        block_count,
                    });
                }
                return Ok(Some(SlidingWindowAttention {
                    window_length,
                    layer_uses_sliding_window: layers.clone(),
                }));
            }
            Some(value) => match value.as_u64() {
                Some(period) => period,
                None => {
                    return Err(type_mismatch(
                        &pattern_key,
                        "an array of bool or an integer",
                        value,
                    ))
                }
            },
            None => {
                let architecture = self.architecture()?;
                match DEFAULT_SLIDING_WINDOW_PATTERNS
                    .iter()
                    .find(|(name, _)| *name == architecture)
                {
                    Some((_, period)) => *period,
                    None => return Ok(None),
                }
            }
        };
        // As llama.cpp's `set_swa_pattern`: period 0 means every layer slides.
        let layer_uses_sliding_window = (0..block_count)
            .map(|layer| period == 0 || layer % period < period - 1)
            .collect();
        Ok(Some(SlidingWindowAttention {
            window_length,
            layer_uses_sliding_window,
        }))
    }

    /// `general.file_type`: llama.cpp's name for the quantization mix (see [`file_type_name`]).
    pub fn file_type(&self) -> Result<Option<u32>, GgufError> {
        let key = "general.file_type";
        match self.get_u64(key)? {
            None => Ok(None),
            Some(file_type) => {
                u32::try_from(file_type)
                    .map(Some)
                    .map_err(|_| GgufError::ValueOutOfRange {
                        key: key.to_owned(),
                        value: file_type.to_string(),
                        expected: "a u32 file type".to_owned(),
                    })
            }
        }
    }

    /// The Jinja chat template, `tokenizer.chat_template`.
    pub fn chat_template(&self) -> Result<Option<&str>, GgufError> {
        self.get_str("tokenizer.chat_template")
    }

    /// Vocabulary size: the length of `tokenizer.ggml.tokens`.
    pub fn vocab_size(&self) -> Result<Option<u64>, GgufError> {
        let key = "tokenizer.ggml.tokens";
        match self.get(key) {
            None => Ok(None),
            Some(MetadataValue::Array(MetadataArray::String(tokens))) => {
                Ok(Some(tokens.len() as u64))
            }
            Some(other) => Err(type_mismatch(key, "an array of string", other)),
        }
    }

    /// A hyperparameter that may be a scalar or a per-layer array.
    fn per_layer(&self, suffix: &str) -> Result<Option<PerLayerValue>, GgufError> {
        let key = self.architecture_key(suffix)?;
        let Some(value) = self.get(&key) else {
            return Ok(None);
        };
        if let MetadataValue::Array(array) = value {
            let values = array
                .to_u64_vec()
                .ok_or_else(|| type_mismatch(&key, "an array of non-negative integers", value))?;
            let block_count = self.block_count()?;
            if values.len() as u64 != block_count {
                return Err(GgufError::PerLayerLengthMismatch {
                    key,
                    length: values.len() as u64,
                    block_count,
                });
            }
            return Ok(Some(PerLayerValue::PerLayer(values)));
        }
        Ok(self.get_u64(&key)?.map(PerLayerValue::Uniform))
    }
}
