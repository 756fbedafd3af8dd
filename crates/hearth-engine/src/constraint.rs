//! Output constraints (any JSON object, a JSON schema, a GBNF grammar): their llama.cpp grammar
//! samplers are built and run here, off the engine thread.
//!
//! Measured on SmolLM2 (2-core CPU) before this module, when all of it ran on the engine thread
//! that every stream shares: llama.cpp's schema-to-grammar conversion is cubic in an object's
//! optional properties (2,000 held the engine for 15 s) and recursive, a frame per property
//! (5,000 overflowed the thread's 2 MiB stack: Rust's stack guard aborted the worker); a GBNF
//! grammar of 10,000 nested groups (20 KB) overflowed it in llama.cpp's parser the same way.
//! Parsing a grammar is fast (1.4 MB in 25 ms); applying it is not: every candidate token is
//! checked against every alternative open at that point (an enum of 1,000 values: 300 ms per
//! token), and accepting a token can multiply the open alternatives, nested choices giving
//! their product (a 10 KB schema of two nested 30-way choices took 1.7 s to accept one `[`,
//! 60-way ones 116 s). No bound on a schema's size rules that out.
//!
//! So a constraint passes these walls, and the engine thread never runs llama.cpp's grammar
//! code:
//! 1. on the engine thread, cheap bounds ([`check_constraint`]): a schema's nodes, depth,
//!    properties per object and options per choice (`hearth_protocol::check_json_schema`,
//!    which the server also runs for its 400), a grammar's size;
//! 2. on a builder thread, with a deadline ([`GrammarBuilder`], [`GRAMMAR_BUILD_DEADLINE`]):
//!    the conversion, the generated grammar's size cap ([`MAX_GRAMMAR_BYTES`]), llama.cpp's
//!    parse, and a probe of what one token costs to constrain ([`MAX_GRAMMAR_TOKEN_TIME`]);
//!    the engine keeps stepping meanwhile;
//! 3. while generating, on a thread of the request's own ([`ConstrainedSampler`]): each token
//!    is sampled there; the engine waits briefly for it, then steps on without it, and ends
//!    the request if a token takes longer than [`MAX_GRAMMAR_TOKEN_TIME`].
//!
//! These threads have large stacks ([`GRAMMAR_THREAD_STACK_BYTES`]: llama.cpp's conversion,
//! parser and token acceptance recurse once per nesting level), and llama.cpp's exceptions (a
//! bad grammar, no token the grammar allows) come back as errors, never unwinding through its C
//! API. What stays open: a thread whose token missed its deadline runs on until llama.cpp is
//! done (it cannot be interrupted), using a core; the memory it may take is bounded by the
//! worker's ceiling ([`crate::ceiling`]). llama.cpp's `llguidance` grammar engine, whose cost
//! per token is bounded, would close that; it needs a build feature Hearth does not enable.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hearth_protocol::{ErrorKind, OutputConstraint, WorkerError};
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;
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

/// Largest GBNF grammar handed to llama.cpp, given or generated from a schema. A schema within
/// `hearth_protocol`'s bounds generates far less (4,096 nodes of required properties: about
/// 150 KB); llama.cpp parses 256 KB in well under 100 ms. Its deepest nesting (128k groups)
/// needs about 25 MB of stack to parse or to enter, inside [`GRAMMAR_THREAD_STACK_BYTES`]
/// (tested: `the_deepest_grammar_under_the_cap_is_parsed_and_entered`).
pub const MAX_GRAMMAR_BYTES: usize = 256 * 1024;

/// How long a request waits for its grammar before it is refused. Ordinary schemas take
/// milliseconds; the bounds keep a conversion under about 100 ms.
pub const GRAMMAR_BUILD_DEADLINE: Duration = Duration::from_secs(2);

