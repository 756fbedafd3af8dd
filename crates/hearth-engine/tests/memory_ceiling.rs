//! The worker's memory ceiling (`RLIMIT_DATA`, Linux), set before a load from the planner's
//! figures: this process plays the worker (a test binary of its own, since the limit holds
//! for the whole process), and llama.cpp loads, decodes and samples a constrained answer
//! under it.

#![cfg(target_os = "linux")]

mod common;

use std::sync::mpsc;

use common::{chat, greedy_request, TestEngine};
use hearth_engine::ceiling::{memory_ceiling, planned_host_bytes, MIN_MEMORY_CEILING_BYTES};
use hearth_engine::EngineHandle;
use hearth_protocol::{LoadParams, OutputConstraint};

/// What counts towards `RLIMIT_DATA` now (`VmData`, bytes).
fn data_in_use() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmData:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The soft "Max data size" of this process, from /proc/self/limits.
fn data_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max data size"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[test]
fn the_worker_loads_and_answers_under_its_memory_ceiling() {
    let model = hearth_testkit::smollm2();
    let params = LoadParams {
        n_ctx: 2048,
        n_parallel: 2,
        ..LoadParams::default()
    };
    let file_bytes = std::fs::metadata(&model).unwrap().len();
    let planned = planned_host_bytes(&model, &params);
    assert!(
        planned.is_some_and(|bytes| bytes > file_bytes),
        "{planned:?}"
    );
    assert_eq!(
        memory_ceiling(file_bytes, planned, 0),
        MIN_MEMORY_CEILING_BYTES,
        "a small model gets the floor"
    );

    let (sender, events) = mpsc::channel();
    let engine = EngineHandle::spawn_with_memory_ceiling(move |event| {
        let _ = sender.send(event);
    })
    .unwrap();
    let mut engine = TestEngine {
        engine,
        events,
        next_id: 1,
    };
    // The planner sets the KV cache's host tier at load (the params name none), and the
    // ceiling leaves room for it on top of the model's own need.
    let info = engine.load(&model, params).unwrap();
    assert!(
        info.kv_host_budget_bytes > 0,
        "a 135M model leaves room for a host tier"
    );
    let expected = memory_ceiling(file_bytes, planned, info.kv_host_budget_bytes);
    assert_eq!(data_limit(), Some(expected));

    let plain = engine.submit_request(greedy_request(chat("What is the capital of France?"), 16));
    assert!(!engine.collect(plain).text().is_empty());
    let mut request = greedy_request(chat("Describe a cat as JSON."), 24);
    request.constraint = Some(OutputConstraint::JsonObject);
    let constrained = engine.submit_request(request);
    let outcome = engine.collect(constrained);
    outcome.done();
    assert!(outcome.text().starts_with('{'), "{}", outcome.text());
    let in_use = data_in_use().unwrap();
    println!(
        "VmData {} MiB under a ceiling of {} MiB",
        in_use >> 20,
        expected >> 20
    );
    assert!(in_use < expected / 2, "{in_use} bytes in use");
}
