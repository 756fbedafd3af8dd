//! Field-by-field validation of both endpoints' bodies, and conversation settings.

use super::*;
use hearth_protocol::Role;
use serde_json::json;

fn chat(extra: Value) -> Value {
    let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        for (key, value) in extra {
            body.insert(key.clone(), value.clone());
        }
    }
    body
}

fn param_of(body: Value) -> String {
    parse_chat_request(&body)
        .expect_err("should be refused")
        .param
        .unwrap_or_default()
}

#[test]
fn a_minimal_chat_request_parses_with_defaults() {
    let request = parse_chat_request(&chat(json!({}))).unwrap();
    assert_eq!(request.model, "m");
    assert!(!request.stream);
    assert_eq!(request.max_tokens, None);
    assert_eq!(request.sampling, SamplingParams::default());
    let Prompt::Chat { messages } = &request.prompt else {
        panic!("not a chat")
    };
    assert_eq!(messages[0], ChatMessage::new(Role::User, "hi"));
}

#[test]
fn every_openai_field_is_read() {
    let request = parse_chat_request(&chat(json!({
        "temperature": 0.5, "top_p": 0.9, "max_completion_tokens": 7, "stop": "\n",
        "seed": 42, "presence_penalty": 0.1, "frequency_penalty": -0.2, "stream": true,
        "stream_options": {"include_usage": true}, "logprobs": true, "top_logprobs": 3,
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
        "n": 1, "user": "ignored", "top_k": 5, "min_p": 0.1
    })))
    .unwrap();
    assert_eq!(request.sampling.temperature, 0.5);
    assert_eq!(request.sampling.top_p, 0.9);
    assert_eq!(request.sampling.top_k, 5);
    assert_eq!(request.sampling.seed, Some(42));
    assert_eq!(request.max_tokens, Some(7));
    assert_eq!(request.stop, vec!["\n".to_string()]);
    assert!(request.stream && request.include_usage);
    assert_eq!(request.logprobs, Some(3));
    assert!(matches!(
        request.constraint,
        Some(OutputConstraint::JsonSchema { .. })
    ));
}

#[test]
fn content_parts_and_developer_messages_are_understood() {
    let request = parse_chat_request(&json!({"model": "m", "messages": [
        {"role": "developer", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {"role": "assistant", "content": null}
    ]}))
    .unwrap();
    let Prompt::Chat { messages } = request.prompt else {
        panic!()
    };
    assert_eq!(messages[0].role, Role::System);
    assert_eq!(messages[1].content, "a\nb");
    assert_eq!(messages[2].content, "");
}

#[test]
fn invalid_fields_are_named_in_param() {
    assert_eq!(param_of(chat(json!({"n": 2}))), "n");
    assert_eq!(param_of(chat(json!({"temperature": "hot"}))), "temperature");
    assert_eq!(param_of(chat(json!({"temperature": 3}))), "temperature");
    assert_eq!(param_of(chat(json!({"max_tokens": -1}))), "max_tokens");
    assert_eq!(param_of(chat(json!({"max_tokens": 1e30}))), "max_tokens");
    assert_eq!(param_of(chat(json!({"max_tokens": 0}))), "max_tokens");
    assert_eq!(param_of(chat(json!({"stop": 5}))), "stop");
    assert_eq!(param_of(chat(json!({"stop": ["a", 1]}))), "stop[1]");
    assert_eq!(param_of(chat(json!({"seed": 1.5}))), "seed");
    assert_eq!(
        param_of(chat(json!({"response_format": {"type": "xml"}}))),
        "response_format.type"
    );
    assert_eq!(
        param_of(chat(json!({"response_format": {"type": "json_schema"}}))),
        "response_format.json_schema"
    );
    assert_eq!(param_of(chat(json!({"top_logprobs": 2}))), "top_logprobs");
    assert_eq!(
        param_of(chat(json!({"logprobs": true, "top_logprobs": 21}))),
        "top_logprobs"
    );
    assert_eq!(
        param_of(chat(json!({"stream_options": {}}))),
        "stream_options"
    );
    assert_eq!(param_of(json!({"messages": []})), "model");
    assert_eq!(param_of(json!({"model": "m", "messages": []})), "messages");
    assert_eq!(param_of(json!({"model": "m"})), "messages");
    assert_eq!(
        param_of(json!({"model": "m", "messages": [{"role": "wizard", "content": "x"}]})),
        "messages[0].role"
    );
    assert_eq!(
        param_of(json!({"model": "m", "messages": [{"role": "user", "content": 5}]})),
        "messages[0].content"
    );
    assert_eq!(
        param_of(
            json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]})
        ),
        "messages[0].content[0].type"
    );
    assert_eq!(
        param_of(chat(json!({"tools": [{"type": "function"}]}))),
        "tools[0].function"
    );
    assert_eq!(
        param_of(chat(json!({"logit_bias": {"1": 5}}))),
        "logit_bias"
    );
}

