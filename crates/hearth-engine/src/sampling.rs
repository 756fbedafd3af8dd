//! Turning [`SamplingParams`] and an output constraint into a llama.cpp sampler chain, and
//! reading log-probabilities from logits.

use hearth_protocol::{
    ErrorKind, OutputConstraint, SamplingParams, TokenLogprob, TopLogprob, WorkerError,
};
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;

/// GBNF for "any JSON object" (`response_format: json_object`): the object rule of llama.cpp's
/// `grammars/json.gbnf`.
pub const JSON_OBJECT_GRAMMAR: &str = r#"root   ::= object
value  ::= object | array | string | number | ("true" | "false" | "null") ws
object ::= "{" ws ( string ":" ws value ("," ws string ":" ws value)* )? "}" ws
array  ::= "[" ws ( value ("," ws value)* )? "]" ws
string ::= "\"" ( [^"\\\x7F\x00-\x1F] | "\\" (["\\bfnrt] | "u" [0-9a-fA-F]{4}) )* "\"" ws
number ::= ("-"? ([0-9] | [1-9] [0-9]{0,15})) ("." [0-9]+)? ([eE] [-+]? [0-9] [1-9]{0,15})? ws
ws ::= | " " | "\n" [ \t]{0,20}
"#;

/// Largest JSON schema or grammar accepted (they are compiled on the engine thread).
pub const MAX_CONSTRAINT_BYTES: usize = 256 * 1024;

fn invalid_constraint(detail: impl std::fmt::Display) -> WorkerError {
    WorkerError::new(
        ErrorKind::InvalidConstraint,
        format!("invalid output constraint: {detail}"),
    )
}

/// The GBNF grammar that enforces a constraint.
pub fn constraint_grammar(constraint: &OutputConstraint) -> Result<String, WorkerError> {
    match constraint {
        OutputConstraint::JsonObject => Ok(JSON_OBJECT_GRAMMAR.to_string()),
        OutputConstraint::JsonSchema { schema } => {
            let text = schema.to_string();
            if text.len() > MAX_CONSTRAINT_BYTES {
                return Err(invalid_constraint("the JSON schema is too large"));
            }
            llama_cpp_2::json_schema_to_grammar(&text).map_err(invalid_constraint)
        }
        OutputConstraint::Grammar { gbnf } => {
            if gbnf.len() > MAX_CONSTRAINT_BYTES {
                return Err(invalid_constraint("the grammar is too large"));
            }
            Ok(gbnf.clone())
        }
    }
}

/// Builds the chain: grammar (if any), penalties (primed with the prompt), then greedy, or
/// top-k, top-p, min-p, temperature and a seeded draw. Greedy decoding is deterministic.
pub fn build_sampler(
    model: &LlamaModel,
    params: &SamplingParams,
    constraint: Option<&OutputConstraint>,
    prompt: &[LlamaToken],
    n_ctx_per_sequence: i32,
) -> Result<LlamaSampler, WorkerError> {
    let mut chain = Vec::new();
    if let Some(constraint) = constraint {
        let grammar = constraint_grammar(constraint)?;
        chain.push(LlamaSampler::grammar(model, &grammar, "root").map_err(invalid_constraint)?);
    }
    let penalised = params.repeat_penalty != 1.0
        || params.presence_penalty != 0.0
        || params.frequency_penalty != 0.0;
    if penalised {
        let last_n = if params.repeat_last_n < 0 {
            n_ctx_per_sequence
        } else {
            params.repeat_last_n
        };
        let mut penalties = LlamaSampler::penalties(
            model.n_vocab(),
            last_n,
            params.repeat_penalty,
            params.frequency_penalty,
            params.presence_penalty,
        );
        // The prompt counts as history for the penalties (as in llama.cpp's server), but must
        // never reach the grammar, which only accepts generated text.
        penalties.accept_many(prompt.iter());
        chain.push(penalties);
    }
    if params.is_greedy() {
        chain.push(LlamaSampler::greedy());
    } else {
        if params.top_k > 0 {
            chain.push(LlamaSampler::top_k(params.top_k));
        }
        if params.top_p < 1.0 {
            chain.push(LlamaSampler::top_p(params.top_p, 1));
        }
        if params.min_p > 0.0 {
            chain.push(LlamaSampler::min_p(params.min_p, 1));
        }
        chain.push(LlamaSampler::temp(params.temperature));
        chain.push(LlamaSampler::dist(params.seed.unwrap_or_else(random_seed)));
    }
    Ok(LlamaSampler::chain_simple(chain))
}

/// A seed for requests that do not give one.
fn random_seed() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32))
        .unwrap_or(0);
    nanos ^ std::process::id().rotate_left(16)
}

/// Log-softmax of `logits` at `index`, and the `top` most likely tokens with theirs.
pub fn log_softmax_top(logits: &[f32], index: usize, top: usize) -> (f32, Vec<(usize, f32)>) {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let log_sum = logits.iter().map(|l| (l - max).exp()).sum::<f32>().ln() + max;
    let chosen = logits.get(index).map_or(f32::NEG_INFINITY, |l| l - log_sum);
    let mut order: Vec<usize> = (0..logits.len()).collect();
    let top = top.min(order.len());
    if top > 0 {
        order.select_nth_unstable_by(top - 1, |a, b| logits[*b].total_cmp(&logits[*a]));
        order.truncate(top);
        order.sort_by(|a, b| logits[*b].total_cmp(&logits[*a]));
    } else {
        order.clear();
    }
    (
        chosen,
        order
            .into_iter()
            .map(|i| (i, logits[i] - log_sum))
            .collect(),
    )
}

/// The model's log-probability of the sampled token and of its `alternatives` best rivals.
pub fn token_logprob(
    model: &LlamaModel,
    logits: &[f32],
    token: LlamaToken,
    alternatives: u32,
) -> TokenLogprob {
    let vocab = model.vocab();
    let piece = |id: usize| {
        let bytes = vocab.token_to_piece(LlamaToken(i32::try_from(id).unwrap_or(0)), false, None);
        (String::from_utf8_lossy(&bytes).into_owned(), bytes)
    };
    let index = usize::try_from(token.0).unwrap_or(usize::MAX);
    let (logprob, top) = log_softmax_top(logits, index, alternatives as usize);
    let (text, bytes) = piece(index);
    TokenLogprob {
        token: text,
        bytes,
        logprob,
        top_logprobs: top
            .into_iter()
            .map(|(id, logprob)| {
                let (token, bytes) = piece(id);
                TopLogprob {
                    token,
                    bytes,
                    logprob,
                }
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_softmax_matches_the_definition() {
        let logits = [1.0f32, 3.0, 2.0];
        let (chosen, top) = log_softmax_top(&logits, 1, 2);
        let sum: f32 = logits.iter().map(|l| l.exp()).sum();
        assert!((chosen - (3.0f32.exp() / sum).ln()).abs() < 1e-5);
        assert_eq!(top.iter().map(|(i, _)| *i).collect::<Vec<_>>(), vec![1, 2]);
        assert!((top[0].1 - chosen).abs() < 1e-6);
        let (_, none) = log_softmax_top(&logits, 0, 0);
        assert!(none.is_empty());
    }
}
