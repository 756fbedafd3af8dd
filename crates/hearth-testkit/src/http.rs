//! A small HTTP/1.1 server on 127.0.0.1 whose answers each test scripts: files with or without
//! Range support, cut, stalled or throttled transfers, redirects, bodies and bare statuses. It
//! stands in for the model hub in the download tests of `hearth-models`, the CLI and the
//! server, so nothing in a test ever leaves loopback.

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// Bytes the test server writes per step (and between throttling pauses).
pub const SERVER_CHUNK_BYTES: usize = 256 * 1024;
/// How long a server handler waits for a request before giving up on the connection.
const SERVER_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// The start of a `Range: bytes=<start>-` header.
    pub range_start: Option<u64>,
    /// The end of a `Range: bytes=<start>-<last>` header (inclusive).
    pub range_last: Option<u64>,
    pub headers: Vec<(String, String)>,
}

impl RecordedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// How the server serves a file.
#[derive(Debug, Clone)]
pub struct FileReply {
    pub bytes: Arc<Vec<u8>>,
    pub honor_range: bool,
    /// Close the connection after this many body bytes.
    pub cut_after: Option<u64>,
    /// Send this many body bytes, then go silent for `stall_for`, then close.
    pub stall_after: Option<u64>,
    pub stall_for: Duration,
    /// Pause between chunks, to make a transfer last long enough to pause or race it.
    pub chunk_delay: Option<Duration>,
    pub content_type: &'static str,
    /// Hub-style metadata headers (`X-Linked-Size`, `X-Linked-Etag`) on every answer.
    pub linked_sha256: Option<String>,
    /// Body bytes written so far, across requests (for tests that check what a resume fetched).
    pub sent_bytes: Option<Arc<AtomicU64>>,
}

impl FileReply {
    pub fn new(bytes: Arc<Vec<u8>>) -> Self {
        FileReply {
            bytes,
            honor_range: true,
            cut_after: None,
            stall_after: None,
            stall_for: Duration::ZERO,
            chunk_delay: None,
            content_type: "application/octet-stream",
            linked_sha256: None,
            sent_bytes: None,
        }
    }

    /// A model file as the hub serves it: Range support and the `X-Linked-*` headers that
    /// carry its size and SHA-256.
    pub fn hub_file(bytes: Arc<Vec<u8>>, sha256: &str) -> Self {
        FileReply {
            linked_sha256: Some(sha256.to_string()),
            ..FileReply::new(bytes)
        }
    }
}

/// What the server answers.
#[derive(Debug, Clone)]
pub enum Reply {
    File(FileReply),
    /// 302 to this location, with optional hub metadata headers.
    Redirect {
        location: String,
        linked: Option<(u64, String)>,
    },
    /// 200 with a body and a content type.
    Body {
        content_type: &'static str,
        body: String,
    },
    Status(u16),
}

type Handler = dyn Fn(&RecordedRequest, usize) -> Reply + Send + Sync;

/// A scripted HTTP server on 127.0.0.1. Each connection serves one request and closes.
#[derive(Debug)]
pub struct TestServer {
    address: SocketAddr,
    requests: Arc<Mutex<Vec<RecordedRequest>>>,
    stopping: Arc<AtomicBool>,
}

impl TestServer {
    /// Starts a server; `handler` gets each request and its 0-based number.
    pub fn start(
        handler: impl Fn(&RecordedRequest, usize) -> Reply + Send + Sync + 'static,
    ) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("cannot bind 127.0.0.1");
        let address = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stopping = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        {
            let requests = Arc::clone(&requests);
            let stopping = Arc::clone(&stopping);
            thread::spawn(move || {
                for stream in listener.incoming() {
                    if stopping.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let requests = Arc::clone(&requests);
                    let handler = Arc::clone(&handler);
                    thread::spawn(move || serve_connection(stream, &requests, &*handler));
                }
            });
        }
        TestServer {
            address,
            requests,
            stopping,
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.address)
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.requests.lock().unwrap().clone()
    }

    /// Requests of `method` for `path`.
    pub fn requests_for(&self, method: &str, path: &str) -> Vec<RecordedRequest> {
        self.requests()
            .into_iter()
            .filter(|request| request.method == method && request.path == path)
            .collect()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag and ends.
        let _ = TcpStream::connect(self.address);
    }
}

