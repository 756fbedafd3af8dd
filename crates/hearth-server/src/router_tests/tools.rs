//! Hostile and malformed tool requests through the router: each is a 400 naming its field,
//! with a message, and the server answers the next request as before.

use super::*;

fn weather_tool() -> Value {
    json!({"type": "function", "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}
    }})
}

/// A schema nested `depth` objects deep.
fn deep_schema(depth: usize) -> Value {
    let mut schema = json!({"type": "string"});
    for _ in 0..depth {
        schema = json!({"type": "object", "properties": {"x": schema}});
    }
    schema
}

#[tokio::test]
async fn hostile_tool_requests_are_400_and_the_server_stays_up() {
    let state = state();
    let tool_with = |parameters: Value| json!([{"type": "function", "function": {"name": "f", "parameters": parameters}}]);
    let many_tools: Vec<Value> = (0..10_000)
        .map(|i| json!({"type": "function", "function": {"name": format!("tool_{i}")}}))
        .collect();
    let call = |arguments: Value| {
        json!([{"role": "user", "content": "hi"},
               {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
                 "function": {"name": "get_weather", "arguments": arguments}}]},
               {"role": "tool", "tool_call_id": "c1", "content": "sunny"}])
    };
    let cases = [
        (json!({"tools": many_tools}), "tools"),
        (json!({"tools": "get_weather"}), "tools"),
        (json!({"tools": [{"type": "retrieval"}]}), "tools[0].type"),
        (
            json!({"tools": [{"type": "function"}]}),
            "tools[0].function",
        ),
        (
            json!({"tools": [{"type": "function", "function": {"name": "rm -rf"}}]}),
            "tools[0].function.name",
        ),
        (
            json!({"tools": [weather_tool(), weather_tool()]}),
            "tools[1].function.name",
        ),
        (
            json!({"tools": tool_with(json!("a schema"))}),
            "tools[0].function.parameters",
        ),
        (
            json!({"tools": tool_with(deep_schema(40))}),
            "tools[0].function.parameters",
        ),
        (json!({"tool_choice": "required"}), "tool_choice"),
        (
            json!({"tools": [weather_tool()], "tool_choice": "sometimes"}),
            "tool_choice",
        ),
        (
            json!({"tools": [weather_tool()], "tool_choice": {"type": "function", "function": {"name": "other"}}}),
            "tool_choice.function.name",
        ),
        (
            json!({"tools": [weather_tool()], "tool_choice": "required",
                   "response_format": {"type": "json_object"}}),
            "response_format",
        ),
        (
            json!({"tools": [weather_tool()], "logprobs": true}),
            "logprobs",
        ),
        (
            json!({"messages": call(json!("{\"city\": "))}),
            "messages[1].tool_calls[0].function.arguments",
        ),
        (
            json!({"messages": call(json!("[1, 2]"))}),
            "messages[1].tool_calls[0].function.arguments",
        ),
        (
            json!({"messages": call(json!(42))}),
            "messages[1].tool_calls[0].function.arguments",
        ),
        (
            json!({"messages": [{"role": "assistant", "tool_calls": "get_weather"}]}),
            "messages[0].tool_calls",
        ),
        (
            json!({"messages": [{"role": "assistant", "tool_calls": [{"id": "c1"}]}]}),
            "messages[0].tool_calls[0].function",
        ),
        (
            json!({"messages": [{"role": "tool", "content": "sunny"}]}),
            "messages[0].tool_call_id",
        ),
    ];
    for (extra, param) in cases {
        let (status, _, body) =
            send(&state, post("/v1/chat/completions", chat(extra.clone()))).await;
        let shown: String = extra.to_string().chars().take(200).collect();
        assert_eq!(status, StatusCode::BAD_REQUEST, "{shown}: {body}");
        assert_eq!(body["error"]["param"], param, "{shown}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{body}"
        );
    }
    // A valid tool request gets past validation to the (missing) engine: a clean 500.
    let valid = json!({"tools": [weather_tool()], "tool_choice": "required",
                       "messages": call(json!("{\"city\": \"Paris\"}"))});
    let (status, _, body) = send(&state, post("/v1/chat/completions", chat(valid))).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert_error(&body, "engine_unavailable");
}
