//! Probing this machine, with llama.cpp's devices asked of an engine worker (only the engine
//! links llama.cpp; it loads no model for that): `hearth probe` and `hearth fit` call
//! [`probe_machine`] in their own process, which exits right after; the server's probe process
//! (`hearth probe-report DATA_DIR`, `hearth-desktop probe-report DATA_DIR`) is
//! [`print_probe_report`], so the GPU drivers and kernels never load into the server.

use std::io::Write;
use std::path::PathBuf;

use hearth_supervisor::{Supervisor, WorkerCommand};

use crate::{LlamaDevice, ProbeOptions, ProbeReport};

/// Asks `supervisor`'s worker for llama.cpp's devices (it loads no model for that), then
/// probes the machine on a blocking thread (the kernels take seconds the first time).
pub async fn probe_machine(supervisor: &Supervisor, options: ProbeOptions) -> ProbeReport {
    let (devices, backends) = match supervisor.devices_and_backends().await {
        Ok((devices, backends)) => (
            Some(devices.into_iter().map(LlamaDevice::from).collect()),
            Some(backends),
        ),
        Err(error) => {
            tracing::warn!(%error, "could not ask the engine for llama.cpp's devices");
            (None, None)
        }
    };
    let fallback = options.clone();
    match tokio::task::spawn_blocking(move || crate::probe::probe(&options, devices)).await {
        Ok(report) => ProbeReport { backends, ..report },
        Err(error) => {
            // The probe panicked (a driver, most likely): report the machine without
            // measurements rather than failing the page.
            tracing::error!(%error, "the probe failed; trying again without measuring");
            let unmeasured = ProbeOptions {
                measure: false,
                ..fallback
            };
            tokio::task::spawn_blocking(move || crate::probe::probe(&unmeasured, None))
                .await
                .unwrap_or_else(|_| ProbeReport::empty())
        }
    }
}

/// The probe process's work (`hearth probe-report DATA_DIR`, `hearth-desktop probe-report
/// DATA_DIR`): probes the machine as [`probe_machine`] does, with llama.cpp's devices asked of
/// a worker started by `engine`, measured the first time and cached in `data_dir` after, and
/// prints the report as one JSON line on stdout.
pub async fn print_probe_report(data_dir: PathBuf, engine: WorkerCommand) -> std::io::Result<()> {
    let supervisor = Supervisor::new(engine);
    let options = ProbeOptions::for_data_dir(data_dir, true, false);
    let report = probe_machine(&supervisor, options).await;
    supervisor.shutdown().await;
    let line = serde_json::to_string(&report)?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")?;
    stdout.flush()
}