#[test]
fn tools_choices_and_tool_history_are_read() {
    let weather = json!({"type": "function", "function": {"name": "get_weather",
        "description": "Weather", "parameters": {"type": "object"}}});
    let request = parse_chat_request(&chat(json!({
        "tools": [weather.clone(), {"type": "function", "function": {"name": "noop"}}],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "parallel_tool_calls": false,
        "messages": [
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\": \"Oslo\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "-3 C"}
        ]
    })))
    .unwrap();
    let tools = request.tools.as_ref().unwrap();
    assert_eq!(tools.tools.len(), 2);
    assert_eq!(tools.tools[0].description.as_deref(), Some("Weather"));
    assert_eq!(
        tools.tools[1].parameters,
        json!({"type": "object", "properties": {}})
    );
    assert_eq!(
        tools.choice,
        crate::tools::ToolChoice::Named("get_weather".into())
    );
    assert!(!tools.parallel);
    // The forced call is a JSON-schema constraint; the generation carries the tools.
    assert!(matches!(
        request.constraint,
        Some(OutputConstraint::JsonSchema { .. })
    ));
    assert_eq!(request.generation().tools.len(), 2);
    let Prompt::Chat { messages } = &request.prompt else {
        panic!("not a chat")
    };
    assert_eq!(messages[1].tool_calls[0].arguments, json!({"city": "Oslo"}));
    assert_eq!(messages[2].role, Role::Tool);
    assert_eq!(messages[2].tool_call_id.as_deref(), Some("call_1"));

    // `auto` forces nothing; `none` offers no tools.
    let auto = parse_chat_request(&chat(json!({"tools": [weather.clone()]}))).unwrap();
    assert_eq!(auto.tools.unwrap().choice, crate::tools::ToolChoice::Auto);
    assert_eq!(auto.constraint, None);
    let none = parse_chat_request(&chat(json!({"tools": [weather], "tool_choice": "none"})));
    assert_eq!(none.unwrap().tools, None);
}

#[test]
fn a_body_that_is_not_an_object_is_refused() {
    let error = parse_chat_request(&json!([1, 2])).unwrap_err();
    assert_eq!(error.code, Some("invalid_json"));
}

#[test]
fn completion_prompts_take_every_openai_shape() {
    let text = parse_completion_request(&json!({"model": "m", "prompt": "Once"})).unwrap();
    assert_eq!(
        text.prompt,
        Prompt::Text {
            text: "Once".into()
        }
    );
    assert_eq!(text.max_tokens, Some(DEFAULT_COMPLETION_MAX_TOKENS));
    let tokens = parse_completion_request(&json!({"model": "m", "prompt": [1, 2, 3]})).unwrap();
    assert_eq!(
        tokens.prompt,
        Prompt::Tokens {
            tokens: vec![1, 2, 3]
        }
    );
    let error = parse_completion_request(&json!({"model": "m", "prompt": ["a", "b"]})).unwrap_err();
    assert_eq!(error.param.as_deref(), Some("prompt"));
    let error = parse_completion_request(&json!({"model": "m", "prompt": ""})).unwrap_err();
    assert_eq!(error.param.as_deref(), Some("prompt"));
    let error =
        parse_completion_request(&json!({"model": "m", "prompt": "x", "logprobs": 6})).unwrap_err();
    assert_eq!(error.param.as_deref(), Some("logprobs"));
}

