//! Loading a GGUF model and creating its context, with failures sorted into typed errors.
//!
//! llama.cpp reports a failed load only as a null pointer; the reason is in its log. The
//! engine routes llama.cpp's log through `tracing`, and [`LlamaLogCapture`] keeps the recent
//! warning and error lines so a failure can be classified (unknown architecture, out of memory)
//! and explained.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Read;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use hearth_protocol::{ErrorKind, FlashAttention, KvCacheType, LoadParams, WorkerError};
use llama_cpp_2::context::params::{KvCacheType as LlamaKvCacheType, LlamaContextParams};
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;

/// The four bytes every GGUF file starts with.
pub const GGUF_MAGIC: &[u8; 4] = b"GGUF";
/// How many recent llama.cpp warning/error lines are kept for explaining a failure.
const CAPTURED_LOG_LINES: usize = 64;
/// The `tracing` target of the lines `llama-cpp-2` forwards from llama.cpp's log.
const LLAMA_CPP_LOG_TARGET: &str = "llama-cpp-2";

/// Why a model could not be loaded. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("model file not found: {path}")]
    FileMissing { path: PathBuf },
    #[error("cannot read model file {path}: {source}")]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a GGUF model file (it starts with {found:?}, not \"GGUF\")")]
    NotGguf { path: PathBuf, found: String },
    #[error("{path}: llama.cpp does not support the model architecture {architecture:?}")]
    UnsupportedArchitecture { path: PathBuf, architecture: String },
    #[error("{path}: not enough memory to load the model ({detail})")]
    OutOfMemory { path: PathBuf, detail: String },
    #[error("{path}: invalid load parameters: {detail}")]
    InvalidParams { path: PathBuf, detail: String },
    #[error("{path}: llama.cpp could not load the model: {detail}")]
    Failed { path: PathBuf, detail: String },
    #[error("{path}: no llama.cpp backend to run it: {detail}")]
    NoBackend { path: PathBuf, detail: String },
}

impl LoadError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            LoadError::FileMissing { .. } => ErrorKind::FileMissing,
            LoadError::NotGguf { .. } => ErrorKind::NotGguf,
            LoadError::UnsupportedArchitecture { .. } => ErrorKind::UnsupportedArchitecture,
            LoadError::OutOfMemory { .. } => ErrorKind::OutOfMemory,
            LoadError::InvalidParams { .. } => ErrorKind::InvalidRequest,
            LoadError::Unreadable { .. }
            | LoadError::Failed { .. }
            | LoadError::NoBackend { .. } => ErrorKind::LoadFailed,
        }
    }

    /// The protocol error: the same message with the path cut to its file name, because
    /// messages travel to API clients and a full path can hold a user name.
    pub fn to_worker_error(&self) -> WorkerError {
        let path = match self {
            LoadError::FileMissing { path }
            | LoadError::Unreadable { path, .. }
            | LoadError::NotGguf { path, .. }
            | LoadError::UnsupportedArchitecture { path, .. }
            | LoadError::OutOfMemory { path, .. }
            | LoadError::InvalidParams { path, .. }
            | LoadError::Failed { path, .. }
            | LoadError::NoBackend { path, .. } => path,
        };
        let message = self
            .to_string()
            .replace(&path.display().to_string(), &file_name(path));
        WorkerError::new(self.kind(), message)
    }
}

/// The last component of a path, for messages.
pub fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".to_string())
}

/// Sorts a failed load by the llama.cpp log lines it produced.
pub fn classify_load_failure(path: &Path, log_lines: &[String]) -> LoadError {
    let path = path.to_path_buf();
    for line in log_lines {
        if let Some(rest) = line.split("unknown model architecture: '").nth(1) {
            let architecture = rest.split('\'').next().unwrap_or(rest).to_string();
            return LoadError::UnsupportedArchitecture { path, architecture };
        }
    }
    let out_of_memory = log_lines.iter().find(|line| {
        let line = line.to_ascii_lowercase();
        line.contains("failed to allocate")
            || line.contains("out of memory")
            || line.contains("unable to allocate")
            || line.contains("cannot allocate")
    });
    if let Some(line) = out_of_memory {
        return LoadError::OutOfMemory {
            path,
            detail: line.trim().to_string(),
        };
    }
    // The first error is the cause; later ones only say that loading stopped.
    let detail = log_lines
        .iter()
        .find(|line| line.contains("error") || line.contains("failed"))
        .or(log_lines.first())
        .map(|line| line.trim().to_string())
        .unwrap_or_else(|| "no reason given".to_string());
    LoadError::Failed { path, detail }
}

