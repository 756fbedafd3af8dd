//! Logging for the desktop app and its engine workers: `tracing` to stderr (quiet) and to
//! `logs/hearth.log` in the data directory, the same file the `hearth` CLI writes, filtered by
//! `HEARTH_LOG` (an `EnvFilter` directive such as `info` or `hearth_server=debug`).
//! llama.cpp's own log lines reach the same file through the engine's `LlamaLogCapture`.

use std::path::Path;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Environment variable holding the log filter (the CLI's too).
pub const LOG_FILTER_ENV: &str = "HEARTH_LOG";
/// The log file inside `<data_dir>/logs`, shared with the CLI.
pub const LOG_FILE_NAME: &str = "hearth.log";
/// A desktop app's stderr is rarely seen; warnings are enough there.
const DEFAULT_STDERR_FILTER: &str = "warn";
/// A worker's failures reach the user through the supervisor; its log is in the file.
const DEFAULT_WORKER_STDERR_FILTER: &str = "off";
/// The file keeps more, including llama.cpp's load report.
const DEFAULT_FILE_FILTER: &str = "info";

/// Keeps the log file writer alive; drop it last.
pub type LogGuard = Option<tracing_appender::non_blocking::WorkerGuard>;

fn filter(default: &str) -> EnvFilter {
    std::env::var(LOG_FILTER_ENV)
        .ok()
        .and_then(|directive| EnvFilter::try_new(directive).ok())
        .unwrap_or_else(|| EnvFilter::new(default))
}

/// Installs the global subscriber. A log directory that cannot be created costs only the file.
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
        .with(hearth_engine::LlamaLogCapture)
        .try_init();
    guard
}
