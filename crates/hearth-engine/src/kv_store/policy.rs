//! Pure policy of a cache tier (host memory or disk): which saved sequences to keep within a
//! byte budget, which to evict (least recently used first), and which one serves a prompt (the
//! longest common prefix). No llama.cpp and no files here: the payload is whatever the tier
//! keeps (the state's bytes in memory, a file's name on disk), so every rule is unit-tested.

use crate::policy::common_prefix_len;

/// Sequences shorter than this are not worth saving when pushed out of a slot: a chat
/// template's opening and a short question cost less to compute again than to copy.
pub const MIN_SAVED_TOKENS: usize = 32;

/// One saved sequence: the tokens whose keys and values it holds, in position order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedEntry<T, P> {
    pub id: u64,
    pub tokens: Vec<T>,
    pub bytes: u64,
    pub last_used: u64,
    pub payload: P,
}

/// What an insertion did besides storing the new entry.
#[derive(Debug, PartialEq, Eq)]
pub struct Insertion<T, P> {
    /// False when the entry was not kept here: an entry that holds the same tokens and more
    /// already exists, or the entry alone exceeds the budget (then it is in `evicted`).
    pub stored: bool,
    /// Entries whose tokens are a prefix of the new entry's: it serves every prompt they
    /// served, so they are dropped (not moved to a lower tier).
    pub superseded: Vec<SavedEntry<T, P>>,
    /// Entries pushed out to keep the tier within its budget, least recently used first: a
    /// lower tier may keep them.
    pub evicted: Vec<SavedEntry<T, P>>,
}

/// The saved sequences of one tier.
#[derive(Debug)]
pub struct SavedSequences<T, P> {
    entries: Vec<SavedEntry<T, P>>,
    budget_bytes: u64,
    used_bytes: u64,
    clock: u64,
    next_id: u64,
}

/// Whether a slot's sequence of `cached` tokens, of which the incoming prompt keeps `kept`,
/// is worth saving before it is overwritten: long enough, and mostly lost (a conversation's
/// own next turn keeps most of it and needs no copy).
pub fn worth_saving(cached: usize, kept: usize) -> bool {
    cached >= MIN_SAVED_TOKENS && kept * 2 < cached
}

impl<T: PartialEq + Clone, P> SavedSequences<T, P> {
    pub fn new(budget_bytes: u64) -> Self {
        Self {
            entries: Vec::new(),
            budget_bytes,
            used_bytes: 0,
            clock: 0,
            next_id: 1,
        }
    }

    pub fn budget_bytes(&self) -> u64 {
        self.budget_bytes
    }

