//! Pure scheduling policy: which slot a request goes to and how much prompt one step may
//! prefill. No llama.cpp here, so every rule is unit-tested.

/// Prompt tokens prefilled per step while other sequences are decoding. Small, so a long prompt
/// arriving mid-stream delays each running stream's next token by only a few milliseconds; when
/// nothing is decoding the whole logical batch is used.
pub const DEFAULT_PREFILL_CHUNK_WHILE_DECODING: u32 = 32;

/// Length of the common prefix of two token sequences.
pub fn common_prefix_len<T: PartialEq>(a: &[T], b: &[T]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// A free slot as the policy sees it: its index and the tokens its KV cache holds.
#[derive(Debug, Clone, Copy)]
pub struct FreeSlot<'a, T> {
    pub index: usize,
    pub cached_tokens: &'a [T],
    /// When the slot last finished a request (older is a better victim).
    pub last_used_step: u64,
}

/// The chosen slot and how many prompt tokens it can reuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotChoice {
    pub index: usize,
    pub reused_tokens: usize,
}

/// Picks the free slot whose cache shares the longest prefix with the prompt; among equals,
/// the least recently used one (so a hot conversation keeps its cache). At least one prompt
/// token is always left to compute, because its logits give the first generated token.
pub fn choose_slot<T: PartialEq>(
    free_slots: &[FreeSlot<'_, T>],
    prompt: &[T],
    prefix_cache: bool,
) -> Option<SlotChoice> {
    free_slots
        .iter()
        .map(|slot| {
            let shared = if prefix_cache {
                common_prefix_len(slot.cached_tokens, prompt)
            } else {
                0
            };
            (slot, shared.min(prompt.len().saturating_sub(1)))
        })
        .max_by(|(a, shared_a), (b, shared_b)| {
            shared_a
                .cmp(shared_b)
                .then(b.last_used_step.cmp(&a.last_used_step))
        })
        .map(|(slot, reused_tokens)| SlotChoice {
            index: slot.index,
            reused_tokens,
        })
}

/// How many prompt tokens this step may prefill in total.
pub fn prefill_budget(n_batch: u32, decoding_sequences: u32, chunk_while_decoding: u32) -> u32 {
    let room = n_batch.saturating_sub(decoding_sequences);
    if decoding_sequences == 0 {
        room
    } else {
        room.min(chunk_while_decoding.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_shared_prefix_wins() {
        let a = [1, 2, 3];
        let b = [1, 2, 3, 4, 5];
        let slots = [
            FreeSlot {
                index: 0,
                cached_tokens: &a[..],
                last_used_step: 1,
            },
            FreeSlot {
                index: 1,
                cached_tokens: &b[..],
                last_used_step: 2,
            },
        ];
        let choice = choose_slot(&slots, &[1, 2, 3, 4, 9], true).unwrap();
        assert_eq!(
            choice,
            SlotChoice {
                index: 1,
                reused_tokens: 4
            }
        );
    }

    #[test]
    fn one_prompt_token_is_always_computed() {
        let cached = [1, 2, 3];
        let slots = [FreeSlot {
            index: 0,
            cached_tokens: &cached[..],
            last_used_step: 0,
        }];
        let choice = choose_slot(&slots, &[1, 2, 3], true).unwrap();
        assert_eq!(choice.reused_tokens, 2);
    }

    #[test]
    fn ties_go_to_the_least_recently_used_slot() {
        let empty: [i32; 0] = [];
        let slots = [
            FreeSlot {
                index: 0,
                cached_tokens: &empty[..],
                last_used_step: 9,
            },
            FreeSlot {
                index: 1,
                cached_tokens: &empty[..],
                last_used_step: 3,
            },
        ];
        assert_eq!(choose_slot(&slots, &[1], true).unwrap().index, 1);
    }

    #[test]
    fn without_prefix_cache_nothing_is_reused() {
        let cached = [1, 2, 3];
        let slots = [FreeSlot {
            index: 0,
            cached_tokens: &cached[..],
            last_used_step: 0,
        }];
        assert_eq!(
            choose_slot(&slots, &[1, 2, 3, 4], false)
                .unwrap()
                .reused_tokens,
            0
        );
        assert!(choose_slot::<i32>(&[], &[1], true).is_none());
    }

    #[test]
    fn prefill_is_bounded_only_while_others_decode() {
        assert_eq!(prefill_budget(512, 0, 32), 512);
        assert_eq!(prefill_budget(512, 3, 32), 32);
        assert_eq!(prefill_budget(16, 8, 32), 8);
        assert_eq!(prefill_budget(4, 8, 32), 0);
    }
}