#[test]
fn seeds_keep_their_high_bits() {
    assert_ne!(fold_seed(1), fold_seed(1 + (1 << 32)));
    assert_eq!(fold_seed(42), 42);
}

#[test]
fn conversation_settings_read_every_setting_key_as_a_chat_request_reads_it() {
    for key in crate::conversations::SAMPLING_SETTING_KEYS {
        // An object is the wrong type for every setting: each key is read, by its own name.
        let settings = json!({ *key: {} });
        let error = parse_sampling_settings(settings.as_object().unwrap()).unwrap_err();
        assert_eq!(error.param.as_deref(), Some(*key), "{key}");
    }
    let settings = json!({
        "temperature": 0.5, "top_p": 0.9, "top_k": 5, "min_p": 0.1, "repeat_penalty": 1.1,
        "presence_penalty": 0.1, "frequency_penalty": -0.2, "seed": 42, "max_tokens": 7,
        "stop": "\n", "ignore_eos": true
    });
    let from_settings = parse_sampling_settings(settings.as_object().unwrap()).unwrap();
    let mut body = settings.clone();
    body["model"] = json!("m");
    body["messages"] =
        json!([{"role": "system", "content": "brief"}, {"role": "user", "content": "hi"}]);
    body["stream"] = json!(true);
    body["context_overflow"] = json!("drop_oldest_turns");
    let messages = vec![
        ChatMessage::new(Role::System, "brief"),
        ChatMessage::new(Role::User, "hi"),
    ];
    assert_eq!(
        CompletionRequest::conversation("m".into(), messages, from_settings).unwrap(),
        parse_chat_request(&body).unwrap(),
        "a conversation's request is the chat completion request of the same fields"
    );
    let empty = parse_sampling_settings(&Map::new()).unwrap();
    assert_eq!(empty, SamplingSettings::default());
    let error = CompletionRequest::conversation(" ".into(), Vec::new(), empty).unwrap_err();
    assert_eq!(error.param.as_deref(), Some("model"));
}

/// Schemas past the protocol's bounds and chats past its message count are refused in
/// validation (400), before anything builds a grammar or reaches the engine.
#[test]
fn huge_schemas_and_chats_are_refused_before_the_engine() {
    let properties: serde_json::Map<String, Value> = (0..2000)
        .map(|index| (format!("p{index}"), json!({"type": "string"})))
        .collect();
    let schema = json!({"type": "object", "properties": properties});
    let body = chat(json!({"response_format": {"type": "json_schema",
        "json_schema": {"name": "huge", "schema": schema}}}));
    let error = parse_chat_request(&body).expect_err("a 2,000-property schema is refused");
    assert_eq!(error.param.as_deref(), Some("response_format"));
    assert!(
        error.message.contains("2000 properties"),
        "{}",
        error.message
    );

    let messages: Vec<Value> = (0..=hearth_protocol::MAX_CHAT_MESSAGES)
        .map(|_| json!({"role": "user", "content": "hi"}))
        .collect();
    assert_eq!(param_of(chat(json!({ "messages": messages }))), "messages");
}

