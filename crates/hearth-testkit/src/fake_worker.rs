//! A scripted engine worker for the fast test tier: a process that speaks `hearth-protocol`
//! and plays a [`Script`] (tokens, errors, a crash, a stall) instead of running a model, so the
//! supervisor and the server's streaming paths are tested in milliseconds, without llama.cpp.
//!
//! The worker is the test binary itself. A test target that uses it sets `harness = false`
//! and hands its tests to [`run_tests_or_worker`]: started normally, that runs the tests (with
//! libtest's command line: filters, `--list`, `--nocapture`); started by a supervisor with
//! [`SCRIPT_ENV`] set (see [`FakeWorker::command_parts`]), it becomes the worker and exits
//! when its stdin closes. A real process means real pipes, real exit statuses and real
//! signals: a crash in the script is a crash the supervisor sees.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hearth_protocol::{
    encode_line, BackendReport, EmbeddingInput, ErrorKind, FinishReason, FlashAttention,
    KvCacheType, MemoryReport, ModelInfo, RequestMetrics, TemplateSource, ThinkingSyntax,
    WorkerError, WorkerEvent, WorkerRequest, PROTOCOL_VERSION,
};
use serde::{Deserialize, Serialize};

/// The environment variable that carries the script (JSON) to the worker process.
pub const SCRIPT_ENV: &str = "HEARTH_FAKE_WORKER_SCRIPT";

/// How the worker starts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Start {
    /// Says `Ready` with [`Script::protocol_version`].
    #[default]
    Ready,
    /// Exits with code 1 before saying anything.
    ExitAtOnce,
    /// Writes this line instead of `Ready`.
    Line(String),
}

/// One thing the worker does while answering a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// `Started` with this many prompt tokens.
    Started { prompt_tokens: u32 },
    /// `Started` for a model that thinks in these tags.
    StartedThinking {
        prompt_tokens: u32,
        thinking: ThinkingSyntax,
    },
    /// A `Token` event with this text.
    Token { text: String },
    /// Waits this long (milliseconds) before the next action.
    Sleep { ms: u64 },
    /// `Done` with this finish reason (metrics count the tokens sent).
    Done { finish_reason: FinishReason },
    /// An `Error` event for the request.
    Error { kind: ErrorKind, message: String },
    /// The whole worker exits with this code (a crash, seen by every request in flight).
    Exit { code: i32 },
    /// The whole worker aborts (SIGABRT, as llama.cpp's `GGML_ABORT` does).
    Abort,
    /// Never answers again (this request only; the worker goes on serving others).
    Stall,
    /// Waits for the request's `Cancel`, then ends it with `Done` (`cancelled`).
    WaitForCancel,
}

/// What the fake worker does, request by request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Script {
    /// How the worker starts.
    #[serde(default)]
    pub start: Start,
    /// The protocol version it announces (`None`: the real one).
    #[serde(default)]
    pub protocol_version: Option<u32>,
    /// How a `Load` is answered (empty: `Loaded`, with a small [`ModelInfo`]).
    #[serde(default)]
    pub load: Vec<Action>,
    /// One list of actions per `Generate`, in order; the last list repeats. The count is kept
    /// across restarts of the worker when [`Script::request_log`] is set (a crash in the first
    /// generation, then answers after the restart).
    #[serde(default)]
    pub generations: Vec<Vec<Action>>,
    /// A file the worker appends its process id (`{"pid":N}`, see [`logged_pids`]) and every
    /// request line it reads to (`None`: none), so a test can see what the supervisor sent
    /// (the reload after a crash, the cancel of a dropped stream) and which processes ran.
    #[serde(default)]
    pub request_log: Option<PathBuf>,
    /// Goes on running after its stdin closes (a worker stuck in a step that never ends),
    /// instead of exiting as a worker must.
    #[serde(default)]
    pub ignore_stdin_close: bool,
}

impl Script {
    /// A script whose every generation plays `actions`.
    pub fn generating(actions: Vec<Action>) -> Self {
        Self {
            generations: vec![actions],
            ..Self::default()
        }
    }

