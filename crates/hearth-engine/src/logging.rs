//! Logging for every Hearth process (the `hearth` CLI, the desktop app, their engine workers
//! and probe processes): `tracing` to stderr and to `logs/hearth.log` in the data directory,
//! filtered by `HEARTH_LOG` (an `EnvFilter` directive such as `info` or `hearth_engine=debug`).
//! llama.cpp's own log lines arrive through the same path ([`LlamaLogCapture`] routes them into
//! `tracing`), so a worker's load failure is in the same file as the app's. It lives here
//! because every process that logs links this crate, and the capture layer is this crate's.

use std::path::Path;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::LlamaLogCapture;

/// Environment variable holding the log filter.
pub const LOG_FILTER_ENV: &str = "HEARTH_LOG";
/// Terminal output stays quiet by default: the answer is on stdout (and a desktop app's stderr
/// is rarely seen).
const DEFAULT_STDERR_FILTER: &str = "warn";
/// The engine worker writes to the terminal only on request: its failures reach the user
/// through the supervisor as one clear message, and its log is in the file.
const DEFAULT_WORKER_STDERR_FILTER: &str = "off";
/// The file keeps more, including llama.cpp's load report.
const DEFAULT_FILE_FILTER: &str = "info";
pub const LOG_FILE_NAME: &str = "hearth.log";

/// Keeps the log file writer alive; drop it last.
pub type LogGuard = Option<tracing_appender::non_blocking::WorkerGuard>;

fn filter(default: &str) -> EnvFilter {
    std::env::var(LOG_FILTER_ENV)
        .ok()
        .and_then(|directive| EnvFilter::try_new(directive).ok())
        .unwrap_or_else(|| EnvFilter::new(default))
}

/// Installs the global subscriber; `is_worker` for engine workers and probe processes, whose
/// stderr is off unless asked for. A log directory that cannot be created costs only the file.
pub fn init(data_dir: &Path, is_worker: bool) -> LogGuard {
    let log_dir = data_dir.join("logs");
    let file = std::fs::create_dir_all(&log_dir).ok().and_then(|()| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_dir.join(LOG_FILE_NAME))
            .ok()
    });
    let (file_layer, guard) = match file {
        Some(file) => {
            let (writer, guard) = tracing_appender::non_blocking(file);
            let layer = tracing_subscriber::fmt::layer()
                .with_writer(writer)
                .with_ansi(false)
                .with_filter(filter(DEFAULT_FILE_FILTER));
            (Some(layer), Some(guard))
        }
        None => (None, None),
    };
    let stderr_layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(filter(if is_worker {
            DEFAULT_WORKER_STDERR_FILTER
        } else {
            DEFAULT_STDERR_FILTER
        }));
    let _ = tracing_subscriber::registry()
        .with(file_layer)
        .with(stderr_layer)
        .with(LlamaLogCapture)
        .try_init();
    guard
}
