//! The Ollama listener and the embedding routes over real sockets against a scripted fake
//! worker (the fast tier: no model, no llama.cpp): `start` with `ollama_port`, NDJSON streams
//! and whole answers, embeddings through the worker protocol, the private API absent from
//! the Ollama port, and `/metrics` counting both listeners. This test binary is also the
//! worker (`hearth_testkit::fake_worker`).

use std::time::{Duration, Instant};

use hearth_server::{start, RunningServer, ServerOptions};
use hearth_supervisor::WorkerCommand;
use hearth_testkit::fake_worker::{answer, run_tests_or_worker, FakeWorker, Script};
use hearth_testkit::http_client::Client;
use serde_json::{json, Value};

/// The access token of the fake server (`/api/*` on the main port needs it).
const ACCESS_TOKEN: &str = "fake-ollama-access-token";

fn main() {
    run_tests_or_worker(&[
        (
            "the_ollama_listener_streams_ndjson_and_answers_whole",
            the_ollama_listener_streams_ndjson_and_answers_whole,
        ),
        (
            "embeddings_come_back_in_order_on_both_apis",
            embeddings_come_back_in_order_on_both_apis,
        ),
        (
            "the_private_api_is_only_on_the_main_port_and_metrics_count_both",
            the_private_api_is_only_on_the_main_port_and_metrics_count_both,
        ),
    ]);
}

/// A server with an Ollama listener, serving one fake model, in a runtime of its own.
struct FakeServer {
    main: Client,
    ollama: Client,
    server: Option<RunningServer>,
    runtime: tokio::runtime::Runtime,
    _data: tempfile::TempDir,
}

impl FakeServer {
    fn start(script: Script) -> FakeServer {
        let data = tempfile::tempdir().unwrap();
        let model = data.path().join("fake.gguf");
        std::fs::write(&model, b"GGUF").unwrap();
        let parts = FakeWorker::command_parts(&script);
        let mut options = ServerOptions::new(
            data.path(),
            WorkerCommand {
                program: parts.program,
                args: parts.args,
                envs: parts.envs,
            },
        );
        options.port = 0;
        options.ollama_port = Some(0);
        options.models = vec![model.to_string_lossy().into_owned()];
        options.access_token = Some(ACCESS_TOKEN.to_string());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let server = runtime.block_on(start(options)).expect("the server starts");
        let main = Client {
            address: server.local_addr(),
            api_key: Some(ACCESS_TOKEN.to_string()),
        };
        let ollama = Client {
            address: server.ollama_addr().expect("an Ollama listener"),
            api_key: None,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while main.get("/health").status != 200 {
            assert!(Instant::now() < deadline, "the fake model never loaded");
            std::thread::sleep(Duration::from_millis(20));
        }
        FakeServer {
            main,
            ollama,
            server: Some(server),
            runtime,
            _data: data,
        }
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            let _ = self.runtime.block_on(server.shutdown());
        }
    }
}

/// The NDJSON lines of a body.
fn lines(body: &str) -> Vec<Value> {
    body.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect()
}

