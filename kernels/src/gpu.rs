//! GPU adapters and the two WGSL kernels: streaming-read bandwidth and f32 FMA throughput.
//!
//! Timing is wall clock from submission to completion (`Device::poll` waiting), not GPU
//! timestamps: timestamp queries are an optional feature that lavapipe and some drivers lack,
//! and each measured batch is sized to take [`TARGET_BATCH_SECONDS`], so the submission
//! overhead (tens of microseconds) is well under one percent.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::KernelError;

/// Invocations per workgroup of the FMA kernel (must match its `@workgroup_size`).
const FMA_WORKGROUP_SIZE: u32 = 256;
/// FMA loop iterations per invocation (must match `ITERATIONS` in `fma_throughput.wgsl`).
const FMA_ITERATIONS: u64 = 512;
/// Floating-point operations per FMA loop iteration: 8 chains x 4 lanes x 2 (multiply, add).
const FLOPS_PER_FMA_ITERATION: u64 = 8 * 4 * 2;
/// Workgroups of the read kernel: enough invocations to saturate the largest GPUs (about 1 M
/// threads in flight), few enough that each still reads a long run.
const READ_WORKGROUPS: u32 = 4096;
/// Largest buffer the read kernel streams: far beyond any GPU's last-level cache (an H100
/// has 50 MiB), so every pass reads memory, not cache.
const MAX_READ_BUFFER_BYTES: u64 = 256 * 1024 * 1024;
/// Smallest buffer worth measuring; adapters that cannot bind this much are skipped.
const MIN_READ_BUFFER_BYTES: u64 = 16 * 1024 * 1024;
/// How long one measured batch of dispatches should take.
pub const TARGET_BATCH_SECONDS: f64 = 0.05;
/// Measured batches per kernel; the fastest counts (others lost time to the rest of the machine).
const MEASURED_BATCHES: usize = 3;
/// Most dispatches in one batch (bounds the command buffer on very fast GPUs).
const MAX_DISPATCHES_PER_BATCH: u32 = 256;
/// Longest wait for one batch before the adapter is declared hung.
const BATCH_TIMEOUT: Duration = Duration::from_secs(20);

/// What kind of device an adapter is (wgpu's `DeviceType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GpuDeviceType {
    DiscreteGpu,
    IntegratedGpu,
    VirtualGpu,
    /// A software rasterizer on the CPU, such as Mesa's lavapipe (llvmpipe).
    Cpu,
    Other,
}

/// One adapter as wgpu reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuAdapterInfo {
    /// Index in [`list_adapters`]'s order, for [`measure_adapter`].
    pub index: usize,
    pub name: String,
    /// PCI vendor id (0x10de NVIDIA, 0x1002 AMD, 0x8086 Intel, 0x106b Apple; 0x10005 Mesa).
    pub vendor_id: u32,
    pub vendor: String,
    pub device_id: u32,
    /// `Vulkan`, `Metal` or `Dx12`.
    pub backend: String,
    pub device_type: GpuDeviceType,
    pub driver: String,
    pub driver_info: String,
    /// Largest single storage buffer binding, in bytes.
    pub max_storage_buffer_binding_bytes: u64,
}

impl GpuAdapterInfo {
    /// A stable key for caching measurements of this adapter.
    pub fn cache_key(&self) -> String {
        format!(
            "gpu:{}:{:04x}:{:04x}:{}:{}",
            self.backend, self.vendor_id, self.device_id, self.name, self.driver_info
        )
    }
}

/// What the kernels measured on one adapter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuMeasurement {
    /// Streaming read bandwidth, bytes per second.
    pub read_bytes_per_second: f64,
    /// f32 fused multiply-add throughput, floating-point operations per second.
    pub f32_flops_per_second: f64,
    /// Size of the buffer the read kernel streamed.
    pub read_buffer_bytes: u64,
}

/// The PCI vendor's name for the ids that matter here.
pub fn vendor_name(vendor_id: u32) -> &'static str {
    match vendor_id {
        0x10de => "NVIDIA",
        0x1002 | 0x1022 => "AMD",
        0x8086 => "Intel",
        0x106b => "Apple",
        0x5143 => "Qualcomm",
        0x13b5 => "ARM",
        0x10005 => "Mesa",
        _ => "unknown",
    }
}

fn instance() -> wgpu::Instance {
    let mut descriptor = wgpu::InstanceDescriptor::new_without_display_handle();
    // Native compute backends only: GL has no compute on many drivers and adds nothing here.
    descriptor.backends = wgpu::Backends::VULKAN | wgpu::Backends::METAL | wgpu::Backends::DX12;
    wgpu::Instance::new(descriptor)
}

