//! What this machine is, for the UI's hardware page and the fit badges: `GET /api/system`.
//!
//! The probe (`hearth-probe`: CPU, memory, GPUs, measured bandwidths) runs once, on the first
//! request that needs it, on a blocking thread, and its report is kept in memory; requests
//! that arrive meanwhile wait for the same run. Bandwidths are cached on disk by the probe, so
//! only the very first probe on a machine measures (about two seconds); later ones read the
//! cache. llama.cpp's device list (GPU memory) comes from a fresh engine worker that loads no
//! model (`Supervisor::devices`), since only the engine links llama.cpp. Nothing here uses the
//! network. `hearth probe` and `hearth fit` use [`probe_machine`] too.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use hearth_probe::{LlamaDevice, ProbeOptions, ProbeReport};
use hearth_protocol::BackendDevice;
use hearth_supervisor::{Supervisor, WorkerCommand};
use serde_json::{json, Value};
use tokio::sync::OnceCell;

use crate::app::MODELS_FOLDER;
use crate::error::ApiError;
use crate::AppState;

/// Bytes per gigabyte, as bandwidths are quoted (decimal).
const BYTES_PER_GB: f64 = 1e9;
/// How long a loaded model's worker may take to report its buffers.
const MEMORY_REPORT_TIMEOUT: Duration = Duration::from_secs(2);
/// llama.cpp device types that can hold layers.
const GPU_DEVICE_TYPES: &[&str] = &["gpu", "integrated_gpu", "accelerator"];

/// The system routes, merged into [`crate::router`].
pub fn router() -> Router<AppState> {
    Router::new().route("/api/system", get(show_system))
}

/// A llama.cpp device as the worker reported it, in the probe's terms.
pub fn llama_device(device: BackendDevice) -> LlamaDevice {
    LlamaDevice {
        name: device.name,
        description: device.description,
        backend: device.backend,
        device_type: device.device_type,
        memory_total_bytes: device.memory_total_bytes,
        memory_free_bytes: device.memory_free_bytes,
    }
}

/// Asks `supervisor`'s worker for llama.cpp's devices (it loads no model for that), then
/// probes the machine on a blocking thread (the kernels take seconds the first time).
pub async fn probe_machine(supervisor: &Supervisor, options: ProbeOptions) -> ProbeReport {
    let devices = match supervisor.devices().await {
        Ok(devices) => Some(devices.into_iter().map(llama_device).collect()),
        Err(error) => {
            tracing::warn!(%error, "could not ask the engine for llama.cpp's devices");
            None
        }
    };
    let fallback = options.clone();
    match tokio::task::spawn_blocking(move || hearth_probe::probe::probe(&options, devices)).await {
        Ok(report) => report,
        Err(error) => {
            // The probe panicked (a driver, most likely): report the machine without
            // measurements rather than failing the page.
            tracing::error!(%error, "the probe failed; trying again without measuring");
            let unmeasured = ProbeOptions {
                measure: false,
                ..fallback
            };
            tokio::task::spawn_blocking(move || hearth_probe::probe::probe(&unmeasured, None))
                .await
                .unwrap_or_else(|_| empty_report())
        }
    }
}

/// A report that knows nothing (the probe could not run at all).
fn empty_report() -> ProbeReport {
    ProbeReport {
        probe_version: hearth_probe::PROBE_VERSION,
        profile: hearth_probe::DeviceProfile {
            os: std::env::consts::OS.to_string(),
            cpu: hearth_probe::profile::CpuProfile {
                model: "unknown CPU".into(),
                architecture: std::env::consts::ARCH.into(),
                physical_cores: 1,
                logical_cores: 1,
                features: Vec::new(),
                read_bandwidth_bytes_per_second: None,
            },
            memory: hearth_probe::profile::MemoryProfile {
                total_bytes: 0,
                available_bytes: 0,
            },
            gpus: Vec::new(),
            unified_memory: false,
            models_disk_free_bytes: None,
        },
        adapters: Vec::new(),
        llama_devices: None,
        cpu_bandwidth_from_cache: false,
        cache_path: PathBuf::new(),
    }
}

