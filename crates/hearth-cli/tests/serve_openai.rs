//! `hearth serve` driven by the official `openai` and `anthropic` Python SDKs, on the real
//! SmolLM2 model.
//!
//! The SDKs are installed by pip into a virtual environment this test creates, cached outside
//! the repository (`~/.cache/hearth/venv-openai`, or `$HEARTH_OPENAI_VENV`) so reruns are fast;
//! a cold run builds it in a staging folder and renames it into place, so an interrupted
//! install is never mistaken for a good one. The checks themselves are in
//! `tests/openai_sdk/test_openai_sdk.py` and `tests/anthropic_sdk/test_anthropic_sdk.py`,
//! run one after the other against one server.

mod serve_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serve_support::TestServer;

const KEY: &str = "sk-hearth-sdk-test";
/// Environment variable naming the virtual environment to use or create.
const VENV_ENV: &str = "HEARTH_OPENAI_VENV";
/// What the Python test imports.
const PYTHON_PACKAGES: &[&str] = &["openai", "anthropic", "jsonschema"];
/// A cold `pip install` on a slow link.
const PIP_TIMEOUT: Duration = Duration::from_secs(600);
/// The whole Python suite on a busy 2-core machine.
const SUITE_TIMEOUT: Duration = Duration::from_secs(600);

fn venv_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(VENV_ENV).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".cache/hearth/venv-openai")
}

fn venv_python(venv: &Path) -> PathBuf {
    if cfg!(windows) {
        venv.join("Scripts").join("python.exe")
    } else {
        venv.join("bin").join("python")
    }
}

/// Runs `command`, killing it after `timeout`.
fn run_bounded(command: &mut Command, timeout: Duration) -> Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot run {command:?}: {error}"));
    // Drain both pipes on threads so a chatty child never blocks on a full pipe.
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stdout, &mut bytes);
        bytes
    });
    let err = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stderr, &mut bytes);
        bytes
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let status = child.wait().unwrap();
            eprintln!("{command:?} ran past {timeout:?} and was killed");
            break status;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

fn has_packages(python: &Path) -> bool {
    let imports = format!("import {}", PYTHON_PACKAGES.join(", "));
    python.is_file()
        && run_bounded(
            Command::new(python).args(["-c", &imports]),
            Duration::from_secs(60),
        )
        .status
        .success()
}

/// The virtual environment's Python with the SDK installed, creating it when needed.
fn openai_python() -> PathBuf {
    let venv = venv_dir();
    let python = venv_python(&venv);
    if has_packages(&python) {
        return python;
    }
    let parent = venv.parent().expect("the venv has a parent folder");
    std::fs::create_dir_all(parent).unwrap();
    let staging = parent.join(format!(
        "{}.staging-{}",
        venv.file_name().unwrap().to_string_lossy(),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&staging);
    let created = run_bounded(
        Command::new("python3").args(["-m", "venv"]).arg(&staging),
        Duration::from_secs(120),
    );
    assert!(
        created.status.success(),
        "python3 -m venv failed: {}",
        String::from_utf8_lossy(&created.stderr)
    );
    let staging_python = venv_python(&staging);
    let installed = run_bounded(
        Command::new(&staging_python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(PYTHON_PACKAGES),
        PIP_TIMEOUT,
    );
    assert!(
        installed.status.success(),
        "pip install {PYTHON_PACKAGES:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&installed.stdout),
        String::from_utf8_lossy(&installed.stderr)
    );
    // Another run may have finished first: keep whichever venv works.
    if has_packages(&python) {
        let _ = std::fs::remove_dir_all(&staging);
        return python;
    }
    let _ = std::fs::remove_dir_all(&venv);
    std::fs::rename(&staging, &venv).expect("cannot move the venv into place");
    assert!(has_packages(&python), "the venv does not import the SDK");
    python
}

#[test]
fn the_official_openai_and_anthropic_python_sdks_drive_the_server() {
    // Build the venv before starting the server, so the server's time is the suite's.
    let python = openai_python();
    let server = TestServer::start(&["--api-key", KEY, "--parallel", "2", "--ctx", "2048"]);
    server.wait_ready();
    let model = server.model_id();
    let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests");
    let suites = [
        ("openai", tests.join("openai_sdk/test_openai_sdk.py")),
        (
            "anthropic",
            tests.join("anthropic_sdk/test_anthropic_sdk.py"),
        ),
    ];
    for (sdk, script) in suites {
        let output = run_bounded(
            Command::new(&python)
                .arg(&script)
                .env("HEARTH_BASE_URL", format!("http://{}/v1", server.address))
                .env(
                    "HEARTH_ANTHROPIC_BASE_URL",
                    format!("http://{}", server.address),
                )
                .env("HEARTH_API_KEY", KEY)
                .env("HEARTH_MODEL", &model)
                // The SDKs must talk to the local server directly, never through a proxy.
                .env("NO_PROXY", "127.0.0.1,localhost")
                .env_remove("OPENAI_BASE_URL")
                .env_remove("OPENAI_API_KEY")
                .env_remove("ANTHROPIC_BASE_URL")
                .env_remove("ANTHROPIC_API_KEY")
                .env_remove("ANTHROPIC_AUTH_TOKEN"),
            SUITE_TIMEOUT,
        );
        let report = String::from_utf8_lossy(&output.stderr);
        println!("{report}");
        assert!(
            output.status.success(),
            "the {sdk} SDK suite failed:\n{report}\n{}\nserver stderr:\n{}",
            String::from_utf8_lossy(&output.stdout),
            server.stderr()
        );
        assert!(report.contains("OK"), "{report}");
    }
}