/// Checks the file exists and starts with the GGUF magic, before llama.cpp sees it.
pub fn check_model_file(path: &Path) -> Result<(), LoadError> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Err(LoadError::FileMissing {
                path: path.to_path_buf(),
            })
        }
        Err(source) => {
            return Err(LoadError::Unreadable {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    if file.metadata().map(|m| m.is_dir()).unwrap_or(false) {
        return Err(LoadError::NotGguf {
            path: path.to_path_buf(),
            found: "a directory".to_string(),
        });
    }
    let mut magic = [0u8; 4];
    let mut read = 0;
    while read < magic.len() {
        match file.read(&mut magic[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(source) => {
                return Err(LoadError::Unreadable {
                    path: path.to_path_buf(),
                    source,
                })
            }
        }
    }
    if &magic[..read] != GGUF_MAGIC {
        return Err(LoadError::NotGguf {
            path: path.to_path_buf(),
            found: String::from_utf8_lossy(&magic[..read]).into_owned(),
        });
    }
    Ok(())
}

/// Routes llama.cpp's (and ggml's) log into `tracing`, once per process, before anything else
/// of llama.cpp runs, so backend loading and model loading are both captured.
pub fn route_llama_logs() {
    static ROUTED: OnceLock<()> = OnceLock::new();
    ROUTED.get_or_init(|| {
        llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
    });
}

/// The process-wide llama.cpp backend (it may be initialised only once per process), after
/// the backends are loaded (see [`crate::backends`]). `Err` says why no model can run: no CPU
/// backend in a release build's folder, or a forced GPU backend that is not usable.
pub fn backend() -> Result<&'static LlamaBackend, String> {
    static BACKEND: OnceLock<LlamaBackend> = OnceLock::new();
    route_llama_logs();
    if let Some(error) = &crate::backends::backends().report.error {
        // Never initialise llama.cpp without Hearth's own backends: it would load whatever it
        // finds in the build machine's folder.
        return Err(error.clone());
    }
    Ok(BACKEND.get_or_init(|| {
        #[allow(clippy::expect_used)]
        LlamaBackend::init().expect("llama.cpp backend is initialised once, here")
    }))
}

/// Threads to use when the caller does not say: the physical cores. llama.cpp's own default
/// (4) oversubscribes small machines: on 2 cores it decodes about 2.5x slower.
pub fn default_threads() -> u32 {
    u32::try_from(num_cpus::get_physical().max(1)).unwrap_or(1)
}

/// Loads the model file with `n_gpu_layers` offloaded (see [`crate::offload`]) to the GPUs
/// at `gpu_devices` (ggml device indices; each physical GPU once). With no device the model
/// stays on the CPU: llama.cpp is given the empty list, so it never picks a GPU itself.
pub fn load_model(
    path: &Path,
    params: &LoadParams,
    n_gpu_layers: u32,
    gpu_devices: &[usize],
) -> Result<LlamaModel, LoadError> {
    check_model_file(path)?;
    let backend = backend().map_err(|detail| LoadError::NoBackend {
        path: path.to_path_buf(),
        detail,
    })?;
    let n_gpu_layers = if gpu_devices.is_empty() {
        0
    } else {
        n_gpu_layers
    };
    let model_params = LlamaModelParams::default()
        .with_n_gpu_layers(n_gpu_layers)
        .with_use_mmap(params.use_mmap)
        .with_devices(gpu_devices)
        .map_err(|error| LoadError::Failed {
            path: path.to_path_buf(),
            detail: error.to_string(),
        })?;
    LlamaLogCapture::clear();
    LlamaModel::load_from_file(backend, path, &model_params)
        .map_err(|_| classify_load_failure(path, &LlamaLogCapture::take()))
}

/// Context parameters from load parameters, validated.
/// `n_gpu_layers` is what the load offloads (it decides flash attention's `auto`).
pub fn context_params(
    path: &Path,
    params: &LoadParams,
    n_gpu_layers: u32,
) -> Result<LlamaContextParams, LoadError> {
    let invalid = |detail: &str| LoadError::InvalidParams {
        path: path.to_path_buf(),
        detail: detail.to_string(),
    };
    if params.n_parallel == 0 {
        return Err(invalid("n_parallel must be at least 1"));
    }
    if params.n_batch == 0 || params.n_ubatch == 0 {
        return Err(invalid("n_batch and n_ubatch must be at least 1"));
    }
    if params.n_ctx < params.n_parallel {
        return Err(invalid("n_ctx must hold at least one token per sequence"));
    }
    if params.kv_cache_type != KvCacheType::F16 && params.flash_attention == FlashAttention::Off {
        return Err(invalid(
            "a quantized KV cache needs flash attention (auto or on)",
        ));
    }
    let threads = i32::try_from(params.n_threads.unwrap_or_else(default_threads))
        .map_err(|_| invalid("n_threads is too large"))?;
    // On the CPU, `auto` is on: the vendored batch-invariant kernel (see `for_offload`).
    let flash_attention = match params.flash_attention.for_offload(n_gpu_layers) {
        FlashAttention::Auto => llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_AUTO,
        FlashAttention::On => llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_ENABLED,
        FlashAttention::Off => llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_DISABLED,
    };
    let kv_type = match params.kv_cache_type {
        KvCacheType::F16 => LlamaKvCacheType::F16,
        KvCacheType::Q8_0 => LlamaKvCacheType::Q8_0,
        KvCacheType::Q4_0 => LlamaKvCacheType::Q4_0,
    };
    Ok(LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(params.n_ctx))
        .with_n_batch(params.n_batch)
        .with_n_ubatch(params.n_ubatch.min(params.n_batch))
        .with_n_seq_max(params.n_parallel)
        .with_n_threads(threads)
        .with_n_threads_batch(threads)
        .with_flash_attention_policy(flash_attention)
        .with_type_k(kv_type)
        .with_type_v(kv_type)
        // One KV stream per sequence, not one buffer shared by all: a sequence's cells then sit
        // at the same places whether it runs alone or beside others, which (with the attention
        // path below) keeps greedy output identical under batching. A shared prefix is still
        // copied between sequences, as a whole-stream copy (see `Session::reuse_cached_prefix`).
        .with_kv_unified(hearth_protocol::KV_UNIFIED)
        .with_swa_full(hearth_protocol::SWA_FULL))
}

/// A `tracing` layer that keeps llama.cpp's recent warning and error lines.
#[derive(Debug, Default, Clone, Copy)]
pub struct LlamaLogCapture;

fn captured_lines() -> &'static Mutex<VecDeque<String>> {
    static LINES: OnceLock<Mutex<VecDeque<String>>> = OnceLock::new();
    LINES.get_or_init(|| Mutex::new(VecDeque::with_capacity(CAPTURED_LOG_LINES)))
}

