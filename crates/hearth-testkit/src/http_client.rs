//! A tiny HTTP/1.1 client over `TcpStream` for tests of Hearth's API (the real `hearth serve`
//! process, or a server started in-process): raw enough to send what a well-behaved client
//! never would (foreign Host headers, broken JSON, a 50 MB body) and to drop a connection in
//! the middle of a stream. Blocking, with a socket timeout, so no test ever hangs.

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Longest silence on a socket before a test gives up.
pub const SOCKET_TIMEOUT: Duration = Duration::from_secs(180);

/// A server's address and, when it needs one, its API key.
#[derive(Debug, Clone)]
pub struct Client {
    pub address: SocketAddr,
    pub api_key: Option<String>,
}

impl Client {
    /// The `Authorization` header of this server's key, if it has one.
    pub fn auth(&self) -> Vec<(String, String)> {
        self.api_key
            .iter()
            .map(|key| ("Authorization".to_string(), format!("Bearer {key}")))
            .collect()
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
        self.send("GET", path, None)
    }

    /// POSTs a JSON body with this server's key.
    pub fn post_json(&self, path: &str, body: &Value) -> HttpResponse {
        self.send("POST", path, Some(body))
    }

    /// Sends `method` with this server's key and, when given, a JSON body.
    pub fn send(&self, method: &str, path: &str, body: Option<&Value>) -> HttpResponse {
        let auth = self.auth();
        let mut headers: Vec<(&str, &str)> =
            auth.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let body = body.map(Value::to_string).unwrap_or_default();
        if !body.is_empty() {
            headers.push(("Content-Type", "application/json"));
        }
        request(self.address, method, path, &headers, body.as_bytes())
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
#[derive(Debug)]
pub struct SseStream {
    reader: BufReader<TcpStream>,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pending: String,
    ended: bool,
}

impl SseStream {
    /// POSTs `body` and reads the response head.
    pub fn open(server: &Client, path: &str, body: &Value) -> SseStream {
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
