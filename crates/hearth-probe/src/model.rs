//! What the planner needs to know about a model, read from its GGUF header: the attention
//! layout per layer (for the KV cache), sliding-window and mixture-of-experts structure, and
//! where the weight bytes are (per layer, embeddings, output, experts).

use hearth_gguf::{file_type_name, GgmlType, GgufError, GgufFile, TensorInfo};

fn tensor_facts(tensor: &TensorInfo) -> TensorFacts {
    TensorFacts {
        name: tensor.name.clone(),
        ggml_type: tensor.ggml_type.name().to_string(),
        rows: tensor.dimensions.get(1).copied().unwrap_or(1),
        dimensions: tensor.dimensions.len() as u32,
        bytes: tensor.byte_size,
        role: tensor_role(&tensor.name),
    }
}
use serde::{Deserialize, Serialize};

/// Architectures whose memory is a recurrent state rather than (only) a KV cache. The planner
/// does not model their state and says so instead of pretending they are transformers.
const RECURRENT_ARCHITECTURES: &[&str] = &[
    "mamba",
    "mamba2",
    "rwkv6",
    "rwkv6qwen2",
    "rwkv7",
    "arwkv7",
    "jamba",
    "falcon-h1",
    "plamo2",
    "granitehybrid",
    "lfm2",
    "nemotron_h",
    "qwen3next",
];

/// What a tensor is for, as far as memory placement and per-token reads go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TensorRole {
    /// `token_embd`: read one row per token (get_rows), kept on the host by llama.cpp.
    TokenEmbedding,
    /// `output` (the LM head) and `output_norm`.
    Output,
    /// A repeating layer's dense weights (`blk.N.*` except experts).
    Layer { layer: u32 },
    /// A routed expert's weights (`blk.N.ffn_*_exps`): only `expert_used_count` of
    /// `expert_count` are read per token.
    Experts { layer: u32 },
    /// Anything else (rope frequencies, vision towers, ...).
    Other,
}

/// One tensor, as the planner sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorFacts {
    pub name: String,
    pub ggml_type: String,
    /// Rows of a matrix (`ne[1]`), which decides whether llama.cpp's CPU backend repacks it.
    pub rows: u64,
    /// Number of dimensions.
    pub dimensions: u32,
    pub bytes: u64,
    pub role: TensorRole,
}

/// Sliding-window attention: which layers attend only to the last `window` tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlidingWindow {
    pub window: u64,
    pub layer_uses_window: Vec<bool>,
}

/// The model facts the planner works from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelFacts {
    pub architecture: String,
    pub name: Option<String>,
    /// llama.cpp's name of the quantization mix, e.g. `Q4_K_M`.
    pub file_type: Option<String>,
    pub n_layer: u32,
    pub n_ctx_train: u64,
    pub n_embd: u64,
    pub n_vocab: u64,
    /// Query heads per layer.
    pub n_head: Vec<u64>,
    /// Key/value heads per layer (0 for a layer without attention).
    pub n_head_kv: Vec<u64>,
    pub head_dim_k: u64,
    pub head_dim_v: u64,
    pub sliding_window: Option<SlidingWindow>,
    /// Routed experts per MoE layer (0 for dense models) and experts used per token.
    pub expert_count: u64,
    pub expert_used_count: u64,
    pub recurrent: bool,
    pub parameter_count: u64,
    pub tensors: Vec<TensorFacts>,
}

