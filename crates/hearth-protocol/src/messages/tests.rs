use super::*;
use crate::{
    ChatMessage, ContextOverflow, FlashAttention, GenerateRequest, GpuLayers, KvCacheType,
    LoadParams, OutputConstraint, Prompt, Role, SamplingParams,
};

#[test]
fn kv_cache_type_names_are_the_wire_names() {
    for kv_cache_type in [KvCacheType::F16, KvCacheType::Q8_0, KvCacheType::Q4_0] {
        assert_eq!(
            serde_json::to_value(kv_cache_type).unwrap(),
            kv_cache_type.as_str()
        );
    }
}

#[test]
fn flash_attention_auto_is_on_on_the_cpu_and_llama_cpps_choice_with_gpu_layers() {
    assert_eq!(FlashAttention::Auto.for_offload(0), FlashAttention::On);
    assert_eq!(FlashAttention::Auto.for_offload(12), FlashAttention::Auto);
    assert_eq!(FlashAttention::Off.for_offload(0), FlashAttention::Off);
    assert_eq!(FlashAttention::On.for_offload(12), FlashAttention::On);
}

#[test]
fn requests_round_trip_as_single_json_lines() {
    let request = WorkerRequest::Generate(GenerateRequest {
        request_id: 7,
        prompt: Prompt::Chat {
            messages: vec![ChatMessage::new(Role::User, "hi\nthere")],
        },
        sampling: SamplingParams::greedy(),
        max_tokens: Some(16),
        stop: vec!["\n\n".into()],
        ignore_eos: false,
        constraint: Some(OutputConstraint::JsonSchema {
            schema: serde_json::json!({"type": "object"}),
        }),
        logprobs: Some(2),
        context_overflow: ContextOverflow::DropOldestTurns,
        tools: Vec::new(),
        enable_thinking: false,
        speculate: true,
    });
    let line = crate::encode_line(&request).unwrap();
    assert_eq!(
        line.matches('\n').count(),
        1,
        "one line per message: {line}"
    );
    let back: WorkerRequest = serde_json::from_str(&line).unwrap();
    assert_eq!(back, request);
}

#[test]
fn load_params_fields_default_when_absent() {
    let request: WorkerRequest =
        serde_json::from_str(r#"{"type":"load","request_id":1,"model_path":"m.gguf"}"#).unwrap();
    let WorkerRequest::Load { params, .. } = request else {
        panic!("not a load")
    };
    assert_eq!(params, LoadParams::default());
}

#[test]
fn sampling_validation_names_the_bad_field() {
    let nan = SamplingParams {
        temperature: f32::NAN,
        ..SamplingParams::default()
    };
    assert!(nan.validate().unwrap_err().contains("temperature"));
    let top_p = SamplingParams {
        top_p: 1.5,
        ..SamplingParams::default()
    };
    assert!(top_p.validate().unwrap_err().contains("top_p"));
    assert!(SamplingParams::default().validate().is_ok());
    assert!(SamplingParams::greedy().is_greedy());
}

#[test]
fn memory_and_device_replies_are_terminal_and_round_trip() {
    let report = MemoryReport::from_buffers(
        vec![
            MemoryBuffer {
                buffer_type: "CPU_Mapped".into(),
                purpose: BufferPurpose::Model,
                bytes: 100,
            },
            MemoryBuffer {
                buffer_type: "CPU".into(),
                purpose: BufferPurpose::Compute,
                bytes: 7,
            },
        ],
        100,
    );
    assert_eq!(report.total_bytes, 107);
    let event = WorkerEvent::Memory {
        request_id: 3,
        report,
    };
    assert!(event.is_terminal());
    assert_eq!(event.request_id(), Some(3));
    let line = crate::encode_line(&event).unwrap();
    assert_eq!(serde_json::from_str::<WorkerEvent>(&line).unwrap(), event);
    for (layers, wire) in [(GpuLayers::Auto, "\"auto\""), (GpuLayers::Count(7), "7")] {
        assert_eq!(serde_json::to_string(&layers).unwrap(), wire);
        assert_eq!(serde_json::from_str::<GpuLayers>(wire).unwrap(), layers);
    }
    assert!(serde_json::from_str::<GpuLayers>("\"most\"").is_err());
    assert_eq!(" AUTO ".parse::<GpuLayers>(), Ok(GpuLayers::Auto));
    assert!("-1".parse::<GpuLayers>().is_err());
    let devices = WorkerEvent::Devices {
        request_id: 4,
        devices: Vec::new(),
        backends: BackendReport::default(),
    };
    assert!(devices.is_terminal());
    let request: WorkerRequest =
        serde_json::from_str(r#"{"type":"memory_report","request_id":5}"#).unwrap();
    assert_eq!(request, WorkerRequest::MemoryReport { request_id: 5 });
}

#[test]
fn terminal_events_are_recognised() {
    let token = WorkerEvent::Token {
        request_id: 1,
        text: "a".into(),
        logprobs: Vec::new(),
    };
    assert!(!token.is_terminal());
    assert_eq!(token.request_id(), Some(1));
    let error = WorkerEvent::Error {
        request_id: None,
        error: WorkerError::new(ErrorKind::InvalidRequest, "bad line"),
    };
    assert!(error.is_terminal());
    assert_eq!(error.request_id(), None);
}
