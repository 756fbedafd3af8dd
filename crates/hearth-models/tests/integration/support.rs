//! Test helpers: the real test model, a small HTTP/1.1 server on 127.0.0.1 whose behaviour
//! each test scripts (cuts, stalls, redirects, HTML pages, ignored ranges), synthetic GGUF
//! files, a seeded random number generator and a progress recorder.

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::Duration;

use hearth_models::{
    Catalog, DownloadConfig, DownloadControl, DownloadProgress, HubClient, ModelsError,
    ProgressUpdate, Sha256Digest,
};

pub const SMOLLM2_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
pub const SMOLLM2_SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
pub const SMOLLM2_SIZE_BYTES: u64 = 98_362_432;

/// Bytes the test server writes per step (and between throttling pauses).
const SERVER_CHUNK_BYTES: usize = 256 * 1024;
/// How long a server handler waits for a request before giving up on the connection.
const SERVER_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The folder holding the test models: `$HEARTH_TEST_MODELS`, else
/// `~/.cache/hearth/test-models`.
pub fn test_models_dir() -> PathBuf {
    if let Some(directory) = std::env::var_os("HEARTH_TEST_MODELS") {
        return PathBuf::from(directory);
    }
    let home = std::env::var_os("HOME")
        .or_else(|| std::env::var_os("USERPROFILE"))
        .expect("HOME is not set; set HEARTH_TEST_MODELS to the test models folder");
    PathBuf::from(home).join(".cache/hearth/test-models")
}

/// The real SmolLM2 test model. Fails (never skips) when it is missing.
pub fn smollm2_path() -> PathBuf {
    let path = test_models_dir().join(SMOLLM2_FILE);
    assert!(
        path.is_file(),
        "the test model {} is missing: run scripts/fetch-test-models from the repository root \
         (or set HEARTH_TEST_MODELS to a folder holding {SMOLLM2_FILE})",
        path.display()
    );
    path
}

/// The real Gemma 3 270M test model (a 6.2 MiB header). Fails (never skips) when missing.
pub fn gemma3_path() -> PathBuf {
    let path = test_models_dir().join("gemma-3-270m-q4_k_m.gguf");
    assert!(
        path.is_file(),
        "the test model {} is missing: run scripts/fetch-test-models from the repository root",
        path.display()
    );
    path
}

/// The test model's bytes, read once per test binary.
pub fn smollm2_bytes() -> Arc<Vec<u8>> {
    static BYTES: OnceLock<Arc<Vec<u8>>> = OnceLock::new();
    BYTES
        .get_or_init(|| {
            let bytes = std::fs::read(smollm2_path()).expect("cannot read the test model");
            assert_eq!(
                bytes.len() as u64,
                SMOLLM2_SIZE_BYTES,
                "the test model has an unexpected size: run scripts/fetch-test-models again"
            );
            Arc::new(bytes)
        })
        .clone()
}

pub fn smollm2_digest() -> Sha256Digest {
    Sha256Digest::from_hex(SMOLLM2_SHA256).unwrap()
}

/// SplitMix64: a tiny seeded generator, so that "random" cut points repeat run after run.
#[derive(Debug, Clone)]
pub struct SeededRandom(u64);

impl SeededRandom {
    pub fn new(seed: u64) -> Self {
        SeededRandom(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut mixed = self.0;
        mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        mixed ^ (mixed >> 31)
    }

    /// A number in `low..high`.
    pub fn in_range(&mut self, low: u64, high: u64) -> u64 {
        assert!(low < high);
        low + self.next_u64() % (high - low)
    }
}

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

/// A download configuration for tests: short timeouts and backoffs, no disk margin.
pub fn fast_config() -> DownloadConfig {
    DownloadConfig {
        stall_timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(5),
        max_attempts: 3,
        initial_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
        free_space_margin_bytes: 0,
        progress_interval: Duration::from_millis(5),
        hub_token: None,
        user_agent: "hearth-models-tests".to_string(),
    }
}

pub fn hub_client(server: &TestServer, config: DownloadConfig) -> HubClient {
    HubClient::new(&server.base_url(), config).unwrap()
}

/// A one-model catalog whose file is the real test model under `repo`.
pub fn test_catalog(repo: &str, with_figures: bool) -> Catalog {
    let figures = if with_figures {
        format!("size_bytes = {SMOLLM2_SIZE_BYTES}\nsha256 = \"{SMOLLM2_SHA256}\"\n")
    } else {
        String::new()
    };
    let text = format!(
        r#"
schema_version = 1
default_model = "smollm2-test"

[[models]]
id = "smollm2-test"
display_name = "SmolLM2 test"
family = "SmolLM2"
repo = "{repo}"
license = "apache-2.0"
parameters_billions = 0.135
context_length = 8192
purpose = "tests"
default_quantization = "Q4_1"

[[models.files]]
quantization = "Q4_1"
file = "{SMOLLM2_FILE}"
{figures}"#
    );
    Catalog::parse(&text, "test catalog").unwrap()
}

/// Records progress and can act on the control when a byte count is reached.
#[derive(Default)]
pub struct RecordingProgress {
    pub updates: Mutex<Vec<ProgressUpdate>>,
    pub retries: Mutex<Vec<String>>,
    pub waited_for_other_download: AtomicBool,
    /// When `bytes_done` reaches the threshold, call the action (once).
    pub trigger: Option<(u64, Box<dyn Fn() + Send + Sync>)>,
    triggered: AtomicBool,
}

impl RecordingProgress {
    pub fn with_trigger(threshold: u64, action: impl Fn() + Send + Sync + 'static) -> Self {
        RecordingProgress {
            trigger: Some((threshold, Box::new(action))),
            ..RecordingProgress::default()
        }
    }

