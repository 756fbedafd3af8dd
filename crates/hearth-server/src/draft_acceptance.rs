//! The acceptance of speculative decoding measured for each model and draft pair on this
//! machine, kept in `speculative-acceptance.json` in the data folder so the planner predicts
//! the draft's gain from what it did here rather than from a prior.
//!
//! The server (every finished answer that speculated with a draft), `hearth run` and `hearth
//! chat` add their answers' counts; `hearth fit --draft-model` and the catalog draft's
//! proposal to the worker read the per-token rate back once [`MIN_MEASURED_DECODE_TOKENS`]
//! decoded tokens stand behind it.
//! The rate is the one that yields the measured tokens per decode step in the planner's own
//! formula ([`hearth_protocol::acceptance_from_tokens_per_step`]), not accepted over drafted.
//! A missing or unreadable file is an empty record (logged), never a failure; it is written
//! atomically with mode 0600 ([`crate::private_file`]).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use hearth_protocol::{acceptance_from_tokens_per_step, RequestMetrics};
use serde::{Deserialize, Serialize};

/// The file's name in the data folder.
pub const DRAFT_ACCEPTANCE_FILE: &str = "speculative-acceptance.json";
/// Decoded tokens (answers' tokens after the first, which the prompt's step gives) a pair
/// needs before its measured rate replaces the prior: a few answers' worth, so one odd answer
/// (a refusal, a list the draft guesses well) does not decide the plan alone.
pub const MIN_MEASURED_DECODE_TOKENS: u64 = 256;

/// What the answers of one model and draft pair added up to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairCounts {
    /// Answers that speculated.
    pub answers: u64,
    /// Tokens decoded after each answer's first.
    pub decode_tokens: u64,
    /// Guessed tokens verified, and the ones accepted (each one a token without a step).
    pub drafted_tokens: u64,
    pub accepted_tokens: u64,
    /// The engine's bound on guesses per step when they were measured.
    pub max_draft_tokens: u32,
}

impl PairCounts {
    /// Decode steps: each yields one token of the model's own plus the guesses it accepted.
    pub fn decode_steps(&self) -> u64 {
        self.decode_tokens.saturating_sub(self.accepted_tokens)
    }

    /// Tokens per decode step (1 when nothing was decoded).
    pub fn tokens_per_step(&self) -> f64 {
        match self.decode_steps() {
            0 => 1.0,
            steps => self.decode_tokens as f64 / steps as f64,
        }
    }

    /// The per-token acceptance rate, once enough tokens were decoded.
    pub fn acceptance_rate(&self) -> Option<f64> {
        (self.decode_tokens >= MIN_MEASURED_DECODE_TOKENS)
            .then(|| acceptance_from_tokens_per_step(self.tokens_per_step(), self.max_draft_tokens))
    }
}

/// The file: counts per pair, keyed by the model's and the draft's GGUF file names.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DraftAcceptanceFile {
    pub pairs: BTreeMap<String, PairCounts>,
}

/// The key of a pair: both file names, so `hearth run` with a path and the server with an id
/// count together.
fn pair_key(model_file: &str, draft_file: &str) -> String {
    format!("{model_file} + {draft_file}")
}

/// A file's name, as the engine reports it in `ModelInfo`.
pub fn file_name_of(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

impl DraftAcceptanceFile {
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(DRAFT_ACCEPTANCE_FILE)
    }

    /// The record in `data_dir`; a missing file is empty, an unreadable one too (logged).
    pub fn load(data_dir: &Path) -> DraftAcceptanceFile {
        let path = Self::path(data_dir);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Self::default(),
            Err(error) => {
                tracing::warn!(%error, "cannot read the measured draft acceptance; starting afresh");
                return Self::default();
            }
        };
        serde_json::from_slice(&bytes).unwrap_or_else(|error| {
            tracing::warn!(%error, "the measured draft acceptance file is corrupt; starting afresh");
            Self::default()
        })
    }

    /// Writes the record atomically (mode 0600).
    pub fn save(&self, data_dir: &Path) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(self)?;
        crate::private_file::write_private_atomically(&Self::path(data_dir), &bytes)
    }

    /// Adds one finished answer of `model_file` speculating with `draft_file`; an answer that
    /// guessed nothing (an output constraint, one token) tells nothing and is left out.
    /// Returns whether it was counted.
    pub fn record(
        &mut self,
        model_file: &str,
        draft_file: &str,
        max_draft_tokens: u32,
        metrics: &RequestMetrics,
    ) -> bool {
        if metrics.drafted_tokens == 0 || metrics.generated_tokens < 2 {
            return false;
        }
        let counts = self
            .pairs
            .entry(pair_key(model_file, draft_file))
            .or_default();
        counts.answers += 1;
        counts.decode_tokens += u64::from(metrics.generated_tokens - 1);
        counts.drafted_tokens += u64::from(metrics.drafted_tokens);
        counts.accepted_tokens += u64::from(metrics.accepted_tokens);
        counts.max_draft_tokens = max_draft_tokens;
        true
    }

    pub fn counts(&self, model_file: &str, draft_file: &str) -> Option<PairCounts> {
        self.pairs.get(&pair_key(model_file, draft_file)).copied()
    }

    /// The pair's measured per-token rate, once enough tokens stand behind it.
    pub fn acceptance_rate(&self, model_file: &str, draft_file: &str) -> Option<f64> {
        self.counts(model_file, draft_file)?.acceptance_rate()
    }
}