/// Where the server runs and what it knows of the machine (probed once, lazily).
#[derive(Debug)]
pub struct MachineInfo {
    data_dir: Option<PathBuf>,
    address: Option<SocketAddr>,
    worker_command: Option<WorkerCommand>,
    report: OnceCell<Arc<ProbeReport>>,
    /// Whether [`MachineInfo::current_report`] reads the memory again (not for fixtures).
    refresh_memory: bool,
}

impl MachineInfo {
    /// A server with a data directory, probed with engine workers started by `worker_command`.
    pub fn new(data_dir: PathBuf, address: SocketAddr, worker_command: WorkerCommand) -> Self {
        Self {
            data_dir: Some(data_dir),
            address: Some(address),
            worker_command: Some(worker_command),
            report: OnceCell::new(),
            refresh_memory: true,
        }
    }

    /// A server that knows nothing of its machine and never probes (tests of other routes).
    pub fn unknown() -> Self {
        Self {
            data_dir: None,
            address: None,
            worker_command: None,
            report: OnceCell::new(),
            refresh_memory: false,
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

    /// The remembered report with the system memory read now (memory changes as models load
    /// and other programs run; the rest of the machine does not).
    pub async fn current_report(&self) -> Option<ProbeReport> {
        let mut report = ProbeReport::clone(&*self.report().await?);
        if self.refresh_memory {
            report.profile.memory = hearth_probe::probe::current_memory();
        }
        Some(report)
    }

    /// The probe's report: run on the first call, the same report afterwards. `None` when
    /// this server has no data directory to probe with.
    pub async fn report(&self) -> Option<Arc<ProbeReport>> {
        if let Some(report) = self.report.get() {
            return Some(report.clone());
        }
        let (data_dir, worker_command) = match (&self.data_dir, &self.worker_command) {
            (Some(data_dir), Some(worker_command)) => (data_dir.clone(), worker_command.clone()),
            _ => return None,
        };
        let report = self
            .report
            .get_or_init(|| async move {
                let supervisor = Supervisor::new(worker_command);
                let options = ProbeOptions {
                    models_dir: data_dir.join(MODELS_FOLDER),
                    data_dir,
                    measure: true,
                    refresh: false,
                };
                let report = probe_machine(&supervisor, options).await;
                supervisor.shutdown().await;
                Arc::new(report)
            })
            .await;
        Some(report.clone())
    }
}

/// The probe section of `/api/system`.
pub fn probe_json(report: &ProbeReport) -> Value {
    let profile = &report.profile;
    let gpus: Vec<Value> = match &report.llama_devices {
        Some(devices) => devices
            .iter()
            .filter(|device| GPU_DEVICE_TYPES.contains(&device.device_type.as_str()))
            .map(|device| {
                json!({
                    "name": device.description,
                    "backend": device.backend,
                    "device_type": device.device_type,
                    "total_bytes": device.memory_total_bytes,
                    "free_bytes": device.memory_free_bytes,
                })
            })
            .collect(),
        // llama.cpp could not be asked: the adapters wgpu sees (no memory figures), without
        // software rasterizers.
        None => report
            .adapters
            .iter()
            .filter_map(|probed| {
                let device_type = serde_json::to_value(probed.adapter.device_type).ok()?;
                (device_type != "cpu").then(|| {
                    json!({
                        "name": probed.adapter.name,
                        "backend": probed.adapter.backend,
                        "device_type": device_type,
                    })
                })
            })
            .collect(),
    };
    let gb_per_s = |bytes: Option<f64>| bytes.map(|bytes| round_to(bytes / BYTES_PER_GB, 1));
    json!({
        "os": profile.os,
        "cpu": {
            "model": profile.cpu.model,
            "architecture": profile.cpu.architecture,
            "physical_cores": profile.cpu.physical_cores,
            "logical_cores": profile.cpu.logical_cores,
            "features": profile.cpu.features,
        },
        "memory": {
            "total_bytes": profile.memory.total_bytes,
            "available_bytes": profile.memory.available_bytes,
        },
        "gpus": gpus,
        "unified_memory": profile.unified_memory,
        "bandwidth": {
            "cpu_gb_per_s": gb_per_s(profile.cpu.read_bandwidth_bytes_per_second),
            "gpu_gb_per_s": gb_per_s(
                profile.gpus.iter().find_map(|gpu| gpu.read_bandwidth_bytes_per_second)
            ),
        },
        "models_disk_free_bytes": profile.models_disk_free_bytes,
    })
}

/// `value` rounded to `decimals` places (for figures meant for people).
pub fn round_to(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

/// The loaded models with what they were loaded with and, when the worker tells, their memory.
async fn loaded_json(state: &AppState) -> Vec<Value> {
    let mut loaded = Vec::new();
    for model in state.models.loaded() {
        let info = &model.info;
        let memory_bytes =
            tokio::time::timeout(MEMORY_REPORT_TIMEOUT, model.supervisor.memory_report())
                .await
                .ok()
                .and_then(Result::ok)
                .map(|report| report.total_bytes);
        loaded.push(json!({
            "id": model.id,
            "state": "loaded",
            "plan": {
                "n_ctx": info.n_ctx_per_sequence,
                "n_ctx_total": info.n_ctx,
                "n_parallel": info.n_parallel,
                "n_gpu_layers": info.n_gpu_layers,
                "kv_cache_type": info.kv_cache_type,
                "flash_attention": info.flash_attention,
                "memory_bytes": memory_bytes,
                "architecture": info.architecture,
                "n_threads": info.n_threads,
            },
        }));
    }
    let loading = state
        .models
        .list()
        .into_iter()
        .filter(|model| model.state == crate::models::ModelState::Loading)
        .map(|model| json!({"id": model.id, "state": "loading"}));
    loaded.extend(loading);
    loaded
}

/// `GET /api/system`.
async fn show_system(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let machine = &state.machine;
    let probe = machine
        .current_report()
        .await
        .map(|report| probe_json(&report));
    let address = machine.address();
    Ok(Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "data_dir": machine.data_dir().map(|dir| dir.display().to_string()),
        "server": {
            "address": address.map(|address| address.to_string()),
            "port": address.map(|address| address.port()),
            "api_key_required": state.security.api_key_required(),
        },
        "probe": probe,
        "loaded": loaded_json(&state).await,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The real probe, once: concurrent callers share one run, and later calls are instant.
    #[tokio::test]
    async fn the_machine_is_probed_once_and_remembered() {
        let home = tempfile::tempdir().unwrap();
        let machine = Arc::new(MachineInfo::new(
            home.path().to_path_buf(),
            SocketAddr::from(([127, 0, 0, 1], 4327)),
            // No engine here: the probe goes on without llama.cpp's device list.
            WorkerCommand {
                program: "/nonexistent/hearth-for-tests".into(),
                args: Vec::new(),
                envs: Vec::new(),
            },
        ));
        let (first, second) = tokio::join!(machine.report(), machine.report());
        let (first, second) = (first.unwrap(), second.unwrap());
        assert!(Arc::ptr_eq(&first, &second), "one probe for both");
        assert!(first.profile.memory.total_bytes > 0);
        assert!(first.llama_devices.is_none());
        let started = std::time::Instant::now();
        let again = machine.report().await.unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        assert!(started.elapsed() < Duration::from_millis(50));
        // The memory is read again on every use; the machine's total does not change.
        let current = machine.current_report().await.unwrap();
        assert_eq!(
            current.profile.memory.total_bytes,
            first.profile.memory.total_bytes
        );
        assert_eq!(current.profile.cpu, first.profile.cpu);
        let json = probe_json(&first);
        assert!(json["cpu"]["logical_cores"].as_u64().unwrap() >= 1);
        assert!(json["gpus"].is_array());
    }

    #[tokio::test]
    async fn a_fixture_report_keeps_its_memory() {
        let fixture = hearth_probe::profile::fixtures::laptop_8gb_no_gpu();
        let machine = MachineInfo::with_report(ProbeReport {
            profile: fixture.clone(),
            ..empty_report()
        });
        let current = machine.current_report().await.unwrap();
        assert_eq!(current.profile.memory, fixture.memory);
        assert!(MachineInfo::unknown().current_report().await.is_none());
    }

    #[test]
    fn figures_for_people_are_rounded() {
        assert_eq!(round_to(12.3456, 1), 12.3);
        assert_eq!(round_to(0.05, 0), 0.0);
    }
}
