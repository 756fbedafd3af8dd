//! Steering a running download from another thread: pause (the partial file stays) and
//! cancel (it goes), read by the transfer loop between reads and while it sleeps or waits.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often a paused or cancelled download, or one waiting for a lock, looks at its control.
pub(super) const CONTROL_POLL_INTERVAL: Duration = Duration::from_millis(50);

const CONTROL_RUN: u8 = 0;
const CONTROL_PAUSE: u8 = 1;
const CONTROL_CANCEL: u8 = 2;

/// A handle to steer a running download from another thread (a UI button, Ctrl-C, an HTTP
/// request). Pausing keeps the partial file so the next pull resumes; cancelling deletes it.
/// Clones share one state.
#[derive(Debug, Clone, Default)]
pub struct DownloadControl {
    state: Arc<AtomicU8>,
}

/// What a control asks of a running download.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlRequest {
    Pause,
    Cancel,
}

impl DownloadControl {
    pub fn new() -> Self {
        Self::default()
    }

    /// Stop soon, keeping the partial file.
    pub fn pause(&self) {
        // A cancel wins over a later pause.
        let _ = self.state.compare_exchange(
            CONTROL_RUN,
            CONTROL_PAUSE,
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
    }

    /// Stop soon and delete the partial file.
    pub fn cancel(&self) {
        self.state.store(CONTROL_CANCEL, Ordering::SeqCst);
    }

    /// Clears a pause or cancel so the same handle can drive the next pull.
    pub fn resume(&self) {
        self.state.store(CONTROL_RUN, Ordering::SeqCst);
    }

    /// The pending request, if any.
    pub fn requested(&self) -> Option<ControlRequest> {
        match self.state.load(Ordering::SeqCst) {
            CONTROL_PAUSE => Some(ControlRequest::Pause),
            CONTROL_CANCEL => Some(ControlRequest::Cancel),
            _ => None,
        }
    }
}

/// Sleeps, waking early when the control asks to stop.
pub(super) fn sleep_unless_stopped(
    duration: Duration,
    control: &DownloadControl,
) -> Option<ControlRequest> {
    let deadline = Instant::now() + duration;
    loop {
        if let Some(request_kind) = control.requested() {
            return Some(request_kind);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        std::thread::sleep((deadline - now).min(CONTROL_POLL_INTERVAL));
    }
}