/// Longest a grammar may take to constrain one token, probed before the sampler is accepted
/// and measured at every token after (a simple schema costs about 20 ms on a 2-core CPU).
pub const MAX_GRAMMAR_TOKEN_TIME: Duration = Duration::from_millis(500);

/// How long a constrained request may wait for a free grammar builder (all
/// [`MAX_GRAMMAR_BUILDS`] busy, for example with builds past their deadline, which run on
/// until llama.cpp returns) before it gets a "busy, retry" error instead of waiting for ever.
pub const GRAMMAR_WAIT_DEADLINE: Duration = Duration::from_secs(10);

/// How many grammars are built at once and how long a request waits for a builder
/// ([`MAX_GRAMMAR_BUILDS`] and [`GRAMMAR_WAIT_DEADLINE`] by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrammarLimits {
    pub builders: usize,
    pub wait: Duration,
}

impl Default for GrammarLimits {
    fn default() -> Self {
        Self {
            builders: MAX_GRAMMAR_BUILDS,
            wait: GRAMMAR_WAIT_DEADLINE,
        }
    }
}

/// The error of a request that found no free grammar builder within `waited`.
pub(crate) fn no_free_builder(waited: Duration) -> WorkerError {
    WorkerError::new(
        ErrorKind::QueueFull,
        format!(
            "no grammar builder became free within {:.1} s: other requests' JSON schemas or \
             grammars are still being prepared",
            waited.as_secs_f64()
        ),
    )
}

/// Stack of a grammar-building or constrained-sampling thread. llama.cpp's conversion, parser
/// and token acceptance recurse once per nesting level or optional property (Rust's default
/// 2 MiB overflowed at 10,000 nested groups); address space, touched as deep as a grammar
/// goes.
pub const GRAMMAR_THREAD_STACK_BYTES: usize = 64 * 1024 * 1024;

/// Grammar builds running at once (each is a thread; one that missed its deadline still runs to
/// its end). Further constrained requests wait in the queue for a free builder.
pub const MAX_GRAMMAR_BUILDS: usize = 2;

/// Candidate tokens the cost probe constrains (see `probe_token_cost`).
const PROBE_CANDIDATES: i32 = 4096;

pub(crate) fn invalid_constraint(detail: impl std::fmt::Display) -> WorkerError {
    WorkerError::new(
        ErrorKind::InvalidConstraint,
        format!("invalid output constraint: {detail}"),
    )
}

/// The cheap checks, fit for the engine thread: a schema's bounds
/// ([`hearth_protocol::check_json_schema`]) and a grammar's size.
pub fn check_constraint(constraint: &OutputConstraint) -> Result<(), WorkerError> {
    match constraint {
        OutputConstraint::JsonObject => Ok(()),
        OutputConstraint::JsonSchema { schema } => {
            hearth_protocol::check_json_schema(schema).map_err(invalid_constraint)
        }
        OutputConstraint::Grammar { gbnf } => check_grammar_size(gbnf.len(), "the grammar"),
    }
}

fn check_grammar_size(bytes: usize, what: &str) -> Result<(), WorkerError> {
    if bytes > MAX_GRAMMAR_BYTES {
        return Err(invalid_constraint(format!(
            "{what} is {bytes} bytes, more than the {MAX_GRAMMAR_BYTES} accepted"
        )));
    }
    Ok(())
}

/// The GBNF grammar that enforces a constraint (a schema is converted by llama.cpp: the slow
/// part, for a helper thread).
pub fn constraint_grammar(constraint: &OutputConstraint) -> Result<String, WorkerError> {
    check_constraint(constraint)?;
    match constraint {
        OutputConstraint::JsonObject => Ok(JSON_OBJECT_GRAMMAR.to_string()),
        OutputConstraint::JsonSchema { schema } => {
            let grammar = llama_cpp_2::json_schema_to_grammar(&schema.to_string())
                .map_err(invalid_constraint)?;
            check_grammar_size(grammar.len(), "the JSON schema's grammar")?;
            Ok(grammar)
        }
        OutputConstraint::Grammar { gbnf } => Ok(gbnf.clone()),
    }
}

