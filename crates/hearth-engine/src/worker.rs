//! The worker process: `hearth engine` runs this. It reads [`WorkerRequest`] lines from stdin,
//! hands them to the engine thread, and writes [`WorkerEvent`] lines to stdout. Closing stdin
//! stops it: the supervisor going away (even by SIGKILL) closes the pipe, so no worker is
//! left orphaned.

use std::io::{BufRead, Read, Write};

use hearth_protocol::{
    encode_line, ErrorKind, WorkerError, WorkerEvent, WorkerRequest, PROTOCOL_VERSION,
};

use crate::engine::{stats_event, EngineHandle};

/// Longest request line accepted (a long chat history fits many times over).
pub const MAX_REQUEST_LINE_BYTES: u64 = 64 * 1024 * 1024;

fn write_event(event: &WorkerEvent) {
    let Ok(line) = encode_line(event) else { return };
    let mut stdout = std::io::stdout().lock();
    if stdout
        .write_all(line.as_bytes())
        .and_then(|()| stdout.flush())
        .is_err()
    {
        // The supervisor is gone; nobody can use what this worker produces.
        std::process::exit(0);
    }
}

/// Runs the worker until stdin closes or a `Shutdown` arrives.
pub fn run_worker() -> std::io::Result<()> {
    write_event(&WorkerEvent::Ready {
        protocol_version: PROTOCOL_VERSION,
        engine_version: env!("CARGO_PKG_VERSION").to_string(),
        pid: std::process::id(),
    });
    let engine = EngineHandle::spawn_with_memory_ceiling(|event: WorkerEvent| write_event(&event))?;
    let stdin = std::io::stdin();
    let mut reader = stdin.lock();
    let mut line = String::new();
    loop {
        line.clear();
        let read = (&mut reader)
            .take(MAX_REQUEST_LINE_BYTES)
            .read_line(&mut line)?;
        if read == 0 {
            break;
        }
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<WorkerRequest>(&line) {
            Ok(WorkerRequest::Shutdown) => break,
            // Answered here from the counters of the last step, so a metrics scrape never
            // waits for a long prefill step; before a load the engine thread answers the error.
            Ok(WorkerRequest::Stats { request_id }) => match engine.scheduler_snapshot() {
                Some(snapshot) => write_event(&stats_event(request_id, snapshot)),
                None => {
                    if !engine.submit(WorkerRequest::Stats { request_id }) {
                        break;
                    }
                }
            },
            Ok(request) => {
                if !engine.submit(request) {
                    break;
                }
            }
            Err(error) => write_event(&WorkerEvent::Error {
                request_id: None,
                error: WorkerError::new(
                    ErrorKind::InvalidRequest,
                    format!("malformed request line: {error}"),
                ),
            }),
        }
    }
    engine.shutdown();
    Ok(())
}
