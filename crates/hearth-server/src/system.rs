//! What this machine is, for the UI's hardware page and the fit badges: `GET /api/system`.
//!
//! The probe (`hearth-probe`: CPU, memory, GPUs, measured bandwidths) runs once, on the first
//! request that needs it, in a short-lived child process: the binary that runs engine workers,
//! with its `probe-report` subcommand instead of `engine` ([`WorkerCommand::probe_report`];
//! `hearth_probe::machine::print_probe_report` is that process's work). It prints its report
//! as one JSON line and exits, so the wgpu and Vulkan drivers, the kernels and sysinfo it loads
//! (about 40 MB that would stay mapped for the server's life) never enter the server's process.
//! The report is kept in memory; requests that arrive meanwhile wait for the same run. A probe
//! that cannot start, takes longer than [`PROBE_TIMEOUT`] (it is killed), prints more than
//! [`MAX_PROBE_REPORT_BYTES`] or no readable report is logged and reported as `probe_error`,
//! and the machine is described without it (CPU count and memory only). Bandwidths are cached
//! on disk by the probe, so only the very first probe on a machine measures (about two
//! seconds); later ones read the cache. llama.cpp's device list (GPU memory) comes from a fresh
//! engine worker that loads no model (`Supervisor::devices`), since only the engine links
//! llama.cpp. Nothing here uses the network. `hearth probe` and `hearth fit` call
//! `hearth_probe::machine::probe_machine` in their own process (they exit right after).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use hearth_probe::ProbeReport;
use hearth_supervisor::WorkerCommand;
use serde::Serialize;
use serde_json::Value;
use tokio::io::AsyncReadExt;
use tokio::sync::OnceCell;

use crate::error::ApiError;
use crate::AppState;

/// Bytes per gigabyte, as bandwidths are quoted (decimal).
const BYTES_PER_GB: f64 = 1e9;
/// How long a loaded model's worker may take to report its buffers.
const MEMORY_REPORT_TIMEOUT: Duration = Duration::from_secs(2);
/// llama.cpp device types that can hold layers.
const GPU_DEVICE_TYPES: &[&str] = &["gpu", "integrated_gpu", "accelerator"];
/// How long the probe process may run before it is killed: the first probe on a machine
/// measures bandwidths (seconds on a busy laptop), and a GPU driver can hang.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(60);
/// The most the probe process may print: a report is a few kilobytes.
pub const MAX_PROBE_REPORT_BYTES: u64 = 1024 * 1024;

/// The system routes, merged into [`crate::router`].
pub fn router() -> Router<AppState> {
    Router::new().route("/api/system", get(show_system))
}

/// Why the probe process gave no report.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("cannot start the hardware probe: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("the hardware probe did not finish within {0:?} and was stopped")]
    TimedOut(Duration),
    #[error("the hardware probe printed more than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("cannot read the hardware probe's output: {0}")]
    Read(#[source] std::io::Error),
    #[error("the hardware probe ended ({status}) without a report")]
    NoReport { status: String },
    #[error("the hardware probe's report is unreadable ({status}): {source}")]
    Unreadable {
        status: String,
        #[source]
        source: serde_json::Error,
    },
}

/// Runs `command DATA_DIR` (a probe process) and reads its report: the last non-empty line of
/// its stdout (a driver may print before it). Killed after `timeout`; never panics.
pub async fn probe_in_child(
    command: &WorkerCommand,
    data_dir: &Path,
    timeout: Duration,
) -> Result<ProbeReport, ProbeError> {
    let mut process = tokio::process::Command::new(&command.program);
    // Its own process group, as engine workers: a terminal's Ctrl-C is for the front end.
    #[cfg(unix)]
    process.process_group(0);
    process
        .args(&command.args)
        .arg(data_dir)
        // The probe asks an engine worker for llama.cpp's devices; see the supervisor.
        .env("GGML_NO_BACKTRACE", "1")
        .envs(command.envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    let mut child = process.spawn().map_err(ProbeError::Spawn)?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| ProbeError::Read(std::io::Error::other("no stdout")))?;
    let finished = async {
        let mut output = Vec::new();
        stdout
            .take(MAX_PROBE_REPORT_BYTES + 1)
            .read_to_end(&mut output)
            .await
            .map_err(ProbeError::Read)?;
        if output.len() as u64 > MAX_PROBE_REPORT_BYTES {
            return Err(ProbeError::TooLarge {
                limit: MAX_PROBE_REPORT_BYTES,
            });
        }
        let status = child.wait().await.map_err(ProbeError::Read)?;
        Ok((output, status))
    };
    let outcome = tokio::time::timeout(timeout, finished).await;
    let (output, status) = match outcome {
        Ok(Ok(finished)) => finished,
        // `kill_on_drop` stops a child that printed too much.
        Ok(Err(error)) => return Err(error),
        Err(_) => {
            let _ = child.kill().await;
            return Err(ProbeError::TimedOut(timeout));
        }
    };
    read_report(&output, status)
}

