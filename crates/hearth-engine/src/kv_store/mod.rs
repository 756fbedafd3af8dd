//! The tiers below the slots: a sequence pushed out of its slot is saved, not dropped, first
//! in host memory (within a budget the planner sets) and from there, least recently used
//! first, in files under the data folder that survive restarts. When a prompt continues a
//! saved sequence, its state is restored into the chosen slot and only the new tokens are
//! computed.
//!
//! - `policy`: which entries to keep and evict and which one serves a prompt (pure).
//! - `file`: one saved sequence's file (header, checksum, private atomic writes).
//! - `disk`: the folder of files and its budget.
//!
//! The engine's side (copying states in and out of llama.cpp) is `engine::tiers`.

pub mod disk;
pub mod file;
pub mod policy;

use hearth_protocol::LoadParams;

/// Which context parameters a saved state depends on, with the model and the llama.cpp that
/// made it: a file is used only by a load whose key is the same.
pub fn cache_key(model_fingerprint: &file::Digest, params: &LoadParams) -> file::Digest {
    let description = format!(
        "hearth-kv format {}; llama-cpp-sys-2 {}; ggml {}; n_ctx {}; n_parallel {}; \
         kv_cache_type {:?}; flash_attention {:?}; kv_unified {}; swa_full {}",
        file::FORMAT_VERSION,
        hearth_build_info::LLAMA_CPP_SYS_VERSION,
        hearth_build_info::GGML_VERSION,
        params.n_ctx,
        params.n_parallel,
        params.kv_cache_type,
        params.flash_attention,
        hearth_protocol::KV_UNIFIED,
        hearth_protocol::SWA_FULL,
    );
    file::sha256(&[model_fingerprint, description.as_bytes()])
}

/// Bytes hashed from each end of the model file for its fingerprint.
const FINGERPRINT_SPAN: u64 = 4 << 20;

/// A model file's fingerprint: SHA-256 of its length, its first and its last 4 MiB (the
/// GGUF header with every tensor's name, shape and offset, and the last weights). Hashing a
/// multi-gigabyte file on every load would delay it by seconds; any re-quantization or
/// other model changes the header or the length.
pub fn model_fingerprint(path: &std::path::Path) -> std::io::Result<file::Digest> {
    use std::io::{Read, Seek, SeekFrom};
    let mut model = std::fs::File::open(path)?;
    let length = model.metadata()?.len();
    let mut head = Vec::new();
    (&mut model).take(FINGERPRINT_SPAN).read_to_end(&mut head)?;
    let mut tail = Vec::new();
    if length > FINGERPRINT_SPAN {
        model.seek(SeekFrom::Start(length - FINGERPRINT_SPAN))?;
        model.take(FINGERPRINT_SPAN).read_to_end(&mut tail)?;
    }
    Ok(file::sha256(&[&length.to_le_bytes(), &head, &tail]))
}
