//! The few calls into ggml's backend registry that `llama-cpp-2` does not wrap: loading one
//! backend library, asking a CPU variant library for its score, and reading each device's PCI
//! id. This is the engine's only `unsafe` code; each call's contract is stated beside it.
#![allow(unsafe_code)]

use std::ffi::{c_char, CStr};
#[cfg(feature = "dynamic-backends")]
use std::{ffi::CString, path::Path};

use super::policy::DeviceKind;

/// One ggml device as the registry reports it.
#[derive(Debug, Clone)]
pub struct RawDevice {
    pub name: String,
    pub description: String,
    /// The registry name of its backend (`CPU`, `CUDA`, `Vulkan`).
    pub backend: String,
    pub kind: DeviceKind,
    pub memory_free: u64,
    pub memory_total: u64,
    pub device_id: Option<String>,
}

fn owned_string(pointer: *const c_char) -> Option<String> {
    if pointer.is_null() {
        return None;
    }
    // SAFETY: ggml hands out NUL-terminated strings that live as long as the device or
    // registry they belong to (for the life of the process here: backends are never unloaded).
    Some(
        unsafe { CStr::from_ptr(pointer) }
            .to_string_lossy()
            .into_owned(),
    )
}

/// Every device of every registered backend, in ggml's order (the indices `with_devices`
/// takes).
pub fn devices() -> Vec<RawDevice> {
    // SAFETY: the registry functions take no pointers from us; an index below the count is
    // valid, and `ggml_backend_dev_get_props` fills the zeroed struct we own.
    let count = unsafe { llama_cpp_sys_2::ggml_backend_dev_count() };
    (0..count)
        .map(|index| unsafe {
            let device = llama_cpp_sys_2::ggml_backend_dev_get(index);
            let mut props: llama_cpp_sys_2::ggml_backend_dev_props = std::mem::zeroed();
            llama_cpp_sys_2::ggml_backend_dev_get_props(device, &raw mut props);
            let registry = llama_cpp_sys_2::ggml_backend_dev_backend_reg(device);
            RawDevice {
                name: owned_string(props.name).unwrap_or_default(),
                description: owned_string(props.description).unwrap_or_default(),
                backend: owned_string(llama_cpp_sys_2::ggml_backend_reg_name(registry))
                    .unwrap_or_default(),
                kind: match props.type_ {
                    llama_cpp_sys_2::GGML_BACKEND_DEVICE_TYPE_CPU => DeviceKind::Cpu,
                    llama_cpp_sys_2::GGML_BACKEND_DEVICE_TYPE_GPU => DeviceKind::Gpu,
                    llama_cpp_sys_2::GGML_BACKEND_DEVICE_TYPE_IGPU => DeviceKind::IntegratedGpu,
                    _ => DeviceKind::Other,
                },
                memory_free: props.memory_free as u64,
                memory_total: props.memory_total as u64,
                device_id: owned_string(props.device_id),
            }
        })
        .collect()
}

/// Backends registered with ggml so far.
#[cfg_attr(not(feature = "dynamic-backends"), allow(dead_code))]
pub fn registered_backend_count() -> usize {
    // SAFETY: no arguments; reads the registry.
    unsafe { llama_cpp_sys_2::ggml_backend_reg_count() }
}

/// A backend library that ggml registered: its registry name and device count.
#[cfg(feature = "dynamic-backends")]
#[derive(Debug, Clone)]
pub struct Registered {
    pub name: String,
    pub device_count: usize,
}

/// Opens a library to see whether it can be loaded at all, and asks it for its
/// `ggml_backend_score` (0: this machine cannot run it) if it has one. The library is closed
/// again; nothing is registered. `Err` carries the loader's reason (`dlerror`).
#[cfg(feature = "dynamic-backends")]
pub fn probe_library(path: &Path) -> Result<Option<i32>, String> {
    type ScoreFunction = unsafe extern "C" fn() -> i32;
    // SAFETY: opening a ggml backend module runs its static initialisers, which only set up
    // tables; ggml itself opens every CPU variant this way to score it.
    let library = unsafe { libloading::Library::new(path) }.map_err(|error| error.to_string())?;
    // SAFETY: `ggml_backend_score` has this signature in every ggml backend module
    // (ggml-backend-impl.h, GGML_BACKEND_DL_SCORE_IMPL).
    let score = match unsafe { library.get::<ScoreFunction>(b"ggml_backend_score\0") } {
        Ok(score) => Some(unsafe { score() }),
        Err(_) => None,
    };
    Ok(score)
}

/// Registers a backend library with ggml (`ggml_backend_load`). `None` when ggml refused it
/// (its reason is in llama.cpp's log).
#[cfg(feature = "dynamic-backends")]
pub fn load_library(path: &Path) -> Option<Registered> {
    let path = CString::new(path.to_string_lossy().into_owned()).ok()?;
    // SAFETY: a NUL-terminated path; ggml returns a registry that lives for the process, or
    // null.
    unsafe {
        let registry = llama_cpp_sys_2::ggml_backend_load(path.as_ptr());
        if registry.is_null() {
            return None;
        }
        Some(Registered {
            name: owned_string(llama_cpp_sys_2::ggml_backend_reg_name(registry))
                .unwrap_or_default(),
            device_count: llama_cpp_sys_2::ggml_backend_reg_dev_count(registry),
        })
    }
}
