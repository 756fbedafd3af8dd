//! `hearth pull`, `ls`, `rm`, `import` and `--model <id>` end to end: the real binary, a data
//! directory in a temporary folder, and a "hub" on 127.0.0.1 started by the test that serves
//! the real SmolLM2 file (`HF_ENDPOINT` points at it). Nothing leaves the loopback interface,
//! and every command runs under a deadline.

// A test crate's root looks for its modules beside it; these live in `models_cli/`.
#[path = "models_cli/import.rs"]
mod import;
#[path = "models_cli/support.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use hearth_testkit::http::{RecordedRequest, SERVER_CHUNK_BYTES};
use support::*;

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
