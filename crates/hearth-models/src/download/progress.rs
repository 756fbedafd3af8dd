//! Download progress: what is reported ([`ProgressUpdate`]), who receives it
//! ([`DownloadProgress`]), and the meter that throttles the reports and smooths the rate.

use std::path::Path;
use std::time::{Duration, Instant};

use super::DownloadConfig;
use crate::error::ModelsError;

/// Time constant of the transfer-rate average: long enough to smooth bursts, short enough to
/// follow a real change of speed within seconds.
const RATE_SMOOTHING_SECONDS: f64 = 3.0;

/// One progress report.
#[derive(Debug, Clone, PartialEq)]
pub struct ProgressUpdate {
    pub bytes_done: u64,
    pub total_bytes: Option<u64>,
    /// Smoothed transfer rate of this session (bytes resumed from disk do not count).
    pub bytes_per_second: f64,
    /// Time left at the current rate, when the total and a rate are known.
    pub eta: Option<Duration>,
}

/// Receives download progress. The CLI draws a progress bar from it, the server turns it into
/// server-sent events. Every method has a default that ignores the event.
pub trait DownloadProgress {
    /// The transfer is about to start; `resumed_from_bytes` were already on disk.
    fn started(&self, _file_name: &str, _total_bytes: Option<u64>, _resumed_from_bytes: u64) {}
    /// Bytes arrived (reported at most every `progress_interval`, and once at the end).
    fn advanced(&self, _update: &ProgressUpdate) {}
    /// An attempt failed with a retryable error; the next one starts after `delay`.
    fn retrying(&self, _failed_attempts: u32, _delay: Duration, _reason: &ModelsError) {}
    /// Another download of the same file holds the lock; this one waits for it to finish.
    fn waiting_for_other_download(&self, _lock_path: &Path) {}
    /// The file is complete and verified.
    fn finished(&self, _file_name: &str, _size_bytes: u64) {}
}

/// A [`DownloadProgress`] that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl DownloadProgress for NoProgress {}

/// Throttles progress reports and estimates rate and time left.
pub(super) struct ProgressMeter {
    interval: Duration,
    last_report: Option<Instant>,
    last_bytes: u64,
    bytes_per_second: f64,
}

impl ProgressMeter {
    pub(super) fn new(config: &DownloadConfig, starting_bytes: u64) -> Self {
        ProgressMeter {
            interval: config.progress_interval,
            last_report: None,
            last_bytes: starting_bytes,
            bytes_per_second: 0.0,
        }
    }

    pub(super) fn report(
        &mut self,
        bytes_done: u64,
        total_bytes: Option<u64>,
        progress: &dyn DownloadProgress,
        force: bool,
    ) {
        let now = Instant::now();
        let Some(last_report) = self.last_report else {
            // The first call only starts the clock: a rate needs two points in time.
            self.last_report = Some(now);
            self.last_bytes = bytes_done;
            if force {
                progress.advanced(&self.update(bytes_done, total_bytes));
            }
            return;
        };
        let elapsed = now.duration_since(last_report);
        if elapsed < self.interval && !force {
            return;
        }
        let seconds = elapsed.as_secs_f64();
        if seconds > 0.0 {
            let instant_rate = bytes_done.saturating_sub(self.last_bytes) as f64 / seconds;
            self.bytes_per_second = smooth_rate(self.bytes_per_second, instant_rate, seconds);
        }
        self.last_report = Some(now);
        self.last_bytes = bytes_done;
        progress.advanced(&self.update(bytes_done, total_bytes));
    }

    fn update(&self, bytes_done: u64, total_bytes: Option<u64>) -> ProgressUpdate {
        ProgressUpdate {
            bytes_done,
            total_bytes,
            bytes_per_second: self.bytes_per_second,
            eta: estimate_eta(bytes_done, total_bytes, self.bytes_per_second),
        }
    }
}

/// Exponential moving average with time constant [`RATE_SMOOTHING_SECONDS`]; the first sample
/// is taken as it is.
pub(crate) fn smooth_rate(previous_rate: f64, instant_rate: f64, elapsed_seconds: f64) -> f64 {
    if previous_rate <= 0.0 {
        return instant_rate;
    }
    let weight = 1.0 - (-elapsed_seconds / RATE_SMOOTHING_SECONDS).exp();
    previous_rate + weight * (instant_rate - previous_rate)
}

pub(crate) fn estimate_eta(
    bytes_done: u64,
    total_bytes: Option<u64>,
    bytes_per_second: f64,
) -> Option<Duration> {
    let remaining = total_bytes?.saturating_sub(bytes_done) as f64;
    if bytes_per_second <= 0.0 || !bytes_per_second.is_finite() {
        return None;
    }
    Duration::try_from_secs_f64(remaining / bytes_per_second).ok()
}
