//! UTF-8 safe detokenization: a token may end in the middle of a multi-byte character (byte
//! fallback tokens, emoji, CJK), so bytes are held until the character is complete and only
//! whole characters are emitted. Only bytes that can never become valid UTF-8 turn into U+FFFD.

/// Accumulates token bytes and hands out the longest complete UTF-8 prefix.
#[derive(Debug, Default)]
pub struct Utf8Accumulator {
    pending: Vec<u8>,
}

impl Utf8Accumulator {
    /// Adds the bytes of one token and returns the text that is now complete.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut complete = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(text) => {
                    complete.push_str(text);
                    self.pending.clear();
                    return complete;
                }
                Err(error) => {
                    let valid = error.valid_up_to();
                    complete.push_str(&String::from_utf8_lossy(&self.pending[..valid]));
                    match error.error_len() {
                        // An incomplete character at the end: wait for the next token.
                        None => {
                            self.pending.drain(..valid);
                            return complete;
                        }
                        // Bytes that no continuation can repair.
                        Some(invalid) => {
                            complete.push(char::REPLACEMENT_CHARACTER);
                            self.pending.drain(..valid + invalid);
                        }
                    }
                }
            }
        }
    }

    /// True while an incomplete character is held back.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Drops an incomplete trailing character (the generation ended inside it): emitting it
    /// would show U+FFFD for a character the model never finished.
    pub fn discard_incomplete(&mut self) {
        self.pending.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_character_split_across_tokens_is_emitted_whole() {
        let emoji = "🦀".as_bytes();
        let mut accumulator = Utf8Accumulator::default();
        assert_eq!(accumulator.push(&emoji[..1]), "");
        assert_eq!(accumulator.push(&emoji[1..3]), "");
        assert!(accumulator.has_pending());
        assert_eq!(accumulator.push(&emoji[3..]), "🦀");
        assert!(!accumulator.has_pending());
    }

    #[test]
    fn every_split_of_mixed_text_reassembles_without_replacement_characters() {
        let text = "héllo 世界 🦀!";
        let bytes = text.as_bytes();
        for split in 0..=bytes.len() {
            let mut accumulator = Utf8Accumulator::default();
            let mut out = accumulator.push(&bytes[..split]);
            out.push_str(&accumulator.push(&bytes[split..]));
            assert_eq!(out, text, "split at {split}");
        }
        let mut accumulator = Utf8Accumulator::default();
        let out: String = bytes.iter().map(|b| accumulator.push(&[*b])).collect();
        assert_eq!(out, text);
    }

    #[test]
    fn invalid_bytes_become_one_replacement_each_and_decoding_goes_on() {
        let mut accumulator = Utf8Accumulator::default();
        assert_eq!(accumulator.push(&[b'a', 0xFF, b'b']), "a\u{FFFD}b");
        assert_eq!(accumulator.push("c".as_bytes()), "c");
    }
}
