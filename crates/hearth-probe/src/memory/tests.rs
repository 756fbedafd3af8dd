use super::*;
use crate::profile::fixtures;

fn facts(path: &std::path::Path) -> ModelFacts {
    ModelFacts::from_gguf(&hearth_gguf::GgufFile::open(path).unwrap()).unwrap()
}

/// This machine's CPU as far as repacking goes (x86-64 with AVX2).
fn cpu_profile() -> DeviceProfile {
    fixtures::laptop_8gb_no_gpu()
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB as f64
}

#[test]
fn kv_cells_are_padded_to_256() {
    assert_eq!(ContextConfig::engine_defaults(1000).kv_cells(), 1024);
    assert_eq!(ContextConfig::engine_defaults(512).kv_cells(), 512);
    let mut config = ContextConfig::engine_defaults(32768);
    config.swa_full = false;
    // min(32768, 512 * 1 + 512) = 1024.
    assert_eq!(config.sliding_kv_cells(512), 1024);
    config.kv_unified = true;
    config.n_parallel = 4;
    assert_eq!(config.sliding_kv_cells(512), 2560);
    config.kv_unified = false;
    assert_eq!(config.kv_cells(), 8192);
    assert_eq!(config.sliding_kv_cells(512), 1024);
}

#[test]
fn smollm2_buffers_match_llama_cpp_log() {
    // llama.cpp at n_ctx 8192 without flash attention: model
    // 92.10, KV 180.00, output 0.19, compute 167.52 MiB; with flash attention at 4096 the
    // compute buffer is 106.77 MiB.
    let model = facts(&hearth_testkit::smollm2());
    let memory = memory_breakdown(
        &model,
        &ContextConfig {
            flash_attention: false,
            ..ContextConfig::engine_defaults(8192)
        },
        &Placement::cpu_only(),
        &cpu_profile(),
    );
    let host = &memory[0];
    assert_eq!(host.repacked_weights_bytes, 0, "q4_1 is never repacked");
    assert!((mib(host.weights_bytes) - 92.10).abs() < 0.01);
    assert!((mib(host.kv_cache_bytes) - 180.0).abs() < 0.01);
    assert!((mib(host.output_bytes) - 0.19).abs() < 0.01);
    assert!((mib(host.compute_bytes) - 167.52).abs() < 0.05);
    let flash = ContextConfig::engine_defaults(4096);
    let memory = memory_breakdown(&model, &flash, &Placement::cpu_only(), &cpu_profile());
    assert!((mib(memory[0].compute_bytes) - 106.77).abs() < 1.2);
    // With flash attention the scores never exist whole: at 32768 the compute buffer
    // measured 133.64 MiB, against 647.52 without.
    let long = ContextConfig::engine_defaults(32768);
    let memory = memory_breakdown(&model, &long, &Placement::cpu_only(), &cpu_profile());
    assert!((mib(memory[0].compute_bytes) - 133.64).abs() < 1.2);
}

#[test]
fn per_sequence_streams_pad_each_stream() {
    // llama.cpp, SmolLM2 at n_ctx 4096 with 3 sequences without flash attention: 3 streams
    // of 1536 cells, KV 101.25 MiB, output 0.56 MiB, compute 106.53 MiB.
    let model = facts(&hearth_testkit::smollm2());
    let config = ContextConfig {
        n_parallel: 3,
        flash_attention: false,
        ..ContextConfig::engine_defaults(4096)
    };
    assert_eq!(config.kv_cells(), 1536);
    assert_eq!(config.effective_n_ctx(), 4608);
    let memory = memory_breakdown(&model, &config, &Placement::cpu_only(), &cpu_profile());
    assert!((mib(memory[0].kv_cache_bytes) - 101.25).abs() < 0.01);
    assert!((mib(memory[0].output_bytes) - 0.56).abs() < 0.01);
    assert!((mib(memory[0].compute_bytes) - 106.53).abs() < 0.05);
}

#[test]
fn gemma3_buffers_match_llama_cpp_log() {
    // llama.cpp at n_ctx 32768: mapped 235.16 + repacked 12.66, KV 96 + 480 (full-size SWA),
    // output 1.00, compute 648.27 MiB without flash attention.
    let model = facts(&hearth_testkit::gemma3());
    let memory = memory_breakdown(
        &model,
        &ContextConfig {
            flash_attention: false,
            ..ContextConfig::engine_defaults(32768)
        },
        &Placement::cpu_only(),
        &cpu_profile(),
    );
    let host = &memory[0];
    assert!(
        (mib(host.repacked_weights_bytes) - 12.66).abs() < 0.01,
        "{}",
        mib(host.repacked_weights_bytes)
    );
    assert!((mib(host.weights_bytes) - 247.82).abs() < 0.02);
    assert!((mib(host.kv_cache_bytes) - 576.0).abs() < 0.01);
    assert!(
        (mib(host.compute_bytes) - 648.27).abs() < 0.05,
        "{}",
        mib(host.compute_bytes)
    );
}

#[test]
fn window_sized_swa_cache_is_much_smaller() {
    let model = facts(&hearth_testkit::gemma3());
    let mut config = ContextConfig::engine_defaults(32768);
    config.swa_full = false;
    let memory = memory_breakdown(&model, &config, &Placement::cpu_only(), &cpu_profile());
    // 3 global layers x 32768 cells + 15 sliding layers x 1024 cells, 1 KV head of 256.
    let expected = (3 * 32768 + 15 * 1024) * 2 * 256 * 2;
    assert_eq!(memory[0].kv_cache_bytes, expected);
}

#[test]
fn full_offload_moves_layers_and_output_to_the_gpu() {
    let model = facts(&hearth_testkit::smollm2());
    let profile = fixtures::nvidia_12gb();
    let placement = Placement {
        n_gpu_layers: model.n_layer + 1,
        gpu_split: Vec::new(),
    };
    let memory = memory_breakdown(
        &model,
        &ContextConfig {
            flash_attention: true,
            ..ContextConfig::engine_defaults(4096)
        },
        &placement,
        &profile,
    );
    assert_eq!(memory.len(), 2);
    let (host, gpu) = (&memory[0], &memory[1]);
    assert_eq!(gpu.kv_cache_bytes, 90 * MIB);
    // The tied embedding stays on the host and is copied to the GPU as the LM head.
    assert!(host.weights_bytes >= model.lm_head_bytes());
    assert!(gpu.weights_bytes > model.weight_bytes() - host.weights_bytes);
    assert!(gpu.compute_bytes > model.n_vocab * 512 * 4);
    assert!(gpu.overhead_bytes > 0);
}

#[test]
fn layers_split_across_two_gpus_in_order() {
    let model = facts(&hearth_testkit::smollm2());
    let placement = Placement {
        n_gpu_layers: 31,
        gpu_split: vec![0.6, 0.4],
    };
    let devices: Vec<Option<usize>> = (0..30)
        .map(|layer| layer_device(&model, &placement, 2, layer))
        .collect();
    assert_eq!(devices[0], Some(0));
    assert_eq!(devices[29], Some(1));
    let on_first = devices.iter().filter(|device| **device == Some(0)).count();
    assert!((17..=20).contains(&on_first), "{on_first}");
    let partial = Placement {
        n_gpu_layers: 10,
        gpu_split: Vec::new(),
    };
    assert_eq!(layer_device(&model, &partial, 1, 19), None);
    assert_eq!(layer_device(&model, &partial, 1, 20), Some(0));
    assert_eq!(
        layer_device(&model, &partial, 1, 30),
        None,
        "output stays on the host"
    );
}
