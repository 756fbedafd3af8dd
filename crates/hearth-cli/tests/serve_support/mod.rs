//! Shared by the `hearth serve` end-to-end tests: a real server on a free loopback port (the
//! bound address is read from its stdout) and a tiny HTTP/1.1 client over `TcpStream`, raw
//! enough to send what a well-behaved client never would (foreign Host headers, broken JSON,
//! a 50 MB body) and to drop a connection in the middle of a stream.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The line `hearth serve` prints once it listens.
pub const LISTENING_PREFIX: &str = "Hearth API listening on http://";
/// How long a server may take to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a model may take to load (the machine may be busy compiling).
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest silence on a socket before a test gives up (no test ever hangs).
pub const SOCKET_TIMEOUT: Duration = Duration::from_secs(180);

/// A running `hearth serve`, stopped when dropped.
pub struct TestServer {
    child: Child,
    pub address: SocketAddr,
    pub api_key: Option<String>,
    stderr: Arc<Mutex<String>>,
    _home: tempfile::TempDir,
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
        let api_key = extra
            .iter()
            .position(|arg| *arg == "--api-key")
            .and_then(|at| extra.get(at + 1))
            .map(|key| key.to_string());
        let mut child = Command::new(env!("CARGO_BIN_EXE_hearth"))
            .args(["serve", "--port", "0"])
            .args(model.iter().flat_map(|model| [Path::new("--model"), model]))
            .args(extra)
            .env("HEARTH_HOME", home.path())
            .env_remove("HEARTH_LOG")
            .env_remove("HEARTH_API_KEY")
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
                panic!(
                    "hearth serve printed no address; stderr:\n{}",
                    stderr.lock().unwrap()
                );
            }
        };
        TestServer {
            child,
            address,
            api_key,
            stderr,
            _home: home,
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The process ids of the server's children (its engine workers), on Linux.
    pub fn worker_pids(&self) -> Vec<u32> {
        // Each thread lists the children it started; the workers are started by whichever
        // runtime thread ran the load.
        let tasks = std::fs::read_dir(format!("/proc/{}/task", self.child.id()));
        tasks
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
            .flat_map(|children| {
                children
                    .split_whitespace()
                    .filter_map(|child| child.parse().ok())
                    .collect::<Vec<u32>>()
            })
            .collect()
    }

    /// The server's stderr so far (for failure messages).
    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The `Authorization` header of this server's key, if it has one.
    pub fn auth(&self) -> Vec<(String, String)> {
        self.api_key
            .iter()
            .map(|key| ("Authorization".to_string(), format!("Bearer {key}")))
            .collect()
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

    /// The id of the first model in `/v1/models`.
    pub fn model_id(&self) -> String {
        let models = self.get("/v1/models").json();
        models["data"][0]["id"]
            .as_str()
            .expect("a model id")
            .to_string()
    }

    pub fn get(&self, path: &str) -> HttpResponse {
        let auth = self.auth();
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        request(self.address, "GET", path, &headers, b"")
    }

    /// POSTs a JSON body with this server's key.
    pub fn post_json(&self, path: &str, body: &Value) -> HttpResponse {
        let auth = self.auth();
        let mut headers: Vec<(&str, &str)> =
            auth.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        headers.push(("Content-Type", "application/json"));
        request(
            self.address,
            "POST",
            path,
            &headers,
            body.to_string().as_bytes(),
        )
    }

    /// One metric's value from `/metrics` (the first line that starts with `series`).
    pub fn metric(&self, series: &str) -> Option<f64> {
        let text = self.get("/metrics").text();
        text.lines()
            .find(|line| line.starts_with(series) && line[series.len()..].starts_with(' '))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|value| value.parse().ok())
    }

    /// Polls `/metrics` until `series` equals `expected`, for at most `timeout`.
    pub fn wait_for_metric(&self, series: &str, expected: f64, timeout: Duration) -> Option<f64> {
        let deadline = Instant::now() + timeout;
        loop {
            let value = self.metric(series);
            if value == Some(expected) || Instant::now() >= deadline {
                return value;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        // Killing the front end closes the workers' stdin, so they exit too.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A response read to its end.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|error| panic!("not JSON ({error}): {}", self.text()))
    }
}

fn connect(address: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(address).expect("cannot connect to the server");
    stream.set_read_timeout(Some(SOCKET_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(SOCKET_TIMEOUT)).unwrap();
    stream
}

/// The request head: a `Host` naming the server unless `headers` has one, `Content-Length`,
/// and `Connection: close`.
fn head(
    address: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body_length: usize,
) -> String {
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: {address}\r\n"));
    }
    for (key, value) in headers {
        head.push_str(&format!("{key}: {value}\r\n"));
    }
    if method != "GET" || body_length > 0 {
        head.push_str(&format!("Content-Length: {body_length}\r\n"));
    }
    head.push_str("Connection: close\r\n\r\n");
    head
}

/// Sends one request and reads the whole response.
pub fn request(
    address: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    let mut stream = connect(address);
    let mut bytes = head(address, method, path, headers, body.len()).into_bytes();
    bytes.extend_from_slice(body);
    // The server may answer (and close) before reading everything; its answer still counts.
    let _ = stream.write_all(&bytes);
    read_response(&mut BufReader::new(stream))
}

/// Sends raw bytes and reads the whole response.
pub fn request_raw(address: SocketAddr, bytes: &[u8]) -> HttpResponse {
    let mut stream = connect(address);
    let _ = stream.write_all(bytes);
    read_response(&mut BufReader::new(stream))
}

/// Sends a body of `length` bytes from another thread while reading the response, as a client
/// must when the server may refuse the body before it is all sent.
pub fn request_with_large_body(
    address: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    length: usize,
) -> HttpResponse {
    let stream = connect(address);
    let mut writer = stream.try_clone().unwrap();
    let head = head(address, "POST", path, headers, length);
    let sender = std::thread::spawn(move || {
        if writer.write_all(head.as_bytes()).is_err() {
            return;
        }
        let block = vec![b' '; 1 << 20];
        let mut left = length;
        while left > 0 {
            let size = left.min(block.len());
            if writer.write_all(&block[..size]).is_err() {
                return;
            }
            left -= size;
        }
    });
    let response = read_response(&mut BufReader::new(stream.try_clone().unwrap()));
    let _ = stream.shutdown(Shutdown::Both);
    let _ = sender.join();
    response
}

fn read_head(reader: &mut impl BufRead) -> (u16, Vec<(String, String)>) {
    let mut status_line = String::new();
    reader.read_line(&mut status_line).expect("no status line");
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("truncated head");
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((key, value)) = line.split_once(':') {
            headers.push((key.trim().to_string(), value.trim().to_string()));
        }
    }
    (status, headers)
}

fn header_value<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}