/// Why model facts could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ModelFactsError {
    #[error("{0}")]
    Gguf(#[from] GgufError),
    #[error("the model has no {what}")]
    Missing { what: &'static str },
}

fn tensor_role(name: &str) -> TensorRole {
    if name.starts_with("token_embd.") {
        return TensorRole::TokenEmbedding;
    }
    if name.starts_with("output.") || name.starts_with("output_norm.") {
        return TensorRole::Output;
    }
    if let Some(rest) = name.strip_prefix("blk.") {
        if let Some((layer, tensor)) = rest.split_once('.') {
            if let Ok(layer) = layer.parse::<u32>() {
                // `_exps` are routed experts; `_shexp` (shared experts) are read every token.
                let is_expert = tensor.contains("_exps.")
                    || tensor.contains("_exps_")
                    || tensor.ends_with("_exps");
                return if is_expert {
                    TensorRole::Experts { layer }
                } else {
                    TensorRole::Layer { layer }
                };
            }
        }
    }
    TensorRole::Other
}

impl ModelFacts {
    /// Reads the facts from a parsed GGUF header.
    pub fn from_gguf(file: &GgufFile) -> Result<ModelFacts, ModelFactsError> {
        let architecture = file.architecture()?.to_string();
        let n_layer = file.block_count()?;
        let block_count = n_layer as usize;
        let n_head = file
            .head_count()?
            .ok_or(ModelFactsError::Missing {
                what: "attention.head_count",
            })?
            .to_vec(block_count);
        let n_head_kv = file
            .head_count_kv()?
            .map(|value| value.to_vec(block_count))
            .unwrap_or_else(|| n_head.clone());
        let head_dim_k = file.key_length()?.unwrap_or(0);
        let head_dim_v = file.value_length()?.unwrap_or(head_dim_k);
        let sliding_window = file.sliding_window_attention()?.map(|swa| SlidingWindow {
            window: swa.window_length,
            layer_uses_window: swa.layer_uses_sliding_window,
        });
        let n_vocab = match file.vocab_size()? {
            Some(size) => size,
            None => file
                .get_u64(&file.architecture_key("vocab_size")?)?
                .ok_or(ModelFactsError::Missing { what: "vocabulary" })?,
        };
        let tensors = file.tensors().iter().map(tensor_facts).collect();
        Ok(ModelFacts {
            recurrent: RECURRENT_ARCHITECTURES.contains(&architecture.as_str()),
            architecture,
            name: file.model_name()?.map(str::to_string),
            file_type: file
                .file_type()?
                .and_then(file_type_name)
                .map(str::to_string),
            n_layer: n_layer as u32,
            n_ctx_train: file.context_length()?,
            n_embd: file.embedding_length()?,
            n_vocab,
            n_head,
            n_head_kv,
            head_dim_k,
            head_dim_v,
            sliding_window,
            expert_count: file.expert_count()?.unwrap_or(0),
            expert_used_count: file.expert_used_count()?.unwrap_or(0),
            parameter_count: file.parameter_count(),
            tensors,
        })
    }

    /// Adds the tensors of a later part of a split model (`hearth_gguf::split`): the first
    /// part's header has the metadata, each part its own run of the tensors.
    pub fn add_part(&mut self, part: &GgufFile) {
        self.tensors.extend(part.tensors().iter().map(tensor_facts));
        self.parameter_count = self.parameter_count.saturating_add(part.parameter_count());
    }

    /// All weight bytes.
    pub fn weight_bytes(&self) -> u64 {
        self.tensors.iter().map(|tensor| tensor.bytes).sum()
    }

    /// Bytes of tensors with the given role.
    pub fn bytes_where(&self, keep: impl Fn(&TensorRole) -> bool) -> u64 {
        self.tensors
            .iter()
            .filter(|tensor| keep(&tensor.role))
            .map(|tensor| tensor.bytes)
            .sum()
    }

    /// Weight bytes of repeating layer `layer`, experts included.
    pub fn layer_bytes(&self, layer: u32) -> u64 {
        self.bytes_where(|role| {
            matches!(role, TensorRole::Layer { layer: l } | TensorRole::Experts { layer: l } if *l == layer)
        })
    }

    /// Whether the LM head reuses the token embedding (no `output.weight`): then llama.cpp
    /// reads the embedding matrix in full for every token's logits.
    pub fn output_is_tied(&self) -> bool {
        !self
            .tensors
            .iter()
            .any(|tensor| tensor.name == "output.weight")
    }

    /// Bytes of the LM head matrix (the token embedding when tied).
    pub fn lm_head_bytes(&self) -> u64 {
        if self.output_is_tied() {
            self.bytes_where(|role| *role == TensorRole::TokenEmbedding)
        } else {
            self.tensors
                .iter()
                .filter(|tensor| tensor.name == "output.weight")
                .map(|tensor| tensor.bytes)
                .sum()
        }
    }

    /// Weight bytes read to generate one token: every dense layer weight, the routed experts'
    /// share (`expert_used_count / expert_count`), the LM head, and one embedding row.
    pub fn bytes_read_per_token(&self) -> f64 {
        let dense = self.bytes_where(|role| matches!(role, TensorRole::Layer { .. })) as f64;
        let experts = self.bytes_where(|role| matches!(role, TensorRole::Experts { .. })) as f64;
        let expert_share = if self.expert_count > 0 {
            self.expert_used_count as f64 / self.expert_count as f64
        } else {
            1.0
        };
        let output_norm = self
            .tensors
            .iter()
            .filter(|tensor| tensor.name.starts_with("output_norm."))
            .map(|tensor| tensor.bytes)
            .sum::<u64>() as f64;
        let embedding_row = if self.n_vocab > 0 {
            self.bytes_where(|role| *role == TensorRole::TokenEmbedding) as f64
                / self.n_vocab as f64
        } else {
            0.0
        };
        dense + experts * expert_share + self.lm_head_bytes() as f64 + output_norm + embedding_row
    }

    /// Parameters that take part in a matrix product per prompt token (everything but the
    /// embedding lookup and the LM head, which prefill runs for the last token only); routed
    /// experts count with their used share.
    pub fn matmul_parameters_per_prompt_token(&self) -> f64 {
        let elements = |tensor: &TensorFacts| -> f64 {
            let block = GgmlType::all()
                .find(|ggml_type| ggml_type.name() == tensor.ggml_type)
                .map(|ggml_type| ggml_type.bits_per_element() / 8.0)
                .unwrap_or(1.0);
            tensor.bytes as f64 / block
        };
        let expert_share = if self.expert_count > 0 {
            self.expert_used_count as f64 / self.expert_count as f64
        } else {
            1.0
        };
        self.tensors
            .iter()
            .map(|tensor| match tensor.role {
                TensorRole::Layer { .. } if tensor.dimensions >= 2 => elements(tensor),
                TensorRole::Experts { .. } => elements(tensor) * expert_share,
                _ => 0.0,
            })
            .sum()
    }

    /// Whether layer `layer` uses the sliding window.
    pub fn layer_uses_window(&self, layer: usize) -> bool {
        self.sliding_window
            .as_ref()
            .and_then(|swa| swa.layer_uses_window.get(layer).copied())
            .unwrap_or(false)
    }

    /// The same model at another quantization: every tensor's bytes scaled by `scale` (the
    /// ratio of the variants' file sizes), for catalog variants whose header is not at hand.
    pub fn scaled(&self, file_type: &str, scale: f64) -> ModelFacts {
        let mut scaled = self.clone();
        scaled.file_type = Some(file_type.to_string());
        for tensor in &mut scaled.tensors {
            // Norms and other vectors stay f32 at every quantization.
            if tensor.dimensions >= 2 {
                tensor.bytes = (tensor.bytes as f64 * scale).round() as u64;
                tensor.ggml_type = format!("~{file_type}");
            }
        }
        scaled
    }
}

#[cfg(test)]
mod tests;

/// Synthetic models with real architectures' shapes, for planner tests and examples. Tensor
/// sizes follow the shapes; every matrix uses one quantization of `bits_per_weight`.
pub mod synthetic {
    use super::*;

    /// The shape of a transformer.
    #[derive(Debug, Clone)]
    pub struct Shape {
        pub name: &'static str,
        pub architecture: &'static str,
        pub n_layer: u32,
        pub n_embd: u64,
        pub n_ff: u64,
        pub n_head: u64,
        pub n_head_kv: u64,
        pub head_dim: u64,
        pub n_vocab: u64,
        pub n_ctx_train: u64,
        pub tied_embeddings: bool,
        /// (window, period): every `period`th layer is global.
        pub sliding_window: Option<(u64, u64)>,
        /// (expert_count, expert_used_count, expert_ff).
        pub experts: Option<(u64, u64, u64)>,
    }

    fn matrix(name: String, columns: u64, rows: u64, bits: f64, role: TensorRole) -> TensorFacts {
        TensorFacts {
            name,
            ggml_type: "q4_K".to_string(),
            rows,
            dimensions: 2,
            bytes: (columns as f64 * rows as f64 * bits / 8.0) as u64,
            role,
        }
    }

    /// The model `shape` quantized to `bits_per_weight` (4.85 for Q4_K_M, 8.5 for Q8_0, ...).
    pub fn model(shape: &Shape, file_type: &str, bits_per_weight: f64) -> ModelFacts {
        let mut tensors = vec![matrix(
            "token_embd.weight".into(),
            shape.n_embd,
            shape.n_vocab,
            bits_per_weight,
            TensorRole::TokenEmbedding,
        )];
        if !shape.tied_embeddings {
            tensors.push(matrix(
                "output.weight".into(),
                shape.n_embd,
                shape.n_vocab,
                bits_per_weight.max(6.5625),
                TensorRole::Output,
            ));
        }
        let q_width = shape.n_head * shape.head_dim;
        let kv_width = shape.n_head_kv * shape.head_dim;
        for layer in 0..shape.n_layer {
            let role = TensorRole::Layer { layer };
            let name = |part: &str| format!("blk.{layer}.{part}.weight");
            tensors.push(matrix(
                name("attn_q"),
                shape.n_embd,
                q_width,
                bits_per_weight,
                role,
            ));
            tensors.push(matrix(
                name("attn_k"),
                shape.n_embd,
                kv_width,
                bits_per_weight,
                role,
            ));
            tensors.push(matrix(
                name("attn_v"),
                shape.n_embd,
                kv_width,
                bits_per_weight,
                role,
            ));
            tensors.push(matrix(
                name("attn_output"),
                q_width,
                shape.n_embd,
                bits_per_weight,
                role,
            ));
            match shape.experts {
                None => {
                    for part in ["ffn_gate", "ffn_up"] {
                        tensors.push(matrix(
                            name(part),
                            shape.n_embd,
                            shape.n_ff,
                            bits_per_weight,
                            role,
                        ));
                    }
                    tensors.push(matrix(
                        name("ffn_down"),
                        shape.n_ff,
                        shape.n_embd,
                        bits_per_weight,
                        role,
                    ));
                }
                Some((expert_count, _, expert_ff)) => {
                    let experts = TensorRole::Experts { layer };
                    for part in ["ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"] {
                        let mut tensor = matrix(
                            name(part),
                            shape.n_embd,
                            expert_ff * expert_count,
                            bits_per_weight,
                            experts,
                        );
                        tensor.rows = expert_ff;
                        tensors.push(tensor);
                    }
                }
            }
        }
        let parameter_count = tensors
            .iter()
            .map(|tensor| (tensor.bytes as f64 * 8.0 / bits_per_weight) as u64)
            .sum();
        ModelFacts {
            architecture: shape.architecture.to_string(),
            name: Some(shape.name.to_string()),
            file_type: Some(file_type.to_string()),
            n_layer: shape.n_layer,
            n_ctx_train: shape.n_ctx_train,
            n_embd: shape.n_embd,
            n_vocab: shape.n_vocab,
            n_head: vec![shape.n_head; shape.n_layer as usize],
            n_head_kv: vec![shape.n_head_kv; shape.n_layer as usize],
            head_dim_k: shape.head_dim,
            head_dim_v: shape.head_dim,
            sliding_window: shape.sliding_window.map(|(window, period)| SlidingWindow {
                window,
                layer_uses_window: (0..u64::from(shape.n_layer))
                    .map(|layer| layer % period < period - 1)
                    .collect(),
            }),
            expert_count: shape.experts.map_or(0, |experts| experts.0),
            expert_used_count: shape.experts.map_or(0, |experts| experts.1),
            recurrent: false,
            parameter_count,
            tensors,
        }
    }

    /// Llama 3.1 8B: 32 layers, GQA 32/8, 128k vocabulary, 128k context.
    pub const LLAMA_3_1_8B: Shape = Shape {
        name: "Llama 3.1 8B",
        architecture: "llama",
        n_layer: 32,
        n_embd: 4096,
        n_ff: 14336,
        n_head: 32,
        n_head_kv: 8,
        head_dim: 128,
        n_vocab: 128_256,
        n_ctx_train: 131_072,
        tied_embeddings: false,
        sliding_window: None,
        experts: None,
    };

    /// Qwen2.5 14B: 48 layers, GQA 40/8, 32k context.
    pub const QWEN_2_5_14B: Shape = Shape {
        name: "Qwen2.5 14B",
        architecture: "qwen2",
        n_layer: 48,
        n_embd: 5120,
        n_ff: 13824,
        n_head: 40,
        n_head_kv: 8,
        head_dim: 128,
        n_vocab: 152_064,
        n_ctx_train: 32_768,
        tied_embeddings: false,
        sliding_window: None,
        experts: None,
    };

    /// Llama 3.2 3B: 28 layers, tied embeddings.
    pub const LLAMA_3_2_3B: Shape = Shape {
        name: "Llama 3.2 3B",
        architecture: "llama",
        n_layer: 28,
        n_embd: 3072,
        n_ff: 8192,
        n_head: 24,
        n_head_kv: 8,
        head_dim: 128,
        n_vocab: 128_256,
        n_ctx_train: 131_072,
        tied_embeddings: true,
        sliding_window: None,
        experts: None,
    };

    /// Gemma 3 12B: 48 layers, 5 sliding-window (1024) layers per global one.
    pub const GEMMA_3_12B: Shape = Shape {
        name: "Gemma 3 12B",
        architecture: "gemma3",
        n_layer: 48,
        n_embd: 3840,
        n_ff: 15360,
        n_head: 16,
        n_head_kv: 8,
        head_dim: 256,
        n_vocab: 262_144,
        n_ctx_train: 131_072,
        tied_embeddings: true,
        sliding_window: Some((1024, 6)),
        experts: None,
    };

    /// Qwen3 30B-A3B: 48 layers of 128 experts, 8 used per token.
    pub const QWEN_3_30B_A3B: Shape = Shape {
        name: "Qwen3 30B-A3B",
        architecture: "qwen3moe",
        n_layer: 48,
        n_embd: 2048,
        n_ff: 6144,
        n_head: 32,
        n_head_kv: 4,
        head_dim: 128,
        n_vocab: 151_936,
        n_ctx_train: 40_960,
        tied_embeddings: false,
        sliding_window: None,
        experts: Some((128, 8, 768)),
    };
}
