//! The accept loop: HTTP/1.1 connections under a time limit for request headers and a cap on
//! open connections, so no client (or local program) can hold the process's sockets and
//! memory by connecting and saying nothing.
//!
//! axum's own `serve` sets no timer, so a client sending one header byte a minute would keep
//! its connection (and a file descriptor) for ever, and nothing bounds how many such
//! connections there are. Here hyper's HTTP/1.1 connection gets a timer and
//! `header_read_timeout`: a request's headers (also the wait for the next request on a kept-
//! alive connection) must arrive within [`ConnectionLimits::header_read_timeout`], or the
//! connection closes. At most [`ConnectionLimits::max_connections`] connections are served at
//! once; one beyond is answered 503 with `Retry-After` and closed (a bounded number of those
//! answers at a time; beyond that a connection is closed unanswered).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch, Semaphore};

use crate::error::ApiError;

/// How long a request's headers may take to arrive (and a kept-alive connection may idle).
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once: a browser opens six per origin, each open answer stream
/// holds one; far below the usual limit of 1,024 open files.
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;
/// Connections over the cap that get their 503 at the same time; more are closed unanswered.
const MAX_REFUSALS_IN_FLIGHT: usize = 32;
/// How long a refusal may take to write its answer and read what the client sent.
const REFUSAL_TIME: Duration = Duration::from_secs(1);
/// Seconds a refused client is told to wait.
const REFUSAL_RETRY_AFTER_SECS: u32 = 1;

/// What bounds the connections of one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Time for a request's headers to arrive, from the first wait for them.
    pub header_read_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// Serves `router` on `listener` until `stop` fires, then lets open connections finish their
/// requests (closing kept-alive ones) and returns once every connection task has ended.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    mut stop: oneshot::Receiver<()>,
) -> std::io::Result<()> {
    let connections = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let refusals = Arc::new(Semaphore::new(MAX_REFUSALS_IN_FLIGHT));
    // Dropping `stopping` tells every connection to finish gracefully; every connection holds
    // a `closed` receiver, so `all_closed.closed()` resolves when the last one ends.
    let (stopping, _) = watch::channel(());
    let (all_closed, closed) = watch::channel(());
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            if let Ok(refusal) = refusals.clone().try_acquire_owned() {
                tokio::spawn(async move {
                    refuse(stream).await;
                    drop(refusal);
                });
            }
            continue;
        };
        let service = TowerToHyperService::new(router.clone());
        let mut stop_signal = stopping.subscribe();
        let closed = closed.clone();
        let header_read_timeout = limits.header_read_timeout;
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_read_timeout);
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            let mut stopping = false;
            loop {
                tokio::select! {
                    result = connection.as_mut() => {
                        if let Err(error) = result {
                            tracing::debug!(%error, "connection ended with an error");
                        }
                        break;
                    }
                    changed = stop_signal.changed(), if !stopping => {
                        // The sender was dropped (the server stops) or, never, changed.
                        let _ = changed;
                        stopping = true;
                        connection.as_mut().graceful_shutdown();
                    }
                }
            }
            drop(closed);
            drop(permit);
        });
    }
    drop(listener);
    drop(stopping);
    drop(closed);
    all_closed.closed().await;
    Ok(())
}

/// Answers a connection over the cap with 503 and `Retry-After`, then closes it. What the
/// client sent is read (briefly) first, so closing does not reset the answer away.
async fn refuse(mut stream: TcpStream) {
    let error = ApiError::unavailable(
        "too_many_connections",
        "The server has too many open connections; retry shortly.",
        REFUSAL_RETRY_AFTER_SECS,
    );
    let Ok(body) = serde_json::to_vec(&error.body()) else {
        return;
    };
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: {REFUSAL_RETRY_AFTER_SECS}\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let answer = async {
        let mut buffer = [0u8; 4096];
        // The request's head, if it comes quickly; the answer goes out either way.
        let _ = tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buffer)).await;
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(&body).await?;
        stream.shutdown().await?;
        while stream.read(&mut buffer).await? > 0 {}
        Ok::<(), std::io::Error>(())
    };
    let _ = tokio::time::timeout(REFUSAL_TIME, answer).await;
}

#[cfg(test)]
mod tests;
