use hearth_protocol::{ChatMessage, OutputConstraint, Prompt, Role};
use serde_json::{json, Value};

use super::*;
use crate::tools::ToolChoice;

fn body(extra: Value) -> Value {
    let mut body = json!({"model": "m", "max_tokens": 64,
                          "messages": [{"role": "user", "content": "hi"}]});
    for (key, value) in extra.as_object().unwrap() {
        body[key] = value.clone();
    }
    body
}

fn messages_of(extra: Value) -> Vec<ChatMessage> {
    match parse_messages_request(&body(extra)).unwrap().prompt {
        Prompt::Chat { messages } => messages,
        other => panic!("not a chat: {other:?}"),
    }
}

#[test]
fn system_blocks_tool_use_and_tool_results_become_the_chat() {
    let messages = messages_of(json!({
        "system": [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Be kind."}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Weather?"}]},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "-3 C"}]},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": "down", "is_error": true},
                {"type": "text", "text": "And tomorrow?"}]}
        ]
    }));
    let roles: Vec<Role> = messages.iter().map(|m| m.role).collect();
    assert_eq!(
        roles,
        [
            Role::System,
            Role::User,
            Role::Assistant,
            Role::Tool,
            Role::Tool,
            Role::User
        ]
    );
    assert_eq!(messages[0].content, "Be brief.\nBe kind.");
    assert_eq!(messages[2].content, "Checking.");
    assert_eq!(messages[2].tool_calls[0].id, "toolu_1");
    assert_eq!(messages[2].tool_calls[0].arguments, json!({"city": "Oslo"}));
    assert_eq!(messages[3].content, "-3 C");
    assert_eq!(messages[3].tool_call_id.as_deref(), Some("toolu_1"));
    assert_eq!(messages[4].content, "Error: down");
    assert_eq!(messages[5].content, "And tomorrow?");
}

#[test]
fn sampling_stops_and_tool_choice_are_read() {
    let request = parse_messages_request(&body(json!({
        "temperature": 0.5, "top_p": 0.9, "top_k": 40, "stop_sequences": ["\n\n"], "stream": true,
        "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": true}
    })))
    .unwrap();
    assert_eq!(request.sampling.temperature, 0.5);
    assert_eq!(request.sampling.top_k, 40);
    assert_eq!(request.stop, ["\n\n"]);
    assert_eq!(request.max_tokens, Some(64));
    assert!(request.stream);
    let tools = request.tools.unwrap();
    assert_eq!(tools.choice, ToolChoice::Named("get_weather".into()));
    assert!(!tools.parallel);
    assert!(matches!(
        request.constraint,
        Some(OutputConstraint::JsonSchema { .. })
    ));
}

#[test]
fn invalid_bodies_name_their_field() {
    let param_of = |body: Value| {
        parse_messages_request(&body)
            .expect_err("should be refused")
            .param
            .unwrap_or_default()
    };
    let mut no_max_tokens = body(json!({}));
    no_max_tokens.as_object_mut().unwrap().remove("max_tokens");
    assert_eq!(param_of(no_max_tokens), "max_tokens");
    let cases = [
        (json!({"temperature": 1.5}), "temperature"),
        (json!({"messages": []}), "messages"),
        (
            json!({"messages": [{"role": "system", "content": "x"}]}),
            "messages[0].role",
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]}),
            "messages[0].content[0].type",
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"type": "tool_result"}]}]}),
            "messages[0].content[0].tool_use_id",
        ),
        (
            json!({"messages": [{"role": "assistant", "content": [{"type": "tool_use", "name": "f", "input": "x"}]}]}),
            "messages[0].content[0].input",
        ),
        (json!({"tools": [{"name": "f"}]}), "tools[0].input_schema"),
        (
            json!({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}),
            "tools[0].type",
        ),
        (json!({"tool_choice": {"type": "any"}}), "tool_choice"),
        (json!({"stop_sequences": [""]}), "stop_sequences[0]"),
    ];
    for (extra, param) in cases {
        assert_eq!(param_of(body(extra.clone())), param, "{extra}");
    }
}

#[test]
fn stop_reasons_and_error_types() {
    assert_eq!(stop_reason(FinishReason::Stop, false, false), "end_turn");
    assert_eq!(
        stop_reason(FinishReason::Stop, true, false),
        "stop_sequence"
    );
    assert_eq!(
        stop_reason(FinishReason::Length, false, false),
        "max_tokens"
    );
    assert_eq!(stop_reason(FinishReason::Stop, false, true), "tool_use");
    assert_eq!(error_type(StatusCode::BAD_REQUEST), "invalid_request_error");
    assert_eq!(error_type(StatusCode::UNAUTHORIZED), "authentication_error");
    assert_eq!(error_type(StatusCode::NOT_FOUND), "not_found_error");
    assert_eq!(
        error_type(StatusCode::PAYLOAD_TOO_LARGE),
        "request_too_large"
    );
    assert_eq!(
        error_type(StatusCode::SERVICE_UNAVAILABLE),
        "overloaded_error"
    );
    assert_eq!(error_type(StatusCode::INTERNAL_SERVER_ERROR), "api_error");
}