/// The report in a probe process's output. A readable report is kept even if the process then
/// failed (a driver crashing at exit costs nothing).
fn read_report(output: &[u8], status: ExitStatus) -> Result<ProbeReport, ProbeError> {
    let text = String::from_utf8_lossy(output);
    let Some(line) = text.lines().rev().find(|line| !line.trim().is_empty()) else {
        return Err(ProbeError::NoReport {
            status: status.to_string(),
        });
    };
    let report =
        serde_json::from_str::<ProbeReport>(line).map_err(|source| ProbeError::Unreadable {
            status: status.to_string(),
            source,
        })?;
    if !status.success() {
        tracing::warn!(%status, "the hardware probe failed after printing its report");
    }
    Ok(report)
}

/// The machine without a probe (its process failed): the CPU count and the memory, which
/// need no driver.
fn unprobed_report() -> ProbeReport {
    let mut report = ProbeReport::empty();
    let cores = std::thread::available_parallelism()
        .ok()
        .and_then(|cores| u32::try_from(cores.get()).ok())
        .unwrap_or(1);
    report.profile.cpu.logical_cores = cores;
    report.profile.cpu.physical_cores = cores;
    report.profile.memory = hearth_probe::probe::current_memory();
    report
}

/// Where the server runs and what it knows of the machine (probed once, lazily).
#[derive(Debug)]
pub struct MachineInfo {
    data_dir: Option<PathBuf>,
    address: Option<SocketAddr>,
    /// How to start a probe process ([`WorkerCommand::probe_report`]; the data directory
    /// follows).
    probe_command: Option<WorkerCommand>,
    /// How long it may run.
    probe_timeout: Duration,
    report: OnceCell<Arc<ProbeReport>>,
    /// Why the probe process gave no report, when it did not.
    probe_error: OnceLock<String>,
    /// Whether [`MachineInfo::current_report`] reads the memory again (not for fixtures).
    refresh_memory: bool,
    /// The configured port, when another program held it and the server took a free one.
    port_taken: Option<u16>,
}

impl MachineInfo {
    /// A server with a data directory, probed by a child process that `probe_command` starts
    /// ([`WorkerCommand::probe_report`]; `None`: never probed).
    pub fn new(
        data_dir: PathBuf,
        address: SocketAddr,
        probe_command: Option<WorkerCommand>,
    ) -> Self {
        Self {
            data_dir: Some(data_dir),
            address: Some(address),
            probe_command,
            probe_timeout: PROBE_TIMEOUT,
            report: OnceCell::new(),
            probe_error: OnceLock::new(),
            refresh_memory: true,
            port_taken: None,
        }
    }

    /// A server that knows nothing of its machine and never probes (tests of other routes).
    pub fn unknown() -> Self {
        Self {
            data_dir: None,
            address: None,
            probe_command: None,
            probe_timeout: PROBE_TIMEOUT,
            report: OnceCell::new(),
            probe_error: OnceLock::new(),
            refresh_memory: false,
            port_taken: None,
        }
    }

    /// A server whose machine is `report` (tests: fixture profiles).
    pub fn with_report(report: ProbeReport) -> Self {
        Self {
            report: OnceCell::new_with(Some(Arc::new(report))),
            ..Self::unknown()
        }
    }

    pub fn data_dir(&self) -> Option<&PathBuf> {
        self.data_dir.as_ref()
    }

    pub fn address(&self) -> Option<SocketAddr> {
        self.address
    }

    /// Records that the configured port `port` was taken, so the server listens elsewhere.
    pub fn with_port_taken(mut self, port: Option<u16>) -> Self {
        self.port_taken = port;
        self
    }

    /// The configured port another program held when the server started, if it did.
    pub fn port_taken(&self) -> Option<u16> {
        self.port_taken
    }

    /// Why the probe process gave no report (the report then describes the machine without
    /// it); `None` when it did, or has not run.
    pub fn probe_error(&self) -> Option<&str> {
        self.probe_error.get().map(String::as_str)
    }

