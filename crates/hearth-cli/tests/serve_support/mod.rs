//! Shared by the `hearth serve` end-to-end tests: a real server on a free loopback port (the
//! bound address is read from its stdout), used through `hearth_testkit::http_client` (a
//! [`TestServer`] is a [`Client`] of itself).

#![allow(dead_code)]

pub mod thinking_model;

use std::io::{BufRead, BufReader, Read};
use std::ops::Deref;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

#[allow(unused_imports)] // Each test binary uses some of them.
pub use hearth_testkit::http_client::{
    request, request_raw, request_with_large_body, Client, HttpResponse, SseStream,
};

/// The line `hearth serve` prints once it listens.
pub const LISTENING_PREFIX: &str = "Hearth API listening on http://";
/// The line after it with `--ollama`: where the Ollama API listens.
pub const OLLAMA_LISTENING_PREFIX: &str = "Ollama API listening on http://";
/// The line after those: the web UI's URL with the access token.
pub const UI_URL_PREFIX: &str = "Open the web UI at ";
/// The access token's file in the data directory.
pub const ACCESS_TOKEN_FILE: &str = "api-token";
/// How long a server may take to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a model may take to load (the machine may be busy compiling).
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// The access token `hearth serve` keeps in the data directory `home` (tests that start the
/// server themselves send it as `Authorization: Bearer`).
pub fn read_access_token(home: &Path) -> String {
    std::fs::read_to_string(home.join(ACCESS_TOKEN_FILE))
        .expect("hearth serve keeps its access token in the data folder")
        .trim()
        .to_string()
}

/// A running `hearth serve`, stopped when dropped.
pub struct TestServer {
    child: Child,
    client: Client,
    /// The web UI's URL `hearth serve` printed (`http://127.0.0.1:PORT/?token=...`).
    ui_url: String,
    /// The access token in that URL (the client sends it unless `--api-key` was given).
    access_token: String,
    /// Where the Ollama API listens (`--ollama`).
    pub ollama_address: Option<std::net::SocketAddr>,
    stderr: Arc<Mutex<String>>,
    /// The data directory (taken back by [`TestServer::stop`]).
    home: Option<tempfile::TempDir>,
}

impl TestServer {
    /// Starts `hearth serve --port 0 --model <SmolLM2>` with `extra` arguments and waits until
    /// it listens (not until the model is loaded: see [`TestServer::wait_ready`]).
    pub fn start(extra: &[&str]) -> TestServer {
        let model = hearth_testkit::smollm2();
        Self::start_in(tempfile::tempdir().unwrap(), Some(&model), extra)
    }

    /// Starts `hearth serve` with `home` as its data directory (its model library is
    /// `home/models`), serving `model` (a path) if given.
    pub fn start_in(home: tempfile::TempDir, model: Option<&Path>, extra: &[&str]) -> TestServer {
        let mut args: Vec<&std::ffi::OsStr> = vec!["--port".as_ref(), "0".as_ref()];
        if let Some(model) = model {
            args.extend(["--model".as_ref(), model.as_os_str()]);
        }
        args.extend(extra.iter().map(|arg| std::ffi::OsStr::new(*arg)));
        Self::start_with(home, &args, &[])
    }

