//! One engine worker process: spawning it, the handshake, and the task that routes its events
//! to their requests, fails them all when it dies, and kills it when told to.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use hearth_protocol::{WorkerEvent, PROTOCOL_VERSION};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{mpsc, Mutex};

use crate::{SupervisorError, WorkerCommand, WORKER_READY_TIMEOUT};

/// The worker's stdin; `None` once closed (closing it is how a worker is told to exit).
pub(crate) type SharedStdin = Arc<Mutex<Option<ChildStdin>>>;

pub(crate) type Pending =
    Arc<StdMutex<HashMap<u64, mpsc::UnboundedSender<Result<WorkerEvent, SupervisorError>>>>>;

/// One live worker process.
#[derive(Debug)]
pub(crate) struct Worker {
    pub(crate) stdin: SharedStdin,
    pub(crate) pending: Pending,
    pub(crate) pid: u32,
    /// Resolves with the exit description once the worker has died.
    pub(crate) exited: Arc<StdMutex<Option<String>>>,
    /// Tells the task that owns the process to kill it (a worker stuck past its grace).
    pub(crate) kill: Arc<tokio::sync::Notify>,
}

impl Worker {
    pub(crate) fn is_alive(&self) -> bool {
        self.exited.lock().map(|e| e.is_none()).unwrap_or(false)
    }

    /// Waits up to `limit` for the worker to have exited (and been reaped); whether it has.
    pub(crate) async fn wait_exited(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while self.is_alive() {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }
}

pub(crate) async fn spawn_worker(command: &WorkerCommand) -> Result<Worker, SupervisorError> {
    let mut process = Command::new(&command.program);
    // Its own process group: a Ctrl-C in the terminal is for the front end (which cancels the
    // answer), not a signal that should kill the engine.
    #[cfg(unix)]
    process.process_group(0);
    let mut child: Child = process
        .args(&command.args)
        // When llama.cpp aborts, ggml would attach gdb to print a backtrace: seconds of delay
        // and pages of noise for a crash the supervisor already reports.
        .env("GGML_NO_BACKTRACE", "1")
        .envs(command.envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| SupervisorError::Spawn {
            program: command.program.clone(),
            source,
        })?;
    let stdin = child
        .stdin
        .take()
        .ok_or_else(|| SupervisorError::Handshake("no stdin".into()))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| SupervisorError::Handshake("no stdout".into()))?;
    let mut lines = BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(WORKER_READY_TIMEOUT, lines.next_line())
        .await
        .map_err(|_| SupervisorError::Handshake("timed out waiting for the worker".into()))?
        .map_err(|e| SupervisorError::Handshake(e.to_string()))?
        .ok_or_else(|| SupervisorError::Handshake("the worker exited at once".into()))?;
    let pid = match serde_json::from_str::<WorkerEvent>(&ready) {
        Ok(WorkerEvent::Ready {
            protocol_version,
            pid,
            ..
        }) if protocol_version == PROTOCOL_VERSION => pid,
        Ok(WorkerEvent::Ready {
            protocol_version, ..
        }) => {
            return Err(SupervisorError::Handshake(format!(
                "the worker speaks protocol {protocol_version}, this supervisor {PROTOCOL_VERSION}"
            )))
        }
        _ => {
            return Err(SupervisorError::Handshake(format!(
                "unexpected first line: {ready}"
            )))
        }
    };
    let pending: Pending = Arc::default();
    let exited: Arc<StdMutex<Option<String>>> = Arc::default();
    let kill = Arc::new(tokio::sync::Notify::new());
    tokio::spawn(read_events(
        lines,
        child,
        pending.clone(),
        exited.clone(),
        kill.clone(),
    ));
    Ok(Worker {
        stdin: Arc::new(Mutex::new(Some(stdin))),
        pending,
        pid,
        exited,
        kill,
    })
}

/// Routes the worker's events to their requests; when the worker dies, fails them all.
async fn read_events(
    mut lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    mut child: Child,
    pending: Pending,
    exited: Arc<StdMutex<Option<String>>>,
    kill: Arc<tokio::sync::Notify>,
) {
    // One waiter for the kill, registered once: not a new one per event on the token path.
    let kill_requested = kill.notified();
    tokio::pin!(kill_requested);
    let mut killed = false;
    loop {
        let line = tokio::select! {
            line = lines.next_line() => match line {
                Ok(Some(line)) => line,
                _ => break,
            },
            () = &mut kill_requested => {
                if let Err(error) = child.start_kill() {
                    tracing::warn!(%error, "cannot kill the engine worker");
                }
                killed = true;
                break;
            }
        };
        let event = match serde_json::from_str::<WorkerEvent>(&line) {
            Ok(event) => event,
            Err(error) => {
                tracing::warn!(%error, "unreadable line from the worker");
                continue;
            }
        };
        let Some(request_id) = event.request_id() else {
            tracing::warn!(?event, "worker event without a request");
            continue;
        };
        let terminal = event.is_terminal();
        if let Ok(mut pending) = pending.lock() {
            if let Some(sender) = pending.get(&request_id) {
                let _ = sender.send(Ok(event));
            }
            if terminal {
                pending.remove(&request_id);
            }
        }
    }
    // A worker that closed its stdout may still hang on its way out: the kill reaches it too.
    let waited = if killed {
        child.wait().await
    } else {
        tokio::select! {
            status = child.wait() => status,
            () = &mut kill_requested => {
                let _ = child.start_kill();
                child.wait().await
            }
        }
    };
    let (status, clean) = match waited {
        Ok(status) => (describe_exit(status), status.success()),
        Err(error) => (format!("unknown exit: {error}"), false),
    };
    // A worker exits cleanly only when told to (stdin closed or Shutdown); anything else is a
    // crash worth a warning.
    if clean {
        tracing::debug!(%status, "engine worker exited");
    } else {
        tracing::warn!(%status, "engine worker exited");
    }
    if let Ok(mut exited) = exited.lock() {
        *exited = Some(status.clone());
    }
    if let Ok(mut pending) = pending.lock() {
        for (_, sender) in pending.drain() {
            let _ = sender.send(Err(SupervisorError::WorkerCrashed {
                status: status.clone(),
            }));
        }
    }
}

fn describe_exit(status: std::process::ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            let name = match signal {
                6 => " (SIGABRT: llama.cpp aborted)",
                9 => " (SIGKILL: killed, possibly out of memory)",
                11 => " (SIGSEGV)",
                _ => "",
            };
            return format!("worker killed by signal {signal}{name}");
        }
    }
    match status.code() {
        Some(code) => format!("worker exited with code {code}"),
        None => "worker exited".to_string(),
    }
}
