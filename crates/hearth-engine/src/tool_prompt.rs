//! How tools and tool calls reach a model's prompt: pure functions, no llama.cpp.
//!
//! A model whose Jinja template takes `tools` gets them through that template, with the
//! messages in the shapes Hugging Face templates read ([`TemplateMessage`], [`TemplateTool`]:
//! `tool_calls[].function.arguments` as an object, `tool_call_id` on tool results). A model
//! whose template takes no tools (SmolLM2's, llama.cpp's built-in ones) gets them written
//! into its chat as text in the Hermes format, which Qwen's and Hermes' templates also write
//! and which the server's parser reads back ([`as_plain_messages`]): the tools' signatures in
//! the system message, each call as `<tool_call>{json}</tool_call>` in the assistant's
//! message, each result as a `<tool_response>` in a user message.

use hearth_protocol::{ChatMessage, Role, ToolCall, ToolDefinition};
use serde::Serialize;
use serde_json::Value;

/// The instructions put before the tools' signatures when the template takes no tools (the
/// wording of Qwen 2.5's and Hermes' templates, which many models were trained on).
const TOOLS_PREAMBLE: &str = "# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>";
const TOOLS_CALL_FORMAT: &str = "</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call>";

/// Whether a Jinja template reads `tools` (Hugging Face's name for them).
pub fn template_takes_tools(source: &str) -> bool {
    source.contains("tools")
}

/// Whether a chat needs tool handling: tools offered, or calls and results in its history.
pub fn uses_tools(messages: &[ChatMessage], tools: &[ToolDefinition]) -> bool {
    !tools.is_empty()
        || messages
            .iter()
            .any(|message| message.role == Role::Tool || !message.tool_calls.is_empty())
}

/// `{"type": "function", "function": {...}}`, as templates and OpenAI's `tools` hold them.
#[derive(Debug, Serialize)]
pub struct TemplateTool<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub function: &'a ToolDefinition,
}

impl<'a> From<&'a ToolDefinition> for TemplateTool<'a> {
    fn from(tool: &'a ToolDefinition) -> Self {
        Self {
            kind: "function",
            function: tool,
        }
    }
}

/// A message as a Hugging Face template reads it.
#[derive(Debug, Serialize)]
pub struct TemplateMessage<'a> {
    pub role: &'static str,
    pub content: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<TemplateToolCall<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<&'a str>,
}

#[derive(Debug, Serialize)]
pub struct TemplateToolCall<'a> {
    pub id: &'a str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub function: TemplateFunction<'a>,
}

#[derive(Debug, Serialize)]
pub struct TemplateFunction<'a> {
    pub name: &'a str,
    pub arguments: &'a Value,
}

impl<'a> From<&'a ChatMessage> for TemplateMessage<'a> {
    fn from(message: &'a ChatMessage) -> Self {
        Self {
            role: message.role.as_str(),
            content: &message.content,
            tool_calls: message
                .tool_calls
                .iter()
                .map(|call| TemplateToolCall {
                    id: &call.id,
                    kind: "function",
                    function: TemplateFunction {
                        name: &call.name,
                        arguments: &call.arguments,
                    },
                })
                .collect(),
            tool_call_id: message.tool_call_id.as_deref(),
        }
    }
}

/// `{"name": …, "arguments": …}`: one call as the Hermes format writes it.
#[derive(Debug, Serialize)]
struct HermesCall<'a> {
    name: &'a str,
    arguments: &'a Value,
}

/// The chat with its tools and tool traffic written as plain text (Hermes format), for a
/// template that takes no tools: the tools' signatures in the first system message (one is
/// added when there is none), calls appended to their assistant messages, results as user
/// messages (consecutive results in one message, as Qwen's template writes them).
pub fn as_plain_messages(messages: &[ChatMessage], tools: &[ToolDefinition]) -> Vec<ChatMessage> {
    let mut out: Vec<ChatMessage> = Vec::with_capacity(messages.len() + 1);
    if !tools.is_empty() {
        let description = describe_tools(tools);
        match messages.first() {
            Some(first) if first.role == Role::System => out.push(ChatMessage::new(
                Role::System,
                format!("{}\n\n{description}", first.content),
            )),
            _ => out.push(ChatMessage::new(Role::System, description)),
        }
    }
    let skip_first = !tools.is_empty() && messages.first().is_some_and(|m| m.role == Role::System);
    let mut previous_was_result = false;
    for message in messages.iter().skip(usize::from(skip_first)) {
        match message.role {
            Role::Tool => {
                let response = format!("<tool_response>\n{}\n</tool_response>", message.content);
                match out.last_mut() {
                    Some(last) if previous_was_result => {
                        last.content.push('\n');
                        last.content.push_str(&response);
                    }
                    _ => out.push(ChatMessage::new(Role::User, response)),
                }
                previous_was_result = true;
                continue;
            }
            Role::Assistant if !message.tool_calls.is_empty() => {
                let mut content = message.content.clone();
                for call in &message.tool_calls {
                    if !content.is_empty() {
                        content.push('\n');
                    }
                    content.push_str(&hermes_call(call));
                }
                out.push(ChatMessage::new(Role::Assistant, content));
            }
            _ => out.push(ChatMessage::new(message.role, message.content.clone())),
        }
        previous_was_result = false;
    }
    out
}

