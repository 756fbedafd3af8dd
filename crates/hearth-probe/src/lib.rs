//! Hearth's hardware probe and fit planner: which model, quantization, context length and GPU
//! offload fit this machine, and how fast they will run.
//!
//! The probe ([`probe::probe`]) reads the machine: OS, CPU model, cores and SIMD features, RAM
//! total and available, free disk in the models directory, every GPU adapter `wgpu` finds, the
//! GPUs llama.cpp's backends report with their total and free memory (the caller asks the
//! engine worker; this crate never links llama.cpp), and bandwidths measured by
//! `hearth-kernels`, cached per device and probe version under the data directory. It turns all
//! that into a [`DeviceProfile`]. [`machine`] asks the engine worker (through
//! `hearth-supervisor`) and probes: in `hearth probe` and `hearth fit`, and in the server's
//! short-lived probe process ([`machine::print_probe_report`]).
//!
//! The planner is pure functions over a profile and a model's GGUF facts ([`ModelFacts`]):
//! [`memory::memory_breakdown`] computes what llama.cpp will allocate per device (weights with
//! the CPU's repacked copies, KV cache with sliding-window and GQA layouts, output and compute
//! buffers, runtime overheads) following llama.cpp's own sizing rules;
//! [`speed::predict_speed`] predicts decode and prefill tokens per second; [`plan::plan`]
//! chooses the quantization, context, offload, KV cache type, flash attention and parallel
//! sequences that fit the budgets (free memory minus a stated margin), and [`kv_host`] how much
//! of the host memory left keeps the KV states of conversations pushed out of their slots;
//! [`draft::plan_draft`]
//! checks that a speculative-decoding draft model fits beside that plan and predicts its
//! decode speedup from an acceptance rate. Fixture profiles
//! ([`profile::fixtures`]) and synthetic models ([`model::synthetic`]) test it without the
//! hardware. [`catalog`] gives a catalog model's variants to plan from, read from installed
//! files or estimated. `docs/planner.md` explains the formulas and how they were checked
//! against llama.cpp.

pub mod catalog;
pub mod draft;
pub mod kv_host;
pub mod machine;
pub mod memory;
pub mod model;
pub mod plan;
pub mod probe;
pub mod profile;
pub mod speed;

use std::path::Path;

pub use draft::{plan_draft, Acceptance, AcceptanceSource, DraftPlan};
pub use kv_host::KvHostBudget;
pub use memory::{ContextConfig, DeviceMemory, Placement};
pub use model::{ModelFacts, ModelFactsError};
pub use plan::{
    nominal_bits_per_weight, plan, Offload, Plan, PlanError, QualityPreference, Variant, Wishes,
};
pub use probe::{LlamaDevice, ProbeOptions, ProbeReport, PROBE_VERSION};
pub use profile::DeviceProfile;
pub use speed::SpeedPrediction;

/// The variant held in a local GGUF file; its quantization is the file's type. The first part
/// of a split model (`NAME-00001-of-00003.gguf`) brings the tensors of the parts beside it.
pub fn variant_from_file(path: &Path) -> Result<Variant, ModelFactsError> {
    let file = hearth_gguf::GgufFile::open(path)?;
    let mut variant = variant_from_gguf(&file)?;
    let split = path
        .file_name()
        .and_then(|name| hearth_gguf::split::SplitName::parse(&name.to_string_lossy()))
        .filter(|name| name.index == 1);
    if let Some(name) = split {
        for index in 2..=name.count {
            let part =
                hearth_gguf::GgufFile::open(&path.with_file_name(name.part_file_name(index)))?;
            variant.facts.add_part(&part);
        }
    }
    Ok(variant)
}

/// The variant a parsed GGUF header describes (for example one read from a remote file's
/// first bytes), with its quantization from the header's file type.
pub fn variant_from_gguf(file: &hearth_gguf::GgufFile) -> Result<Variant, ModelFactsError> {
    let facts = ModelFacts::from_gguf(file)?;
    Ok(Variant {
        quantization: facts
            .file_type
            .clone()
            .unwrap_or_else(|| "unknown".to_string()),
        facts,
        estimated: false,
    })
}

/// Another quantization of a model whose header is known: tensor sizes scaled by the ratio of
/// the quantizations' nominal bits per weight. `estimated` is set on the result.
pub fn estimate_variant(known: &Variant, quantization: &str) -> Variant {
    let scale =
        nominal_bits_per_weight(quantization) / nominal_bits_per_weight(&known.quantization);
    Variant {
        quantization: quantization.to_string(),
        facts: known.facts.scaled(quantization, scale),
        estimated: true,
    }
}
