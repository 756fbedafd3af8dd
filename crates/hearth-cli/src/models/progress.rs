//! Progress of downloads, copies and hashes: an indicatif bar on a terminal, a few plain lines
//! (downloads only) when stderr is not one.

use std::path::Path;
use std::time::Duration;

use hearth_models::{DownloadProgress, ModelsError, ProgressUpdate};
use indicatif::{HumanBytes, HumanDuration, ProgressBar, ProgressStyle};

const PROGRESS_BAR_TEMPLATE: &str = "{prefix} [{wide_bar}] {bytes}/{total_bytes} {msg}";
const PROGRESS_SPINNER_TEMPLATE: &str = "{prefix} {spinner} {bytes} {msg}";
const PROGRESS_BAR_CHARACTERS: &str = "=> ";

/// A [`DownloadProgress`] drawn as an indicatif bar on a terminal, and as a few plain lines on
/// stderr otherwise (logs and tests still see what happened).
pub(super) struct TransferProgressBar {
    bar: ProgressBar,
    /// "downloading", "copying", "checking".
    verb: &'static str,
    /// Whether to print start and end lines when there is no terminal to draw on: worth it for
    /// downloads (minutes, worth a line in a log), noise for a local copy or hash.
    announce_without_terminal: bool,
}

impl TransferProgressBar {
    /// For transfers over the network.
    pub(super) fn download() -> TransferProgressBar {
        TransferProgressBar {
            bar: ProgressBar::new(0),
            verb: "downloading",
            announce_without_terminal: true,
        }
    }

    /// For work on local files: drawn on a terminal, silent otherwise.
    pub(super) fn local(verb: &'static str) -> TransferProgressBar {
        TransferProgressBar {
            bar: ProgressBar::new(0),
            verb,
            announce_without_terminal: false,
        }
    }

    fn announces(&self) -> bool {
        self.announce_without_terminal && self.bar.is_hidden()
    }

    /// Prints a line above the bar (or alone when there is no bar).
    fn note(&self, line: String) {
        self.bar.suspend(|| eprintln!("{line}"));
    }

    pub(super) fn clear(&self) {
        self.bar.finish_and_clear();
    }
}

impl DownloadProgress for TransferProgressBar {
    fn started(&self, file_name: &str, total_bytes: Option<u64>, resumed_from_bytes: u64) {
        let template = match total_bytes {
            Some(_) => PROGRESS_BAR_TEMPLATE,
            None => PROGRESS_SPINNER_TEMPLATE,
        };
        let style = ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars(PROGRESS_BAR_CHARACTERS);
        self.bar.set_style(style);
        self.bar.set_prefix(format!("{} {file_name}", self.verb));
        if let Some(total_bytes) = total_bytes {
            self.bar.set_length(total_bytes);
        }
        self.bar.set_position(resumed_from_bytes);
        if self.announces() {
            let size =
                total_bytes.map_or(String::new(), |total| format!(" ({})", HumanBytes(total)));
            let resuming = if resumed_from_bytes > 0 {
                format!(", resuming at {}", HumanBytes(resumed_from_bytes))
            } else {
                String::new()
            };
            eprintln!("{} {file_name}{size}{resuming}", self.verb);
        }
    }

    fn advanced(&self, update: &ProgressUpdate) {
        self.bar.set_position(update.bytes_done);
        if update.bytes_per_second > 0.0 {
            let rate = HumanBytes(update.bytes_per_second as u64);
            let message = match update.eta {
                Some(eta) => format!("{rate}/s, {} left", HumanDuration(eta)),
                None => format!("{rate}/s"),
            };
            self.bar.set_message(message);
        }
    }

    fn retrying(&self, failed_attempts: u32, delay: Duration, reason: &ModelsError) {
        self.note(format!(
            "attempt {failed_attempts} failed ({reason}); retrying in {}",
            HumanDuration(delay)
        ));
    }

    fn waiting_for_other_download(&self, _lock_path: &Path) {
        self.note("another hearth process is installing this model; waiting for it".to_string());
    }

    fn finished(&self, file_name: &str, size_bytes: u64) {
        self.bar.finish_and_clear();
        if self.announces() {
            eprintln!(
                "{} {file_name}: done ({})",
                self.verb,
                HumanBytes(size_bytes)
            );
        }
    }
}