#[test]
fn reasoning_options_turn_thinking_off_or_leave_it_inline_and_are_validated() {
    let read = |extra: Value| parse_chat_request(&chat(extra)).unwrap();
    let default = read(json!({}));
    assert_eq!(default.reasoning, ReasoningOptions::default());
    assert!(default.generation().enable_thinking);
    for off in [
        json!({"reasoning_effort": "none"}),
        json!({"chat_template_kwargs": {"enable_thinking": false}}),
        json!({"reasoning_effort": "none", "chat_template_kwargs": {"enable_thinking": false}}),
    ] {
        assert!(!read(off.clone()).generation().enable_thinking, "{off}");
    }
    for on in ["minimal", "low", "medium", "high"] {
        assert!(
            read(json!({ "reasoning_effort": on }))
                .reasoning
                .enable_thinking
        );
    }
    // Other template arguments are left alone, as the template would ignore them.
    assert!(
        read(json!({"chat_template_kwargs": {"other": 1}}))
            .reasoning
            .enable_thinking
    );
    assert_eq!(
        read(json!({"reasoning_format": "none"})).reasoning.format,
        crate::reasoning::ReasoningFormat::Raw
    );
    for separate in ["auto", "deepseek"] {
        assert_eq!(
            read(json!({ "reasoning_format": separate }))
                .reasoning
                .format,
            crate::reasoning::ReasoningFormat::Separate
        );
    }
    // A constrained answer never thinks: its grammar holds from the first token.
    let forced = read(json!({"response_format": {"type": "json_object"}}));
    assert!(forced.reasoning.enable_thinking && !forced.generation().enable_thinking);

    let refused = |extra: Value| parse_chat_request(&chat(extra)).unwrap_err();
    let error = refused(json!({"reasoning_effort": "max"}));
    assert_eq!(error.param.as_deref(), Some("reasoning_effort"));
    assert_eq!(
        error.message,
        "'reasoning_effort' must be \"none\", \"minimal\", \"low\", \"medium\" or \"high\"."
    );
    assert_eq!(
        param_of(chat(json!({"reasoning_effort": 0}))),
        "reasoning_effort"
    );
    assert_eq!(
        param_of(chat(json!({"chat_template_kwargs": true}))),
        "chat_template_kwargs"
    );
    assert_eq!(
        param_of(chat(
            json!({"chat_template_kwargs": {"enable_thinking": "no"}})
        )),
        "chat_template_kwargs.enable_thinking"
    );
    let error = refused(json!({"reasoning_effort": "high",
        "chat_template_kwargs": {"enable_thinking": false}}));
    assert_eq!(
        error.message,
        "'chat_template_kwargs.enable_thinking' contradicts 'reasoning_effort': send one of them."
    );
    let error = refused(json!({"reasoning_format": "hidden"}));
    assert_eq!(
        (error.param.as_deref(), error.message.as_str()),
        (
            Some("reasoning_format"),
            "'reasoning_format' must be \"auto\", \"deepseek\" or \"none\"."
        )
    );
    assert_eq!(
        param_of(chat(json!({"reasoning_format": 1}))),
        "reasoning_format"
    );
}

#[test]
fn an_assistant_turns_thinking_is_read_but_never_replayed() {
    let body = chat(json!({"messages": [
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4", "reasoning_content": "Two and two."},
        {"role": "user", "content": "and 3+3?"},
    ]}));
    let request = parse_chat_request(&body).unwrap();
    let Prompt::Chat { messages } = &request.prompt else {
        panic!("not a chat")
    };
    assert_eq!(messages[1], ChatMessage::new(Role::Assistant, "4"));
    assert!(!format!("{messages:?}").contains("Two and two"));
    assert_eq!(
        param_of(chat(json!({"messages": [
            {"role": "assistant", "content": "4", "reasoning_content": ["x"]}]}))),
        "messages[0].reasoning_content"
    );
}

#[test]
fn a_conversation_setting_turns_thinking_off() {
    let settings = json!({"reasoning_effort": "none"});
    let read = parse_sampling_settings(settings.as_object().unwrap()).unwrap();
    assert!(!read.thinking);
    let request = CompletionRequest::conversation("m".into(), Vec::new(), read).unwrap();
    assert!(!request.generation().enable_thinking);
}