/// llama.cpp's grammar sampler for `grammar`, once a probe shows a token costs less than
/// [`MAX_GRAMMAR_TOKEN_TIME`] to constrain.
pub fn grammar_sampler(model: &LlamaModel, grammar: &str) -> Result<LlamaSampler, WorkerError> {
    let mut sampler = LlamaSampler::grammar(model, grammar, "root").map_err(invalid_constraint)?;
    let estimate = probe_token_cost(&mut sampler, model.n_vocab());
    if estimate > MAX_GRAMMAR_TOKEN_TIME {
        return Err(too_expensive(estimate, true));
    }
    Ok(sampler)
}

/// What constraining one token of the whole vocabulary will cost, from constraining the first
/// [`PROBE_CANDIDATES`] and a quarter as many (the cheaper of two runs each): a fixed part
/// (descending into the grammar's nesting) plus a part per candidate, extrapolated. So a
/// grammar too expensive to use is found at a fraction of its cost.
fn probe_token_cost(sampler: &mut LlamaSampler, n_vocab: i32) -> Duration {
    let n_vocab = n_vocab.max(1);
    let large = PROBE_CANDIDATES.min(n_vocab);
    let small = (large / 4).max(1);
    let mut time = |candidates: i32| {
        (0..2)
            .map(|_| {
                let mut array = LlamaTokenDataArray::from_iter(
                    (0..candidates).map(|id| LlamaTokenData::new(LlamaToken(id), 0.0, 0.0)),
                    false,
                );
                let started = Instant::now();
                sampler.apply(&mut array);
                started.elapsed()
            })
            .min()
            .unwrap_or_default()
    };
    let small_time = time(small);
    let large_time = time(large);
    if large <= small {
        return large_time;
    }
    let per_candidate =
        large_time.saturating_sub(small_time).as_secs_f64() / f64::from(large - small);
    large_time + Duration::from_secs_f64(per_candidate * f64::from(n_vocab - large))
}

/// The error of a grammar that takes `per_token` to constrain one token: `probed` before the
/// request started, or measured while it ran.
pub(crate) fn too_expensive(per_token: Duration, probed: bool) -> WorkerError {
    let took = if probed {
        format!("would take about {} ms", per_token.as_millis())
    } else {
        format!("took more than {} ms", per_token.as_millis())
    };
    invalid_constraint(format!(
        "the grammar {took} to constrain one token (at most {} ms); simplify it (fewer \
         optional properties, enum values or other alternatives)",
        MAX_GRAMMAR_TOKEN_TIME.as_millis()
    ))
}

/// The whole build of a constraint's sampler, as a helper thread runs it.
pub fn build_grammar_sampler(
    model: &LlamaModel,
    constraint: &OutputConstraint,
) -> Result<LlamaSampler, WorkerError> {
    let grammar = constraint_grammar(constraint)?;
    grammar_sampler(model, &grammar)
}

/// A finished build: its job number and the sampler or why there is none.
pub type GrammarBuilt = (u64, Result<LlamaSampler, WorkerError>);

/// Builds grammar samplers on helper threads, at most [`MAX_GRAMMAR_BUILDS`] at once, for the
/// engine thread, which polls [`GrammarBuilder::finished`] between steps. The threads hold the
/// model, so one still running when its session ends keeps the model alive until it is done.
#[derive(Debug)]
pub struct GrammarBuilder {
    model: Arc<LlamaModel>,
    results: Receiver<GrammarBuilt>,
    sender: Sender<GrammarBuilt>,
    running: Arc<AtomicUsize>,
    next_job: u64,
    limits: GrammarLimits,
}

/// Counts a build thread as running until it ends, however it ends.
struct RunningBuild(Arc<AtomicUsize>);

