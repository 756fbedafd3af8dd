//! Prints the CPU read bandwidth with 1..=N threads: `cargo run --release -p hearth-kernels
//! --example cpu_bandwidth`.

fn main() {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    for count in 1..=threads {
        let measurement = hearth_kernels::measure_cpu_read_bandwidth(
            count,
            hearth_kernels::DEFAULT_CPU_BUFFER_BYTES,
            hearth_kernels::DEFAULT_CPU_PASSES,
        );
        println!(
            "{count} threads: {:.1} GB/s",
            measurement.read_bytes_per_second / 1e9
        );
    }
}