    /// The remembered report with the system memory read now (memory changes as models load
    /// and other programs run; the rest of the machine does not).
    pub async fn current_report(&self) -> Option<ProbeReport> {
        let mut report = ProbeReport::clone(&*self.report().await?);
        if self.refresh_memory {
            report.profile.memory = hearth_probe::probe::current_memory();
        }
        Some(report)
    }

    /// The probe's report: run (in a child process) on the first call, the same report
    /// afterwards. `None` when this server has no data directory to probe with.
    pub async fn report(&self) -> Option<Arc<ProbeReport>> {
        if let Some(report) = self.report.get() {
            return Some(report.clone());
        }
        let (data_dir, probe_command) = match (&self.data_dir, &self.probe_command) {
            (Some(data_dir), Some(probe_command)) => (data_dir, probe_command),
            _ => return None,
        };
        let report = self
            .report
            .get_or_init(|| async {
                match probe_in_child(probe_command, data_dir, self.probe_timeout).await {
                    Ok(report) => Arc::new(report),
                    Err(error) => {
                        tracing::error!(
                            %error,
                            program = %probe_command.program.display(),
                            "the hardware probe failed; describing the machine without it"
                        );
                        let _ = self.probe_error.set(error.to_string());
                        Arc::new(unprobed_report())
                    }
                }
            })
            .await;
        Some(report.clone())
    }
}

/// A GPU on `/api/system`: llama.cpp's device with its memory, or, when llama.cpp could not
/// be asked, an adapter wgpu sees (no memory figures). Fields in sorted order
/// ([`crate::wire`]).
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum GpuJson {
    Llama {
        backend: String,
        device_type: String,
        free_bytes: u64,
        name: String,
        total_bytes: u64,
        used: bool,
    },
    Adapter {
        backend: Value,
        device_type: Value,
        name: String,
    },
}

