//! Multi-threaded CPU memory read bandwidth: what token generation on the CPU is bound by.
//!
//! Each thread allocates and fills its own part of the buffer (so on a NUMA machine the pages
//! sit next to the core that reads them, as llama.cpp's threads' weights mostly do), waits at
//! a barrier, then sums its part in a loop the compiler turns into wide vector loads. A pass's bandwidth is the bytes of all threads over the slowest
//! thread's time; the best of several passes counts.

use std::hint::black_box;
use std::sync::Barrier;
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// Default bytes streamed per pass, all threads together: far beyond any laptop or desktop
/// last-level cache (tens of MiB), so the passes measure memory, not cache.
pub const DEFAULT_CPU_BUFFER_BYTES: usize = 512 * 1024 * 1024;
/// Default passes; the best counts (the others lost time to the rest of the machine).
pub const DEFAULT_CPU_PASSES: usize = 5;
/// Words per thread are rounded to a multiple of this (one 512-bit vector).
const WORDS_PER_VECTOR: usize = 8;

/// What one measurement found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CpuBandwidthMeasurement {
    /// Read bandwidth of all threads together, bytes per second.
    pub read_bytes_per_second: f64,
    pub threads: usize,
    pub buffer_bytes: usize,
    pub passes: usize,
}

/// Measures read bandwidth with `threads` threads streaming `buffer_bytes` in total, `passes`
/// times. `threads` and `passes` of 0 count as 1.
pub fn measure_cpu_read_bandwidth(
    threads: usize,
    buffer_bytes: usize,
    passes: usize,
) -> CpuBandwidthMeasurement {
    let threads = threads.max(1);
    let passes = passes.max(1);
    let words_per_thread =
        (buffer_bytes / threads / 8 / WORDS_PER_VECTOR).max(1) * WORDS_PER_VECTOR;
    let start_line = Barrier::new(threads);
    let per_thread_seconds: Vec<Vec<f64>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|thread_index| {
                let start_line = &start_line;
                scope.spawn(move || {
                    let words: Vec<u64> = (0..words_per_thread as u64)
                        .map(|word| word.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ thread_index as u64)
                        .collect();
                    let mut seconds = Vec::with_capacity(passes);
                    for _ in 0..passes {
                        start_line.wait();
                        let started = Instant::now();
                        black_box(sum_words(black_box(&words)));
                        seconds.push(started.elapsed().as_secs_f64());
                    }
                    seconds
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| worker.join().unwrap_or_default())
            .collect()
    });
    let bytes_per_pass = (words_per_thread * 8 * threads) as f64;
    let best = (0..passes)
        .filter_map(|pass| {
            per_thread_seconds
                .iter()
                .map(|seconds| seconds.get(pass).copied())
                .try_fold(0.0f64, |slowest, seconds| seconds.map(|s| slowest.max(s)))
        })
        .filter(|slowest| *slowest > 0.0)
        .map(|slowest| bytes_per_pass / slowest)
        .fold(0.0f64, f64::max);
    CpuBandwidthMeasurement {
        read_bytes_per_second: best,
        threads,
        buffer_bytes: words_per_thread * 8 * threads,
        passes,
    }
}

/// Sums the words. A plain fold is what LLVM vectorizes best here: with `target-cpu=native`
/// on an AVX-512 machine, hand-written multi-accumulator loops compiled to code five times
/// slower (3.6 GB/s against 18 GB/s on one thread, measured), while the fold is unrolled and
/// vectorized by the compiler itself.
fn sum_words(words: &[u64]) -> u64 {
    words
        .iter()
        .fold(0u64, |total, word| total.wrapping_add(*word))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_are_exact() {
        let words: Vec<u64> = (1..=16).collect();
        assert_eq!(sum_words(&words), 136);
    }

    #[test]
    fn a_small_measurement_reports_a_positive_rate() {
        let measurement = measure_cpu_read_bandwidth(2, 8 * 1024 * 1024, 2);
        assert!(measurement.read_bytes_per_second > 0.0);
        assert_eq!(measurement.threads, 2);
        assert!(measurement.buffer_bytes <= 8 * 1024 * 1024);
    }
}