fn the_ollama_listener_streams_ndjson_and_answers_whole() {
    let fake = FakeServer::start(Script::generating(answer(&["Hel", "lo", "!"])));
    let model = fake.main.model_id();
    let root = fake.ollama.get("/");
    assert_eq!(
        (root.status, root.text().as_str()),
        (200, "Ollama is running")
    );

    let body = json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
    let streamed = fake.ollama.post_json("/api/chat", &body);
    assert_eq!(streamed.status, 200, "{}", streamed.text());
    assert_eq!(
        streamed.header("content-type"),
        Some("application/x-ndjson")
    );
    let parts = lines(&streamed.text());
    let text: String = parts
        .iter()
        .map(|line| line["message"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(text, "Hello!");
    let last = parts.last().unwrap();
    assert_eq!(last["done"], true);
    assert_eq!(last["done_reason"], "stop");
    assert_eq!(last["prompt_eval_count"], 5);
    assert_eq!(last["eval_count"], 3);
    assert!(parts[..parts.len() - 1]
        .iter()
        .all(|line| line["done"] == false));

    let whole = fake
        .ollama
        .post_json("/api/chat", &json!({"model": format!("{model}:latest"), "stream": false, "messages": [{"role": "user", "content": "hi"}]}))
        .json();
    assert_eq!(whole["message"]["content"], "Hello!");
    assert_eq!(whole["message"]["role"], "assistant");
    assert_eq!(whole["done"], true);

    let generated = fake
        .ollama
        .post_json(
            "/api/generate",
            &json!({"model": model, "prompt": "hi", "stream": false}),
        )
        .json();
    assert_eq!(generated["response"], "Hello!");
    let loaded = fake
        .ollama
        .post_json("/api/generate", &json!({"model": model}))
        .json();
    assert_eq!(loaded["done_reason"], "load");

    let tags = fake.ollama.get("/api/tags").json();
    assert_eq!(tags["models"][0]["name"], model.as_str());
    let running = fake.ollama.get("/api/ps").json();
    assert_eq!(running["models"][0]["model"], model.as_str());
    assert!(!tags
        .to_string()
        .contains(fake._data.path().to_str().unwrap()));
}

fn embeddings_come_back_in_order_on_both_apis() {
    let fake = FakeServer::start(Script::generating(answer(&["x"])));
    let model = fake.main.model_id();
    let texts = ["one two", "three", "one two", "four five six"];
    let openai = fake
        .main
        .post_json("/v1/embeddings", &json!({"model": model, "input": texts}));
    assert_eq!(openai.status, 200, "{}", openai.text());
    let openai = openai.json();
    assert_eq!(openai["object"], "list");
    assert_eq!(openai["usage"]["prompt_tokens"], 8);
    let vectors: Vec<Vec<f64>> = openai["data"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(index, item)| {
            assert_eq!(item["index"], index);
            serde_json::from_value(item["embedding"].clone()).unwrap()
        })
        .collect();
    assert_eq!(vectors.len(), 4);
    assert_eq!(vectors[0], vectors[2]);
    assert_ne!(vectors[0], vectors[1]);
    let base64 = fake.main.post_json(
        "/v1/embeddings",
        &json!({"model": model, "input": "three", "encoding_format": "base64"}),
    );
    assert!(base64.json()["data"][0]["embedding"].is_string());
    let refused = fake.main.post_json(
        "/v1/embeddings",
        &json!({"model": model, "input": "three", "dimensions": 4}),
    );
    assert_eq!(refused.status, 400, "{}", refused.text());
    assert_eq!(refused.json()["error"]["param"], "dimensions");

    let ollama = fake
        .ollama
        .post_json("/api/embed", &json!({"model": model, "input": texts}))
        .json();
    let ollama_vectors: Vec<Vec<f64>> =
        serde_json::from_value(ollama["embeddings"].clone()).unwrap();
    assert_eq!(ollama_vectors, vectors);
    assert_eq!(ollama["prompt_eval_count"], 8);
    let legacy = fake
        .ollama
        .post_json(
            "/api/embeddings",
            &json!({"model": model, "prompt": "three"}),
        )
        .json();
    let legacy: Vec<f64> = serde_json::from_value(legacy["embedding"].clone()).unwrap();
    assert_eq!(legacy, vectors[1]);
}

fn the_private_api_is_only_on_the_main_port_and_metrics_count_both() {
    let fake = FakeServer::start(Script::generating(answer(&["x"])));
    let token = Client {
        address: fake.ollama.address,
        api_key: Some(ACCESS_TOKEN.to_string()),
    };
    for path in [
        "/api/conversations",
        "/api/settings",
        "/api/models",
        "/api/system",
    ] {
        assert_eq!(fake.main.get(path).status, 200, "{path} on the main port");
        let refused = token.get(path);
        assert_eq!(
            refused.status,
            404,
            "{path} on the Ollama port: {}",
            refused.text()
        );
        assert!(refused.json()["error"].is_string());
    }
    fake.ollama.get("/api/version");
    let metrics = fake.main.get("/metrics").text();
    assert!(
        metrics.contains("route=\"ollama /api/version\",status=\"200\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("route=\"ollama unmatched\",status=\"404\"} 4"),
        "{metrics}"
    );
}
