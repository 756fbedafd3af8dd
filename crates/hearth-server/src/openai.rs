//! The response shapes of the OpenAI API (chat completions, legacy completions, their stream
//! chunks, usage, log-probabilities), plus Hearth's `timings`, named as llama.cpp's server
//! names them so tools that read those keep working.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use hearth_protocol::{FinishReason, RequestMetrics, TokenLogprob};
use serde_json::{json, Map, Value};

use crate::request::Endpoint;

/// Reported as `system_fingerprint`: which build answered.
pub const SYSTEM_FINGERPRINT: &str = concat!("hearth-", env!("CARGO_PKG_VERSION"));
/// The `owned_by` of every model.
pub const MODEL_OWNER: &str = "hearth";

/// A fresh response id: the endpoint's prefix and 32 hex digits, unique within the process
/// and unpredictable across processes (a per-process random hasher key).
pub fn new_response_id(endpoint: Endpoint) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static KEYS: std::sync::OnceLock<RandomState> = std::sync::OnceLock::new();
    let keys = KEYS.get_or_init(RandomState::new);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let digest = |salt: u64| {
        let mut hasher = keys.build_hasher();
        hasher.write_u64(count);
        hasher.write_u64(salt);
        hasher.finish()
    };
    let prefix = match endpoint {
        Endpoint::ChatCompletions => "chatcmpl",
        Endpoint::Completions => "cmpl",
    };
    format!("{prefix}-{:016x}{:016x}", digest(1), digest(2))
}

/// What every object of one answer shares.
#[derive(Debug, Clone)]
pub struct AnswerContext {
    pub id: String,
    pub created: u64,
    pub model: String,
    pub endpoint: Endpoint,
    pub include_usage: bool,
    pub logprobs: bool,
}

impl AnswerContext {
    fn object(&self, chunk: bool) -> &'static str {
        match (self.endpoint, chunk) {
            (Endpoint::ChatCompletions, false) => "chat.completion",
            (Endpoint::ChatCompletions, true) => "chat.completion.chunk",
            (Endpoint::Completions, _) => "text_completion",
        }
    }

    fn envelope(&self, chunk: bool, choices: Value) -> Map<String, Value> {
        let mut object = Map::new();
        object.insert("id".into(), json!(self.id));
        object.insert("object".into(), json!(self.object(chunk)));
        object.insert("created".into(), json!(self.created));
        object.insert("model".into(), json!(self.model));
        object.insert("system_fingerprint".into(), json!(SYSTEM_FINGERPRINT));
        object.insert("choices".into(), choices);
        object
    }

    /// The whole answer (`stream: false`).
    pub fn full_answer(
        &self,
        text: &str,
        finish_reason: FinishReason,
        logprobs: &[TokenLogprob],
        metrics: &RequestMetrics,
    ) -> Value {
        let logprobs_value = self.logprobs_value(logprobs, 0);
        let choice = match self.endpoint {
            Endpoint::ChatCompletions => json!({
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": null},
                "logprobs": logprobs_value,
                "finish_reason": finish_reason_str(finish_reason),
            }),
            Endpoint::Completions => json!({
                "index": 0,
                "text": text,
                "logprobs": logprobs_value,
                "finish_reason": finish_reason_str(finish_reason),
            }),
        };
        let mut object = self.envelope(false, json!([choice]));
        object.insert("usage".into(), usage(metrics));
        object.insert("timings".into(), timings(metrics));
        Value::Object(object)
    }

    /// The first chunk of a chat stream: the role, and no text yet.
    pub fn role_chunk(&self) -> Value {
        let choice = json!({
            "index": 0,
            "delta": {"role": "assistant", "content": "", "refusal": null},
            "logprobs": null,
            "finish_reason": null,
        });
        self.chunk(choice)
    }

    /// A chunk of text. `text_offset` is where it starts in the whole answer (for the legacy
    /// completions' `text_offset`).
    pub fn text_chunk(&self, text: &str, logprobs: &[TokenLogprob], text_offset: usize) -> Value {
        let logprobs_value = self.logprobs_value(logprobs, text_offset);
        let choice = match self.endpoint {
            Endpoint::ChatCompletions => json!({
                "index": 0,
                "delta": {"content": text},
                "logprobs": logprobs_value,
                "finish_reason": null,
            }),
            Endpoint::Completions => json!({
                "index": 0,
                "text": text,
                "logprobs": logprobs_value,
                "finish_reason": null,
            }),
        };
        self.chunk(choice)
    }

    /// The chunk that ends the choice: `finish_reason`, and Hearth's timings.
    pub fn finish_chunk(&self, finish_reason: FinishReason, metrics: &RequestMetrics) -> Value {
        let choice = match self.endpoint {
            Endpoint::ChatCompletions => json!({
                "index": 0,
                "delta": {},
                "logprobs": null,
                "finish_reason": finish_reason_str(finish_reason),
            }),
            Endpoint::Completions => json!({
                "index": 0,
                "text": "",
                "logprobs": null,
                "finish_reason": finish_reason_str(finish_reason),
            }),
        };
        let mut chunk = self.chunk(choice);
        if let Some(object) = chunk.as_object_mut() {
            object.insert("timings".into(), timings(metrics));
        }
        chunk
    }

    /// The last chunk when `stream_options.include_usage` is set: no choices, the usage.
    pub fn usage_chunk(&self, metrics: &RequestMetrics) -> Value {
        let mut object = self.envelope(true, json!([]));
        object.insert("usage".into(), usage(metrics));
        object.insert("timings".into(), timings(metrics));
        Value::Object(object)
    }

    fn chunk(&self, choice: Value) -> Value {
        let mut object = self.envelope(true, json!([choice]));
        if self.include_usage {
            // OpenAI sends `usage: null` on every chunk but the last when usage is asked for.
            object.insert("usage".into(), Value::Null);
        }
        Value::Object(object)
    }

    fn logprobs_value(&self, logprobs: &[TokenLogprob], text_offset: usize) -> Value {
        if !self.logprobs {
            return Value::Null;
        }
        match self.endpoint {
            Endpoint::ChatCompletions => chat_logprobs(logprobs),
            Endpoint::Completions => completion_logprobs(logprobs, text_offset),
        }
    }
}

