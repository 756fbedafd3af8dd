//! The only Hearth crate that links llama.cpp (through `llama-cpp-2`).
//!
//! It loads GGUF models, renders chat templates, samples, and runs the scheduler loop on one
//! thread that owns the llama.cpp context. It is used in-process only by the worker process
//! (`hearth engine`, see [`worker`]); the rest of Hearth talks to that process through
//! `hearth-supervisor`, so a crash in llama.cpp never takes the app down.
//!
//! The pure parts (UTF-8 safe detokenization, stop strings, scheduling policy, the Jinja
//! sandbox) live in their own modules and are unit-tested without a model.

pub mod backends;
pub mod ceiling;
pub mod constraint;
pub mod engine;
pub mod kv_host_budget;
pub mod kv_store;
pub mod load;
pub mod logging;
pub mod memory;
pub mod offload;
pub mod policy;
pub mod quantize;
pub mod sampling;
pub mod speculative;
pub mod stop;
pub mod template;
pub mod tool_prompt;
pub mod utf8;
pub mod worker;

pub use engine::{EngineHandle, EngineOptions, EventSink};
pub use load::{default_threads, LlamaLogCapture, LoadError};
