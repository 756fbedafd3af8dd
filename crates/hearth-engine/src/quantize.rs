//! `hearth quantize`: llama.cpp's own quantizer (`llama_model_quantize`) over a GGUF file, with
//! progress. It also converts a quantized file back to F16 or F32 (requantizing is allowed):
//! that is how the benchmark gets a larger target model to measure a draft model against from
//! the small test model.
//!
//! llama.cpp reports progress only in its log (one `[ i/ n] tensor …` line per tensor), so
//! while it runs this module takes llama.cpp's log over, reads the tensor counter out of it
//! and keeps the error lines for the error message; afterwards the log goes back to `tracing`.
//! `llama-cpp-2` wraps neither the quantizer nor a log callback with a context pointer, so this
//! module calls `llama-cpp-sys-2` itself: the engine's only `unsafe` code besides
//! `backends::native` and `ceiling::set_data_limit`.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_void, CStr, CString};
use std::path::{Path, PathBuf};

use crate::load::{self, LoadError};

/// The file types `hearth quantize` can write, by the names llama.cpp's `llama-quantize`
/// uses (case-insensitive), with llama.cpp's `llama_ftype` numbers.
const FILE_TYPES: &[(&str, u32)] = &[
    ("F32", 0),
    ("F16", 1),
    ("Q4_0", 2),
    ("Q4_1", 3),
    ("Q8_0", 7),
    ("Q5_0", 8),
    ("Q5_1", 9),
    ("Q2_K", 10),
    ("Q3_K_S", 11),
    ("Q3_K_M", 12),
    ("Q3_K_L", 13),
    ("Q4_K_S", 14),
    ("Q4_K_M", 15),
    ("Q5_K_S", 16),
    ("Q5_K_M", 17),
    ("Q6_K", 18),
    ("IQ4_NL", 25),
    ("IQ4_XS", 30),
    ("BF16", 32),
];

/// A target file type by name, or `None`.
pub fn file_type(name: &str) -> Option<u32> {
    FILE_TYPES
        .iter()
        .find(|(known, _)| known.eq_ignore_ascii_case(name.trim()))
        .map(|(_, ftype)| *ftype)
}

/// The names [`file_type`] knows, for an error message.
pub fn file_type_names() -> Vec<&'static str> {
    FILE_TYPES.iter().map(|(name, _)| *name).collect()
}

/// Why a file could not be quantized. Each says which file.
#[derive(Debug, thiserror::Error)]
pub enum QuantizeError {
    #[error("unknown type `{name}`; one of: {}", file_type_names().join(", "))]
    UnknownType { name: String },
    #[error(transparent)]
    Input(#[from] LoadError),
    #[error("{} already exists (--force replaces it)", .path.display())]
    OutputExists { path: PathBuf },
    #[error("the input and the output are the same file")]
    SameFile,
    #[error("llama.cpp's backend is not usable: {0}")]
    NoBackend(String),
    #[error("llama.cpp could not quantize {}: {detail}", .path.display())]
    Failed { path: PathBuf, detail: String },
}

/// What to quantize, and how.
#[derive(Debug, Clone)]
pub struct QuantizeJob {
    pub input: PathBuf,
    pub output: PathBuf,
    /// A name from [`file_type_names`].
    pub file_type: String,
    /// Replace an existing output file.
    pub force: bool,
    /// Threads (`None`: the physical cores).
    pub threads: Option<u32>,
}

/// Checks the job before llama.cpp runs: the type, the input (a GGUF file) and the output.
fn check(job: &QuantizeJob) -> Result<u32, QuantizeError> {
    let ftype = file_type(&job.file_type).ok_or_else(|| QuantizeError::UnknownType {
        name: job.file_type.clone(),
    })?;
    load::check_model_file(&job.input)?;
    if job.output.exists() {
        let same =
            std::fs::canonicalize(&job.input).ok() == std::fs::canonicalize(&job.output).ok();
        if same {
            return Err(QuantizeError::SameFile);
        }
        if !job.force {
            return Err(QuantizeError::OutputExists {
                path: job.output.clone(),
            });
        }
    }
    Ok(ftype)
}

/// What the log callback sees while llama.cpp quantizes.
struct Progress<'a> {
    on_tensor: &'a mut dyn FnMut(u32, u32),
    errors: Vec<String>,
}

/// Reads `[ i/ n]` at the start of a log line.
fn tensor_counter(line: &str) -> Option<(u32, u32)> {
    let inner = line.trim_start().strip_prefix('[')?;
    let (counter, _) = inner.split_once(']')?;
    let (done, total) = counter.split_once('/')?;
    Some((done.trim().parse().ok()?, total.trim().parse().ok()?))
}