fn device_type(device_type: wgpu::DeviceType) -> GpuDeviceType {
    match device_type {
        wgpu::DeviceType::DiscreteGpu => GpuDeviceType::DiscreteGpu,
        wgpu::DeviceType::IntegratedGpu => GpuDeviceType::IntegratedGpu,
        wgpu::DeviceType::VirtualGpu => GpuDeviceType::VirtualGpu,
        wgpu::DeviceType::Cpu => GpuDeviceType::Cpu,
        wgpu::DeviceType::Other => GpuDeviceType::Other,
    }
}

fn describe(index: usize, adapter: &wgpu::Adapter) -> GpuAdapterInfo {
    let info = adapter.get_info();
    GpuAdapterInfo {
        index,
        name: info.name,
        vendor_id: info.vendor,
        vendor: vendor_name(info.vendor).to_string(),
        device_id: info.device,
        backend: format!("{:?}", info.backend),
        device_type: device_type(info.device_type),
        driver: info.driver,
        driver_info: info.driver_info,
        max_storage_buffer_binding_bytes: adapter.limits().max_storage_buffer_binding_size,
    }
}

fn adapters() -> Vec<wgpu::Adapter> {
    pollster::block_on(instance().enumerate_adapters(wgpu::Backends::all()))
}

/// Every adapter of the native backends, in wgpu's order. No adapter (no driver, no Vulkan
/// loader) is an empty list, not an error.
pub fn list_adapters() -> Vec<GpuAdapterInfo> {
    adapters()
        .iter()
        .enumerate()
        .map(|(index, adapter)| describe(index, adapter))
        .collect()
}

/// Runs both kernels on adapter `index` of [`list_adapters`].
pub fn measure_adapter(index: usize) -> Result<GpuMeasurement, KernelError> {
    let adapters = adapters();
    let adapter = adapters
        .get(index)
        .ok_or(KernelError::NoSuchAdapter { index })?;
    let adapter_limits = adapter.limits();
    let read_buffer_bytes = adapter_limits
        .max_storage_buffer_binding_size
        .min(adapter_limits.max_buffer_size)
        .min(MAX_READ_BUFFER_BYTES);
    if read_buffer_bytes < MIN_READ_BUFFER_BYTES {
        return Err(KernelError::Unsupported {
            adapter: adapter.get_info().name,
            reason: format!(
                "storage buffers are limited to {read_buffer_bytes} bytes, the kernel needs {MIN_READ_BUFFER_BYTES}"
            ),
        });
    }
    let required_limits = wgpu::Limits {
        max_storage_buffer_binding_size: adapter_limits.max_storage_buffer_binding_size,
        max_buffer_size: adapter_limits.max_buffer_size,
        ..wgpu::Limits::downlevel_defaults()
    };
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: Some("hearth-kernels"),
        required_features: wgpu::Features::empty(),
        required_limits,
        experimental_features: wgpu::ExperimentalFeatures::disabled(),
        memory_hints: wgpu::MemoryHints::Performance,
        trace: wgpu::Trace::Off,
    }))
    .map_err(|error| KernelError::Device {
        adapter: adapter.get_info().name,
        reason: error.to_string(),
    })?;
    let kernels = Kernels {
        device: &device,
        queue: &queue,
        adapter_name: adapter.get_info().name,
    };
    let read_bytes_per_second = kernels.read_bandwidth(read_buffer_bytes)?;
    let f32_flops_per_second = kernels.fma_throughput()?;
    Ok(GpuMeasurement {
        read_bytes_per_second,
        f32_flops_per_second,
        read_buffer_bytes,
    })
}

/// A device, its queue, and the helpers both kernels share.
struct Kernels<'device> {
    device: &'device wgpu::Device,
    queue: &'device wgpu::Queue,
    adapter_name: String,
}

/// A compute pipeline with its one bind group.
struct Dispatchable {
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    workgroups: u32,
}

