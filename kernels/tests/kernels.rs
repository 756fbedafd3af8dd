//! The kernels on this machine's real devices. CI installs Mesa's lavapipe
//! (`scripts/install-system-deps`), so at least one Vulkan adapter exists there; the GPU test
//! fails with that advice rather than skipping silently when none is found.

use hearth_kernels::{list_adapters, measure_adapter, measure_cpu_read_bandwidth};

#[test]
fn cpu_bandwidth_is_measured_with_every_core() {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let measurement = measure_cpu_read_bandwidth(threads, 64 * 1024 * 1024, 3);
    // Any machine that runs this streams more than 100 MB/s and less than 10 TB/s.
    assert!(
        (1e8..1e13).contains(&measurement.read_bytes_per_second),
        "{measurement:?}"
    );
}

#[test]
fn gpu_kernels_run_on_every_adapter() {
    // lavapipe prints a warning without a runtime directory; it needs none to compute.
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir());
    }
    let adapters = list_adapters();
    assert!(
        !adapters.is_empty(),
        "no GPU adapter found: install a Vulkan driver (scripts/install-system-deps installs Mesa's lavapipe)"
    );
    for adapter in &adapters {
        let measurement = measure_adapter(adapter.index)
            .unwrap_or_else(|error| panic!("{}: {error}", adapter.name));
        assert!(
            measurement.read_bytes_per_second > 1e8,
            "{adapter:?}: {measurement:?}"
        );
        assert!(
            measurement.f32_flops_per_second > 1e8,
            "{adapter:?}: {measurement:?}"
        );
        eprintln!(
            "{} ({}, {:?}): read {:.1} GB/s, f32 {:.1} GFLOP/s",
            adapter.name,
            adapter.backend,
            adapter.device_type,
            measurement.read_bytes_per_second / 1e9,
            measurement.f32_flops_per_second / 1e9
        );
    }
}
