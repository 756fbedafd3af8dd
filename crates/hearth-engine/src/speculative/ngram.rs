//! N-gram lookup: the guess is what followed the last few tokens the last time they appeared,
//! in the prompt or in the answer so far. No second model, and nearly free: strong when the
//! answer repeats its input (summaries, rewrites, code edits, structured output), silent
//! otherwise.

/// The longest suffix looked up first; a longer match is a more reliable guess.
pub const MAX_NGRAM: usize = 4;
/// The shortest suffix looked up. One token alone matches too often to be worth verifying.
pub const MIN_NGRAM: usize = 2;

/// Up to `max_tokens` tokens that followed the most recent earlier occurrence of the longest
/// suffix of `history` (from [`MAX_NGRAM`] down to [`MIN_NGRAM`] tokens) found in it; empty
/// when none occurs.
pub fn lookup<T: PartialEq + Copy>(history: &[T], max_tokens: usize) -> Vec<T> {
    if max_tokens == 0 {
        return Vec::new();
    }
    for n in (MIN_NGRAM..=MAX_NGRAM).rev() {
        if history.len() <= n {
            continue;
        }
        let suffix = &history[history.len() - n..];
        // Most recent first: the answer's own latest wording is the best guess of its next.
        let found = (0..history.len() - n)
            .rev()
            .find(|&start| &history[start..start + n] == suffix);
        if let Some(start) = found {
            let from = start + n;
            let to = (from + max_tokens).min(history.len());
            return history[from..to].to_vec();
        }
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_continuation_of_an_earlier_occurrence_is_proposed() {
        //             0  1  2  3  4  5  6  7  8
        let history = [1, 2, 3, 4, 5, 9, 9, 2, 3];
        assert_eq!(lookup(&history, 3), vec![4, 5, 9]);
        assert_eq!(lookup(&history, 1), vec![4]);
        assert!(lookup(&history, 0).is_empty());
    }

    #[test]
    fn the_longest_suffix_wins_over_a_more_recent_shorter_one() {
        // [7, 2, 3] occurs at 0; the 2-gram [2, 3] also occurs more recently at 4.
        let history = [7, 2, 3, 10, 2, 3, 11, 7, 2, 3];
        assert_eq!(lookup(&history, 2), vec![10, 2]);
    }

    #[test]
    fn the_most_recent_occurrence_of_equal_length_wins() {
        let history = [5, 6, 1, 0, 5, 6, 2, 0, 5, 6];
        assert_eq!(lookup(&history, 1), vec![2]);
    }

    #[test]
    fn no_match_and_single_token_matches_propose_nothing() {
        assert!(lookup(&[1, 2, 3, 4], 4).is_empty());
        assert!(
            lookup(&[1, 9, 1], 4).is_empty(),
            "a 1-gram is not looked up"
        );
        assert!(lookup::<i32>(&[], 4).is_empty());
    }

    #[test]
    fn a_proposal_stops_at_the_end_of_the_history() {
        let history = [1, 2, 1, 2];
        assert_eq!(lookup(&history, 8), vec![1, 2]);
    }
}
