//! What llama.cpp actually allocated for the loaded model and context, and which devices its
//! backends offer: the ground truth the fit planner (`hearth fit --verify`) is checked against.
//!
//! llama.cpp logs every buffer it allocates ("CPU_Mapped model buffer size = 92.10 MiB",
//! "CUDA0 KV buffer size = ...", "CPU compute buffer size = ..."), to 0.01 MiB. Its own
//! `llama_memory_breakdown_print` goes to stderr through llama.cpp's `common` logger (not the
//! log callback) and rounds to whole MiB, and `llama_get_memory_breakdown` is C++ only, so
//! the log lines are the most precise report reachable from Rust. [`BufferLog`] is fed those
//! lines by the engine's `tracing` layer ([`crate::LlamaLogCapture`]) and keeps the buffers of
//! the latest load.

use std::sync::{Mutex, OnceLock};

use hearth_protocol::{BufferPurpose, MemoryBuffer, MemoryReport};

/// The line llama.cpp's model loader starts every load with: the buffers of an earlier load
/// are forgotten there.
const LOAD_START_MARKER: &str = "loaded meta data with";
/// The line before llama.cpp (re)reserves its compute buffers: earlier compute buffers are
/// replaced by the ones that follow.
const COMPUTE_RESERVE_MARKER: &str = "reserving ...";
const BUFFER_SIZE_MARKER: &str = " buffer size = ";
const BYTES_PER_MIB: f64 = 1024.0 * 1024.0;

fn buffers() -> &'static Mutex<Vec<MemoryBuffer>> {
    static BUFFERS: OnceLock<Mutex<Vec<MemoryBuffer>>> = OnceLock::new();
    BUFFERS.get_or_init(|| Mutex::new(Vec::new()))
}

/// The buffers llama.cpp reported for the latest load.
#[derive(Debug, Clone, Copy, Default)]
pub struct BufferLog;

impl BufferLog {
    /// Feeds one llama.cpp log line (called for every llama.cpp INFO line).
    pub fn observe(line: &str) {
        let Ok(mut buffers) = buffers().lock() else {
            return;
        };
        if line.contains(LOAD_START_MARKER) {
            buffers.clear();
        } else if line.trim_end().ends_with(COMPUTE_RESERVE_MARKER) {
            buffers.retain(|buffer| buffer.purpose != BufferPurpose::Compute);
        } else if let Some(buffer) = parse_buffer_line(line) {
            buffers.push(buffer);
        }
    }

    /// The buffers seen since the latest load started, in log order.
    pub fn buffers() -> Vec<MemoryBuffer> {
        buffers()
            .lock()
            .map(|buffers| buffers.clone())
            .unwrap_or_default()
    }
}

/// Parses "  CPU_Mapped model buffer size =    92.10 MiB" (an optional `function: ` prefix
/// allowed) into a buffer; `None` for any other line.
pub fn parse_buffer_line(line: &str) -> Option<MemoryBuffer> {
    let (description, size) = line.split_once(BUFFER_SIZE_MARKER)?;
    let mebibytes: f64 = size.trim().strip_suffix("MiB")?.trim().parse().ok()?;
    if !mebibytes.is_finite() || mebibytes < 0.0 {
        return None;
    }
    let words: Vec<&str> = description
        .split_whitespace()
        .filter(|word| !word.ends_with(':'))
        .collect();
    let (purpose_word, buffer_type) = (words.last()?, words.first()?);
    let purpose = match *purpose_word {
        "model" => BufferPurpose::Model,
        "KV" | "RS" | "state" => BufferPurpose::KvCache,
        "output" => BufferPurpose::Output,
        "compute" => BufferPurpose::Compute,
        _ => return None,
    };
    Some(MemoryBuffer {
        buffer_type: (*buffer_type).to_string(),
        purpose,
        bytes: (mebibytes * BYTES_PER_MIB).round() as u64,
    })
}

/// The report for the loaded model: its buffers and their sums by purpose. `model_size_bytes`
/// is llama.cpp's own count of the weights (`llama_model_size`), for comparison.
pub fn memory_report(model_size_bytes: u64) -> MemoryReport {
    MemoryReport::from_buffers(BufferLog::buffers(), model_size_bytes)
}

/// The devices llama.cpp's backends offer (see [`crate::backends::backend_devices`]).
pub use crate::backends::backend_devices;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffer_lines_are_parsed() {
        let model = parse_buffer_line("  CPU_Mapped model buffer size =    92.10 MiB").unwrap();
        assert_eq!(model.buffer_type, "CPU_Mapped");
        assert_eq!(model.purpose, BufferPurpose::Model);
        assert_eq!(model.bytes, (92.10 * BYTES_PER_MIB).round() as u64);
        let kv =
            parse_buffer_line("llama_kv_cache:      CUDA0 KV buffer size =   480.00 MiB").unwrap();
        assert_eq!(kv.buffer_type, "CUDA0");
        assert_eq!(kv.purpose, BufferPurpose::KvCache);
        let output = parse_buffer_line("       CPU  output buffer size =     0.19 MiB").unwrap();
        assert_eq!(output.purpose, BufferPurpose::Output);
        let compute = parse_buffer_line("  CUDA_Host compute buffer size =    12.01 MiB").unwrap();
        assert_eq!(compute.buffer_type, "CUDA_Host");
        assert_eq!(compute.purpose, BufferPurpose::Compute);
        assert!(parse_buffer_line("token to piece cache size = 0.3170 MB").is_none());
        assert!(parse_buffer_line("CPU model buffer size = lots MiB").is_none());
    }

    #[test]
    fn a_new_load_and_a_new_reserve_replace_old_buffers() {
        // The log is process-wide; this test is the only one in this crate that feeds it.
        BufferLog::observe("loaded meta data with 33 key-value pairs and 272 tensors from x");
        BufferLog::observe("  CPU_Mapped model buffer size =    92.10 MiB");
        BufferLog::observe("       CPU KV buffer size =     1.50 MiB");
        BufferLog::observe("       CPU KV buffer size =     7.50 MiB");
        BufferLog::observe("reserving ...");
        BufferLog::observe("       CPU compute buffer size =   519.28 MiB");
        BufferLog::observe("reserving ...");
        BufferLog::observe("       CPU compute buffer size =   500.00 MiB");
        let report = memory_report(0);
        assert_eq!(report.buffers.len(), 4);
        assert_eq!(report.kv_cache_bytes, (9.0 * BYTES_PER_MIB) as u64);
        assert_eq!(report.compute_bytes, (500.0 * BYTES_PER_MIB) as u64);
        BufferLog::observe("loaded meta data with 1 key-value pairs and 1 tensors from y");
        assert!(BufferLog::buffers().is_empty());
    }
}