/// Adds one answer to the record in `data_dir` and writes it back; a failure is logged.
pub fn record_answer(
    data_dir: &Path,
    model_file: &str,
    draft_file: &str,
    max_draft_tokens: u32,
    metrics: &RequestMetrics,
) {
    let mut file = DraftAcceptanceFile::load(data_dir);
    if file.record(model_file, draft_file, max_draft_tokens, metrics) {
        if let Err(error) = file.save(data_dir) {
            tracing::warn!(%error, "cannot save the measured draft acceptance");
        }
    }
}

/// The server's side: which draft each loaded model speculates with, and the record they add
/// to as answers finish ([`crate::Metrics::record_generation`] hands every answer over).
#[derive(Debug)]
pub struct DraftAcceptanceRecorder {
    data_dir: PathBuf,
    /// By served model id: the model's and the draft's file names and the guesses bound.
    pairs: Mutex<HashMap<String, LoadedPair>>,
    file: Arc<Mutex<DraftAcceptanceFile>>,
    /// Held while the file is written, so writes land in order.
    writing: Arc<Mutex<()>>,
}

#[derive(Debug, Clone)]
struct LoadedPair {
    model_file: String,
    draft_file: String,
    max_draft_tokens: u32,
}

impl DraftAcceptanceRecorder {
    /// The record in `data_dir` (read once, now).
    pub fn new(data_dir: PathBuf) -> Self {
        let file = DraftAcceptanceFile::load(&data_dir);
        Self {
            data_dir,
            pairs: Mutex::new(HashMap::new()),
            file: Arc::new(Mutex::new(file)),
            writing: Arc::new(Mutex::new(())),
        }
    }

    /// Model `id` was loaded: speculating with `draft_file` (a file name), or not (`None`).
    pub fn model_loaded(
        &self,
        id: &str,
        model_file: &str,
        draft_file: Option<&str>,
        max_draft_tokens: u32,
    ) {
        let Ok(mut pairs) = self.pairs.lock() else {
            return;
        };
        match draft_file {
            Some(draft_file) => {
                pairs.insert(
                    id.to_string(),
                    LoadedPair {
                        model_file: model_file.to_string(),
                        draft_file: draft_file.to_string(),
                        max_draft_tokens,
                    },
                );
            }
            None => {
                pairs.remove(id);
            }
        }
    }

    /// The measured per-token rate of a pair, once enough tokens stand behind it.
    pub fn acceptance_rate(&self, model_file: &str, draft_file: &str) -> Option<f64> {
        self.file
            .lock()
            .ok()?
            .acceptance_rate(model_file, draft_file)
    }