/// The tools' signatures and how to call them (Hermes format).
pub fn describe_tools(tools: &[ToolDefinition]) -> String {
    let mut text = String::from(TOOLS_PREAMBLE);
    for tool in tools {
        text.push('\n');
        // A struct of strings and JSON values always serializes.
        text.push_str(&serde_json::to_string(&TemplateTool::from(tool)).unwrap_or_default());
    }
    text.push('\n');
    text.push_str(TOOLS_CALL_FORMAT);
    text
}

fn hermes_call(call: &ToolCall) -> String {
    let json = serde_json::to_string(&HermesCall {
        name: &call.name,
        arguments: &call.arguments,
    })
    .unwrap_or_default();
    format!("<tool_call>\n{json}\n</tool_call>")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn weather() -> ToolDefinition {
        ToolDefinition {
            name: "get_weather".into(),
            description: Some("Weather in a city".into()),
            parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}}),
        }
    }

    fn history() -> Vec<ChatMessage> {
        let mut call = ChatMessage::new(Role::Assistant, "");
        call.tool_calls = vec![ToolCall {
            id: "call_1".into(),
            name: "get_weather".into(),
            arguments: json!({"city": "Paris"}),
        }];
        let mut result = ChatMessage::new(Role::Tool, "22 C");
        result.tool_call_id = Some("call_1".into());
        let mut second = result.clone();
        second.content = "sunny".into();
        vec![
            ChatMessage::new(Role::System, "Be brief."),
            ChatMessage::new(Role::User, "Weather in Paris?"),
            call,
            result,
            second,
        ]
    }

    #[test]
    fn plain_messages_carry_tools_calls_and_results_as_hermes_text() {
        let plain = as_plain_messages(&history(), &[weather()]);
        assert_eq!(plain.len(), 4);
        assert_eq!(plain[0].role, Role::System);
        assert!(plain[0].content.starts_with("Be brief.\n\n# Tools"));
        assert!(plain[0].content.contains(
            r#"{"type":"function","function":{"name":"get_weather","description":"Weather in a city","parameters":{"properties":{"city":{"type":"string"}},"type":"object"}}}"#
        ));
        assert_eq!(
            plain[2].content,
            "<tool_call>\n{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Paris\"}}\n</tool_call>"
        );
        assert_eq!(plain[3].role, Role::User);
        assert_eq!(
            plain[3].content,
            "<tool_response>\n22 C\n</tool_response>\n<tool_response>\nsunny\n</tool_response>"
        );
        assert!(plain.iter().all(|m| m.tool_calls.is_empty()));
    }

    #[test]
    fn a_chat_without_a_system_message_gets_one_for_the_tools() {
        let plain = as_plain_messages(&[ChatMessage::new(Role::User, "hi")], &[weather()]);
        assert_eq!(plain[0].role, Role::System);
        assert!(plain[0].content.starts_with("# Tools"));
        assert_eq!(plain[1].content, "hi");
    }

    #[test]
    fn tool_use_is_detected_from_tools_or_history() {
        let plain = [ChatMessage::new(Role::User, "hi")];
        assert!(!uses_tools(&plain, &[]));
        assert!(uses_tools(&plain, &[weather()]));
        assert!(uses_tools(&history(), &[]));
    }

    #[test]
    fn template_shapes_are_hugging_faces() {
        let messages = history();
        let shaped = serde_json::to_value(TemplateMessage::from(&messages[2])).unwrap();
        assert_eq!(
            shaped,
            json!({"role": "assistant", "content": "", "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]})
        );
        let shaped = serde_json::to_value(TemplateMessage::from(&messages[3])).unwrap();
        assert_eq!(
            shaped,
            json!({"role": "tool", "content": "22 C", "tool_call_id": "call_1"})
        );
    }
}