impl Drop for RunningBuild {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl GrammarBuilder {
    pub fn new(model: Arc<LlamaModel>) -> Self {
        Self::with_limits(model, GrammarLimits::default())
    }

    /// A builder with other limits than the defaults.
    pub fn with_limits(model: Arc<LlamaModel>, limits: GrammarLimits) -> Self {
        let (sender, results) = mpsc::channel();
        Self {
            model,
            results,
            sender,
            running: Arc::new(AtomicUsize::new(0)),
            next_job: 0,
            limits,
        }
    }

    /// How long a request may wait for a free builder.
    pub fn wait_deadline(&self) -> Duration {
        self.limits.wait
    }

    /// Starts the sampling thread of a constrained request's chain.
    pub fn sampler_thread(&self, chain: LlamaSampler) -> Result<ConstrainedSampler, WorkerError> {
        ConstrainedSampler::spawn(self.model.clone(), chain)
    }

    /// Whether another build may start now.
    pub fn has_capacity(&self) -> bool {
        self.running.load(Ordering::Acquire) < self.limits.builders
    }

    /// Whether any build is still running (finished or not yet collected results aside).
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::Acquire) > 0
    }

    /// Starts building the sampler of `constraint`; returns the job number its result will
    /// carry.
    pub fn start(&mut self, constraint: OutputConstraint) -> Result<u64, WorkerError> {
        self.next_job += 1;
        let job = self.next_job;
        let model = self.model.clone();
        let sender = self.sender.clone();
        self.running.fetch_add(1, Ordering::AcqRel);
        let running = RunningBuild(self.running.clone());
        std::thread::Builder::new()
            .name("hearth-grammar".into())
            .stack_size(GRAMMAR_THREAD_STACK_BYTES)
            .spawn(move || {
                let _running = running;
                let built = std::panic::catch_unwind(AssertUnwindSafe(|| {
                    build_grammar_sampler(&model, &constraint)
                }))
                .unwrap_or_else(|_| Err(invalid_constraint("building the grammar failed")));
                // The engine may have moved on (the request was cancelled or timed out).
                let _ = sender.send((job, built));
            })
            .map(|_| job)
            .map_err(|error| {
                WorkerError::new(
                    ErrorKind::InvalidConstraint,
                    format!("no thread to build the grammar: {error}"),
                )
            })
    }

    /// The builds finished since the last call.
    pub fn finished(&self) -> Vec<GrammarBuilt> {
        self.results.try_iter().collect()
    }
}

/// What a constrained request's sampling thread answers for one token: the token (or why
/// there is none), how long it took, and the logits back (for log-probabilities).
#[derive(Debug)]
pub struct Sampled {
    pub token: Result<LlamaToken, WorkerError>,
    pub took: Duration,
    pub logits: Vec<f32>,
}

/// The sampler chain of a constrained request, on a thread of its own for the request's life:
/// the engine thread hands it each token's logits and takes the token when it is ready, so
/// llama.cpp's grammar code (whose cost a crafted schema can make explode: a 10 KB schema of
/// two nested 30-way choices took 1.7 s to accept one `[`, at 60 ways 116 s) never runs on
/// the thread every stream shares. Dropping it ends the thread once its token is done.
#[derive(Debug)]
pub struct ConstrainedSampler {
    jobs: Sender<Vec<f32>>,
    results: Receiver<Sampled>,
    /// When the token in progress was handed over.
    sent_at: Option<Instant>,
}