/// `stop` or `length`. A cancelled answer is never sent (its client is gone); should one be,
/// `stop` is the closest OpenAI value.
pub fn finish_reason_str(finish_reason: FinishReason) -> &'static str {
    match finish_reason {
        FinishReason::Length => "length",
        FinishReason::Stop | FinishReason::Cancelled => "stop",
    }
}

/// OpenAI's `usage` object.
pub fn usage(metrics: &RequestMetrics) -> Value {
    json!({
        "prompt_tokens": metrics.prompt_tokens,
        "completion_tokens": metrics.generated_tokens,
        "total_tokens": u64::from(metrics.prompt_tokens) + u64::from(metrics.generated_tokens),
        "prompt_tokens_details": {"cached_tokens": metrics.cached_prompt_tokens},
    })
}

/// Hearth's figures: llama.cpp's `timings` keys, plus TTFT, TPOT and ITL.
pub fn timings(metrics: &RequestMetrics) -> Value {
    let computed_prompt = metrics
        .prompt_tokens
        .saturating_sub(metrics.cached_prompt_tokens);
    let per = |total_ms: f64, count: u32| {
        if count > 0 {
            total_ms / f64::from(count)
        } else {
            0.0
        }
    };
    let decode_ms = (metrics.e2e_ms - metrics.ttft_ms).max(0.0);
    json!({
        "cache_n": metrics.cached_prompt_tokens,
        "prompt_n": computed_prompt,
        "prompt_ms": metrics.prefill_ms,
        "prompt_per_token_ms": per(metrics.prefill_ms, computed_prompt),
        "prompt_per_second": metrics.prefill_tokens_per_s,
        "predicted_n": metrics.generated_tokens,
        "predicted_ms": decode_ms,
        "predicted_per_token_ms": metrics.tpot_ms,
        "predicted_per_second": metrics.decode_tokens_per_s,
        "queue_ms": metrics.queue_ms,
        "ttft_ms": metrics.ttft_ms,
        "tpot_ms": metrics.tpot_ms,
        "itl_p50_ms": metrics.itl_p50_ms,
        "itl_p95_ms": metrics.itl_p95_ms,
        "itl_max_ms": metrics.itl_max_ms,
        "e2e_ms": metrics.e2e_ms,
    })
}

