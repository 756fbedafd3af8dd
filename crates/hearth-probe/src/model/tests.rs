use super::*;

#[test]
fn roles_follow_llama_cpp_tensor_names() {
    assert_eq!(tensor_role("token_embd.weight"), TensorRole::TokenEmbedding);
    assert_eq!(tensor_role("output.weight"), TensorRole::Output);
    assert_eq!(tensor_role("output_norm.weight"), TensorRole::Output);
    assert_eq!(
        tensor_role("blk.12.attn_q.weight"),
        TensorRole::Layer { layer: 12 }
    );
    assert_eq!(
        tensor_role("blk.3.ffn_up_exps.weight"),
        TensorRole::Experts { layer: 3 }
    );
    assert_eq!(
        tensor_role("blk.3.ffn_up_shexp.weight"),
        TensorRole::Layer { layer: 3 }
    );
    assert_eq!(tensor_role("rope_freqs.weight"), TensorRole::Other);
}

/// A split model is planned from all its parts: SmolLM2 in three parts has the whole
/// file's weights and parameters.
#[test]
fn a_split_model_is_planned_from_all_its_parts() {
    let whole = hearth_testkit::smollm2();
    let parts = hearth_gguf::split::split_gguf(&std::fs::read(&whole).unwrap(), 3).unwrap();
    let folder = tempfile::tempdir().unwrap();
    for (index, part) in parts.iter().enumerate() {
        let name = format!("smollm2-{:05}-of-00003.gguf", index + 1);
        std::fs::write(folder.path().join(name), part).unwrap();
    }
    let split = crate::variant_from_file(&folder.path().join("smollm2-00001-of-00003.gguf"))
        .unwrap()
        .facts;
    let expected = crate::variant_from_file(&whole).unwrap().facts;
    assert_eq!(split.weight_bytes(), expected.weight_bytes());
    assert_eq!(split.parameter_count, expected.parameter_count);
    assert_eq!(split.tensors.len(), expected.tensors.len());
    // Without its other parts, a first part is an error, not a smaller model.
    std::fs::remove_file(folder.path().join("smollm2-00003-of-00003.gguf")).unwrap();
    assert!(crate::variant_from_file(&folder.path().join("smollm2-00001-of-00003.gguf")).is_err());
}

#[test]
fn smollm2_facts_match_the_file() {
    let file = GgufFile::open(&hearth_testkit::smollm2()).unwrap();
    let facts = ModelFacts::from_gguf(&file).unwrap();
    assert_eq!(facts.architecture, "llama");
    assert_eq!(facts.n_layer, 30);
    assert_eq!(facts.n_head_kv, vec![3; 30]);
    assert_eq!(facts.head_dim_k, 64);
    assert_eq!(facts.n_vocab, 49152);
    assert!(facts.output_is_tied());
    assert!(facts.sliding_window.is_none());
    // 96,576,768 bytes of weights (llama.cpp: "CPU_Mapped model buffer size = 92.10 MiB").
    assert_eq!(facts.weight_bytes(), 96_576_768);
}

#[test]
fn gemma3_has_five_sliding_layers_per_global_one() {
    let file = GgufFile::open(&hearth_testkit::gemma3()).unwrap();
    let facts = ModelFacts::from_gguf(&file).unwrap();
    let sliding = facts.sliding_window.as_ref().unwrap();
    assert_eq!(sliding.window, 512);
    assert_eq!(
        sliding
            .layer_uses_window
            .iter()
            .filter(|uses| **uses)
            .count(),
        15
    );
    assert_eq!(facts.head_dim_k, 256);
}
