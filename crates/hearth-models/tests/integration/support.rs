//! Test helpers: the real test model, the scripted loopback HTTP server of `hearth-testkit`
//! (cuts, stalls, redirects, HTML pages, ignored ranges), synthetic GGUF files, a seeded random
//! number generator and a progress recorder.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use hearth_models::{
    Catalog, DownloadConfig, DownloadControl, DownloadProgress, HubClient, ModelsError,
    ProgressUpdate, Sha256Digest,
};

pub const SMOLLM2_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
pub const SMOLLM2_SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
pub const SMOLLM2_SIZE_BYTES: u64 = 98_362_432;

/// The real SmolLM2 test model. Fails (never skips) when it is missing.
pub fn smollm2_path() -> PathBuf {
    hearth_testkit::smollm2()
}

/// The real Gemma 3 270M test model (a 6.2 MiB header). Fails (never skips) when missing.
pub fn gemma3_path() -> PathBuf {
    hearth_testkit::gemma3()
}

/// The test model's bytes, read once per test binary.
pub fn smollm2_bytes() -> Arc<Vec<u8>> {
    static BYTES: OnceLock<Arc<Vec<u8>>> = OnceLock::new();
    BYTES
        .get_or_init(|| {
            let bytes = std::fs::read(smollm2_path()).expect("cannot read the test model");
            assert_eq!(
                bytes.len() as u64,
                SMOLLM2_SIZE_BYTES,
                "the test model has an unexpected size: run scripts/fetch-test-models again"
            );
            Arc::new(bytes)
        })
        .clone()
}

pub fn smollm2_digest() -> Sha256Digest {
    Sha256Digest::from_hex(SMOLLM2_SHA256).unwrap()
}

/// SplitMix64: a tiny seeded generator, so that "random" cut points repeat run after run.
#[derive(Debug, Clone)]
pub struct SeededRandom(u64);

impl SeededRandom {
    pub fn new(seed: u64) -> Self {
        SeededRandom(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut mixed = self.0;
        mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        mixed ^ (mixed >> 31)
    }

    /// A number in `low..high`.
    pub fn in_range(&mut self, low: u64, high: u64) -> u64 {
        assert!(low < high);
        low + self.next_u64() % (high - low)
    }
}

pub use hearth_testkit::http::{FileReply, Reply, TestServer};

/// A download configuration for tests: short timeouts and backoffs, no disk margin.
pub fn fast_config() -> DownloadConfig {
    DownloadConfig {
        stall_timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(5),
        max_attempts: 3,
        initial_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
        free_space_margin_bytes: 0,
        progress_interval: Duration::from_millis(5),
        hub_token: None,
        user_agent: "hearth-models-tests".to_string(),
    }
}

pub fn hub_client(server: &TestServer, config: DownloadConfig) -> HubClient {
    HubClient::new(&server.base_url(), config).unwrap()
}

/// A one-model catalog whose file is the real test model under `repo`.
pub fn test_catalog(repo: &str, with_figures: bool) -> Catalog {
    let figures = if with_figures {
        format!("size_bytes = {SMOLLM2_SIZE_BYTES}\nsha256 = \"{SMOLLM2_SHA256}\"\n")
    } else {
        String::new()
    };
    let text = format!(
        r#"
schema_version = 1
default_model = "smollm2-test"

[[models]]
id = "smollm2-test"
display_name = "SmolLM2 test"
family = "SmolLM2"
repo = "{repo}"
license = "apache-2.0"
parameters_billions = 0.135
context_length = 8192
purpose = "tests"
default_quantization = "Q4_1"

[[models.files]]
quantization = "Q4_1"
file = "{SMOLLM2_FILE}"
{figures}"#
    );
    Catalog::parse(&text, "test catalog").unwrap()
}

/// Records progress and can act on the control when a byte count is reached.
#[derive(Default)]
pub struct RecordingProgress {
    pub updates: Mutex<Vec<ProgressUpdate>>,
    pub retries: Mutex<Vec<String>>,
    pub waited_for_other_download: AtomicBool,
    /// When `bytes_done` reaches the threshold, call the action (once).
    pub trigger: Option<(u64, Box<dyn Fn() + Send + Sync>)>,
    triggered: AtomicBool,
}

impl RecordingProgress {
    pub fn with_trigger(threshold: u64, action: impl Fn() + Send + Sync + 'static) -> Self {
        RecordingProgress {
            trigger: Some((threshold, Box::new(action))),
            ..RecordingProgress::default()
        }
    }

