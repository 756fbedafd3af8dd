use hearth_protocol::ToolDefinition;
use serde_json::json;

use super::*;

fn tool(name: &str) -> ToolDefinition {
    ToolDefinition {
        name: name.into(),
        description: None,
        parameters: json!({"type": "object", "properties": {"a": {"type": "integer"}}}),
    }
}

fn set(choice: ToolChoice, parallel: bool) -> ToolSet {
    ToolSet {
        tools: vec![tool("add"), tool("sub")],
        choice,
        parallel,
    }
}

#[test]
fn a_named_choice_forces_that_tools_call_shape() {
    let schema = set(ToolChoice::Named("sub".into()), true)
        .forced_call_schema()
        .unwrap();
    assert_eq!(
        schema,
        json!({
            "additionalProperties": false,
            "properties": {
                "arguments": {"type": "object", "properties": {"a": {"type": "integer"}}},
                "name": {"const": "sub"}
            },
            "required": ["name", "arguments"],
            "type": "object"
        })
    );
    hearth_protocol::check_json_schema(&schema).unwrap();
}

#[test]
fn required_chooses_among_all_tools_and_auto_forces_nothing() {
    let schema = set(ToolChoice::Required, true)
        .forced_call_schema()
        .unwrap();
    let branches = schema["anyOf"].as_array().unwrap();
    assert_eq!(branches.len(), 2);
    assert_eq!(branches[1]["properties"]["name"]["const"], "sub");
    assert!(set(ToolChoice::Auto, true).forced_call_schema().is_none());
}

#[test]
fn parallel_tool_calls_false_keeps_the_first_call() {
    let text = "<tool_call>{\"name\": \"add\", \"arguments\": {}}</tool_call><tool_call>{\"name\": \"sub\", \"arguments\": {}}</tool_call>";
    assert_eq!(set(ToolChoice::Auto, true).parse(text).calls.len(), 2);
    let single = set(ToolChoice::Auto, false).parse(text);
    assert_eq!(single.calls.len(), 1);
    assert_eq!(single.calls[0].name, "add");
}

#[test]
fn tool_names_and_call_ids() {
    assert!(is_valid_tool_name("get_weather-2"));
    for bad in ["", "has space", "dot.ted", &"x".repeat(65)] {
        assert!(!is_valid_tool_name(bad), "{bad}");
    }
    let id = new_call_id();
    assert!(id.starts_with("call_") && id.len() == 29, "{id}");
    assert_ne!(id, new_call_id());
}