/// Chat log-probabilities: `{"content": [{token, logprob, bytes, top_logprobs}], "refusal": null}`.
fn chat_logprobs(logprobs: &[TokenLogprob]) -> Value {
    let content: Vec<Value> = logprobs
        .iter()
        .map(|token| {
            json!({
                "token": token.token,
                "logprob": token.logprob,
                "bytes": token.bytes,
                "top_logprobs": token.top_logprobs.iter().map(|top| json!({
                    "token": top.token,
                    "logprob": top.logprob,
                    "bytes": top.bytes,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({"content": content, "refusal": null})
}

/// Legacy completion log-probabilities: parallel arrays and a token → logprob map per token.
fn completion_logprobs(logprobs: &[TokenLogprob], text_offset: usize) -> Value {
    let mut offsets = Vec::with_capacity(logprobs.len());
    let mut offset = text_offset;
    for token in logprobs {
        offsets.push(offset);
        offset += token.token.len();
    }
    json!({
        "tokens": logprobs.iter().map(|t| t.token.clone()).collect::<Vec<_>>(),
        "token_logprobs": logprobs.iter().map(|t| t.logprob).collect::<Vec<_>>(),
        "top_logprobs": logprobs.iter().map(|t| {
            t.top_logprobs
                .iter()
                .map(|top| (top.token.clone(), json!(top.logprob)))
                .collect::<Map<String, Value>>()
        }).collect::<Vec<_>>(),
        "text_offset": offsets,
    })
}

/// One entry of `/v1/models`.
pub fn model_object(id: &str, created: u64) -> Value {
    json!({"id": id, "object": "model", "created": created, "owned_by": MODEL_OWNER})
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_protocol::TopLogprob;

    fn context(endpoint: Endpoint, include_usage: bool) -> AnswerContext {
        AnswerContext {
            id: new_response_id(endpoint),
            created: 1,
            model: "m".into(),
            endpoint,
            include_usage,
            logprobs: true,
        }
    }

    fn figures() -> RequestMetrics {
        RequestMetrics {
            prompt_tokens: 10,
            cached_prompt_tokens: 4,
            generated_tokens: 5,
            ttft_ms: 30.0,
            e2e_ms: 70.0,
            tpot_ms: 10.0,
            ..RequestMetrics::default()
        }
    }

    #[test]
    fn ids_are_unique_and_prefixed() {
        let a = new_response_id(Endpoint::ChatCompletions);
        let b = new_response_id(Endpoint::ChatCompletions);
        assert!(a.starts_with("chatcmpl-") && a.len() == "chatcmpl-".len() + 32);
        assert_ne!(a, b);
        assert!(new_response_id(Endpoint::Completions).starts_with("cmpl-"));
    }

    #[test]
    fn a_full_chat_answer_has_usage_and_timings() {
        let answer = context(Endpoint::ChatCompletions, false).full_answer(
            "hi",
            FinishReason::Length,
            &[],
            &figures(),
        );
        assert_eq!(answer["object"], "chat.completion");
        assert_eq!(answer["choices"][0]["message"]["content"], "hi");
        assert_eq!(answer["choices"][0]["finish_reason"], "length");
        assert_eq!(answer["usage"]["total_tokens"], 15);
        assert_eq!(answer["usage"]["prompt_tokens_details"]["cached_tokens"], 4);
        assert_eq!(answer["timings"]["prompt_n"], 6);
        assert_eq!(answer["timings"]["predicted_ms"], 40.0);
    }

    #[test]
    fn stream_chunks_follow_the_openai_shapes() {
        let context = context(Endpoint::ChatCompletions, true);
        let role = context.role_chunk();
        assert_eq!(role["object"], "chat.completion.chunk");
        assert_eq!(role["choices"][0]["delta"]["role"], "assistant");
        assert!(role["usage"].is_null() && role.as_object().unwrap().contains_key("usage"));
        let usage = context.usage_chunk(&figures());
        assert_eq!(usage["choices"], json!([]));
        assert_eq!(usage["usage"]["completion_tokens"], 5);
        assert_eq!(role["id"], usage["id"]);
    }

    #[test]
    fn logprobs_take_each_endpoint_shape() {
        let token = TokenLogprob {
            token: "Hi".into(),
            bytes: b"Hi".to_vec(),
            logprob: -0.5,
            top_logprobs: vec![TopLogprob {
                token: "Hello".into(),
                bytes: b"Hello".to_vec(),
                logprob: -1.0,
            }],
        };
        let chat = context(Endpoint::ChatCompletions, false).text_chunk(
            "Hi",
            std::slice::from_ref(&token),
            0,
        );
        assert_eq!(
            chat["choices"][0]["logprobs"]["content"][0]["top_logprobs"][0]["token"],
            "Hello"
        );
        let legacy = context(Endpoint::Completions, false).text_chunk("Hi", &[token], 7);
        assert_eq!(legacy["choices"][0]["logprobs"]["text_offset"], json!([7]));
        assert_eq!(
            legacy["choices"][0]["logprobs"]["top_logprobs"][0]["Hello"],
            -1.0
        );
    }
}