impl Kernels<'_> {
    fn pipeline(&self, source: &str, entry_point: &str) -> wgpu::ComputePipeline {
        let module = self
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(entry_point),
                source: wgpu::ShaderSource::Wgsl(source.into()),
            });
        self.device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry_point),
                layout: None,
                module: &module,
                entry_point: Some(entry_point),
                compilation_options: wgpu::PipelineCompilationOptions::default(),
                cache: None,
            })
    }

    fn storage_buffer(&self, label: &str, size: u64) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    fn bind_group(
        &self,
        pipeline: &wgpu::ComputePipeline,
        buffers: &[&wgpu::Buffer],
    ) -> wgpu::BindGroup {
        let entries: Vec<wgpu::BindGroupEntry<'_>> = buffers
            .iter()
            .enumerate()
            .map(|(binding, buffer)| wgpu::BindGroupEntry {
                binding: binding as u32,
                resource: buffer.as_entire_binding(),
            })
            .collect();
        self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        })
    }

    /// Runs `dispatches` dispatches in one submission and returns the wall time until done.
    fn run_batch(&self, kernel: &Dispatchable, dispatches: u32) -> Result<f64, KernelError> {
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: None,
                timestamp_writes: None,
            });
            pass.set_pipeline(&kernel.pipeline);
            pass.set_bind_group(0, &kernel.bind_group, &[]);
            for _ in 0..dispatches {
                pass.dispatch_workgroups(kernel.workgroups, 1, 1);
            }
        }
        let command_buffer = encoder.finish();
        let started = Instant::now();
        let submission = self.queue.submit([command_buffer]);
        self.device
            .poll(wgpu::PollType::Wait {
                submission_index: Some(submission),
                timeout: Some(BATCH_TIMEOUT),
            })
            .map_err(|error| KernelError::Device {
                adapter: self.adapter_name.clone(),
                reason: format!("the kernel did not finish: {error}"),
            })?;
        Ok(started.elapsed().as_secs_f64())
    }

    /// Runs `kernel` sized to [`TARGET_BATCH_SECONDS`] per batch and returns the most units of
    /// work (`work_per_dispatch` each) per second over [`MEASURED_BATCHES`] batches.
    fn best_rate(&self, kernel: &Dispatchable, work_per_dispatch: f64) -> Result<f64, KernelError> {
        // The first run compiles pipelines and faults pages in; it only sizes the batches.
        let first = self.run_batch(kernel, 1)?.max(1e-6);
        let dispatches =
            ((TARGET_BATCH_SECONDS / first).ceil() as u32).clamp(1, MAX_DISPATCHES_PER_BATCH);
        let mut best = 0.0f64;
        for _ in 0..MEASURED_BATCHES {
            let seconds = self.run_batch(kernel, dispatches)?.max(1e-9);
            best = best.max(work_per_dispatch * f64::from(dispatches) / seconds);
        }
        Ok(best)
    }

    fn read_bandwidth(&self, buffer_bytes: u64) -> Result<f64, KernelError> {
        let pipeline = self.pipeline(include_str!("shaders/read_bandwidth.wgsl"), "read_stream");
        let source = self.storage_buffer("read source", buffer_bytes);
        fill_pattern(self.queue, &source, buffer_bytes);
        let sink = self.storage_buffer("read sink", 16);
        let bind_group = self.bind_group(&pipeline, &[&source, &sink]);
        let kernel = Dispatchable {
            pipeline,
            bind_group,
            workgroups: READ_WORKGROUPS,
        };
        self.best_rate(&kernel, buffer_bytes as f64)
    }

    fn fma_throughput(&self) -> Result<f64, KernelError> {
        let pipeline = self.pipeline(include_str!("shaders/fma_throughput.wgsl"), "fma_chains");
        let sink = self.storage_buffer("fma sink", 16);
        let bind_group = self.bind_group(&pipeline, &[&sink]);
        // Enough invocations to fill every core of a large GPU several times over.
        let workgroups = READ_WORKGROUPS;
        let kernel = Dispatchable {
            pipeline,
            bind_group,
            workgroups,
        };
        let flops_per_dispatch = f64::from(workgroups)
            * f64::from(FMA_WORKGROUP_SIZE)
            * (FMA_ITERATIONS * FLOPS_PER_FMA_ITERATION) as f64;
        self.best_rate(&kernel, flops_per_dispatch)
    }
}

/// Bytes written to the GPU per `write_buffer` call while filling the source buffer.
const FILL_CHUNK_BYTES: u64 = 16 * 1024 * 1024;

/// Fills `buffer` with a pattern of distinct words (not zeros: some GPUs compress zero pages,
/// which would overstate bandwidth). Should some invocation's fold equal the shader's `NEVER`
/// value, it writes one word: harmless.
fn fill_pattern(queue: &wgpu::Queue, buffer: &wgpu::Buffer, size: u64) {
    let mut offset = 0u64;
    while offset < size {
        let length = FILL_CHUNK_BYTES.min(size - offset);
        let first_word = offset / 4;
        let words: Vec<u8> = (0..length / 4)
            .flat_map(|index| pattern_word(first_word + index).to_le_bytes())
            .collect();
        queue.write_buffer(buffer, offset, &words);
        offset += length;
    }
}

/// Multiplying by an odd constant is a bijection of `u32`, so words are distinct and only the
/// last index of a 16 GiB buffer would be zero.
fn pattern_word(index: u64) -> u32 {
    (index as u32).wrapping_add(1).wrapping_mul(0x9e37_79b1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vendors_are_named() {
        assert_eq!(vendor_name(0x10de), "NVIDIA");
        assert_eq!(vendor_name(0x10005), "Mesa");
        assert_eq!(vendor_name(0x1234), "unknown");
    }

    #[test]
    fn the_pattern_is_not_zero() {
        assert!((0..1024).all(|index| pattern_word(index) != 0));
        let distinct: std::collections::HashSet<u32> = (0..1024).map(pattern_word).collect();
        assert_eq!(distinct.len(), 1024);
    }
}