fn serve_connection(stream: TcpStream, requests: &Mutex<Vec<RecordedRequest>>, handler: &Handler) {
    let _ = stream.set_read_timeout(Some(SERVER_REQUEST_TIMEOUT));
    let Ok(reader_stream) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(reader_stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_string(), value.trim().to_string()));
        }
    }
    let range_start = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("range"))
        .and_then(|(_, value)| value.strip_prefix("bytes="))
        .and_then(|value| value.split('-').next())
        .and_then(|start| start.parse().ok());
    let range_last = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("range"))
        .and_then(|(_, value)| value.strip_prefix("bytes="))
        .and_then(|value| value.split('-').nth(1))
        .and_then(|last| last.trim().parse().ok());
    let request = RecordedRequest {
        method,
        path,
        range_start,
        range_last,
        headers,
    };
    let index = {
        let mut log = requests.lock().unwrap();
        log.push(request.clone());
        log.len() - 1
    };
    let reply = handler(&request, index);
    let _ = write_reply(stream, &request, reply);
}

fn write_reply(
    mut stream: TcpStream,
    request: &RecordedRequest,
    reply: Reply,
) -> std::io::Result<()> {
    let is_head = request.method == "HEAD";
    match reply {
        Reply::Status(status) => {
            write!(
                stream,
                "HTTP/1.1 {status} Status\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )?;
        }
        Reply::Redirect { location, linked } => {
            let mut head = format!(
                "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n"
            );
            if let Some((size, sha256)) = linked {
                head.push_str(&format!(
                    "X-Linked-Size: {size}\r\nX-Linked-Etag: \"{sha256}\"\r\nX-Repo-Commit: 0123456789abcdef0123456789abcdef01234567\r\n"
                ));
            }
            head.push_str("\r\n");
            stream.write_all(head.as_bytes())?;
        }
        Reply::Body { content_type, body } => {
            write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )?;
            if !is_head {
                stream.write_all(body.as_bytes())?;
            }
        }
        Reply::File(file) => write_file(&mut stream, request, &file, is_head)?,
    }
    stream.flush()?;
    let _ = stream.shutdown(Shutdown::Write);
    Ok(())
}

fn write_file(
    stream: &mut TcpStream,
    request: &RecordedRequest,
    file: &FileReply,
    is_head: bool,
) -> std::io::Result<()> {
    let total = file.bytes.len() as u64;
    let mut linked = String::new();
    if let Some(sha256) = &file.linked_sha256 {
        linked = format!("X-Linked-Size: {total}\r\nX-Linked-Etag: \"{sha256}\"\r\n");
    }
    let mut end = total;
    let start = match (file.honor_range, request.range_start) {
        (true, Some(start)) if start >= total => {
            write!(
                stream,
                "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{total}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )?;
            return Ok(());
        }
        (true, Some(start)) => {
            let last = request
                .range_last
                .map_or(total - 1, |last| last.min(total - 1));
            end = last + 1;
            write!(
                stream,
                "HTTP/1.1 206 Partial Content\r\nContent-Type: {}\r\nContent-Range: bytes {start}-{last}/{total}\r\nContent-Length: {}\r\n{linked}Connection: close\r\n\r\n",
                file.content_type,
                end - start
            )?;
            start
        }
        _ => {
            write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nContent-Length: {total}\r\nAccept-Ranges: bytes\r\n{linked}Connection: close\r\n\r\n",
                file.content_type
            )?;
            0
        }
    };
    if is_head {
        return Ok(());
    }
    let body = &file.bytes[start as usize..end as usize];
    let mut limit = body.len();
    if let Some(cut_after) = file.cut_after {
        limit = limit.min(cut_after as usize);
    }
    let stall_at = file.stall_after.map(|stall_after| stall_after as usize);
    if let Some(stall_at) = stall_at {
        limit = limit.min(stall_at);
    }
    for chunk in body[..limit].chunks(SERVER_CHUNK_BYTES) {
        stream.write_all(chunk)?;
        if let Some(sent_bytes) = &file.sent_bytes {
            sent_bytes.fetch_add(chunk.len() as u64, Ordering::SeqCst);
        }
        if let Some(delay) = file.chunk_delay {
            thread::sleep(delay);
        }
    }
    if stall_at.is_some() {
        stream.flush()?;
        thread::sleep(file.stall_for);
    }
    Ok(())
}
