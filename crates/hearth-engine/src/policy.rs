//! Pure scheduling policy: which slot a request goes to and how much prompt one step may
//! prefill. No llama.cpp here, so every rule is unit-tested.

/// How much slower a step may be than a decode-only step because it also prefills a prompt.
/// 2.0 means a long prompt arriving mid-stream at most doubles the running streams'
/// inter-token latency while it is prefilled.
pub const DEFAULT_MAX_DECODE_SLOWDOWN: f64 = 2.0;
/// The fewest prompt tokens a step prefills while others decode, so a prompt always advances.
/// One: on a 2-core CPU a single prompt token beside a decode step already costs a third of
/// that step, and a larger floor would break the slowdown bound (measured: a floor of 4 let a
/// 2,000-token prompt raise a decoding stream's ITL p95 3.7x instead of about 2x).
pub const MIN_PREFILL_CHUNK: u32 = 1;
/// Weight of the newest step in the running step-time estimates.
const STEP_TIME_SMOOTHING: f64 = 0.2;

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

/// Learns what a step costs, to size prefill chunks so that decoding streams are slowed by at
/// most a bounded factor. Model: step time = decode-only step time + prompt tokens × cost per
/// prompt token, both tracked as moving averages of measured steps.
#[derive(Debug, Clone)]
pub struct PrefillPacer {
    max_slowdown: f64,
    decode_step_ms: Option<f64>,
    prefill_ms_per_token: Option<f64>,
}

impl PrefillPacer {
    pub fn new(max_slowdown: f64) -> Self {
        Self {
            max_slowdown: max_slowdown.max(1.0),
            decode_step_ms: None,
            prefill_ms_per_token: None,
        }
    }

    fn smooth(previous: Option<f64>, sample: f64) -> f64 {
        match previous {
            Some(previous) => previous + STEP_TIME_SMOOTHING * (sample - previous),
            None => sample,
        }
    }

    /// Records a finished step: how long it took, how many prompt tokens it prefilled and how
    /// many sequences it decoded.
    pub fn record(&mut self, step_ms: f64, prefill_tokens: u32, decoding_sequences: u32) {
        if !step_ms.is_finite() || step_ms <= 0.0 {
            return;
        }
        if prefill_tokens == 0 {
            if decoding_sequences > 0 {
                self.decode_step_ms = Some(Self::smooth(self.decode_step_ms, step_ms));
            }
            return;
        }
        let base = if decoding_sequences > 0 {
            self.decode_step_ms.unwrap_or(0.0)
        } else {
            0.0
        };
        let per_token = ((step_ms - base) / f64::from(prefill_tokens)).max(0.0);
        self.prefill_ms_per_token = Some(Self::smooth(self.prefill_ms_per_token, per_token));
    }

    /// Prompt tokens this step may prefill. With nothing decoding, the whole batch; otherwise
    /// as many as keep the step within `max_slowdown` × a decode-only step (at least
    /// [`MIN_PREFILL_CHUNK`]). Before any measurement, the minimum.
    pub fn budget(&self, n_batch: u32, decoding_sequences: u32) -> u32 {
        let room = n_batch.saturating_sub(decoding_sequences);
        if decoding_sequences == 0 {
            return room;
        }
        let tokens = match (self.decode_step_ms, self.prefill_ms_per_token) {
            (Some(decode_ms), Some(per_token)) if per_token > 0.0 => {
                let allowance = (self.max_slowdown - 1.0) * decode_ms;
                (allowance / per_token).floor().min(f64::from(room)) as u32
            }
            _ => MIN_PREFILL_CHUNK,
        };
        tokens.max(MIN_PREFILL_CHUNK).min(room)
    }
}

/// Which messages of a chat to keep so its prompt fits: the system messages and the newest
/// turns. `fits(kept)` says whether a candidate (indices into `roles`) fits. Drops the oldest
/// non-system message until it fits, never the last message. Returns the kept indices, or
/// `None` when even the system messages and the last message do not fit.
pub fn keep_newest_turns(
    is_system: &[bool],
    mut fits: impl FnMut(&[usize]) -> bool,
) -> Option<Vec<usize>> {
    let mut kept: Vec<usize> = (0..is_system.len()).collect();
    loop {
        if fits(&kept) {
            return Some(kept);
        }
        let last = *kept.last()?;
        let oldest_droppable = kept
            .iter()
            .position(|&index| !is_system[index] && index != last)?;
        kept.remove(oldest_droppable);
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
    fn the_pacer_keeps_steps_within_the_slowdown() {
        let mut pacer = PrefillPacer::new(2.0);
        assert_eq!(
            pacer.budget(512, 0),
            512,
            "nothing decoding: the whole batch"
        );
        assert_eq!(
            pacer.budget(512, 1),
            MIN_PREFILL_CHUNK,
            "before measuring: the minimum"
        );
        for _ in 0..20 {
            pacer.record(10.0, 0, 1); // a decode-only step takes 10 ms
            pacer.record(10.0 + 8.0 * 1.25, 8, 1); // each prompt token adds 1.25 ms
        }
        // 2x a 10 ms step leaves 10 ms for prompt tokens at 1.25 ms each.
        assert_eq!(pacer.budget(512, 1), 8);
        let lenient = PrefillPacer {
            max_slowdown: 100.0,
            ..pacer.clone()
        };
        assert_eq!(lenient.budget(512, 1), 511, "bounded by the batch");
        pacer.record(f64::NAN, 3, 1);
        assert_eq!(pacer.budget(512, 1), 8, "bad samples are ignored");
    }

    #[test]
    fn the_oldest_turns_go_first_and_system_and_last_stay() {
        // system, user, assistant, user, assistant, user
        let is_system = [true, false, false, false, false, false];
        let kept = keep_newest_turns(&is_system, |kept| kept.len() <= 3).unwrap();
        assert_eq!(kept, vec![0, 4, 5]);
        assert!(keep_newest_turns(&is_system, |_| false).is_none());
        assert_eq!(keep_newest_turns(&is_system, |_| true).unwrap().len(), 6);
    }

    #[test]
    fn prefill_is_bounded_only_while_others_decode() {
        assert_eq!(prefill_budget(512, 0, 32), 512);
        assert_eq!(prefill_budget(512, 3, 32), 32);
        assert_eq!(prefill_budget(16, 8, 32), 8);
        assert_eq!(prefill_budget(4, 8, 32), 0);
    }
}
