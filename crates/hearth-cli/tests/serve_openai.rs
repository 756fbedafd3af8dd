//! `hearth serve` driven by the official `openai` and `anthropic` Python SDKs, on the real
//! SmolLM2 model.
//!
//! The SDKs are installed by pip into a virtual environment cached outside the repository
//! (`~/.cache/hearth/venv-openai`, or `$HEARTH_OPENAI_VENV`; see `python_venv`). The checks
//! themselves are in `tests/openai_sdk/test_openai_sdk.py` and
//! `tests/anthropic_sdk/test_anthropic_sdk.py`, run one after the other against one server.

mod python_venv;
mod serve_support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use python_venv::{run_bounded, Venv};
use serve_support::thinking_model::write_thinking_model;
use serve_support::TestServer;

const KEY: &str = "sk-hearth-sdk-test";
/// The SDKs' virtual environment: what the Python test imports.
const OPENAI_VENV: Venv = Venv {
    name: "venv-openai",
    folder_env: "HEARTH_OPENAI_VENV",
    packages: &["openai", "anthropic", "jsonschema"],
};
/// The whole Python suite on a busy 2-core machine.
const SUITE_TIMEOUT: Duration = Duration::from_secs(600);

#[test]
fn the_official_openai_and_anthropic_python_sdks_drive_the_server() {
    // Build the venv before starting the server, so the server's time is the suite's.
    let python = python_venv::python(&OPENAI_VENV);
    // A second model that thinks in `<think>` tags, for the reasoning checks.
    let thinking_folder = tempfile::tempdir().unwrap();
    let thinking_path = write_thinking_model(thinking_folder.path());
    let thinking_path = thinking_path.to_str().unwrap();
    let server = TestServer::start(&[
        "--api-key",
        KEY,
        "--parallel",
        "2",
        "--ctx",
        "2048",
        "--model",
        thinking_path,
    ]);
    server.wait_ready();
    let models = server.get("/v1/models").json();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|model| model["id"].as_str())
        .collect();
    let thinking_model = ids
        .iter()
        .find(|id| id.contains("thinking"))
        .expect("the thinking model is served")
        .to_string();
    let model = ids
        .iter()
        .find(|id| !id.contains("thinking"))
        .expect("SmolLM2 is served")
        .to_string();
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
                .env("HEARTH_THINKING_MODEL", &thinking_model)
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