    /// The same script, logging requests to `path`.
    pub fn logging_to(mut self, path: &Path) -> Self {
        self.request_log = Some(path.to_path_buf());
        self
    }
}

/// Shorthands for scripts: `Started`, one `Token` per piece, `Done` (stop).
pub fn answer(pieces: &[&str]) -> Vec<Action> {
    let mut actions = vec![Action::Started { prompt_tokens: 5 }];
    actions.extend(pieces.iter().map(|text| Action::Token {
        text: text.to_string(),
    }));
    actions.push(Action::Done {
        finish_reason: FinishReason::Stop,
    });
    actions
}

/// Like [`answer`], for a model whose prompt opened `<think>`: the pieces are its thinking,
/// `</think>` and its answer.
pub fn thinking_answer(pieces: &[&str]) -> Vec<Action> {
    let mut actions = answer(pieces);
    actions[0] = Action::StartedThinking {
        prompt_tokens: 5,
        thinking: ThinkingSyntax {
            open: "<think>".to_string(),
            close: "</think>".to_string(),
            opened_in_prompt: true,
        },
    };
    actions
}

/// How to start a fake worker: the program, its arguments and its environment. Callers turn
/// this into their own command type (`hearth_supervisor::WorkerCommand`), which this crate
/// does not depend on.
#[derive(Debug, Clone)]
pub struct FakeWorker {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub envs: Vec<(String, String)>,
}

impl FakeWorker {
    /// The running test binary as a worker that plays `script`.
    pub fn command_parts(script: &Script) -> Self {
        let program = std::env::current_exe().expect("the test binary's path");
        let script = serde_json::to_string(script).expect("a script serializes");
        Self {
            program,
            args: Vec::new(),
            envs: vec![(SCRIPT_ENV.to_string(), script)],
        }
    }
}

