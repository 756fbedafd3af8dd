//! The prefix a newly admitted request starts from: the longest cached prefix of its prompt,
//! from its own slot (cut where it diverges), copied from another sequence, or restored from
//! a lower tier, and dropped when a sliding-window model's cache no longer holds the window
//! before the cut. Only the rest of the prompt is computed.

use hearth_protocol::CacheTier;
use llama_cpp_2::token::LlamaToken;

use crate::engine::Session;
use crate::policy;

impl Session<'_> {
    /// Keeps a reuse only when a sliding-window model's cache still holds the window before the
    /// cut ([`policy::window_allows_reuse`]); otherwise the sequence starts afresh.
    pub(super) fn within_sliding_window(
        &mut self,
        index: usize,
        reused: usize,
        tier: CacheTier,
    ) -> (usize, CacheTier) {
        let Some(window) = self.sliding_window else {
            return (reused, tier);
        };
        let seq_id = self.slots[index].seq_id;
        let oldest = self.context.kv_cache_seq_pos_min(seq_id);
        if policy::window_allows_reuse(reused, oldest, window) {
            return (reused, tier);
        }
        tracing::debug!(
            reused,
            oldest,
            window,
            "the sliding-window cache lost positions the prompt needs: computed afresh"
        );
        let _ = self.context.kv_cache_seq_rm(seq_id, None, None);
        self.slots[index].cached_tokens.clear();
        (0, CacheTier::None)
    }

    /// Makes the slot's sequence hold the longest cached prefix of the prompt: its own (cutting
    /// the divergent tail), a longer one copied from another sequence (a shared system
    /// prompt), or a longer one saved in a lower tier (host memory, disk), so those tokens are
    /// not computed again. A sequence the prompt would mostly overwrite is saved first.
    /// Returns how many tokens are reused and where they came from.
    pub(super) fn reuse_cached_prefix(
        &mut self,
        index: usize,
        own: usize,
        prompt: &[LlamaToken],
        reuse: bool,
    ) -> (usize, CacheTier) {
        let seq_id = self.slots[index].seq_id;
        if !reuse {
            let _ = self.context.kv_cache_seq_rm(seq_id, None, None);
            self.slots[index].cached_tokens.clear();
            return (0, CacheTier::None);
        }
        self.save_before_overwrite(index, own);
        // Another sequence (running or idle) may share more of the prompt.
        let limit = prompt.len().saturating_sub(1);
        let donor = self
            .slots
            .iter()
            .enumerate()
            .filter(|(other, _)| *other != index)
            .map(|(other, slot)| {
                (
                    other,
                    policy::common_prefix_len(&slot.cached_tokens, prompt).min(limit),
                )
            })
            .max_by_key(|(_, shared)| *shared)
            .filter(|(_, shared)| policy::worth_copying(*shared, own));
        let in_slots = donor.map_or(own, |(_, shared)| shared.max(own));
        if let Some(restored) = self.restore_saved(index, prompt, in_slots) {
            return restored;
        }
        // A restore that failed leaves the slot empty.
        let own = own.min(self.slots[index].cached_tokens.len());
        let served = |reused: usize| {
            let tier = if reused > 0 {
                CacheTier::Slot
            } else {
                CacheTier::None
            };
            (reused, tier)
        };
        if let Some((donor_index, shared)) = donor {
            let donor_seq = self.slots[donor_index].seq_id;
            let shared_u32 = u32::try_from(shared).unwrap_or(0);
            // Each sequence has its own KV stream, and llama.cpp copies between streams only as
            // a whole (a partial range aborts): copy it all, then cut after the shared prefix.
            let copied = self.context.kv_cache_seq_rm(seq_id, None, None).is_ok()
                && self
                    .context
                    .kv_cache_seq_cp(donor_seq, seq_id, None, None)
                    .is_ok()
                && self
                    .context
                    .kv_cache_seq_rm(seq_id, Some(shared_u32), None)
                    .is_ok();
            if copied {
                self.slots[index].cached_tokens = prompt[..shared].to_vec();
                return served(shared);
            }
            let _ = self.context.kv_cache_seq_rm(seq_id, None, None);
            self.slots[index].cached_tokens.clear();
            return served(0);
        }
        let keep = u32::try_from(own).unwrap_or(0);
        if self
            .context
            .kv_cache_seq_rm(seq_id, Some(keep), None)
            .is_err()
        {
            let _ = self.context.kv_cache_seq_rm(seq_id, None, None);
            self.slots[index].cached_tokens.clear();
            return served(0);
        }
        self.slots[index].cached_tokens.truncate(own);
        served(own)
    }
}
