//! Models by name on the real server: installed models (`hearth import`) are served by their
//! library ids, loaded on demand, and with `--max-loaded 1` a request for another model
//! unloads the idle one first. Nothing is preloaded, so `/health` is 200 at once. A catalog
//! model's draft is loaded only when the planner advises it.

mod serve_support;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use serve_support::{HttpResponse, TestServer};

fn import(home: &Path, model: &Path, id: &str) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_hearth"))
        .arg("import")
        .arg(model)
        .args(["--in-place", "--id", id])
        .env("HEARTH_HOME", home)
        .env_remove("HEARTH_LOG")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "hearth import failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Asks `model` for a short answer, retrying 503 after its Retry-After as an SDK does.
fn ask(server: &TestServer, model: &str) -> HttpResponse {
    let body = json!({"model": model, "messages": [{"role": "user", "content": "Hi"}],
                      "max_tokens": 4, "temperature": 0});
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let response = server.post_json("/v1/chat/completions", &body);
        if response.status != 503 || Instant::now() >= deadline {
            return response;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn health_states(server: &TestServer) -> Vec<(String, String)> {
    let health = server.get("/health").json();
    health["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["id"].as_str().unwrap().to_string(),
                m["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn installed_models_are_served_by_id_loaded_on_demand_and_swapped() {
    let home = tempfile::tempdir().unwrap();
    import(home.path(), &hearth_testkit::smollm2(), "smol");
    import(home.path(), &hearth_testkit::gemma3(), "gemma");
    let server = TestServer::start_in(home, None, &["--max-loaded", "1"]);

    // Nothing to load yet: ready at once, both models listed, none loaded.
    assert_eq!(server.get("/health").status, 200);
    let listed: Vec<Value> = server.get("/v1/models").json()["data"]
        .as_array()
        .unwrap()
        .clone();
    let ids: Vec<&str> = listed.iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["gemma", "smol"]);
    assert!(health_states(&server).is_empty());
    assert_eq!(server.get("/v1/models/smol").json()["id"], "smol");

    let answer = ask(&server, "smol");
    assert_eq!(answer.status, 200, "{}\n{}", answer.text(), server.stderr());
    assert_eq!(answer.json()["model"], "smol");
    assert_eq!(
        health_states(&server),
        [("smol".to_string(), "loaded".to_string())]
    );

    // Only one model at a time: asking for the other unloads the idle first.
    let answer = ask(&server, "gemma");
    assert_eq!(answer.status, 200, "{}\n{}", answer.text(), server.stderr());
    assert_eq!(answer.json()["model"], "gemma");
    assert_eq!(
        health_states(&server),
        [("gemma".to_string(), "loaded".to_string())]
    );
    assert_eq!(server.metric("hearth_models_loaded"), Some(1.0));
    assert_eq!(
        server.metric("hearth_model_loads_total{model=\"smol\"}"),
        Some(1.0)
    );
    assert_eq!(
        server.metric("hearth_model_loads_total{model=\"gemma\"}"),
        Some(1.0)
    );
    // The first engine worker is gone: one worker per loaded model.
    #[cfg(target_os = "linux")]
    {
        let deadline = Instant::now() + Duration::from_secs(10);
        while server.worker_pids().len() > 1 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(server.worker_pids().len(), 1);
    }
}

/// `/api/system` says how each loaded model speculates and how much host memory the planner
/// gave its KV cache's host tier (the UI's Hardware page shows both).
#[test]
fn the_system_report_shows_a_loaded_models_speculative_decoding() {
    let server = TestServer::start(&["--speculative", "ngram"]);
    server.wait_ready();
    let system = server.get("/api/system").json();
    let plan = &system["loaded"][0]["plan"];
    assert_eq!(plan["speculative"], "ngram", "{system}");
    assert_eq!(plan["draft_model"], Value::Null, "{system}");
    // Planned at load (a quarter of the host memory the plan leaves free, at most 4 GiB): a
    // 135M model leaves room on any machine that runs the tests.
    let kv_host = plan["kv_host_budget_bytes"].as_u64().unwrap();
    assert!(kv_host > 0 && kv_host <= 4 << 30, "{system}");
}

/// `import`s SmolLM2 as `id` and marks it pulled for catalog entry `id`, so the catalog's
/// draft for that entry applies to it.
fn install_as_catalog_model(home: &Path, id: &str) {
    import(home, &hearth_testkit::smollm2(), id);
    let manifest_path = home.join("models").join(id).join("manifest.json");
    let mut manifest: Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    manifest["source"] = json!({"kind": "catalog", "catalog_id": id, "quantization": "Q4_1",
        "repo": "owner/repo", "revision": "main", "file": "model.gguf",
        "url": "https://example.invalid/model.gguf", "commit": null});
    std::fs::write(&manifest_path, manifest.to_string()).unwrap();
}

/// The catalog's draft follows the planner. SmolLM2 installed as SmolLM2 1.7B, whose catalog
/// draft (the 135M id) is also SmolLM2: as its own draft a guess costs about a decode step on
/// the CPU, so the planner advises against it: `hearth run` says so once on stderr and runs
/// without it, the server loads the model without speculation and `/api/system` says `off`;
/// `--speculative draft` forces the draft.
#[test]
fn the_catalog_draft_is_loaded_only_when_the_planner_advises_it() {
    let home = tempfile::tempdir().unwrap();
    install_as_catalog_model(home.path(), "smollm2-1.7b-instruct");
    import(
        home.path(),
        &hearth_testkit::smollm2(),
        "smollm2-135m-instruct",
    );
    let run = |extra: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_hearth"))
            .args(["run", "-m", "smollm2-1.7b-instruct", "--temperature", "0"])
            .args(["--max-tokens", "4", "--json"])
            .args(extra)
            .arg("Hi")
            .env("HEARTH_HOME", home.path())
            .env_remove("HEARTH_LOG")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "{stderr}");
        let report: Value = serde_json::from_slice(&output.stdout).unwrap();
        (report, stderr)
    };
    let (report, stderr) = run(&[]);
    assert_eq!(report["model"]["speculative"], "off", "{report}");
    assert_eq!(
        report["model"]["draft_verdict"]["advised"], false,
        "{report}"
    );
    assert_eq!(
        stderr.matches("not advised on this machine").count(),
        1,
        "{stderr}"
    );
    assert!(stderr.contains("predicted decode"), "{stderr}");
    let (forced, stderr) = run(&["--speculative", "draft"]);
    assert_eq!(forced["model"]["speculative"], "draft", "{forced}");
    assert!(!stderr.contains("not advised"), "{stderr}");

    let server = TestServer::start_in(home, None, &[]);
    let answer = ask(&server, "smollm2-1.7b-instruct");
    assert_eq!(answer.status, 200, "{}\n{}", answer.text(), server.stderr());
    let system = server.get("/api/system").json();
    let plan = &system["loaded"][0]["plan"];
    assert_eq!(plan["speculative"], "off", "{system}");
    assert_eq!(plan["draft_model"], Value::Null, "{system}");
}