/// A test of a `harness = false` target: its name and its body.
pub type Test = (&'static str, fn());

/// The `main` of a test target that uses the fake worker: the worker when [`SCRIPT_ENV`] is
/// set, otherwise the tests, run as libtest would.
pub fn run_tests_or_worker(tests: &[Test]) -> ! {
    if let Some(script) = std::env::var_os(SCRIPT_ENV) {
        let script: Script =
            serde_json::from_str(&script.to_string_lossy()).expect("a fake worker script");
        serve(script);
        std::process::exit(0);
    }
    let trials = tests
        .iter()
        .map(|&(name, body)| {
            libtest_mimic::Trial::test(name, move || {
                body();
                Ok(())
            })
        })
        .collect();
    libtest_mimic::run(&libtest_mimic::Arguments::from_args(), trials).exit()
}

/// What the request threads share: the script, the cancelled request ids, stdout.
#[derive(Debug)]
struct Worker {
    script: Script,
    generations_seen: Mutex<usize>,
    cancelled: Mutex<Vec<u64>>,
    running: Mutex<u32>,
}

fn write(event: &WorkerEvent) {
    let line = encode_line(event).expect("an event encodes");
    let mut stdout = std::io::stdout().lock();
    if stdout
        .write_all(line.as_bytes())
        .and_then(|()| stdout.flush())
        .is_err()
    {
        std::process::exit(0);
    }
}

/// Plays `script` on stdin/stdout until stdin closes or `Shutdown` arrives.
pub fn serve(script: Script) {
    match &script.start {
        Start::Ready => write(&WorkerEvent::Ready {
            protocol_version: script.protocol_version.unwrap_or(PROTOCOL_VERSION),
            engine_version: "fake".to_string(),
            pid: std::process::id(),
        }),
        Start::ExitAtOnce => std::process::exit(1),
        Start::Line(line) => {
            println!("{line}");
        }
    }
    if let Some(log) = &script.request_log {
        append_line(log, &format!("{{\"pid\":{}}}", std::process::id()));
    }
    let generations_before = script.request_log.as_deref().map_or(0, logged_generations);
    let worker = Arc::new(Worker {
        script,
        generations_seen: Mutex::new(generations_before),
        cancelled: Mutex::new(Vec::new()),
        running: Mutex::new(0),
    });
    serve_requests(&worker);
    if worker.script.ignore_stdin_close {
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
}

/// Answers requests until stdin closes or `Shutdown` arrives.
fn serve_requests(worker: &Arc<Worker>) {
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if let Some(log) = &worker.script.request_log {
            append_line(log, &line);
        }
        let request = match serde_json::from_str::<WorkerRequest>(&line) {
            Ok(request) => request,
            Err(error) => {
                write(&WorkerEvent::Error {
                    request_id: None,
                    error: WorkerError::new(ErrorKind::InvalidRequest, error.to_string()),
                });
                continue;
            }
        };
        match request {
            WorkerRequest::Shutdown => break,
            WorkerRequest::Load { request_id, .. } => {
                let actions = worker.script.load.clone();
                if actions.is_empty() {
                    write(&WorkerEvent::Loaded {
                        request_id,
                        model: model_info(),
                    });
                } else {
                    play(worker, request_id, &actions);
                }
            }
            WorkerRequest::Generate(generate) => {
                let actions = {
                    let mut seen = worker.generations_seen.lock().unwrap();
                    let script = &worker.script.generations;
                    let actions = script
                        .get(*seen)
                        .or(script.last())
                        .cloned()
                        .unwrap_or_else(|| answer(&["fake"]));
                    *seen += 1;
                    actions
                };
                let worker = worker.clone();
                std::thread::spawn(move || {
                    *worker.running.lock().unwrap() += 1;
                    play(&worker, generate.request_id, &actions);
                    *worker.running.lock().unwrap() -= 1;
                });
            }
            WorkerRequest::Embed(request) => {
                let mut prompt_tokens = 0;
                for (index, input) in request.inputs.iter().enumerate() {
                    let (embedding, tokens) = fake_embedding(input);
                    prompt_tokens += tokens;
                    write(&WorkerEvent::Embedding {
                        request_id: request.request_id,
                        index: index as u32,
                        embedding,
                    });
                }
                write(&WorkerEvent::Embedded {
                    request_id: request.request_id,
                    prompt_tokens,
                });
            }
            WorkerRequest::Cancel { request_id } => {
                worker.cancelled.lock().unwrap().push(request_id);
            }
            WorkerRequest::Tokenize {
                request_id, text, ..
            } => write(&WorkerEvent::Tokenized {
                request_id,
                tokens: (0..text.split_whitespace().count() as i32).collect(),
            }),
            WorkerRequest::Stats { request_id } => write(&WorkerEvent::Stats {
                request_id,
                queued: 0,
                running: *worker.running.lock().unwrap(),
                n_parallel: 2,
                steps: 0,
            }),
            WorkerRequest::MemoryReport { request_id } => write(&WorkerEvent::Memory {
                request_id,
                report: MemoryReport::from_buffers(Vec::new(), 0),
            }),
            WorkerRequest::Devices { request_id } => write(&WorkerEvent::Devices {
                request_id,
                devices: Vec::new(),
                backends: BackendReport::default(),
            }),
            #[allow(unreachable_patterns)]
            other => write(&WorkerEvent::Error {
                request_id: None,
                error: WorkerError::new(
                    ErrorKind::InvalidRequest,
                    format!("the fake worker does not answer {other:?}"),
                ),
            }),
        }
    }
}

/// The length of the fake worker's embeddings.
pub const FAKE_EMBEDDING_LENGTH: u32 = 8;

/// A fake embedding: each word adds to one of [`FAKE_EMBEDDING_LENGTH`] components (by its
/// bytes), then the vector is normalized; so equal texts get equal vectors and texts sharing
/// words are closer. Returns it with the input's token count (its words, or its tokens).
pub fn fake_embedding(input: &EmbeddingInput) -> (Vec<f32>, u32) {
    let mut vector = vec![0.0f32; FAKE_EMBEDDING_LENGTH as usize];
    let words: Vec<u64> = match input {
        EmbeddingInput::Text { text } => text
            .split_whitespace()
            .map(|word| word.bytes().map(u64::from).sum())
            .collect(),
        EmbeddingInput::Tokens { tokens } => tokens.iter().map(|t| *t as u64).collect(),
    };
    for word in &words {
        vector[(*word % u64::from(FAKE_EMBEDDING_LENGTH)) as usize] += 1.0;
    }
    hearth_protocol::l2_normalize(&mut vector);
    (vector, words.len() as u32)
}

fn append_line(log: &Path, line: &str) {
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
    {
        let _ = writeln!(file, "{line}");
    }
}

/// The process ids of the workers that played a script logging to `log`, in start order
/// (each writes `{"pid":N}` first).
pub fn logged_pids(log: &Path) -> Vec<u32> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            line.strip_prefix("{\"pid\":")?
                .strip_suffix('}')?
                .parse()
                .ok()
        })
        .collect()
}