    /// Starts `hearth serve ARGS` (nothing added: no `--port`) with `home` as its data
    /// directory and `environment` set (HEARTH_LOG, HEARTH_API_KEY and HEARTH_PORT are
    /// cleared first).
    pub fn start_with(
        home: tempfile::TempDir,
        args: &[&std::ffi::OsStr],
        environment: &[(&str, &str)],
    ) -> TestServer {
        let api_key = args
            .iter()
            .position(|arg| *arg == "--api-key")
            .and_then(|at| args.get(at + 1))
            .map(|key| key.to_string_lossy().into_owned());
        let mut child = Command::new(env!("CARGO_BIN_EXE_hearth"))
            .arg("serve")
            .args(args)
            .env("HEARTH_HOME", home.path())
            .env_remove("HEARTH_LOG")
            .env_remove("HEARTH_API_KEY")
            .env_remove("HEARTH_PORT")
            .envs(environment.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start hearth serve");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut stderr_pipe = child.stderr.take().unwrap();
        let stderr_sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(read) = stderr_pipe.read(&mut buffer) {
                if read == 0 {
                    break;
                }
                if let Ok(mut sink) = stderr_sink.lock() {
                    sink.push_str(&String::from_utf8_lossy(&buffer[..read]));
                }
            }
        });
        let stdout = child.stdout.take().unwrap();
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            let mut address = None;
            let mut ollama = None;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(bound) = line.strip_prefix(LISTENING_PREFIX) {
                    address = Some(bound.trim().to_string());
                }
                if let Some(bound) = line.strip_prefix(OLLAMA_LISTENING_PREFIX) {
                    ollama = bound.trim().parse().ok();
                }
                if let Some(rest) = line.strip_prefix(UI_URL_PREFIX) {
                    let url = rest.split_whitespace().next().unwrap_or_default();
                    if let Some(address) = address.take() {
                        let _ = sender.send((address, url.to_string(), ollama.take()));
                    }
                }
            }
        });
        let (address, ui_url, ollama_address) = match receiver.recv_timeout(START_TIMEOUT) {
            Ok((address, ui_url, ollama)) => {
                (address.parse().expect("a socket address"), ui_url, ollama)
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "hearth serve printed no address; stderr:\n{}",
                    stderr.lock().unwrap()
                );
            }
        };
        let access_token = ui_url
            .split_once("?token=")
            .map(|(_, token)| token.to_string())
            .expect("the web UI's URL carries the token");
        let api_key = api_key.or_else(|| Some(access_token.clone()));
        TestServer {
            child,
            client: Client { address, api_key },
            ui_url,
            access_token,
            ollama_address,
            stderr,
            home: Some(home),
        }
    }

    /// The web UI's URL it printed, with the access token.
    pub fn ui_url(&self) -> &str {
        &self.ui_url
    }

    /// The access token (`/api/*` needs it or the `--api-key`).
    pub fn access_token(&self) -> &str {
        &self.access_token
    }

    /// The same server's API without any key (`/v1/*` is open on loopback by default).
    pub fn keyless(&self) -> Client {
        Client {
            address: self.client.address,
            api_key: None,
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The process ids of the server's children (its engine workers), on Linux.
    pub fn worker_pids(&self) -> Vec<u32> {
        hearth_testkit::child_processes(self.child.id())
    }

    /// The server's data directory (`HEARTH_HOME`).
    pub fn home(&self) -> &Path {
        self.home.as_ref().expect("the server's home").path()
    }

    /// Kills the server and gives back its data directory (to start another on it).
    pub fn stop(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.home.take().expect("the server's home")
    }

    /// Stops the server as a user's Ctrl-C or a service manager does (SIGTERM), waits for it
    /// to exit (`timeout`), and gives back its data directory.
    #[cfg(unix)]
    pub fn terminate(mut self, timeout: Duration) -> tempfile::TempDir {
        let terminated = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("cannot run kill");
        assert!(terminated.success());
        let stopping = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                stopping.elapsed() < timeout,
                "the server did not exit within {timeout:?} of SIGTERM:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(status.success(), "{status}\n{}", self.stderr());
        self.home.take().expect("the server's home")
    }

    /// The server's stderr so far (for failure messages).
    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Waits until `/health` says 200 (the preloaded model is ready).
    pub fn wait_ready(&self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let response = self.get("/health");
            if response.status == 200 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the server never became ready: {} {}\n{}",
                response.status,
                response.text(),
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Deref for TestServer {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        // Killing the front end closes the workers' stdin, so they exit too.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Checks a response is OpenAI's error object with `code` (and `param`), and leaks no path.
pub fn check_error(
    name: &str,
    response: &HttpResponse,
    status: u16,
    code: &str,
    param: Option<&str>,
) {
    assert_eq!(
        response.status,
        status,
        "{name}: expected {status}, got {}: {}",
        response.status,
        response.text()
    );
    let body: Value = serde_json::from_slice(&response.body)
        .unwrap_or_else(|_| panic!("{name}: the body is not JSON: {}", response.text()));
    let error = body
        .get("error")
        .and_then(Value::as_object)
        .unwrap_or_else(|| panic!("{name}: no error object: {body}"));
    let message = error["message"].as_str().unwrap_or_default();
    assert!(!message.is_empty(), "{name}: empty message: {body}");
    assert!(error["type"].is_string(), "{name}: no type: {body}");
    assert!(error.contains_key("param"), "{name}: no param: {body}");
    assert_eq!(error["code"], code, "{name}: wrong code: {body}");
    if let Some(param) = param {
        assert_eq!(error["param"], param, "{name}: wrong param: {body}");
    }
    let models_dir = hearth_testkit::test_models_dir().display().to_string();
    assert!(
        !message.contains(&models_dir),
        "{name}: a path leaked: {message}"
    );
    if let Some(home) = std::env::var_os("HOME").map(|h| h.to_string_lossy().into_owned()) {
        assert!(
            home.len() <= 1 || !message.contains(&format!("{home}/")),
            "{name}: the home directory leaked: {message}"
        );
    }
    assert!(
        response
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json")),
        "{name}: an error is JSON, never an event stream: {:?}",
        response.headers
    );
}