    /// Pauses or cancels `control` once `threshold` bytes are done.
    pub fn pausing(control: &DownloadControl, threshold: u64, cancel: bool) -> Self {
        let control = control.clone();
        RecordingProgress::with_trigger(threshold, move || {
            if cancel {
                control.cancel()
            } else {
                control.pause()
            }
        })
    }
}

impl DownloadProgress for RecordingProgress {
    fn advanced(&self, update: &ProgressUpdate) {
        self.updates.lock().unwrap().push(update.clone());
        if let Some((threshold, action)) = &self.trigger {
            if update.bytes_done >= *threshold && !self.triggered.swap(true, Ordering::SeqCst) {
                action();
            }
        }
    }

    fn retrying(&self, _failed_attempts: u32, _delay: Duration, reason: &ModelsError) {
        self.retries.lock().unwrap().push(reason.to_string());
    }

    fn waiting_for_other_download(&self, _lock_path: &Path) {
        self.waited_for_other_download.store(true, Ordering::SeqCst);
    }
}

/// Writes a small valid GGUF file (a header with an architecture, context length, file type
/// and chat template, one tensor) padded with zeros to `total_bytes`.
pub fn write_synthetic_gguf(path: &Path, architecture: &str, total_bytes: usize) {
    fn string(bytes: &mut Vec<u8>, text: &str) {
        bytes.extend_from_slice(&(text.len() as u64).to_le_bytes());
        bytes.extend_from_slice(text.as_bytes());
    }
    const TYPE_UINT32: u32 = 4;
    const TYPE_STRING: u32 = 8;
    let mut bytes = Vec::new();
    bytes.extend_from_slice(b"GGUF");
    bytes.extend_from_slice(&3u32.to_le_bytes());
    bytes.extend_from_slice(&1u64.to_le_bytes());
    bytes.extend_from_slice(&4u64.to_le_bytes());
    string(&mut bytes, "general.architecture");
    bytes.extend_from_slice(&TYPE_STRING.to_le_bytes());
    string(&mut bytes, architecture);
    string(&mut bytes, &format!("{architecture}.context_length"));
    bytes.extend_from_slice(&TYPE_UINT32.to_le_bytes());
    bytes.extend_from_slice(&4096u32.to_le_bytes());
    string(&mut bytes, "general.file_type");
    bytes.extend_from_slice(&TYPE_UINT32.to_le_bytes());
    bytes.extend_from_slice(&7u32.to_le_bytes());
    string(&mut bytes, "tokenizer.chat_template");
    bytes.extend_from_slice(&TYPE_STRING.to_le_bytes());
    string(&mut bytes, "{{ messages }}");
    // 16 x 16 f32 elements: 1 KiB of data right after the header, so that even a 4 KiB file
    // holds all of it (hearth-gguf checks that tensor data lies inside the file).
    string(&mut bytes, "token_embd.weight");
    bytes.extend_from_slice(&2u32.to_le_bytes());
    bytes.extend_from_slice(&16u64.to_le_bytes());
    bytes.extend_from_slice(&16u64.to_le_bytes());
    bytes.extend_from_slice(&0u32.to_le_bytes());
    bytes.extend_from_slice(&0u64.to_le_bytes());
    if bytes.len() < total_bytes {
        bytes.resize(total_bytes, 0);
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(path, bytes).unwrap();
}

/// Total size of the regular files under `root` (links are not followed).
pub fn bytes_on_disk(root: &Path) -> u64 {
    let mut total = 0;
    let mut pending = vec![root.to_path_buf()];
    while let Some(directory) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&directory) else {
            continue;
        };
        for entry in entries.flatten() {
            let file_type = entry.file_type().unwrap();
            if file_type.is_dir() {
                pending.push(entry.path());
            } else if file_type.is_file() {
                total += entry.metadata().unwrap().len();
            }
        }
    }
    total
}

/// Files directly in `directory` whose names end with `suffix`.
pub fn files_ending_with(directory: &Path, suffix: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(directory) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.to_string_lossy().ends_with(suffix))
        .collect();
    files.sort();
    files
}
