//! The tool-call shapes of chat answers: a whole answer's `tool_calls`, the deltas of a
//! streamed call, and how a call's arguments are cut into fragments for a stream.

use serde::Serialize;

/// One call of a whole answer: `{"function": {"arguments", "name"}, "id", "type"}`, the
/// arguments as a string of JSON (as OpenAI sends them).
#[derive(Debug, Serialize)]
pub struct ToolCallObject<'a> {
    pub function: FunctionCall<'a>,
    pub id: &'a str,
    #[serde(rename = "type")]
    pub kind: &'static str,
}

#[derive(Debug, Serialize)]
pub struct FunctionCall<'a> {
    pub arguments: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
}

/// One call's part of a stream chunk: the first has its id, type and name with empty
/// arguments, the next ones fragments of the arguments, all by `index`.
#[derive(Debug, Serialize)]
pub struct ToolCallDelta<'a> {
    pub function: FunctionCall<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<&'a str>,
    pub index: u32,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
}

/// A call ready to send: its id, name and arguments written as JSON text.
#[derive(Debug, Clone, PartialEq)]
pub struct AnswerCall {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

impl AnswerCall {
    pub(super) fn object(&self) -> ToolCallObject<'_> {
        ToolCallObject {
            function: FunctionCall {
                arguments: &self.arguments,
                name: Some(&self.name),
            },
            id: &self.id,
            kind: "function",
        }
    }
}

/// The `finish_reason` of an answer that calls tools.
pub const TOOL_CALLS_FINISH_REASON: &str = "tool_calls";
/// Bytes of arguments per streamed fragment (OpenAI sends a few tokens' worth at a time).
const ARGUMENT_FRAGMENT_BYTES: usize = 16;

/// A call's arguments in fragments of about [`ARGUMENT_FRAGMENT_BYTES`], on character bounds.
pub fn argument_fragments(arguments: &str) -> impl Iterator<Item = &str> {
    let mut rest = arguments;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut end = ARGUMENT_FRAGMENT_BYTES.min(rest.len());
        while !rest.is_char_boundary(end) {
            end += 1;
        }
        let (fragment, tail) = rest.split_at(end);
        rest = tail;
        Some(fragment)
    })
}
