//! What the kernel tests share to run one ggml operation through ggml's real graph code
//! (ggml has no safe Rust wrapper, so these call its C API).

use llama_cpp_sys_2 as sys;

/// A ggml context that allocates its tensors' data in `bytes` of its own memory. Free it with
/// `ggml_free`.
///
/// # Safety
/// Calls ggml's C API.
pub unsafe fn context(bytes: usize) -> *mut sys::ggml_context {
    let ctx = sys::ggml_init(sys::ggml_init_params {
        mem_size: bytes,
        mem_buffer: std::ptr::null_mut(),
        no_alloc: false,
    });
    assert!(!ctx.is_null(), "ggml_init failed");
    ctx
}

/// Computes `result` (and what it depends on) on the CPU with `threads` threads.
///
/// # Safety
/// `ctx` and `result` must come from [`context`].
pub unsafe fn compute(ctx: *mut sys::ggml_context, result: *mut sys::ggml_tensor, threads: i32) {
    let graph = sys::ggml_new_graph(ctx);
    sys::ggml_build_forward_expand(graph, result);
    let status = sys::ggml_graph_compute_with_ctx(ctx, graph, threads);
    assert_eq!(status, sys::GGML_STATUS_SUCCESS);
}
