//! Reasoning models that think in tags (`<think>…</think>` and the like): which tags a chat
//! template uses, how a prompt turns thinking off, and the streaming splitter that separates
//! the thinking from the answer in the engine's text.
//!
//! Pure rules, shared by the engine (which finds the tags in the template at load, renders
//! the prompt with thinking on or off and says, in `Started`, whether the prompt already
//! opened the tag) and the server (which splits the text stream it receives, so the engine
//! stays unaware of reasoning and stop strings and `max_tokens` still apply to the whole
//! output). The known tag pairs live in [`KNOWN_THINK_TAGS`], the one place to add a new one.

use serde::{Deserialize, Serialize};

/// A pair of tags a model writes its thinking between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThinkTags {
    pub open: &'static str,
    pub close: &'static str,
}

/// The tag pairs Hearth recognises in a chat template, the most specific first: DeepSeek-R1
/// and its distills, Qwen3, QwQ (`<think>`), Mistral's Magistral (`[THINK]`), the
/// Open-Thoughts/Bespoke-Stratos distills (`<|begin_of_thought|>`), and `<thinking>`.
pub const KNOWN_THINK_TAGS: &[ThinkTags] = &[
    ThinkTags {
        open: "<|begin_of_thought|>",
        close: "<|end_of_thought|>",
    },
    ThinkTags {
        open: "[THINK]",
        close: "[/THINK]",
    },
    ThinkTags {
        open: "<thinking>",
        close: "</thinking>",
    },
    ThinkTags {
        open: "<think>",
        close: "</think>",
    },
];

/// The tags a chat template thinks in: the first known pair whose closing tag the template
/// mentions (a template that strips old thinking from the history, or writes an empty block
/// to turn it off, names at least the closing tag).
pub fn think_tags_in_template(template: &str) -> Option<ThinkTags> {
    KNOWN_THINK_TAGS
        .iter()
        .find(|tags| template.contains(tags.close))
        .copied()
}

/// Whether a rendered prompt ends inside an opened thinking block (Qwen3 and the DeepSeek-R1
/// distills end their generation prompt with `<think>\n`): the model's output then starts
/// with thinking and no opening tag.
pub fn prompt_opens_thinking(prompt: &str, tags: ThinkTags) -> bool {
    prompt.trim_end().ends_with(tags.open)
}

/// The prompt with thinking turned off: an empty, closed thinking block at the end of the
/// generation prompt, so the model answers directly (what Qwen3's template writes for
/// `enable_thinking=false`). A prompt that already ends with a closed block is left as it is;
/// one that opened the tag gets it closed.
pub fn close_thinking_in_prompt(prompt: &str, tags: ThinkTags) -> String {
    let trimmed = prompt.trim_end();
    if trimmed.ends_with(tags.close) {
        return prompt.to_string();
    }
    if trimmed.ends_with(tags.open) {
        return format!("{trimmed}\n\n{}\n\n", tags.close);
    }
    format!("{prompt}{}\n\n{}\n\n", tags.open, tags.close)
}

/// How a generation's output thinks, as the engine reports it in `Started` (absent for a
/// model that does not think in tags or a text prompt; with thinking off, the prompt did not
/// open the tag).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThinkingSyntax {
    pub open: String,
    pub close: String,
    /// The prompt ended with the opening tag: the output starts inside the thinking.
    pub opened_in_prompt: bool,
}

/// What one piece of output adds to each channel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SplitText {
    pub reasoning: String,
    pub content: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Channel {
    /// Nothing but whitespace yet: an opening tag may still come.
    Start,
    /// Inside the thinking, before its first visible character.
    ReasoningStart,
    Reasoning,
    /// Just after the closing tag: whitespace is dropped until the answer starts.
    AnswerStart,
    Answer,
}

/// Separates thinking from the answer in a stream of text pieces, holding back only what may
/// still become a tag (split across pieces) and whitespace whose place is not yet known. No
/// tag text reaches either channel; the thinking's leading and trailing whitespace and the
/// whitespace between the closing tag and the answer are dropped. An opening tag counts only
/// at the start of the output (after whitespace); after that the answer is passed on as is.
#[derive(Debug, Clone)]
pub struct ReasoningSplitter {
    open: String,
    close: String,
    channel: Channel,
    /// Text not yet given to a channel: a possible tag prefix, or trailing whitespace.
    held: String,
}

