//! `hearth serve --ollama` driven by the official `ollama` Python package, on the real SmolLM2
//! model: the package is installed by pip into a virtual environment cached outside the
//! repository (`~/.cache/hearth/venv-ollama`, or `$HEARTH_OLLAMA_VENV`; see `python_venv`).
//! The checks themselves are in `tests/ollama_sdk/test_ollama_sdk.py`.

mod python_venv;
mod serve_support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use python_venv::{run_bounded, Venv};
use serve_support::TestServer;

const KEY: &str = "sk-hearth-ollama-test";
/// The package's virtual environment.
const OLLAMA_VENV: Venv = Venv {
    name: "venv-ollama",
    folder_env: "HEARTH_OLLAMA_VENV",
    packages: &["ollama"],
};
/// The whole Python suite on a busy 2-core machine.
const SUITE_TIMEOUT: Duration = Duration::from_secs(600);

#[test]
fn the_official_ollama_python_package_drives_the_ollama_listener() {
    let python = python_venv::python(&OLLAMA_VENV);
    let server = TestServer::start(&[
        "--api-key",
        KEY,
        "--parallel",
        "2",
        "--ctx",
        "2048",
        "--ollama-port",
        "0",
    ]);
    server.wait_ready();
    let ollama = server
        .ollama_address
        .expect("hearth serve --ollama prints where the Ollama API listens");
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/ollama_sdk/test_ollama_sdk.py");
    let output = run_bounded(
        Command::new(&python)
            .arg(&script)
            .env("HEARTH_OLLAMA_HOST", format!("http://{ollama}"))
            .env("HEARTH_API_KEY", KEY)
            .env("HEARTH_MODEL", server.model_id())
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env_remove("OLLAMA_HOST")
            .env_remove("OLLAMA_API_KEY"),
        SUITE_TIMEOUT,
    );
    let report = String::from_utf8_lossy(&output.stderr);
    println!("{report}");
    assert!(
        output.status.success(),
        "the ollama package suite failed:\n{report}\n{}\nserver stderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        server.stderr()
    );
    assert!(report.contains("OK"), "{report}");
}
