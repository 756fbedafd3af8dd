//! Typed metadata accessors and the model facts read through them: type mismatches, per-layer
//! values that disagree with the layer count, sliding-window layouts.

use super::*;

#[test]
fn typed_accessors_report_mismatches() {
    let bytes = valid_builder()
        .metadata("test.negative", MetadataValue::I32(-3))
        .metadata("test.huge", MetadataValue::U64(u64::MAX))
        .build();
    let file = GgufFile::parse(&bytes).unwrap();
    let error = file.get_u64("general.name").unwrap_err();
    assert!(
        matches!(&error, GgufError::TypeMismatch { key, actual, .. } if key == "general.name" && actual == "string"),
        "{error:?}"
    );
    assert!(matches!(
        file.get_u64("test.negative"),
        Err(GgufError::ValueOutOfRange { .. })
    ));
    assert!(matches!(
        file.get_i64("test.huge"),
        Err(GgufError::ValueOutOfRange { .. })
    ));
    assert!(matches!(
        file.get_str("llama.block_count"),
        Err(GgufError::TypeMismatch {
            expected: "a string",
            ..
        })
    ));
    let error = file.get_array("general.file_type").unwrap_err();
    assert!(
        matches!(&error, GgufError::TypeMismatch { actual, .. } if actual == "u32"),
        "{error:?}"
    );
    let error = file.get_bool("tokenizer.ggml.scores").unwrap_err();
    assert!(
        matches!(&error, GgufError::TypeMismatch { actual, .. } if actual == "array of f32"),
        "{error:?}"
    );
    assert_eq!(file.get_u64("no.such.key").unwrap(), None);
    assert!(matches!(
        file.require_u64("no.such.key"),
        Err(GgufError::MissingKey { key }) if key == "no.such.key"
    ));
    assert!(matches!(
        file.get_f64("llama.block_count"),
        Err(GgufError::TypeMismatch { .. })
    ));
}

#[test]
fn model_accessors_check_layer_counts() {
    for block_count in [0, 513, i32::MAX as u32] {
        let file = GgufFile::parse(
            &GgufBuilder::new()
                .metadata(
                    "general.architecture",
                    MetadataValue::String("llama".into()),
                )
                .metadata("llama.block_count", MetadataValue::U32(block_count))
                .build(),
        )
        .unwrap();
        assert!(
            matches!(file.block_count(), Err(GgufError::ValueOutOfRange { .. })),
            "block count {block_count}"
        );
    }
    let file = GgufFile::parse(
        &GgufBuilder::new()
            .metadata(
                "general.architecture",
                MetadataValue::String("llama".into()),
            )
            .metadata("llama.block_count", MetadataValue::U32(3))
            .metadata(
                "llama.attention.head_count_kv",
                MetadataValue::Array(MetadataArray::U32(vec![1, 2])),
            )
            .metadata(
                "llama.feed_forward_length",
                MetadataValue::Array(MetadataArray::F32(vec![1.0, 2.0, 3.0])),
            )
            .metadata("llama.expert_count", MetadataValue::U32(2048))
            .build(),
    )
    .unwrap();
    assert!(matches!(
        file.head_count_kv(),
        Err(GgufError::PerLayerLengthMismatch {
            length: 2,
            block_count: 3,
            ..
        })
    ));
    assert!(matches!(
        file.feed_forward_length(),
        Err(GgufError::TypeMismatch { .. })
    ));
    assert!(matches!(
        file.expert_count(),
        Err(GgufError::ValueOutOfRange { .. })
    ));
    assert!(matches!(
        file.context_length(),
        Err(GgufError::MissingKey { .. })
    ));
    // No head count: head lengths cannot be derived.
    assert_eq!(file.key_length().unwrap(), None);

    let no_architecture = GgufFile::parse(&GgufBuilder::new().build()).unwrap();
    assert!(matches!(
        no_architecture.architecture(),
        Err(GgufError::MissingKey { key }) if key == "general.architecture"
    ));
    assert_eq!(no_architecture.parameter_count(), 0);
}

#[test]
fn sliding_window_layouts() {
    fn model_with_window(
        architecture: &str,
        window: u32,
        extra: &[(&str, MetadataValue)],
    ) -> GgufFile {
        let mut builder = GgufBuilder::new()
            .metadata(
                "general.architecture",
                MetadataValue::String(architecture.into()),
            )
            .metadata(
                &format!("{architecture}.block_count"),
                MetadataValue::U32(7),
            )
            .metadata(
                &format!("{architecture}.attention.sliding_window"),
                MetadataValue::U32(window),
            );
        for (suffix, value) in extra {
            builder = builder.metadata(&format!("{architecture}.{suffix}"), value.clone());
        }
        GgufFile::parse(&builder.build()).unwrap()
    }
    let model = |architecture: &str, extra: &[(&str, MetadataValue)]| {
        model_with_window(architecture, 512, extra)
    };
    let layers = |file: &GgufFile| {
        file.sliding_window_attention()
            .unwrap()
            .map(|attention| attention.layer_uses_sliding_window)
    };
    // gemma3's built-in period: five sliding layers, then one global.
    let gemma3 = model("gemma3", &[]);
    assert_eq!(
        layers(&gemma3),
        Some(vec![true, true, true, true, true, false, true])
    );
    assert_eq!(
        gemma3
            .sliding_window_attention()
            .unwrap()
            .unwrap()
            .window_length,
        512
    );
    // An explicit period, and an explicit per-layer list.
    let period = model(
        "gemma3",
        &[("attention.sliding_window_pattern", MetadataValue::U32(2))],
    );
    assert_eq!(
        layers(&period),
        Some(vec![true, false, true, false, true, false, true])
    );
    let flags = vec![false, true, true, false, false, true, true];
    let listed = model(
        "mystery",
        &[(
            "attention.sliding_window_pattern",
            MetadataValue::Array(MetadataArray::Bool(flags.clone())),
        )],
    );
    assert_eq!(layers(&listed), Some(flags));
    // llama.cpp ignores the window for architectures it does not know to use one.
    assert_eq!(layers(&model("llama", &[])), None);
    assert_eq!(layers(&model_with_window("gemma3", 0, &[])), None);
    let wrong_length = model(
        "gemma3",
        &[(
            "attention.sliding_window_pattern",
            MetadataValue::Array(MetadataArray::Bool(vec![true])),
        )],
    );
    assert!(matches!(
        wrong_length.sliding_window_attention(),
        Err(GgufError::PerLayerLengthMismatch {
            length: 1,
            block_count: 7,
            ..
        })
    ));
}
