//! Stop strings: text is held back while it could still be the start of a stop string, so a
//! stop string that spans several tokens never leaks into the output.

/// What one push of new text yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopOutcome {
    /// Text that is safe to show now (possibly empty); generation goes on.
    Continue(String),
    /// A stop string was found: show this text (everything before it) and stop.
    Stopped(String),
}

/// Finds the earliest of several stop strings in a stream of text pieces.
#[derive(Debug, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    held: String,
    /// The stop string that ended the text, once one has.
    matched: Option<String>,
}

impl StopMatcher {
    /// Empty stop strings are ignored: they would stop before the first character.
    pub fn new(stops: &[String]) -> Self {
        Self {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            held: String::new(),
            matched: None,
        }
    }

    pub fn push(&mut self, text: &str) -> StopOutcome {
        if self.stops.is_empty() {
            return StopOutcome::Continue(text.to_owned());
        }
        self.held.push_str(text);
        let earliest = self
            .stops
            .iter()
            .filter_map(|stop| Some((self.held.find(stop.as_str())?, stop)))
            .min_by_key(|(position, _)| *position);
        if let Some((position, stop)) = earliest {
            self.matched = Some(stop.clone());
            let before = self.held[..position].to_owned();
            self.held.clear();
            return StopOutcome::Stopped(before);
        }
        let keep = self.longest_suffix_that_starts_a_stop();
        let emit_until = self.held.len() - keep;
        let emitted = self.held[..emit_until].to_owned();
        self.held.drain(..emit_until);
        StopOutcome::Continue(emitted)
    }

    /// The stop string that ended the text (`None` until one did).
    pub fn matched(&self) -> Option<&str> {
        self.matched.as_deref()
    }

    /// Hands out the held text when the generation ends for another reason.
    pub fn flush(&mut self) -> String {
        std::mem::take(&mut self.held)
    }

    fn longest_suffix_that_starts_a_stop(&self) -> usize {
        let longest_stop = self.stops.iter().map(String::len).max().unwrap_or(0);
        let max_keep = longest_stop.saturating_sub(1).min(self.held.len());
        (1..=max_keep)
            .rev()
            .filter(|keep| self.held.is_char_boundary(self.held.len() - keep))
            .find(|keep| {
                let suffix = &self.held[self.held.len() - keep..];
                self.stops.iter().any(|stop| stop.starts_with(suffix))
            })
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (String, bool) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut matcher = StopMatcher::new(&stops);
        let mut out = String::new();
        for piece in pieces {
            match matcher.push(piece) {
                StopOutcome::Continue(text) => out.push_str(&text),
                StopOutcome::Stopped(text) => {
                    out.push_str(&text);
                    return (out, true);
                }
            }
        }
        out.push_str(&matcher.flush());
        (out, false)
    }

    #[test]
    fn a_stop_string_spanning_pieces_never_leaks() {
        assert_eq!(
            run(&["STOP"], &["hello S", "TO", "P world"]),
            ("hello ".into(), true)
        );
    }

    #[test]
    fn a_false_start_is_released() {
        assert_eq!(
            run(&["STOP"], &["a ST", "ART b"]),
            ("a START b".into(), false)
        );
    }

    #[test]
    fn the_earliest_of_several_stops_wins() {
        assert_eq!(run(&["b", "abc"], &["xab", "c"]), ("xa".into(), true));
        let stops = vec!["abc".to_string(), "b".to_string()];
        let mut matcher = StopMatcher::new(&stops);
        assert_eq!(matcher.matched(), None);
        matcher.push("xabc");
        assert_eq!(
            matcher.matched(),
            Some("abc"),
            "the earliest occurrence wins"
        );
        let mut matcher = StopMatcher::new(&stops);
        matcher.push("xab");
        assert_eq!(matcher.matched(), Some("b"));
    }

    #[test]
    fn held_text_is_flushed_at_the_end() {
        assert_eq!(run(&["\n\n"], &["end\n"]), ("end\n".into(), false));
    }

    #[test]
    fn multibyte_text_is_split_only_at_character_boundaries() {
        assert_eq!(
            run(&["世界!"], &["你好世", "界"]),
            ("你好世界".into(), false)
        );
        assert_eq!(run(&["世界!"], &["你好世", "界!"]), ("你好".into(), true));
    }

    #[test]
    fn no_stops_passes_text_through() {
        assert_eq!(run(&[], &["a", "b"]), ("ab".into(), false));
        assert_eq!(run(&[""], &["a"]), ("a".into(), false));
    }
}
