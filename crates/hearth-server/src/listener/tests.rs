//! The accept loop and the body limit against real TCP clients on loopback: slow headers,
//! a flood of idle connections, and oversize bodies still being sent.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{start, ConnectionLimits, RunningServer, ServerOptions};

async fn server(home: &std::path::Path, limits: ConnectionLimits) -> RunningServer {
    let mut options = ServerOptions::new(home, crate::test_support::missing_worker());
    options.port = 0;
    options.connection_limits = limits;
    start(options).await.unwrap()
}

/// Sends `request` on a new connection and reads the whole answer (the server closes).
async fn exchange(address: SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("the answer came in time")
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

fn models_request(address: SocketAddr) -> String {
    format!("GET /v1/models HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n")
}

/// Reads until the server closes; the time it took.
async fn time_to_close(stream: &mut TcpStream, started: Instant) -> Duration {
    let mut buffer = [0u8; 1024];
    loop {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return started.elapsed(),
            Ok(_) => {}
        }
    }
}

#[tokio::test]
async fn a_slow_header_client_is_dropped_within_the_bound_while_others_are_answered() {
    let home = tempfile::tempdir().unwrap();
    let limits = ConnectionLimits {
        header_read_timeout: Duration::from_secs(1),
        ..ConnectionLimits::default()
    };
    let server = server(home.path(), limits).await;
    let address = server.local_addr();

    // One header byte every 100 ms: the headers would take 30 s.
    let started = Instant::now();
    let slow = TcpStream::connect(address).await.unwrap();
    let (mut slow_reader, mut slow_writer) = slow.into_split();
    let trickle = tokio::spawn(async move {
        let head = format!(
            "GET /v1/models HTTP/1.1\r\nHost: {address}\r\nX-Slow: {}",
            "a".repeat(300)
        );
        for byte in head.bytes() {
            if slow_writer.write_all(&[byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    // Meanwhile another client is answered at once.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let asked = Instant::now();
    let answer = exchange(address, &models_request(address)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        asked.elapsed() < Duration::from_millis(900),
        "{:?}",
        asked.elapsed()
    );

    let mut buffer = [0u8; 1024];
    let closed_after = loop {
        match tokio::time::timeout(Duration::from_secs(5), slow_reader.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break started.elapsed(),
            Ok(Ok(_)) => {}
            Err(_) => panic!("the slow client was not dropped within 5 s"),
        }
    };
    assert!(
        closed_after >= Duration::from_millis(900) && closed_after < Duration::from_millis(2500),
        "dropped after {closed_after:?} (bound: 1 s)"
    );
    trickle.abort();
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn connections_over_the_cap_are_refused_with_503_until_idle_ones_are_dropped() {
    let home = tempfile::tempdir().unwrap();
    let limits = ConnectionLimits {
        header_read_timeout: Duration::from_secs(1),
        max_connections: 3,
    };
    let server = server(home.path(), limits).await;
    let address = server.local_addr();
    let started = Instant::now();
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(TcpStream::connect(address).await.unwrap());
    }
    // Let the server accept them.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let refused = exchange(address, &models_request(address)).await;
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(refused.contains("retry-after: 1"), "{refused}");
    assert!(refused.contains("too_many_connections"), "{refused}");

    // The idle connections end at the header timeout, and the server answers again.
    for stream in &mut idle {
        let closed_after = time_to_close(stream, started).await;
        assert!(
            closed_after < Duration::from_millis(2500),
            "{closed_after:?}"
        );
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let answer = exchange(address, &models_request(address)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    server.shutdown().await.unwrap();
}

/// A client that sends its whole 50 MB body before reading gets the 413 and its reason, not
/// a reset; a chunked body over the limit too; the server answers the next request.
#[tokio::test]
async fn an_oversize_body_still_being_sent_gets_its_413() {
    let home = tempfile::tempdir().unwrap();
    let server = server(home.path(), ConnectionLimits::default()).await;
    let address = server.local_addr();

    let length = 50 * 1024 * 1024;
    let mut stream = TcpStream::connect(address).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![b' '; 1024 * 1024];
    for _ in 0..50 {
        stream
            .write_all(&chunk)
            .await
            .expect("the server reads the body it refuses");
    }
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("request_too_large"), "{answer}");

    let mut chunked = TcpStream::connect(address).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    chunked.write_all(head.as_bytes()).await.unwrap();
    for _ in 0..12 {
        chunked
            .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .await
            .unwrap();
        chunked.write_all(&chunk).await.unwrap();
        chunked.write_all(b"\r\n").await.unwrap();
    }
    let _ = chunked.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    chunked.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    let answer = exchange(address, &models_request(address)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    server.shutdown().await.unwrap();
}