impl ReasoningSplitter {
    pub fn new(syntax: &ThinkingSyntax) -> Self {
        Self {
            open: syntax.open.clone(),
            close: syntax.close.clone(),
            channel: if syntax.opened_in_prompt {
                Channel::ReasoningStart
            } else {
                Channel::Start
            },
            held: String::new(),
        }
    }

    /// Whether the next text belongs to the thinking (it was opened and not yet closed).
    pub fn in_reasoning(&self) -> bool {
        matches!(self.channel, Channel::ReasoningStart | Channel::Reasoning)
    }

    /// Splits the next piece of output.
    pub fn push(&mut self, text: &str) -> SplitText {
        let mut out = SplitText::default();
        self.held.push_str(text);
        loop {
            let held = std::mem::take(&mut self.held);
            match self.channel {
                Channel::Start => {
                    let rest = held.trim_start();
                    if rest.is_empty() {
                        self.held = held;
                        return out;
                    }
                    if let Some(after) = rest.strip_prefix(self.open.as_str()) {
                        self.held = after.to_string();
                        self.channel = Channel::ReasoningStart;
                        continue;
                    }
                    if self.open.starts_with(rest) {
                        self.held = held;
                        return out;
                    }
                    self.channel = Channel::Answer;
                    out.content.push_str(&held);
                    return out;
                }
                Channel::ReasoningStart | Channel::Reasoning => {
                    let text = if self.channel == Channel::ReasoningStart {
                        held.trim_start()
                    } else {
                        held.as_str()
                    };
                    if let Some(at) = text.find(self.close.as_str()) {
                        out.reasoning.push_str(text[..at].trim_end());
                        self.held = text[at + self.close.len()..].to_string();
                        self.channel = Channel::AnswerStart;
                        continue;
                    }
                    // Hold back what may start the closing tag, and trailing whitespace (it is
                    // dropped if the closing tag follows).
                    let keep_from = possible_tag_start(text, &self.close);
                    let (sure, maybe) = text.split_at(keep_from);
                    let visible = sure.trim_end();
                    if !visible.is_empty() {
                        self.channel = Channel::Reasoning;
                    }
                    out.reasoning.push_str(visible);
                    self.held = format!("{}{maybe}", &sure[visible.len()..]);
                    return out;
                }
                Channel::AnswerStart => {
                    let rest = held.trim_start();
                    if !rest.is_empty() {
                        self.channel = Channel::Answer;
                        out.content.push_str(rest);
                    }
                    return out;
                }
                Channel::Answer => {
                    out.content.push_str(&held);
                    return out;
                }
            }
        }
    }

    /// The end of the output: what was held back goes to its channel (an unfinished tag is
    /// text after all; whitespace at the very end is dropped).
    pub fn finish(&mut self) -> SplitText {
        let held = std::mem::take(&mut self.held);
        let mut out = SplitText::default();
        match self.channel {
            Channel::Start | Channel::AnswerStart => out.content = held.trim().to_string(),
            Channel::ReasoningStart | Channel::Reasoning => {
                out.reasoning = if self.channel == Channel::ReasoningStart {
                    held.trim().to_string()
                } else {
                    held.trim_end().to_string()
                }
            }
            Channel::Answer => out.content = held,
        }
        out
    }
}

/// Where the longest suffix of `text` that is a proper prefix of `tag` begins (`text.len()`
/// when none): that much may still become the tag with the next piece.
fn possible_tag_start(text: &str, tag: &str) -> usize {
    let longest = tag.len().saturating_sub(1).min(text.len());
    (1..=longest)
        .rev()
        .map(|length| text.len() - length)
        .find(|&start| text.is_char_boundary(start) && tag.starts_with(&text[start..]))
        .unwrap_or(text.len())
}

#[cfg(test)]
mod tests;