/// Reads one chunk of a chunked body; `None` at the last (empty) chunk or at EOF.
fn read_chunk(reader: &mut impl BufRead) -> Option<Vec<u8>> {
    let mut size_line = String::new();
    if reader.read_line(&mut size_line).ok()? == 0 {
        return None;
    }
    let size = usize::from_str_radix(size_line.trim().split(';').next()?, 16).ok()?;
    if size == 0 {
        return None;
    }
    let mut chunk = vec![0u8; size];
    reader.read_exact(&mut chunk).ok()?;
    let mut crlf = [0u8; 2];
    reader.read_exact(&mut crlf).ok()?;
    Some(chunk)
}

fn read_response(reader: &mut impl BufRead) -> HttpResponse {
    let (status, headers) = read_head(reader);
    let mut body = Vec::new();
    if let Some(length) = header_value(&headers, "content-length").and_then(|v| v.parse().ok()) {
        body.resize(length, 0);
        reader.read_exact(&mut body).expect("truncated body");
    } else if header_value(&headers, "transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        while let Some(chunk) = read_chunk(reader) {
            body.extend_from_slice(&chunk);
        }
    } else {
        let _ = reader.read_to_end(&mut body);
    }
    HttpResponse {
        status,
        headers,
        body,
    }
}

/// A streamed answer read event by event; dropping it closes the connection mid-stream.
pub struct SseStream {
    reader: BufReader<TcpStream>,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pending: String,
    ended: bool,
}

impl SseStream {
    /// POSTs `body` and reads the response head.
    pub fn open(server: &TestServer, path: &str, body: &Value) -> SseStream {
        let mut stream = connect(server.address);
        let auth = server.auth();
        let mut headers: Vec<(&str, &str)> =
            auth.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        headers.push(("Content-Type", "application/json"));
        let body = body.to_string();
        let mut bytes = head(server.address, "POST", path, &headers, body.len()).into_bytes();
        bytes.extend_from_slice(body.as_bytes());
        stream.write_all(&bytes).expect("cannot send the request");
        let mut reader = BufReader::new(stream);
        let (status, headers) = read_head(&mut reader);
        SseStream {
            reader,
            status,
            headers,
            pending: String::new(),
            ended: false,
        }
    }

    /// The next event's `data`, or `None` at the end of the stream.
    pub fn next_data(&mut self) -> Option<String> {
        loop {
            if let Some(end) = self.pending.find("\n\n") {
                let event: String = self.pending.drain(..end + 2).collect();
                let data: Vec<&str> = event
                    .lines()
                    .filter_map(|line| line.strip_prefix("data:"))
                    .map(str::trim_start)
                    .collect();
                if data.is_empty() {
                    continue;
                }
                return Some(data.join("\n"));
            }
            if self.ended {
                return None;
            }
            match read_chunk(&mut self.reader) {
                Some(chunk) => self.pending.push_str(&String::from_utf8_lossy(&chunk)),
                None => self.ended = true,
            }
        }
    }

    /// Every remaining event's data.
    pub fn collect(mut self) -> Vec<String> {
        let mut events = Vec::new();
        while let Some(data) = self.next_data() {
            events.push(data);
        }
        events
    }
}