/// Generations already logged by earlier worker processes of the same script.
fn logged_generations(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .map(|text| {
            text.lines()
                .filter(|line| line.contains("\"type\":\"generate\""))
                .count()
        })
        .unwrap_or(0)
}

fn play(worker: &Worker, request_id: u64, actions: &[Action]) {
    let mut generated = 0;
    for action in actions {
        if worker.cancelled.lock().unwrap().contains(&request_id) {
            write(&done(request_id, FinishReason::Cancelled, generated));
            return;
        }
        match action {
            Action::Started { prompt_tokens } => write(&WorkerEvent::Started {
                request_id,
                prompt_tokens: *prompt_tokens,
                cached_prompt_tokens: 0,
                template_source: Some(TemplateSource::Builtin),
                dropped_messages: 0,
                thinking: None,
            }),
            Action::StartedThinking {
                prompt_tokens,
                thinking,
            } => write(&WorkerEvent::Started {
                request_id,
                prompt_tokens: *prompt_tokens,
                cached_prompt_tokens: 0,
                template_source: Some(TemplateSource::Jinja),
                dropped_messages: 0,
                thinking: Some(thinking.clone()),
            }),
            Action::Token { text } => {
                generated += 1;
                write(&WorkerEvent::Token {
                    request_id,
                    text: text.clone(),
                    logprobs: Vec::new(),
                });
            }
            Action::Sleep { ms } => std::thread::sleep(Duration::from_millis(*ms)),
            Action::Done { finish_reason } => {
                write(&done(request_id, *finish_reason, generated));
                return;
            }
            Action::Error { kind, message } => {
                write(&WorkerEvent::Error {
                    request_id: Some(request_id),
                    error: WorkerError::new(*kind, message.clone()),
                });
                return;
            }
            Action::Exit { code } => std::process::exit(*code),
            Action::Abort => std::process::abort(),
            Action::Stall => loop {
                std::thread::sleep(Duration::from_secs(3600));
            },
            Action::WaitForCancel => {
                while !worker.cancelled.lock().unwrap().contains(&request_id) {
                    std::thread::sleep(Duration::from_millis(5));
                }
                write(&done(request_id, FinishReason::Cancelled, generated));
                return;
            }
        }
    }
}

fn done(request_id: u64, finish_reason: FinishReason, generated_tokens: u32) -> WorkerEvent {
    WorkerEvent::Done {
        request_id,
        finish_reason,
        metrics: RequestMetrics {
            prompt_tokens: 5,
            generated_tokens,
            ..RequestMetrics::default()
        },
        stop_sequence: None,
    }
}

/// What the fake worker says it loaded: a small model on the CPU.
pub fn model_info() -> ModelInfo {
    ModelInfo {
        file_name: "fake.gguf".to_string(),
        architecture: "fake".to_string(),
        n_params: 1_000_000,
        size_bytes: 1_000_000,
        n_vocab: 100,
        n_layer: 2,
        n_embd: FAKE_EMBEDDING_LENGTH,
        n_ctx_train: 4096,
        n_ctx: 8192,
        n_ctx_per_sequence: 4096,
        n_parallel: 2,
        n_threads: 1,
        n_batch: 512,
        n_ubatch: 512,
        n_gpu_layers: 0,
        gpu_devices: Vec::new(),
        flash_attention: FlashAttention::Off,
        kv_cache_type: KvCacheType::F16,
        template_source: TemplateSource::Builtin,
        load_time_ms: 1.0,
        speculative: Default::default(),
        draft_model: None,
        kv_host_budget_bytes: 256 << 20,
        draft_verdict: None,
    }
}