    pub fn used_bytes(&self) -> u64 {
        self.used_bytes
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn entries(&self) -> impl Iterator<Item = &SavedEntry<T, P>> {
        self.entries.iter()
    }

    /// The entry sharing the longest prefix with `prompt` (the most recently used among
    /// equals) and the length of that prefix; `None` when none shares a token.
    pub fn best_match(&self, prompt: &[T]) -> Option<(u64, usize)> {
        self.entries
            .iter()
            .map(|entry| (entry, common_prefix_len(&entry.tokens, prompt)))
            .filter(|(_, shared)| *shared > 0)
            .max_by(|(a, shared_a), (b, shared_b)| {
                shared_a.cmp(shared_b).then(a.last_used.cmp(&b.last_used))
            })
            .map(|(entry, shared)| (entry.id, shared))
    }

    /// The entry `id`, marked as just used.
    pub fn touch(&mut self, id: u64) -> Option<&SavedEntry<T, P>> {
        self.clock += 1;
        let clock = self.clock;
        let entry = self.entries.iter_mut().find(|entry| entry.id == id)?;
        entry.last_used = clock;
        Some(entry)
    }

    /// Removes the entry `id` (a restore that failed, a file found corrupt).
    pub fn remove(&mut self, id: u64) -> Option<SavedEntry<T, P>> {
        let position = self.entries.iter().position(|entry| entry.id == id)?;
        let entry = self.entries.remove(position);
        self.used_bytes -= entry.bytes;
        Some(entry)
    }

    /// Removes every entry.
    pub fn clear(&mut self) -> Vec<SavedEntry<T, P>> {
        self.used_bytes = 0;
        std::mem::take(&mut self.entries)
    }

    /// Whether an entry already holds `tokens` and possibly more (saving them again would
    /// only duplicate it).
    pub fn covers(&self, tokens: &[T]) -> bool {
        self.entries
            .iter()
            .any(|entry| entry.tokens.len() >= tokens.len() && entry.tokens.starts_with(tokens))
    }

    /// Saves a sequence of `bytes` bytes holding `tokens`, as the most recently used entry.
    /// `last_used` orders entries loaded from elsewhere (a disk tier's files by age); `None`
    /// means now.
    pub fn insert(
        &mut self,
        tokens: Vec<T>,
        bytes: u64,
        payload: P,
        last_used: Option<u64>,
    ) -> Insertion<T, P> {
        let last_used = match last_used {
            Some(at) => {
                self.clock = self.clock.max(at);
                at
            }
            None => {
                self.clock += 1;
                self.clock
            }
        };
        let entry = SavedEntry {
            id: self.next_id,
            tokens,
            bytes,
            last_used,
            payload,
        };
        self.next_id += 1;
        if self.covers(&entry.tokens) {
            return Insertion {
                stored: false,
                superseded: vec![entry],
                evicted: Vec::new(),
            };
        }
        if entry.bytes > self.budget_bytes {
            return Insertion {
                stored: false,
                superseded: Vec::new(),
                evicted: vec![entry],
            };
        }
        let (superseded, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.entries)
            .into_iter()
            .partition(|old| {
                !old.tokens.is_empty()
                    && old.tokens.len() < entry.tokens.len()
                    && entry.tokens.starts_with(&old.tokens)
            });
        self.entries = kept;
        self.used_bytes = self.entries.iter().map(|old| old.bytes).sum::<u64>() + entry.bytes;
        self.entries.push(entry);
        let evicted = self.evict_to(self.budget_bytes);
        Insertion {
            stored: true,
            superseded,
            evicted,
        }
    }

    /// Evicts the least recently used entries until at most `budget_bytes` are used, and keeps
    /// that budget from now on.
    pub fn set_budget(&mut self, budget_bytes: u64) -> Vec<SavedEntry<T, P>> {
        self.budget_bytes = budget_bytes;
        self.evict_to(budget_bytes)
    }

    fn evict_to(&mut self, budget_bytes: u64) -> Vec<SavedEntry<T, P>> {
        let mut evicted = Vec::new();
        while self.used_bytes > budget_bytes {
            let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|entry| entry.last_used)
                .map(|entry| entry.id)
            else {
                break;
            };
            if let Some(entry) = self.remove(oldest) {
                evicted.push(entry);
            }
        }
        evicted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(range: std::ops::Range<u32>) -> Vec<u32> {
        range.collect()
    }

    #[test]
    fn the_longest_shared_prefix_serves_a_prompt() {
        let mut tier = SavedSequences::new(1000);
        let a = tier.insert(tokens(0..50), 10, "a", None);
        let b = tier.insert([tokens(0..10), tokens(100..140)].concat(), 10, "b", None);
        assert!(a.stored && b.stored);
        let prompt = [tokens(0..50), tokens(500..510)].concat();
        let (id, shared) = tier.best_match(&prompt).unwrap();
        assert_eq!(shared, 50);
        assert_eq!(tier.touch(id).unwrap().payload, "a");
        assert_eq!(tier.best_match(&tokens(900..910)), None);
    }

    #[test]
    fn least_recently_used_entries_are_evicted_to_the_budget() {
        let mut tier = SavedSequences::new(25);
        tier.insert(tokens(0..40), 10, "a", None);
        tier.insert(tokens(100..140), 10, "b", None);
        let (a, _) = tier.best_match(&tokens(0..40)).unwrap();
        tier.touch(a);
        let insertion = tier.insert(tokens(200..240), 10, "c", None);
        assert!(insertion.stored);
        let evicted: Vec<_> = insertion.evicted.iter().map(|e| e.payload).collect();
        assert_eq!(evicted, ["b"]);
        assert_eq!(tier.used_bytes(), 20);
        let evicted: Vec<_> = tier.set_budget(10).iter().map(|e| e.payload).collect();
        assert_eq!(evicted, ["a"]);
        assert_eq!(tier.len(), 1);
    }

    #[test]
    fn a_longer_turn_of_the_same_conversation_supersedes_the_shorter() {
        let mut tier = SavedSequences::new(100);
        tier.insert(tokens(0..40), 10, "turn 1", None);
        let insertion = tier.insert(tokens(0..80), 20, "turn 2", None);
        assert!(insertion.stored);
        let superseded: Vec<_> = insertion.superseded.iter().map(|e| e.payload).collect();
        assert_eq!(superseded, ["turn 1"]);
        assert_eq!(tier.used_bytes(), 20);
        // Saving what an entry already holds stores nothing new.
        let again = tier.insert(tokens(0..60), 15, "part of turn 2", None);
        assert!(!again.stored);
        assert_eq!(tier.len(), 1);
    }

    #[test]
    fn an_entry_over_the_whole_budget_goes_straight_to_the_lower_tier() {
        let mut tier = SavedSequences::new(10);
        tier.insert(tokens(0..40), 5, "small", None);
        let insertion = tier.insert(tokens(100..200), 50, "big", None);
        assert!(!insertion.stored);
        assert_eq!(insertion.evicted.len(), 1);
        assert_eq!(tier.len(), 1, "what was there stays");
    }

    #[test]
    fn entries_loaded_with_their_age_are_evicted_oldest_first() {
        let mut tier = SavedSequences::new(20);
        tier.insert(tokens(0..40), 10, "newer", Some(200));
        tier.insert(tokens(100..140), 10, "older", Some(100));
        let insertion = tier.insert(tokens(300..340), 10, "now", None);
        let evicted: Vec<_> = insertion.evicted.iter().map(|e| e.payload).collect();
        assert_eq!(evicted, ["older"]);
    }

    #[test]
    fn only_a_mostly_lost_long_sequence_is_worth_saving() {
        assert!(worth_saving(200, 10), "another conversation's cache");
        assert!(!worth_saving(200, 190), "the same conversation's next turn");
        assert!(!worth_saving(20, 0), "a template's opening");
    }
}