/// The probe section of `/api/system`.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeJson {
    pub backends: Option<hearth_protocol::BackendReport>,
    pub bandwidth: BandwidthJson,
    pub cpu: CpuJson,
    pub gpus: Vec<GpuJson>,
    pub memory: MemoryJson,
    pub models_disk_free_bytes: Option<u64>,
    pub os: String,
    pub unified_memory: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct BandwidthJson {
    pub cpu_gb_per_s: Option<f64>,
    pub gpu_gb_per_s: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CpuJson {
    pub architecture: String,
    pub features: Vec<String>,
    pub logical_cores: u32,
    pub model: String,
    pub physical_cores: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct MemoryJson {
    pub available_bytes: u64,
    pub total_bytes: u64,
}

/// The probe section of `/api/system`.
pub fn probe_json(report: &ProbeReport) -> ProbeJson {
    let profile = &report.profile;
    let gpus: Vec<GpuJson> = match &report.llama_devices {
        Some(devices) => devices
            .iter()
            .filter(|device| GPU_DEVICE_TYPES.contains(&device.device_type.as_str()))
            .map(|device| GpuJson::Llama {
                backend: device.backend.clone(),
                device_type: device.device_type.clone(),
                free_bytes: device.memory_free_bytes,
                name: device.description.clone(),
                total_bytes: device.memory_total_bytes,
                used: device.used,
            })
            .collect(),
        // llama.cpp could not be asked: the adapters wgpu sees (no memory figures), without
        // software rasterizers.
        None => report
            .adapters
            .iter()
            .filter_map(|probed| {
                let device_type = serde_json::to_value(probed.adapter.device_type).ok()?;
                let backend = serde_json::to_value(&probed.adapter.backend).ok()?;
                (device_type != "cpu").then(|| GpuJson::Adapter {
                    backend,
                    device_type,
                    name: probed.adapter.name.clone(),
                })
            })
            .collect(),
    };
    let gb_per_s = |bytes: Option<f64>| bytes.map(|bytes| round_to(bytes / BYTES_PER_GB, 1));
    ProbeJson {
        backends: report.backends.clone(),
        bandwidth: BandwidthJson {
            cpu_gb_per_s: gb_per_s(profile.cpu.read_bandwidth_bytes_per_second),
            gpu_gb_per_s: gb_per_s(
                profile
                    .gpus
                    .iter()
                    .find_map(|gpu| gpu.read_bandwidth_bytes_per_second),
            ),
        },
        cpu: CpuJson {
            architecture: profile.cpu.architecture.clone(),
            features: profile.cpu.features.clone(),
            logical_cores: profile.cpu.logical_cores,
            model: profile.cpu.model.clone(),
            physical_cores: profile.cpu.physical_cores,
        },
        gpus,
        memory: MemoryJson {
            available_bytes: profile.memory.available_bytes,
            total_bytes: profile.memory.total_bytes,
        },
        models_disk_free_bytes: profile.models_disk_free_bytes,
        os: profile.os.clone(),
        unified_memory: profile.unified_memory,
    }
}

/// `value` rounded to `decimals` places (for figures meant for people).
pub fn round_to(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

/// A loaded or loading model on `/api/system`. Fields in sorted order ([`crate::wire`]).
#[derive(Debug, Clone, Serialize)]
pub struct LoadedModelJson {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<LoadedPlanJson>,
    pub state: &'static str,
}

/// What a loaded model was loaded with, and its memory when the worker tells.
#[derive(Debug, Clone, Serialize)]
pub struct LoadedPlanJson {
    pub architecture: String,
    /// The draft model of `speculative: draft`: its catalog id (else its file name).
    pub draft_model: Option<String>,
    pub flash_attention: hearth_protocol::FlashAttention,
    pub kv_cache_type: hearth_protocol::KvCacheType,
    /// The most host memory the KV states of conversations pushed out of their slots take.
    pub kv_host_budget_bytes: u64,
    pub memory_bytes: Option<u64>,
    pub n_ctx: u32,
    pub n_ctx_total: u32,
    pub n_gpu_layers: u32,
    pub n_parallel: u32,
    pub n_threads: u32,
    /// Speculative decoding: `off`, `ngram` or `draft`.
    pub speculative: hearth_protocol::SpeculativeMode,
}

/// `GET /api/system`.
#[derive(Debug, Clone, Serialize)]
pub struct SystemJson {
    pub data_dir: Option<String>,
    pub loaded: Vec<LoadedModelJson>,
    pub probe: Option<ProbeJson>,
    pub probe_error: Option<String>,
    pub server: ServerJson,
    pub version: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServerJson {
    pub address: Option<String>,
    pub api_key_required: bool,
    pub port: Option<u16>,
    /// The port from the settings, when another program held it at startup and the server
    /// listens on `port` instead (the desktop app); the UI says so.
    pub configured_port_taken: Option<u16>,
}

/// The loaded models with what they were loaded with and, when the worker tells, their memory.
async fn loaded_json(state: &AppState) -> Vec<LoadedModelJson> {
    let mut loaded = Vec::new();
    for model in state.models.loaded() {
        let info = &model.info;
        let memory_bytes =
            tokio::time::timeout(MEMORY_REPORT_TIMEOUT, model.supervisor.memory_report())
                .await
                .ok()
                .and_then(Result::ok)
                .map(|report| report.total_bytes);
        loaded.push(LoadedModelJson {
            id: model.id.clone(),
            plan: Some(LoadedPlanJson {
                architecture: info.architecture.clone(),
                draft_model: model.draft_model.clone(),
                flash_attention: info.flash_attention,
                kv_cache_type: info.kv_cache_type,
                kv_host_budget_bytes: info.kv_host_budget_bytes,
                memory_bytes,
                n_ctx: info.n_ctx_per_sequence,
                n_ctx_total: info.n_ctx,
                n_gpu_layers: info.n_gpu_layers,
                n_parallel: info.n_parallel,
                n_threads: info.n_threads,
                speculative: info.speculative,
            }),
            state: "loaded",
        });
    }
    let loading = state
        .models
        .list()
        .into_iter()
        .filter(|model| model.state == crate::models::ModelState::Loading)
        .map(|model| LoadedModelJson {
            id: model.id,
            plan: None,
            state: "loading",
        });
    loaded.extend(loading);
    loaded
}

/// `GET /api/system`.
async fn show_system(State(state): State<AppState>) -> Result<Json<SystemJson>, ApiError> {
    let machine = &state.machine;
    let probe = machine
        .current_report()
        .await
        .map(|report| probe_json(&report));
    let address = machine.address();
    Ok(Json(SystemJson {
        data_dir: machine.data_dir().map(|dir| dir.display().to_string()),
        loaded: loaded_json(&state).await,
        probe,
        probe_error: machine.probe_error().map(crate::error::redact_paths),
        server: ServerJson {
            address: address.map(|address| address.to_string()),
            api_key_required: state.security.api_key_required(),
            port: address.map(|address| address.port()),
            configured_port_taken: machine.port_taken(),
        },
        version: env!("CARGO_PKG_VERSION"),
    }))
}

#[cfg(test)]
mod tests;