    /// Pauses or cancels `control` once `threshold` bytes are done.
    pub fn pausing(control: &DownloadControl, threshold: u64, cancel: bool) -> Self {
        let control = control.clone();
        RecordingProgress::with_trigger(threshold, move || {
            if cancel {
                control.cancel()
            } else {
                control.pause()
            }
        })
    }
}

impl DownloadProgress for RecordingProgress {
    fn advanced(&self, update: &ProgressUpdate) {
        self.updates.lock().unwrap().push(update.clone());
        if let Some((threshold, action)) = &self.trigger {
            if update.bytes_done >= *threshold && !self.triggered.swap(true, Ordering::SeqCst) {
                action();
            }
        }
    }

    fn retrying(&self, _failed_attempts: u32, _delay: Duration, reason: &ModelsError) {
        self.retries.lock().unwrap().push(reason.to_string());
    }

    fn waiting_for_other_download(&self, _lock_path: &Path) {
        self.waited_for_other_download.store(true, Ordering::SeqCst);
    }
}

/// Writes a small valid GGUF file (a header with an architecture, context length, file type
/// and chat template, one tensor) padded with zeros to `total_bytes`.
pub fn write_synthetic_gguf(path: &Path, architecture: &str, total_bytes: usize) {
    fn string(bytes: &mut Vec<u8>, text: &str) {
        bytes.extend_from_slice(&(text.len() as u64).to_le_bytes());
        bytes.extend_from_slice(text.as_bytes());
    }
    const TYPE_UINT32: u32 = 4;
    const TYPE_STRING: u32 = 8;
    let mut bytes = Vec::new();
    bytes.extend_from_slice(b"GGUF");
    bytes.extend_from_slice(&3u32.to_le_bytes());
    bytes.extend_from_slice(&1u64.to_le_bytes());
    bytes.extend_from_slice(&4u64.to_le_bytes());
    string(&mut bytes, "general.architecture");
    bytes.extend_from_slice(&TYPE_STRING.to_le_bytes());
    string(&mut bytes, architecture);
    string(&mut bytes, &format!("{architecture}.context_length"));
    bytes.extend_from_slice(&TYPE_UINT32.to_le_bytes());
    bytes.extend_from_slice(&4096u32.to_le_bytes());
    string(&mut bytes, "general.file_type");
    bytes.extend_from_slice(&TYPE_UINT32.to_le_bytes());
    bytes.extend_from_slice(&7u32.to_le_bytes());
    string(&mut bytes, "tokenizer.chat_template");
    bytes.extend_from_slice(&TYPE_STRING.to_le_bytes());
    string(&mut bytes, "{{ messages }}");
    // 16 x 16 f32 elements: 1 KiB of data right after the header, so that even a 4 KiB file
    // holds all of it (hearth-gguf checks that tensor data lies inside the file).
    string(&mut bytes, "token_embd.weight");
    bytes.extend_from_slice(&2u32.to_le_bytes());
    bytes.extend_from_slice(&16u64.to_le_bytes());
    bytes.extend_from_slice(&16u64.to_le_bytes());
    bytes.extend_from_slice(&0u32.to_le_bytes());
    bytes.extend_from_slice(&0u64.to_le_bytes());
    if bytes.len() < total_bytes {
        bytes.resize(total_bytes, 0);
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(path, bytes).unwrap();
}

/// Total size of the regular files under `root` (links are not followed).
pub fn bytes_on_disk(root: &Path) -> u64 {
    let mut total = 0;
    let mut pending = vec![root.to_path_buf()];
    while let Some(directory) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&directory) else {
            continue;
        };
        for entry in entries.flatten() {
            let file_type = entry.file_type().unwrap();
            if file_type.is_dir() {
                pending.push(entry.path());
            } else if file_type.is_file() {
                total += entry.metadata().unwrap().len();
            }
        }
    }
    total
}

/// Files directly in `directory` whose names end with `suffix`.
pub fn files_ending_with(directory: &Path, suffix: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(directory) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.to_string_lossy().ends_with(suffix))
        .collect();
    files.sort();
    files
}
