//! The tool fields of a chat request: `tools`, `tool_choice` and `parallel_tool_calls`, and
//! the tool traffic in its history (assistant `tool_calls`, `tool` messages).

use hearth_protocol::{ToolCall, ToolDefinition};
use serde_json::Value;

use super::fields::{item_fields, Fields};
use crate::error::ApiError;
use crate::tools::{
    check_tool_count, is_valid_tool_name, ToolChoice, ToolSet, MAX_TOOL_NAME_BYTES,
};

/// `tools`, `tool_choice` and `parallel_tool_calls`; `None` when no tool is offered (none
/// given, or `tool_choice: "none"`).
pub(super) fn parse_tool_set(fields: &Fields<'_>) -> Result<Option<ToolSet>, ApiError> {
    let tools = match fields.get("tools") {
        None => Vec::new(),
        Some(Value::Array(items)) => {
            check_tool_count(items.len())?;
            let mut tools: Vec<ToolDefinition> = Vec::with_capacity(items.len());
            for (index, item) in items.iter().enumerate() {
                let tool = parse_tool(fields, index, item)?;
                if tools.iter().any(|other| other.name == tool.name) {
                    return Err(ApiError::invalid_param(
                        format!("tools[{index}].function.name"),
                        format!("Two tools are named '{}': names must be unique.", tool.name),
                    ));
                }
                tools.push(tool);
            }
            tools
        }
        Some(other) => return Err(fields.wrong_type("tools", "an array of tools", other)),
    };
    let parallel = fields.bool("parallel_tool_calls")?.unwrap_or(true);
    let choice = parse_tool_choice(fields, &tools)?;
    let Some(choice) = choice.filter(|_| !tools.is_empty()) else {
        return Ok(None);
    };
    ToolSet::checked(tools, choice, parallel).map(Some)
}

/// One `{"type": "function", "function": {name, description, parameters}}`.
fn parse_tool(fields: &Fields<'_>, index: usize, item: &Value) -> Result<ToolDefinition, ApiError> {
    let param = fields.param(&format!("tools[{index}]"));
    let tool = item_fields(&param, item)?;
    match tool.string("type")? {
        Some("function") => {}
        _ => {
            return Err(ApiError::invalid_param(
                tool.param("type"),
                format!("'{param}.type' must be \"function\"."),
            ))
        }
    }
    let Some(function) = tool.object("function")? else {
        return Err(required(&tool.param("function")));
    };
    let function = Fields::new(function, format!("{param}.function."));
    let name = match function.string("name")? {
        None => return Err(required(&function.param("name"))),
        Some(name) if !is_valid_tool_name(name) => {
            return Err(ApiError::invalid_param(
                function.param("name"),
                format!(
                    "'{}' must be 1 to {MAX_TOOL_NAME_BYTES} letters, digits, '_' or '-'.",
                    function.param("name")
                ),
            ))
        }
        Some(name) => name.to_string(),
    };
    let description = function.string("description")?.map(str::to_string);
    function.bool("strict")?;
    let parameters = match function.get("parameters") {
        None => crate::tools::no_parameters(),
        Some(schema @ Value::Object(_)) => {
            hearth_protocol::check_json_schema(schema).map_err(|error| {
                ApiError::invalid_param(
                    function.param("parameters"),
                    format!("'{}' is refused: {error}.", function.param("parameters")),
                )
            })?;
            schema.clone()
        }
        Some(other) => {
            return Err(function.wrong_type("parameters", "a JSON schema object", other))
        }
    };
    Ok(ToolDefinition {
        name,
        description,
        parameters,
    })
}

/// `"none"` (`None`), `"auto"`, `"required"` or `{"type": "function", "function": {"name"}}`.
fn parse_tool_choice(
    fields: &Fields<'_>,
    tools: &[ToolDefinition],
) -> Result<Option<ToolChoice>, ApiError> {
    let needs_tools = |what: &str| {
        ApiError::invalid_param(
            "tool_choice",
            format!("'tool_choice' {what} needs at least one tool in 'tools'."),
        )
    };
    match fields.get("tool_choice") {
        None => Ok(Some(ToolChoice::Auto)),
        Some(Value::String(choice)) => match choice.as_str() {
            "none" => Ok(None),
            "auto" => Ok(Some(ToolChoice::Auto)),
            "required" if tools.is_empty() => Err(needs_tools("\"required\"")),
            "required" => Ok(Some(ToolChoice::Required)),
            _ => Err(ApiError::invalid_param(
                "tool_choice",
                "'tool_choice' must be \"none\", \"auto\", \"required\" or {\"type\": \"function\", \"function\": {\"name\": …}}.",
            )),
        },
        Some(Value::Object(map)) => {
            let choice = Fields::new(map, "tool_choice.");
            let name = choice
                .object("function")?
                .and_then(|function| function.get("name"))
                .and_then(Value::as_str);
            let Some(name) = name.filter(|_| choice.string("type").ok() == Some(Some("function")))
            else {
                return Err(ApiError::invalid_param(
                    "tool_choice",
                    "A named 'tool_choice' is {\"type\": \"function\", \"function\": {\"name\": …}}.",
                ));
            };
            if tools.is_empty() {
                return Err(needs_tools("naming a function"));
            }
            if !tools.iter().any(|tool| tool.name == name) {
                return Err(ApiError::invalid_param(
                    "tool_choice.function.name",
                    "'tool_choice' names a function that is not in 'tools'.",
                ));
            }
            Ok(Some(ToolChoice::Named(name.to_string())))
        }
        Some(other) => Err(fields.wrong_type("tool_choice", "a string or an object", other)),
    }
}

/// An assistant message's `tool_calls`: `[{id, type: "function", function: {name,
/// arguments}}]`, whose arguments (a string, as OpenAI sends them) must hold a JSON object.
pub(super) fn parse_history_tool_calls(fields: &Fields<'_>) -> Result<Vec<ToolCall>, ApiError> {
    let items = match fields.get("tool_calls") {
        None => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(other) => return Err(fields.wrong_type("tool_calls", "an array", other)),
    };
    let mut calls = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let param = fields.param(&format!("tool_calls[{index}]"));
        let call = item_fields(&param, item)?;
        let id = call.string("id")?.unwrap_or_default().to_string();
        let Some(function) = call.object("function")? else {
            return Err(required(&call.param("function")));
        };
        let function = Fields::new(function, format!("{param}.function."));
        let Some(name) = function.string("name")? else {
            return Err(required(&function.param("name")));
        };
        let arguments = match function.get("arguments") {
            None => Value::Object(serde_json::Map::new()),
            Some(Value::String(text)) => parse_arguments(&function.param("arguments"), text)?,
            Some(value @ Value::Object(_)) => value.clone(),
            Some(other) => return Err(function.wrong_type("arguments", "a string of JSON", other)),
        };
        calls.push(ToolCall {
            id,
            name: name.to_string(),
            arguments,
        });
    }
    Ok(calls)
}

/// A call's arguments: a JSON object, written as a string.
pub(crate) fn parse_arguments(param: &str, text: &str) -> Result<Value, ApiError> {
    match serde_json::from_str::<Value>(text) {
        Ok(value @ Value::Object(_)) => Ok(value),
        _ => Err(ApiError::invalid_param(
            param.to_string(),
            format!("'{param}' must be a JSON object written as a string."),
        )),
    }
}

fn required(param: &str) -> ApiError {
    ApiError::invalid_param(param.to_string(), format!("'{param}' is required."))
        .with_code("missing_required_parameter")
}