unsafe extern "C" fn quantize_log(
    level: llama_cpp_sys_2::ggml_log_level,
    text: *const c_char,
    user_data: *mut c_void,
) {
    if text.is_null() || user_data.is_null() {
        return;
    }
    // SAFETY: `user_data` is the `Progress` that `quantize` keeps alive, and only llama.cpp's
    // quantizing thread logs while the callback is set.
    let progress = unsafe { &mut *user_data.cast::<Progress<'_>>() };
    // SAFETY: llama.cpp passes a NUL-terminated string.
    let line = unsafe { CStr::from_ptr(text) }.to_string_lossy();
    if let Some((done, total)) = tensor_counter(&line) {
        (progress.on_tensor)(done, total);
    }
    if level == llama_cpp_sys_2::GGML_LOG_LEVEL_ERROR {
        progress.errors.push(line.trim().to_string());
    }
}

/// Quantizes `job.input` into `job.output`, calling `on_tensor(done, total)` as each tensor
/// starts. A failure leaves no output file behind.
pub fn quantize(
    job: &QuantizeJob,
    on_tensor: &mut dyn FnMut(u32, u32),
) -> Result<(), QuantizeError> {
    let ftype = check(job)?;
    load::backend().map_err(QuantizeError::NoBackend)?;
    let path_string = |path: &Path| {
        CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| QuantizeError::Failed {
            path: path.to_path_buf(),
            detail: "the path holds a NUL byte".to_string(),
        })
    };
    let input = path_string(&job.input)?;
    let output = path_string(&job.output)?;
    // SAFETY: returns a plain struct of defaults.
    let mut params = unsafe { llama_cpp_sys_2::llama_model_quantize_default_params() };
    params.ftype = ftype as llama_cpp_sys_2::llama_ftype;
    params.allow_requantize = true;
    params.nthread = i32::try_from(job.threads.unwrap_or_else(load::default_threads)).unwrap_or(1);
    let mut progress = Progress {
        on_tensor,
        errors: Vec::new(),
    };
    // SAFETY: the callback only reads `progress`, which outlives the call below; the log goes
    // back to `tracing` before `progress` is dropped.
    let status = unsafe {
        llama_cpp_sys_2::llama_log_set(
            Some(quantize_log),
            std::ptr::addr_of_mut!(progress).cast::<c_void>(),
        );
        let status =
            llama_cpp_sys_2::llama_model_quantize(input.as_ptr(), output.as_ptr(), &params);
        llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
        status
    };
    if status != 0 {
        let _ = std::fs::remove_file(&job.output);
        return Err(QuantizeError::Failed {
            path: job.input.clone(),
            detail: progress
                .errors
                .last()
                .cloned()
                .unwrap_or_else(|| format!("status {status}")),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_types_are_found_by_name_in_any_case() {
        assert_eq!(file_type("F16"), Some(1));
        assert_eq!(file_type("q4_k_m"), Some(15));
        assert_eq!(file_type(" Q8_0 "), Some(7));
        assert_eq!(file_type("Q4_2"), None);
        assert_eq!(file_type(""), None);
    }

    #[test]
    fn the_tensor_counter_is_read_from_the_log_line() {
        assert_eq!(
            tensor_counter("[  12/ 272]                   blk.1.attn_k.weight - [  576,   192], "),
            Some((12, 272))
        );
        assert_eq!(tensor_counter("size =     0.01 MiB\n"), None);
        assert_eq!(tensor_counter("[x/2]"), None);
    }

    #[test]
    fn a_bad_job_is_refused_before_llama_cpp_runs() {
        let dir = std::env::temp_dir().join(format!("hearth-quantize-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let input = dir.join("in.gguf");
        let output = dir.join("out.gguf");
        let job = |file_type: &str, force: bool| QuantizeJob {
            input: input.clone(),
            output: output.clone(),
            file_type: file_type.to_string(),
            force,
            threads: None,
        };
        let error = check(&job("Q9", false)).unwrap_err();
        assert!(error.to_string().contains("unknown type `Q9`"), "{error}");
        assert!(error.to_string().contains("Q4_K_M"), "{error}");
        let error = check(&job("F16", false)).unwrap_err();
        assert!(
            matches!(error, QuantizeError::Input(LoadError::FileMissing { .. })),
            "{error}"
        );
        std::fs::write(&input, b"GGUF....").unwrap();
        std::fs::write(&output, b"old").unwrap();
        let error = check(&job("F16", false)).unwrap_err();
        assert!(error.to_string().contains("--force"), "{error}");
        assert_eq!(check(&job("F16", true)).unwrap(), 1);
        let same = QuantizeJob {
            output: input.clone(),
            ..job("F16", true)
        };
        assert!(matches!(check(&same), Err(QuantizeError::SameFile)));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
