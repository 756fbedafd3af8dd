//! `--gpu-layers auto`: how many layers go to the GPU, planned right before the load by the fit
//! planner (`hearth-probe`, pure arithmetic over the GGUF header) for the devices this worker
//! will use and the memory they have free now. Without a GPU the answer is 0 and nothing is
//! planned. If the load still runs out of memory (another program took some since), the engine
//! retries once with [`smaller_offload`].

use std::path::Path;

use hearth_probe::{DeviceProfile, LlamaDevice, Plan, Wishes};
use hearth_protocol::{GpuLayers, LoadParams};

/// The layers to offload for `params`, and a note when the planner was asked.
pub fn resolve_gpu_layers(path: &Path, params: &LoadParams, gpu_devices: &[usize]) -> u32 {
    if gpu_devices.is_empty() {
        return 0;
    }
    match params.n_gpu_layers {
        GpuLayers::Count(count) => count,
        GpuLayers::Auto => match planned_gpu_layers(path, params) {
            Ok(layers) => {
                tracing::info!(layers, "the planner offloads {layers} layers to the GPU");
                layers
            }
            Err(reason) => {
                // The load itself will say what is wrong with the file; the CPU is the safe
                // place meanwhile.
                tracing::warn!("no offload plan ({reason}); the model runs on the CPU");
                0
            }
        },
    }
}

/// The planner's `n_gpu_layers` for the model at `path` on this worker's GPUs now.
pub fn planned_gpu_layers(path: &Path, params: &LoadParams) -> Result<u32, String> {
    load_plan(path, params).map(|plan| plan.n_gpu_layers)
}

/// The fit planner's plan for loading the model at `path` with `params`' context and
/// sequences, on this worker's devices and the memory free now.
pub fn load_plan(path: &Path, params: &LoadParams) -> Result<Plan, String> {
    let variant = hearth_probe::variant_from_file(path).map_err(|error| error.to_string())?;
    let (profile, wishes) = planner_inputs(params, true);
    hearth_probe::plan(&[variant], &profile, &wishes).map_err(|error| error.to_string())
}

/// The planner's view of this worker for a load with `params`: the devices llama.cpp sees
/// (none unless `with_gpus`) with the memory free now, and the context asked for.
pub fn planner_inputs(params: &LoadParams, with_gpus: bool) -> (DeviceProfile, Wishes) {
    let devices: Vec<LlamaDevice> = if with_gpus {
        crate::backends::backend_devices()
            .into_iter()
            .map(LlamaDevice::from)
            .collect()
    } else {
        Vec::new()
    };
    let profile = hearth_probe::probe::offload_profile(&devices);
    let wishes = Wishes {
        context: Some(params.n_ctx),
        n_parallel: params.n_parallel.max(1),
        ..Wishes::default()
    };
    (profile, wishes)
}

/// The offload to retry with after an out-of-memory load of `failed` layers: the planner's
/// answer for the memory free now if that is smaller, else half as many layers.
pub fn smaller_offload(failed: u32, replanned: Option<u32>) -> u32 {
    match replanned {
        Some(layers) if layers < failed => layers,
        _ => failed / 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retry_always_offloads_less() {
        assert_eq!(smaller_offload(31, Some(20)), 20);
        assert_eq!(smaller_offload(31, Some(31)), 15);
        assert_eq!(smaller_offload(31, Some(40)), 15);
        assert_eq!(smaller_offload(31, None), 15);
        assert_eq!(smaller_offload(1, None), 0);
    }

    #[test]
    fn without_a_gpu_nothing_is_offloaded_or_planned() {
        // No device: 0 even for a file that does not exist (nothing is read).
        let params = LoadParams {
            n_gpu_layers: GpuLayers::Count(99),
            ..LoadParams::default()
        };
        assert_eq!(
            resolve_gpu_layers(Path::new("/nonexistent.gguf"), &params, &[]),
            0
        );
        let auto = LoadParams::default();
        assert_eq!(
            resolve_gpu_layers(Path::new("/nonexistent.gguf"), &auto, &[]),
            0
        );
    }
}