impl ConstrainedSampler {
    /// Starts the thread that owns `chain` (holding `model`, whose vocabulary the grammar
    /// reads, until it ends).
    pub fn spawn(model: Arc<LlamaModel>, mut chain: LlamaSampler) -> Result<Self, WorkerError> {
        let (jobs, job_receiver) = mpsc::channel::<Vec<f32>>();
        let (result_sender, results) = mpsc::channel();
        std::thread::Builder::new()
            .name("hearth-sampler".into())
            .stack_size(GRAMMAR_THREAD_STACK_BYTES)
            .spawn(move || {
                let _model = model;
                for logits in job_receiver {
                    let started = Instant::now();
                    let token = std::panic::catch_unwind(AssertUnwindSafe(|| {
                        crate::sampling::sample_constrained(&mut chain, &logits)
                    }))
                    .unwrap_or_else(|_| Err(invalid_constraint("sampling failed")));
                    let took = started.elapsed();
                    let failed = token.is_err();
                    if result_sender
                        .send(Sampled {
                            token,
                            took,
                            logits,
                        })
                        .is_err()
                        || failed
                    {
                        return;
                    }
                }
            })
            .map_err(|error| {
                WorkerError::new(
                    ErrorKind::InvalidConstraint,
                    format!("no thread to sample the constrained output: {error}"),
                )
            })?;
        Ok(Self {
            jobs,
            results,
            sent_at: None,
        })
    }

    /// Hands over the logits of the next token.
    pub fn send(&mut self, logits: Vec<f32>) {
        self.sent_at = Some(Instant::now());
        // A thread that ended answered its last token with an error, already taken.
        let _ = self.jobs.send(logits);
    }

    /// Whether a token is in progress.
    pub fn is_waiting(&self) -> bool {
        self.sent_at.is_some()
    }

    /// The token in progress if it is ready by `until` (`None`: now).
    pub fn take(&mut self, until: Option<Instant>) -> Option<Sampled> {
        self.sent_at?;
        let timeout = until.map_or(Duration::ZERO, |until| {
            until.saturating_duration_since(Instant::now())
        });
        let sampled = match self.results.recv_timeout(timeout) {
            Ok(sampled) => sampled,
            Err(mpsc::RecvTimeoutError::Timeout) => return None,
            Err(mpsc::RecvTimeoutError::Disconnected) => Sampled {
                token: Err(invalid_constraint("the sampling thread ended")),
                took: Duration::ZERO,
                logits: Vec::new(),
            },
        };
        self.sent_at = None;
        Some(sampled)
    }

    /// How long the token in progress has taken so far, once that is more than
    /// [`MAX_GRAMMAR_TOKEN_TIME`].
    pub fn overdue(&self) -> Option<Duration> {
        self.sent_at
            .map(|sent| sent.elapsed())
            .filter(|waited| *waited > MAX_GRAMMAR_TOKEN_TIME)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cheap_checks_refuse_what_would_stall_the_conversion() {
        assert!(check_constraint(&OutputConstraint::JsonObject).is_ok());
        let properties: serde_json::Map<String, serde_json::Value> = (0..2000)
            .map(|i| (format!("p{i}"), json!({"type": "string"})))
            .collect();
        let schema = json!({"type": "object", "properties": properties});
        let started = Instant::now();
        let error = constraint_grammar(&OutputConstraint::JsonSchema { schema }).unwrap_err();
        assert!(started.elapsed() < Duration::from_millis(100));
        assert_eq!(error.kind, ErrorKind::InvalidConstraint);
        assert!(
            error.message.contains("2000 properties"),
            "{}",
            error.message
        );
        let gbnf = format!("root ::= \"{}\"", "a".repeat(MAX_GRAMMAR_BYTES));
        let error = check_constraint(&OutputConstraint::Grammar { gbnf }).unwrap_err();
        assert!(
            error.message.contains("more than the 262144 accepted"),
            "{}",
            error.message
        );
    }

    #[test]
    fn a_schema_becomes_a_grammar() {
        let schema = json!({"type": "object", "properties": {"name": {"type": "string"}},
                            "required": ["name"]});
        let grammar = constraint_grammar(&OutputConstraint::JsonSchema { schema }).unwrap();
        assert!(grammar.contains("root ::="), "{grammar}");
        assert!(grammar.len() < MAX_GRAMMAR_BYTES);
    }
}