impl LlamaLogCapture {
    pub fn clear() {
        if let Ok(mut lines) = captured_lines().lock() {
            lines.clear();
        }
    }

    pub fn take() -> Vec<String> {
        captured_lines()
            .lock()
            .map(|mut lines| lines.drain(..).collect())
            .unwrap_or_default()
    }
}

struct MessageVisitor(String);

impl tracing::field::Visit for MessageVisitor {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" || field.name() == "text" {
            self.0.push_str(value);
        }
    }
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" || field.name() == "text" {
            self.0.push_str(&format!("{value:?}"));
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for LlamaLogCapture {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _context: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let level = *event.metadata().level();
        // llama.cpp's INFO lines report the buffers it allocates (`crate::memory`).
        let llama_info =
            level == tracing::Level::INFO && event.metadata().target() == LLAMA_CPP_LOG_TARGET;
        if level > tracing::Level::WARN && !llama_info {
            return;
        }
        let mut visitor = MessageVisitor(String::new());
        event.record(&mut visitor);
        if llama_info {
            crate::memory::BufferLog::observe(&visitor.0);
            return;
        }
        if let Ok(mut lines) = captured_lines().lock() {
            if lines.len() == CAPTURED_LOG_LINES {
                lines.pop_front();
            }
            lines.push_back(visitor.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn failures_are_classified_from_the_log() {
        let path = Path::new("/home/someone/models/x.gguf");
        let unknown = classify_load_failure(
            path,
            &["llama_model_load: error loading model: error loading model architecture: unknown model architecture: 'mamba9'".into()],
        );
        assert!(
            matches!(unknown, LoadError::UnsupportedArchitecture { ref architecture, .. } if architecture == "mamba9")
        );
        let oom = classify_load_failure(
            path,
            &["ggml_backend_cpu_buffer_type_alloc_buffer: failed to allocate buffer of size 99999".into()],
        );
        assert_eq!(oom.kind(), ErrorKind::OutOfMemory);
        let other = classify_load_failure(path, &[]);
        assert_eq!(other.kind(), ErrorKind::LoadFailed);
    }

    #[test]
    fn protocol_errors_carry_the_file_name_not_the_path() {
        let error = LoadError::FileMissing {
            path: PathBuf::from("/home/someone/secret/model.gguf"),
        };
        let message = error.to_worker_error().message;
        assert!(message.contains("model.gguf"));
        assert!(!message.contains("someone"), "{message}");
    }

    #[test]
    fn files_are_checked_before_llama_cpp_sees_them() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.gguf");
        assert_eq!(
            check_model_file(&missing).unwrap_err().kind(),
            ErrorKind::FileMissing
        );
        let html = dir.path().join("page.gguf");
        std::fs::File::create(&html)
            .unwrap()
            .write_all(b"<!DOCTYPE html>")
            .unwrap();
        assert_eq!(
            check_model_file(&html).unwrap_err().kind(),
            ErrorKind::NotGguf
        );
        let empty = dir.path().join("empty.gguf");
        std::fs::File::create(&empty).unwrap();
        assert_eq!(
            check_model_file(&empty).unwrap_err().kind(),
            ErrorKind::NotGguf
        );
        assert_eq!(
            check_model_file(dir.path()).unwrap_err().kind(),
            ErrorKind::NotGguf
        );
        let good = dir.path().join("good.gguf");
        std::fs::File::create(&good)
            .unwrap()
            .write_all(b"GGUF\x03\0\0\0")
            .unwrap();
        assert!(check_model_file(&good).is_ok());
    }

    #[test]
    fn quantized_kv_without_flash_attention_is_refused() {
        let params = LoadParams {
            kv_cache_type: KvCacheType::Q8_0,
            flash_attention: FlashAttention::Off,
            ..LoadParams::default()
        };
        let error = context_params(Path::new("m.gguf"), &params, 0).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidRequest);
    }
}
