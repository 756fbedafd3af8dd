//! Pure scheduling policy: which slot a request goes to, and how much prompt one step may
//! prefill and how many speculative guesses it may verify (`pacer`). No llama.cpp here, so
//! every rule is unit-tested.

/// How much slower a step may be than a decode-only step because it also prefills a prompt.
/// 2.0 means a long prompt arriving mid-stream at most doubles the running streams'
/// inter-token latency while it is prefilled.
pub const DEFAULT_MAX_DECODE_SLOWDOWN: f64 = 2.0;

mod pacer;

pub use pacer::{PrefillPacer, MAX_NEIGHBOUR_SLOWDOWN, MIN_PREFILL_CHUNK};
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

/// A prefix another slot shares with the prompt is copied into the chosen slot only when it
/// saves at least this many tokens over the chosen slot's own: llama.cpp copies a sequence's
/// KV stream only as a whole, which costs more than computing the few tokens of a chat
/// template's opening that unrelated conversations share.
pub const MIN_COPIED_PREFIX_GAIN: usize = 16;

/// Picks a free slot by the value of what it reuses against what it destroys:
///
/// 1. a slot whose cache the prompt continues (it shares more tokens than it would lose: the
///    same conversation's next turn, a regenerated or edited last turn): the one sharing the
///    most, then the least recently used;
/// 2. otherwise an empty slot, so another conversation's cache survives;
/// 3. otherwise the least recently used slot, whatever few tokens (a chat template's opening)
///    the others share: two conversations taking turns keep a slot each instead of evicting
///    each other.
///
/// The prefix the chosen slot keeps is its own shared prefix; a longer one held by another
/// slot (a shared system prompt) is copied in by the engine ([`worth_copying`]). At least one
/// prompt token is always left to compute, because its logits give the first generated token.
pub fn choose_slot<T: PartialEq>(
    free_slots: &[FreeSlot<'_, T>],
    prompt: &[T],
    prefix_cache: bool,
) -> Option<SlotChoice> {
    let scored: Vec<(&FreeSlot<'_, T>, usize)> = free_slots
        .iter()
        .map(|slot| {
            let shared = if prefix_cache {
                common_prefix_len(slot.cached_tokens, prompt)
            } else {
                0
            };
            (slot, shared)
        })
        .collect();
    let continued = scored
        .iter()
        .filter(|(slot, shared)| *shared > slot.cached_tokens.len() - shared)
        .max_by(|(a, shared_a), (b, shared_b)| {
            shared_a
                .cmp(shared_b)
                .then(b.last_used_step.cmp(&a.last_used_step))
        });
    let empty = scored
        .iter()
        .filter(|(slot, _)| slot.cached_tokens.is_empty())
        .min_by_key(|(slot, _)| slot.last_used_step);
    let least_recently_used = scored.iter().min_by_key(|(slot, _)| slot.last_used_step);
    let chosen = continued.or(empty).or(least_recently_used)?;
    let (slot, shared) = *chosen;
    Some(SlotChoice {
        index: slot.index,
        reused_tokens: shared.min(prompt.len().saturating_sub(1)),
    })
}

/// Whether to copy another slot's prefix of `shared_elsewhere` tokens into a slot that keeps
/// `own` tokens of the prompt ([`MIN_COPIED_PREFIX_GAIN`]).
pub fn worth_copying(shared_elsewhere: usize, own: usize) -> bool {
    shared_elsewhere >= own + MIN_COPIED_PREFIX_GAIN
}

/// Whether a sequence of a sliding-window model can continue after its first `reused`
/// positions: the next token attends to the `window` positions before it, so every one of
/// them must still be in the cache, whose oldest position is `oldest_position` (llama.cpp's
/// `seq_pos_min`; -1 when the sequence is empty). llama-server's rule: the oldest kept
/// position may be at most `reused - window`. With a full-size sliding-window cache
/// ([`hearth_protocol::SWA_FULL`]) nothing is evicted before the context is full, so this holds;
/// it is checked anyway, since a cache that lost the positions would give wrong output.
pub fn window_allows_reuse(reused: usize, oldest_position: i32, window: u32) -> bool {
    if reused == 0 {
        return true;
    }
    let threshold = reused.saturating_sub(window as usize);
    usize::try_from(oldest_position).is_ok_and(|oldest| oldest <= threshold)
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

/// Which messages of a chat to keep so its prompt fits `budget` tokens, given each message's
/// estimated cost in tokens: the system messages and the last message always, then the newest
/// other messages while they fit. The first that does not fit ends the run, so the kept turns
/// are contiguous (an older short message is never kept over a newer long one). Returns the
/// kept indices in order, or `None` when the system messages and the last message alone
/// exceed the budget. One pass over the messages: linear, where dropping one message at a time
/// and re-rendering the prompt each time was quadratic.
pub fn keep_newest_turns(is_system: &[bool], costs: &[usize], budget: usize) -> Option<Vec<usize>> {
    let last = is_system.len().checked_sub(1)?;
    let cost = |index: usize| costs.get(index).copied().unwrap_or(usize::MAX);
    let mut used = (0..=last)
        .filter(|&index| is_system[index] || index == last)
        .try_fold(0usize, |sum, index| sum.checked_add(cost(index)))
        .filter(|&used| used <= budget)?;
    let mut first_kept = last;
    for index in (0..last).rev().filter(|&index| !is_system[index]) {
        match used.checked_add(cost(index)) {
            Some(total) if total <= budget => {
                used = total;
                first_kept = index;
            }
            _ => break,
        }
    }
    Some(
        (0..=last)
            .filter(|&index| is_system[index] || index >= first_kept)
            .collect(),
    )
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

    /// Two conversations with different system prompts taking turns (A1 B1 A2 B2 …) on two
    /// slots: they share only the chat template's opening tokens, and each keeps a slot.
    #[test]
    fn two_conversations_taking_turns_keep_a_slot_each() {
        // 3 tokens of template, then each conversation's own system prompt and turns.
        let template = [1, 2, 3];
        let conversation = |system: i32, turns: i32| -> Vec<i32> {
            let mut tokens = template.to_vec();
            tokens.extend(std::iter::repeat_n(system, 40));
            tokens.extend((0..turns * 20).map(|t| 1000 + t));
            tokens
        };
        let mut caches: [Vec<i32>; 2] = [Vec::new(), Vec::new()];
        let mut last_used = [0u64; 2];
        let mut homes = Vec::new();
        for step in 1..=6u64 {
            let (system, turn) = if step % 2 == 1 {
                (100, step as i32)
            } else {
                (200, step as i32)
            };
            let prompt = conversation(system, turn);
            let slots: Vec<FreeSlot<'_, i32>> = caches
                .iter()
                .enumerate()
                .map(|(index, cached)| FreeSlot {
                    index,
                    cached_tokens: cached.as_slice(),
                    last_used_step: last_used[index],
                })
                .collect();
            let choice = choose_slot(&slots, &prompt, true).unwrap();
            if step > 2 {
                // From its second turn on, each conversation reuses its whole history.
                assert_eq!(choice.reused_tokens, conversation(system, turn - 2).len());
            }
            homes.push((system, choice.index));
            caches[choice.index] = prompt;
            last_used[choice.index] = step;
        }
        assert_eq!(
            homes,
            [(100, 0), (200, 1), (100, 0), (200, 1), (100, 0), (200, 1)]
        );
    }

    #[test]
    fn an_edited_last_turn_reuses_its_own_conversation() {
        let history = [1, 2, 3, 4, 5, 6, 7, 8];
        let other = [1, 9, 9, 9];
        let slots = [
            FreeSlot {
                index: 0,
                cached_tokens: &other[..],
                last_used_step: 1,
            },
            FreeSlot {
                index: 1,
                cached_tokens: &history[..],
                last_used_step: 2,
            },
        ];
        let choice = choose_slot(&slots, &[1, 2, 3, 4, 5, 6, 70, 80], true).unwrap();
        assert_eq!(
            choice,
            SlotChoice {
                index: 1,
                reused_tokens: 6
            }
        );
    }

    #[test]
    fn with_every_slot_holding_another_conversation_the_least_recently_used_goes() {
        let a = [1, 2, 3, 10, 11, 12, 13, 14, 15, 16];
        let b = [1, 2, 3, 20, 21, 22, 23];
        let slots = [
            FreeSlot {
                index: 0,
                cached_tokens: &a[..],
                last_used_step: 7,
            },
            FreeSlot {
                index: 1,
                cached_tokens: &b[..],
                last_used_step: 4,
            },
        ];
        // A third conversation shares the template with both, and the first token more with A.
        let choice = choose_slot(&slots, &[1, 2, 3, 10, 30, 31, 32, 33], true).unwrap();
        assert_eq!(
            choice,
            SlotChoice {
                index: 1,
                reused_tokens: 3
            }
        );
    }

    #[test]
    fn only_a_worthwhile_prefix_is_copied_from_another_slot() {
        assert!(!worth_copying(3, 0));
        assert!(!worth_copying(MIN_COPIED_PREFIX_GAIN + 9, 10));
        assert!(worth_copying(MIN_COPIED_PREFIX_GAIN + 10, 10));
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
    fn the_oldest_turns_go_first_and_system_and_last_stay() {
        // system, user, assistant, user, assistant, user
        let is_system = [true, false, false, false, false, false];
        let costs = [10, 10, 10, 10, 10, 10];
        assert_eq!(
            keep_newest_turns(&is_system, &costs, 30).unwrap(),
            vec![0, 4, 5]
        );
        assert_eq!(
            keep_newest_turns(&is_system, &costs, 39).unwrap(),
            vec![0, 4, 5]
        );
        assert_eq!(keep_newest_turns(&is_system, &costs, 60).unwrap().len(), 6);
        assert!(keep_newest_turns(&is_system, &costs, 19).is_none());
        assert_eq!(
            keep_newest_turns(&is_system, &costs, 20).unwrap(),
            vec![0, 5]
        );
        assert!(keep_newest_turns(&[], &[], 100).is_none());
    }

    #[test]
    fn kept_turns_are_contiguous_and_system_messages_anywhere_stay() {
        // user, system, user (long), assistant, user
        let is_system = [false, true, false, false, false];
        let costs = [1, 5, 50, 5, 5];
        // The long message ends the run: the short one before it is dropped too.
        assert_eq!(
            keep_newest_turns(&is_system, &costs, 20).unwrap(),
            vec![1, 3, 4]
        );
        // Unknown (unmeasured) costs never fit.
        assert_eq!(
            keep_newest_turns(&is_system, &[1, 5, 1, usize::MAX, 5], 1000).unwrap(),
            vec![1, 4]
        );
        assert!(keep_newest_turns(&is_system, &[1, usize::MAX, 1, 1, 1], usize::MAX).is_none());
    }

    #[test]
    fn keeping_turns_of_a_long_chat_is_linear() {
        let n = 1_000_000;
        let is_system: Vec<bool> = (0..n).map(|i| i == 0).collect();
        let costs = vec![7; n];
        let started = std::time::Instant::now();
        let kept = keep_newest_turns(&is_system, &costs, 7 * 1000).unwrap();
        assert_eq!(kept.len(), 1000);
        assert_eq!(kept[1], n - 999);
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn prefill_is_bounded_only_while_others_decode() {
        assert_eq!(prefill_budget(512, 0, 32), 512);
        assert_eq!(prefill_budget(512, 3, 32), 32);
        assert_eq!(prefill_budget(16, 8, 32), 8);
        assert_eq!(prefill_budget(4, 8, 32), 0);
    }

    #[test]
    fn a_sliding_window_reuse_needs_the_window_before_the_cut() {
        // Nothing reused: always fine.
        assert!(window_allows_reuse(0, -1, 512));
        // A full cache (oldest position 0) serves any cut.
        assert!(window_allows_reuse(10, 0, 512));
        assert!(window_allows_reuse(2000, 0, 512));
        // Positions before 1488 were evicted: a cut at 2000 still has its 512, one at 1999
        // does not.
        assert!(window_allows_reuse(2000, 1488, 512));
        assert!(!window_allows_reuse(1999, 1488, 512));
        // A cut shorter than the window needs position 0.
        assert!(!window_allows_reuse(300, 1, 512));
        // An empty sequence cannot serve a reuse of its tokens.
        assert!(!window_allows_reuse(5, -1, 512));
    }
}
