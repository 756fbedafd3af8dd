//! Reasoning in an answer: the engine's text stream, split into the model's thinking and its
//! answer on this side of the stream (the engine stays unaware of it; stop strings and
//! `max_tokens` apply to the whole output), with the thinking's token count and time.
//!
//! The engine says in `Started` whether the model thinks in tags and whether the prompt
//! already opened the tag ([`ThinkingSyntax`]); [`hearth_protocol::ReasoningSplitter`] does
//! the splitting. With [`ReasoningFormat::Raw`] (llama-server's `reasoning_format: "none"`)
//! the thinking stays in the content, tags and all, and is still counted.

use std::time::{Duration, Instant};

use hearth_protocol::{ReasoningSplitter, SplitText, ThinkingSyntax};

/// Where an answer's thinking goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReasoningFormat {
    /// Apart from the content (`reasoning_content`).
    #[default]
    Separate,
    /// Inline in the content, with its tags, as the model wrote it.
    Raw,
}

/// One answer's text stream, split as it arrives.
#[derive(Debug)]
pub(crate) struct ReasoningStream {
    splitter: Option<ReasoningSplitter>,
    format: ReasoningFormat,
    /// Raw: the opening tag the prompt wrote, still to be put before the content.
    raw_opening: Option<String>,
    /// Text pieces (one per sampled token, bar text the engine held back) of the thinking.
    tokens: u32,
    started: Instant,
    /// How long the model thought, once it stopped.
    thought_for: Option<Duration>,
}

impl ReasoningStream {
    pub fn new(thinking: Option<&ThinkingSyntax>, format: ReasoningFormat) -> Self {
        let raw_opening = thinking
            .filter(|syntax| format == ReasoningFormat::Raw && syntax.opened_in_prompt)
            .map(|syntax| format!("{}\n", syntax.open));
        Self {
            splitter: thinking.map(ReasoningSplitter::new),
            format,
            raw_opening,
            tokens: 0,
            started: Instant::now(),
            thought_for: None,
        }
    }

    /// Whether the model may think at all (the answer then reports a reasoning count).
    pub fn thinks(&self) -> bool {
        self.splitter.is_some()
    }

    /// The thinking's token count so far.
    pub fn tokens(&self) -> u32 {
        self.tokens
    }

    /// How long the thinking took (until its closing tag, or until now while it goes on);
    /// zero when there was none.
    pub fn thought_for(&self) -> Duration {
        match self.thought_for {
            Some(duration) => duration,
            None if self.tokens > 0 => self.started.elapsed(),
            None => Duration::ZERO,
        }
    }

    /// Splits one piece of the engine's text (one `Text` event).
    pub fn push(&mut self, text: &str) -> SplitText {
        let Some(splitter) = self.splitter.as_mut() else {
            return SplitText {
                reasoning: String::new(),
                content: text.to_string(),
            };
        };
        let was_thinking = splitter.in_reasoning();
        let split = splitter.push(text);
        if was_thinking || splitter.in_reasoning() || !split.reasoning.is_empty() {
            self.tokens += 1;
        }
        if self.tokens > 0 && self.thought_for.is_none() && !splitter.in_reasoning() {
            self.thought_for = Some(self.started.elapsed());
        }
        self.shaped(text, split)
    }

    /// The end of the text: whatever the splitter held back.
    pub fn finish(&mut self) -> SplitText {
        let Some(splitter) = self.splitter.as_mut() else {
            return SplitText::default();
        };
        let split = splitter.finish();
        if self.tokens > 0 && self.thought_for.is_none() {
            self.thought_for = Some(self.started.elapsed());
        }
        let raw = self.raw_opening.take().unwrap_or_default();
        match self.format {
            ReasoningFormat::Separate => split,
            // Raw text was passed on as it came; only an unsent opening is left.
            ReasoningFormat::Raw => SplitText {
                reasoning: String::new(),
                content: raw,
            },
        }
    }

    /// The split for the client: as split, or raw (the text as it came).
    fn shaped(&mut self, text: &str, split: SplitText) -> SplitText {
        match self.format {
            ReasoningFormat::Separate => split,
            ReasoningFormat::Raw => {
                let mut content = self.raw_opening.take().unwrap_or_default();
                content.push_str(text);
                SplitText {
                    reasoning: String::new(),
                    content,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opened() -> ThinkingSyntax {
        ThinkingSyntax {
            open: "<think>".into(),
            close: "</think>".into(),
            opened_in_prompt: true,
        }
    }

    fn run(stream: &mut ReasoningStream, pieces: &[&str]) -> (String, String) {
        let (mut reasoning, mut content) = (String::new(), String::new());
        for piece in pieces.iter().copied() {
            let split = stream.push(piece);
            reasoning += &split.reasoning;
            content += &split.content;
        }
        let split = stream.finish();
        (reasoning + &split.reasoning, content + &split.content)
    }

    #[test]
    fn thinking_pieces_are_counted_up_to_the_closing_tag() {
        let mut stream = ReasoningStream::new(Some(&opened()), ReasoningFormat::Separate);
        let split = run(
            &mut stream,
            &["\nOne", " two", "</think>", "\n\nAnswer", "."],
        );
        assert_eq!(split, ("One two".to_string(), "Answer.".to_string()));
        assert_eq!(stream.tokens(), 3);
        assert!(stream.thinks());
    }

    #[test]
    fn raw_keeps_the_text_with_its_tags_and_still_counts() {
        let mut stream = ReasoningStream::new(Some(&opened()), ReasoningFormat::Raw);
        let split = run(&mut stream, &["hm", "</think>", "Yes"]);
        assert_eq!(split, (String::new(), "<think>\nhm</think>Yes".to_string()));
        assert_eq!(stream.tokens(), 2);
    }

    #[test]
    fn a_model_that_does_not_think_passes_everything_on() {
        let mut stream = ReasoningStream::new(None, ReasoningFormat::Separate);
        let split = run(&mut stream, &["<think>", "x"]);
        assert_eq!(split, (String::new(), "<think>x".to_string()));
        assert_eq!((stream.tokens(), stream.thinks()), (0, false));
        assert_eq!(stream.thought_for(), Duration::ZERO);
    }
}
