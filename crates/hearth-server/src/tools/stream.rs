//! A streamed answer with tools: which text can go out as content at once, and which must be
//! held back because it may be a tool call. Pure state, fed the engine's text pieces.
//!
//! Words stream as they come. Text that may begin a call is held: an answer that opens with
//! JSON (`{`, `[`, a code fence: the generic and Llama formats), and everything from a call
//! marker (`<tool_call>`, `[TOOL_CALLS]`, `<|python_tag|>`) on; a suffix that could be the start
//! of a marker waits for the next piece. At the end the held text is parsed: calls are sent
//! as calls, anything else as content. A forced call holds everything from the start.

use super::parse::{HERMES_OPEN, LLAMA_PYTHON_TAG, MISTRAL_MARKER};
use super::{ParsedCall, ToolSet};

const MARKERS: [&str; 3] = [HERMES_OPEN, MISTRAL_MARKER, LLAMA_PYTHON_TAG];

/// What the end of a held stream turned out to be.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StreamPiece {
    /// Text still to send as content.
    pub content: String,
    pub calls: Vec<ParsedCall>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Nothing but whitespace yet, or the start of a marker.
    Undecided,
    /// Words: sent as they come, but for a suffix that may start a marker.
    Content,
    /// A call may be under way: all held until the end.
    Holding,
}

/// The text of one streamed answer with tools.
#[derive(Debug, Clone)]
pub struct ToolCallStream {
    tools: ToolSet,
    held: String,
    mode: Mode,
}

impl ToolCallStream {
    pub fn new(tools: ToolSet) -> Self {
        let mode = if tools.is_forced() {
            Mode::Holding
        } else {
            Mode::Undecided
        };
        Self {
            tools,
            held: String::new(),
            mode,
        }
    }

    /// Takes a piece of the answer; returns the content that can be sent now (maybe empty).
    pub fn push(&mut self, text: &str) -> String {
        self.held.push_str(text);
        if self.mode == Mode::Undecided {
            let start = self.held.trim_start();
            if start.is_empty() {
                return String::new();
            }
            if start.starts_with(['{', '[', '`'])
                || MARKERS.iter().any(|marker| start.starts_with(marker))
            {
                self.mode = Mode::Holding;
            } else if MARKERS.iter().any(|marker| marker.starts_with(start)) {
                return String::new();
            } else {
                self.mode = Mode::Content;
            }
        }
        if self.mode != Mode::Content {
            return String::new();
        }
        if let Some(start) = MARKERS.iter().filter_map(|m| self.held.find(m)).min() {
            self.mode = Mode::Holding;
            let rest = self.held.split_off(start);
            return std::mem::replace(&mut self.held, rest);
        }
        let keep = partial_marker_suffix(&self.held);
        let rest = self.held.split_off(self.held.len() - keep);
        std::mem::replace(&mut self.held, rest)
    }

    /// The end of the answer: the held text's calls, and what of it is content.
    pub fn finish(self) -> StreamPiece {
        if self.mode != Mode::Holding {
            return StreamPiece {
                content: self.held,
                calls: Vec::new(),
            };
        }
        let parsed = self.tools.parse(&self.held);
        StreamPiece {
            content: parsed.content,
            calls: parsed.calls,
        }
    }
}

/// Length of the longest suffix of `text` that is a proper prefix of a marker.
fn partial_marker_suffix(text: &str) -> usize {
    MARKERS
        .iter()
        .flat_map(|marker| {
            (1..marker.len())
                .rev()
                .filter(|&n| text.ends_with(&marker[..n]))
                .take(1)
        })
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::ToolChoice;
    use hearth_protocol::ToolDefinition;
    use serde_json::json;

    fn tool_set(choice: ToolChoice) -> ToolSet {
        ToolSet {
            tools: vec![ToolDefinition {
                name: "add".into(),
                description: None,
                parameters: json!({"type": "object"}),
            }],
            choice,
            parallel: true,
        }
    }

    fn run(choice: ToolChoice, pieces: &[&str]) -> (String, StreamPiece) {
        let mut stream = ToolCallStream::new(tool_set(choice));
        let sent: String = pieces.iter().map(|piece| stream.push(piece)).collect();
        (sent, stream.finish())
    }

    #[test]
    fn words_stream_and_a_marker_split_over_pieces_is_held() {
        let (sent, end) = run(
            ToolChoice::Auto,
            &[
                "Sure",
                ", one moment.",
                "\n<tool",
                "_call>{\"name\": \"add\", ",
                "\"arguments\": {\"a\": 1}}</tool_call>",
            ],
        );
        assert_eq!(sent, "Sure, one moment.\n");
        assert!(end.content.is_empty());
        assert_eq!(end.calls.len(), 1);
        assert_eq!(end.calls[0].arguments, json!({"a": 1}));
    }

    #[test]
    fn a_json_opening_is_held_and_sent_as_content_when_it_is_no_call() {
        let (sent, end) = run(ToolChoice::Auto, &[" {\"x\"", ": 1}"]);
        assert_eq!(sent, "");
        assert_eq!(end.content, " {\"x\": 1}");
        assert!(end.calls.is_empty());
    }

    #[test]
    fn a_partial_marker_that_is_not_one_is_sent_at_the_end() {
        let (sent, end) = run(ToolChoice::Auto, &["a <tool"]);
        assert_eq!(sent, "a ");
        assert_eq!(end.content, "<tool");
        let (sent, end) = run(ToolChoice::Auto, &["<to", "day>"]);
        assert_eq!(sent, "<today>");
        assert_eq!(end.content, "");
    }

    #[test]
    fn a_forced_call_is_held_whole() {
        let (sent, end) = run(
            ToolChoice::Required,
            &["{\"arguments\": {}, ", "\"name\": \"add\"}"],
        );
        assert_eq!(sent, "");
        assert_eq!(end.calls.len(), 1);
    }
}
