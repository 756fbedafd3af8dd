//! The contract between Hearth's engine worker process and everything that talks to it.
//!
//! The engine (the only code that links llama.cpp) runs in a child process, `hearth engine`,
//! so that an `abort()` inside llama.cpp or an out-of-memory kill never takes the app down.
//! The two sides exchange newline-delimited JSON: the supervisor writes [`WorkerRequest`]s to
//! the worker's stdin and reads [`WorkerEvent`]s from its stdout. The first event a worker
//! sends is [`WorkerEvent::Ready`] carrying [`PROTOCOL_VERSION`]; a supervisor refuses a worker
//! that speaks another version.
//!
//! This crate also owns [`RequestMetrics`], the per-request figures (TTFT, TPOT, ITL, prefill
//! and decode speed) that the engine measures and every later layer (API, UI, bench) reports
//! unchanged. It has no dependency on llama.cpp, tokio or HTTP.

mod backends;
mod embeddings;
mod generate;
mod limits;
mod load_params;
mod messages;
mod metrics;
mod reasoning;
mod speculative;

pub use backends::*;
pub use embeddings::*;
pub use generate::*;
pub use limits::*;
pub use load_params::*;
pub use reasoning::*;
pub use speculative::*;

pub use messages::*;
pub use metrics::{percentile_nearest_rank, CacheTier, MetricsRecorder, RequestMetrics};

/// Version of the worker protocol. Bumped on every incompatible change of a message.
pub const PROTOCOL_VERSION: u32 = 1;

/// Encodes one message as a single JSON line (with the trailing newline).
pub fn encode_line<T: serde::Serialize>(message: &T) -> Result<String, serde_json::Error> {
    let mut line = serde_json::to_string(message)?;
    line.push('\n');
    Ok(line)
}
