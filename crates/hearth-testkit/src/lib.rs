//! Helpers for Hearth's tests (a dev-dependency only).
//!
//! The real test models come from `scripts/fetch-test-models`, which caches them outside the
//! repository. Tests that need one call [`smollm2`] or [`gemma3`]; a missing model fails the
//! test with the command to run, never skips it silently. [`craft`] makes bad model files from
//! good ones (truncated, not GGUF, a hostile metadata value). [`fake_worker`] is a scripted
//! engine worker for the fast test tier (no model, no llama.cpp).

use std::path::{Path, PathBuf};

pub const SMOLLM2_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
pub const GEMMA3_FILE: &str = "gemma-3-270m-q4_k_m.gguf";
/// Environment variable naming the test model cache (the fetch script's `HEARTH_TEST_MODELS`).
pub const TEST_MODELS_ENV: &str = "HEARTH_TEST_MODELS";

/// The directory the fetch script fills.
pub fn test_models_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(TEST_MODELS_ENV).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".cache/hearth/test-models")
}

fn model(file: &str) -> PathBuf {
    let path = test_models_dir().join(file);
    assert!(
        path.is_file(),
        "test model {} is missing: run scripts/fetch-test-models (or set {TEST_MODELS_ENV})",
        path.display()
    );
    path
}

/// SmolLM2-135M-Instruct Q4_1: the default model and the main test model (ChatML template).
pub fn smollm2() -> PathBuf {
    model(SMOLLM2_FILE)
}

/// Gemma 3 270M Q4_K_M: a base model of another architecture (sliding-window attention).
pub fn gemma3() -> PathBuf {
    model(GEMMA3_FILE)
}

/// The process ids of `pid`'s children (a server's engine workers), on Linux: each thread
/// lists the children it started, and workers are started by whichever thread ran the load.
pub fn child_processes(pid: u32) -> Vec<u32> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"));
    tasks
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|children| {
            children
                .split_whitespace()
                .filter_map(|child| child.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

pub mod fake_worker;
pub mod http;
pub mod http_client;

/// Bad model files made from good ones.
pub mod craft {
    use super::*;

    /// The first `length` bytes of `source`, written to `target`.
    pub fn truncated(source: &Path, target: &Path, length: usize) -> std::io::Result<()> {
        let bytes = std::fs::read(source)?;
        std::fs::write(target, &bytes[..length.min(bytes.len())])
    }

    /// A copy of `source` whose u32 metadata value `key` is replaced by `value` (the key must be
    /// a u32 value, such as `llama.block_count`).
    pub fn with_u32_metadata(
        source: &Path,
        target: &Path,
        key: &str,
        value: u32,
    ) -> std::io::Result<()> {
        let mut bytes = std::fs::read(source)?;
        // A GGUF key is stored as u64 length + bytes, followed by the u32 value type (4) and
        // the value itself.
        let mut needle = (key.len() as u64).to_le_bytes().to_vec();
        needle.extend_from_slice(key.as_bytes());
        let at = bytes
            .windows(needle.len())
            .position(|window| window == needle.as_slice())
            .ok_or_else(|| std::io::Error::other(format!("key {key} not found")))?;
        let type_at = at + needle.len();
        const GGUF_TYPE_UINT32: u32 = 4;
        if bytes[type_at..type_at + 4] != GGUF_TYPE_UINT32.to_le_bytes() {
            return Err(std::io::Error::other(format!("{key} is not a u32")));
        }
        bytes[type_at + 4..type_at + 8].copy_from_slice(&value.to_le_bytes());
        std::fs::write(target, bytes)
    }

    /// A copy of `source` with every occurrence of `from` in its first `within` bytes (the
    /// header) replaced by `to`, which must have the same length so no offset moves. Used to
    /// rename a metadata key or change a chat template in place.
    pub fn with_bytes_replaced(
        source: &Path,
        target: &Path,
        from: &str,
        to: &str,
        within: usize,
    ) -> std::io::Result<usize> {
        assert_eq!(from.len(), to.len(), "same length keeps every offset");
        let mut bytes = std::fs::read(source)?;
        let end = within.min(bytes.len());
        let mut count = 0;
        let mut at = 0;
        while let Some(found) = bytes[at..end]
            .windows(from.len())
            .position(|window| window == from.as_bytes())
        {
            let start = at + found;
            bytes[start..start + to.len()].copy_from_slice(to.as_bytes());
            at = start + to.len();
            count += 1;
        }
        std::fs::write(target, bytes)?;
        Ok(count)
    }
}

/// A fixed pseudo-random sequence (xorshift64) for kernel tests: deterministic from its seed,
/// without a crate.
#[derive(Debug, Clone)]
pub struct Numbers(pub u64);

impl Numbers {
    /// The next number, uniform in `low..high`.
    pub fn next_in(&mut self, low: f32, high: f32) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        let unit = (self.0 >> 40) as f32 / (1u64 << 24) as f32;
        low + (high - low) * unit
    }

    /// `count` numbers in `-1..1`.
    pub fn values(&mut self, count: usize) -> Vec<f32> {
        (0..count).map(|_| self.next_in(-1.0, 1.0)).collect()
    }
}