    /// A finished answer of model `id`: counted when the model speculates with a draft and
    /// the answer guessed; the file is written off the async threads.
    pub fn record(&self, id: &str, metrics: &RequestMetrics) {
        let Some(pair) = self
            .pairs
            .lock()
            .ok()
            .and_then(|pairs| pairs.get(id).cloned())
        else {
            return;
        };
        let counted = self.file.lock().is_ok_and(|mut file| {
            file.record(
                &pair.model_file,
                &pair.draft_file,
                pair.max_draft_tokens,
                metrics,
            )
        });
        if !counted {
            return;
        }
        let (file, writing, data_dir) = (
            self.file.clone(),
            self.writing.clone(),
            self.data_dir.clone(),
        );
        let save = move || {
            let _writing = writing.lock();
            // The latest counts, taken under the write lock: a later write never loses one.
            let Some(snapshot) = file.lock().ok().map(|file| file.clone()) else {
                return;
            };
            if let Err(error) = snapshot.save(&data_dir) {
                tracing::warn!(%error, "cannot save the measured draft acceptance");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn_blocking(save);
            }
            Err(_) => save(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(generated: u32, drafted: u32, accepted: u32) -> RequestMetrics {
        RequestMetrics {
            generated_tokens: generated,
            drafted_tokens: drafted,
            accepted_tokens: accepted,
            ..RequestMetrics::default()
        }
    }

    #[test]
    fn the_rate_comes_from_tokens_per_step_once_enough_were_decoded() {
        let mut file = DraftAcceptanceFile::default();
        // README's draft pair: every guess accepted, yet 1.27 tokens per step.
        assert!(file.record("m.gguf", "d.gguf", 8, &answer(128, 27, 27)));
        let counts = file.counts("m.gguf", "d.gguf").unwrap();
        assert_eq!(counts.decode_steps(), 100);
        assert!((counts.tokens_per_step() - 1.27).abs() < 1e-9);
        assert_eq!(file.acceptance_rate("m.gguf", "d.gguf"), None, "127 < 256");
        assert!(file.record("m.gguf", "d.gguf", 8, &answer(128, 27, 27)));
        assert!(file.record("m.gguf", "d.gguf", 8, &answer(3, 1, 0)));
        let rate = file.acceptance_rate("m.gguf", "d.gguf").unwrap();
        assert!(rate > 0.2 && rate < 0.22, "{rate}");
        assert_eq!(file.acceptance_rate("m.gguf", "other.gguf"), None);
        // Nothing guessed, nothing learned.
        assert!(!file.record("m.gguf", "d.gguf", 8, &answer(100, 0, 0)));
        assert!(!file.record("m.gguf", "d.gguf", 8, &answer(1, 1, 1)));
    }

    #[test]
    fn the_file_round_trips_privately_and_a_corrupt_one_is_empty() {
        let folder = tempfile::tempdir().unwrap();
        assert_eq!(
            DraftAcceptanceFile::load(folder.path()),
            DraftAcceptanceFile::default()
        );
        for _ in 0..3 {
            record_answer(folder.path(), "m.gguf", "d.gguf", 8, &answer(101, 60, 50));
        }
        let file = DraftAcceptanceFile::load(folder.path());
        let counts = file.counts("m.gguf", "d.gguf").unwrap();
        assert_eq!(counts.answers, 3);
        assert_eq!(counts.decode_tokens, 300);
        assert!(file.acceptance_rate("m.gguf", "d.gguf").is_some());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(DraftAcceptanceFile::path(folder.path()))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(DraftAcceptanceFile::path(folder.path()), b"{ not json").unwrap();
        assert_eq!(
            DraftAcceptanceFile::load(folder.path()),
            DraftAcceptanceFile::default()
        );
        // A corrupt file is replaced by the next answer, not a failure.
        record_answer(folder.path(), "m.gguf", "d.gguf", 8, &answer(11, 5, 5));
        assert_eq!(
            DraftAcceptanceFile::load(folder.path())
                .counts("m.gguf", "d.gguf")
                .unwrap()
                .answers,
            1
        );
    }

    #[test]
    fn the_server_counts_only_models_that_speculate_with_a_draft() {
        let folder = tempfile::tempdir().unwrap();
        let recorder = DraftAcceptanceRecorder::new(folder.path().to_path_buf());
        recorder.model_loaded("big", "big.gguf", Some("small.gguf"), 8);
        recorder.model_loaded("plain", "plain.gguf", None, 8);
        for _ in 0..3 {
            recorder.record("big", &answer(101, 60, 50));
            recorder.record("plain", &answer(101, 60, 50));
        }
        let rate = recorder.acceptance_rate("big.gguf", "small.gguf").unwrap();
        // Two tokens per step at up to 8 guesses.
        assert!(
            (hearth_protocol::expected_tokens_per_step(rate, 8) - 2.0).abs() < 1e-6,
            "{rate}"
        );
        let on_disk = DraftAcceptanceFile::load(folder.path());
        assert_eq!(on_disk.counts("big.gguf", "small.gguf").unwrap().answers, 3);
        assert_eq!(on_disk.pairs.len(), 1);
        // Reloaded without its draft: no longer counted.
        recorder.model_loaded("big", "big.gguf", None, 8);
        recorder.record("big", &answer(101, 60, 50));
        assert_eq!(
            DraftAcceptanceFile::load(folder.path())
                .counts("big.gguf", "small.gguf")
                .unwrap()
                .answers,
            3
        );
    }
}
