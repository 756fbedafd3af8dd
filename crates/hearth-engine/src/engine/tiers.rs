//! The engine's side of the KV cache tiers ([`crate::kv_store`]): copying a slot's sequence
//! out of llama.cpp before it is overwritten (into host memory, and through a writer thread
//! into the disk tier), restoring a saved sequence into a slot when a prompt continues it,
//! and saving the slots' sequences when the session ends so the next one (after a restart or
//! a reload) finds them on disk.
//!
//! Safety of the raw state calls: the bytes handed to llama.cpp's `state_seq_set` are only
//! ever bytes its `state_seq_get` produced, in this process or, through a file, in an earlier
//! one whose cache key (model, context parameters, llama.cpp version) is the same and whose
//! checksum matches.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use hearth_protocol::{CacheTier, LoadParams};
use llama_cpp_2::context::session::LlamaStateSeqFlags;
use llama_cpp_2::token::LlamaToken;

use super::Session;
use crate::kv_store::disk::{DiskTier, FileWriter};
use crate::kv_store::policy::{worth_saving, SavedSequences, MIN_SAVED_TOKENS};
use crate::kv_store::{cache_key, model_fingerprint};
use crate::policy::{common_prefix_len, worth_copying};

/// Sequences sent to the writer thread recently, remembered so one is not sent twice while
/// its file is being written.
const RECENT_WRITES: usize = 64;

/// The tiers of one session.
pub(super) struct Tiers {
    host: SavedSequences<LlamaToken, Vec<u8>>,
    disk: Option<Arc<Mutex<DiskTier>>>,
    writer: Option<DiskWriterThread>,
    recent_writes: VecDeque<Vec<LlamaToken>>,
}

/// Work for the writer thread.
enum WriterJob {
    Write(Vec<i32>, Vec<u8>),
    /// Answered once every write sent before it is done.
    Flush(Sender<()>),
}

/// A thread that writes the disk tier's files, so the engine waits for a disk only when it
/// needs a file still being written.
struct DiskWriterThread {
    jobs: Option<Sender<WriterJob>>,
    thread: Option<JoinHandle<()>>,
}

impl DiskWriterThread {
    fn spawn(disk: Arc<Mutex<DiskTier>>, writer: FileWriter) -> Option<Self> {
        let (jobs, receiver) = mpsc::channel::<WriterJob>();
        let thread = std::thread::Builder::new()
            .name("hearth-kv-writer".into())
            .spawn(move || {
                for job in receiver {
                    let (tokens, state) = match job {
                        WriterJob::Write(tokens, state) => (tokens, state),
                        WriterJob::Flush(done) => {
                            let _ = done.send(());
                            continue;
                        }
                    };
                    match writer.write(&tokens, &state) {
                        Ok(Some((name, bytes))) => lock(&disk).register(tokens, name, bytes),
                        Ok(None) => {}
                        Err(error) => tracing::warn!(%error, "cannot save a KV cache file"),
                    }
                }
            })
            .ok()?;
        Some(Self {
            jobs: Some(jobs),
            thread: Some(thread),
        })
    }

    fn send(&self, tokens: Vec<i32>, state: Vec<u8>) {
        if let Some(jobs) = &self.jobs {
            let _ = jobs.send(WriterJob::Write(tokens, state));
        }
    }

    /// Waits for the writes sent so far, keeping the thread.
    fn flush(&self) {
        let (done, finished) = mpsc::channel();
        if let Some(jobs) = &self.jobs {
            if jobs.send(WriterJob::Flush(done)).is_ok() {
                let _ = finished.recv();
            }
        }
    }

    /// Waits for every file sent so far to be written.
    fn finish(&mut self) {
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for DiskWriterThread {
    fn drop(&mut self) {
        self.finish();
    }
}

fn lock(disk: &Mutex<DiskTier>) -> MutexGuard<'_, DiskTier> {
    disk.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn raw_tokens(tokens: &[LlamaToken]) -> Vec<i32> {
    tokens.iter().map(|token| token.0).collect()
}

impl Tiers {
    /// No tiers (until [`Tiers::new`] opens the load's).
    pub(super) fn none() -> Self {
        Self {
            host: SavedSequences::new(0),
            disk: None,
            writer: None,
            recent_writes: VecDeque::new(),
        }
    }

    /// The tiers a load asks for. A disk tier that cannot be opened is left out (logged): the
    /// cache is an optimisation, never a reason to refuse a model.
    pub(super) fn new(model_path: &Path, params: &LoadParams, reuse: bool) -> Self {
        let disk = params
            .kv_disk_dir
            .as_deref()
            .filter(|_| reuse && params.kv_disk_budget_bytes > 0)
            .and_then(|dir| {
                let opened = model_fingerprint(model_path).and_then(|fingerprint| {
                    DiskTier::open(
                        dir,
                        cache_key(&fingerprint, params),
                        params.kv_disk_budget_bytes,
                    )
                });
                match opened {
                    Ok(tier) => Some(tier),
                    Err(error) => {
                        tracing::warn!(%error, "the KV cache's disk tier is off");
                        None
                    }
                }
            });
        let disk = disk.map(|tier| Arc::new(Mutex::new(tier)));
        let writer = disk
            .as_ref()
            .and_then(|disk| DiskWriterThread::spawn(disk.clone(), lock(disk).file_writer()));
        let host_budget = if reuse {
            // Resolved by the planner before the load (`kv_host_budget`).
            params.kv_host_budget_bytes.unwrap_or(0)
        } else {
            0
        };
        Self {
            host: SavedSequences::new(host_budget),
            disk,
            writer,
            recent_writes: VecDeque::new(),
        }
    }

    fn on_disk_or_going(&self, tokens: &[LlamaToken]) -> bool {
        let raw = raw_tokens(tokens);
        self.recent_writes
            .iter()
            .any(|sent| sent.len() >= tokens.len() && sent.starts_with(tokens))
            || self
                .disk
                .as_ref()
                .is_some_and(|disk| lock(disk).covers(&raw))
    }

    /// Sends a sequence to the disk tier, unless a file already holds it.
    fn send_to_disk(&mut self, tokens: &[LlamaToken], state: Vec<u8>) {
        let Some(writer) = &self.writer else { return };
        if self.on_disk_or_going(tokens) {
            return;
        }
        writer.send(raw_tokens(tokens), state);
        if self.recent_writes.len() == RECENT_WRITES {
            self.recent_writes.pop_front();
        }
        self.recent_writes.push_back(tokens.to_vec());
    }

    /// Keeps a sequence's state in host memory, and writes it to disk behind (so a crash or a
    /// restart loses nothing, and leaving host memory costs no write); what the host budget
    /// pushes out (or a state larger than all of it) is then only on disk.
    fn keep(&mut self, tokens: Vec<LlamaToken>, state: Vec<u8>) {
        if self.writer.is_some() {
            self.send_to_disk(&tokens, state.clone());
        }
        let bytes = state.len() as u64;
        let insertion = self.host.insert(tokens, bytes, state, None);
        for entry in insertion.evicted {
            self.send_to_disk(&entry.tokens, entry.payload);
        }
    }
}

impl Session<'_> {
    /// The sequence `seq_id` holds, serialized by llama.cpp; `None` if it would not say.
    /// Raw bytes, not llama-cpp-2's opaque `SeqState`: the disk tier must write them.
    #[allow(unsafe_code)]
    fn read_sequence_state(&self, seq_id: i32) -> Option<Vec<u8>> {
        let flags = LlamaStateSeqFlags::empty();
        let size = self.context.state_seq_get_size_ext(seq_id, flags);
        if size == 0 {
            return None;
        }
        let mut state = vec![0u8; size];
        // SAFETY: `state` has the `size` bytes llama.cpp said the sequence needs.
        let written = unsafe {
            self.context
                .state_seq_get_data_ext(state.as_mut_ptr(), seq_id, flags)
        };
        (written == size).then_some(state)
    }

    /// Puts a saved state into `seq_id` (replacing what it held). False if llama.cpp refused
    /// it; the sequence is then empty.
    #[allow(unsafe_code)]
    fn write_sequence_state(&mut self, seq_id: i32, state: &[u8]) -> bool {
        // SAFETY: see the module's note: `state` came from `state_seq_get` of this llama.cpp,
        // model and context shape (a file's checksum and key were verified).
        let restored = unsafe {
            self.context
                .state_seq_set_data_ext(state, seq_id, LlamaStateSeqFlags::empty())
        };
        if !restored {
            let _ = self.context.kv_cache_seq_rm(seq_id, None, None);
        }
        restored
    }

    /// Before slot `index` is given a prompt that keeps `kept` of its tokens: saves its
    /// sequence to the host tier if most of it would be lost (another conversation's).
    pub(super) fn save_before_overwrite(&mut self, index: usize, kept: usize) {
        let cached = self.slots[index].cached_tokens.len();
        if !worth_saving(cached, kept) || self.tiers.host.covers(&self.slots[index].cached_tokens) {
            return;
        }
        let Some(state) = self.read_sequence_state(self.slots[index].seq_id) else {
            return;
        };
        let tokens = self.slots[index].cached_tokens.clone();
        self.tiers.keep(tokens, state);
    }

    /// Restores into slot `index` the saved sequence sharing the most of `prompt`, if it
    /// shares enough more than the `in_slots` tokens the slots offer. Returns the tokens
    /// reused and the tier that served them.
    pub(super) fn restore_saved(
        &mut self,
        index: usize,
        prompt: &[LlamaToken],
        in_slots: usize,
    ) -> Option<(usize, CacheTier)> {
        let limit = prompt.len().saturating_sub(1);
        let from_host = self
            .tiers
            .host
            .best_match(prompt)
            .map(|(id, shared)| (id, shared.min(limit)));
        let raw_prompt = raw_tokens(prompt);
        let host_shared = from_host.map_or(0, |(_, shared)| shared);
        // A state on its way to disk that would serve this prompt is waited for rather than
        // computed again.
        let best_sent = self
            .tiers
            .recent_writes
            .iter()
            .map(|sent| common_prefix_len(sent, prompt).min(limit))
            .max()
            .unwrap_or(0);
        if worth_copying(best_sent, in_slots.max(host_shared)) {
            if let Some(writer) = &self.tiers.writer {
                writer.flush();
            }
        }
        let from_disk = self
            .tiers
            .disk
            .as_ref()
            .and_then(|disk| lock(disk).best_match(&raw_prompt))
            .map(|(id, shared)| (id, shared.min(limit)));
        let disk_shared = from_disk.map_or(0, |(_, shared)| shared);
        let seq_id = self.slots[index].seq_id;
        if worth_copying(host_shared, in_slots) && host_shared >= disk_shared {
            let (id, shared) = from_host?;
            // Taken out while llama.cpp reads it (no copy), and put back as the most recent.
            let entry = self.tiers.host.remove(id)?;
            if !self.restore_into(index, seq_id, &entry.payload, &prompt[..shared]) {
                return None;
            }
            self.tiers
                .host
                .insert(entry.tokens, entry.bytes, entry.payload, None);
            return Some((shared, CacheTier::Ram));
        }
        if worth_copying(disk_shared, in_slots) && disk_shared >= MIN_SAVED_TOKENS {
            let (id, shared) = from_disk?;
            let disk = self.tiers.disk.clone()?;
            let loaded = lock(&disk).load(id);
            let (tokens, state) = match loaded {
                Ok(loaded) => loaded,
                Err(error) => {
                    tracing::info!(%error, "a KV cache file was not used; computing the prompt");
                    return None;
                }
            };
            if raw_tokens(&prompt[..shared]) != tokens[..shared.min(tokens.len())] {
                return None;
            }
            if self.restore_into(index, seq_id, &state, &prompt[..shared]) {
                return Some((shared, CacheTier::Disk));
            }
        }
        None
    }

    /// Restores `state` into the slot and cuts it after `keep` (the prompt's shared prefix).
    fn restore_into(
        &mut self,
        index: usize,
        seq_id: i32,
        state: &[u8],
        keep: &[LlamaToken],
    ) -> bool {
        let shared = u32::try_from(keep.len()).unwrap_or(0);
        let restored = self.write_sequence_state(seq_id, state)
            && self
                .context
                .kv_cache_seq_rm(seq_id, Some(shared), None)
                .is_ok();
        if restored {
            self.slots[index].cached_tokens = keep.to_vec();
        } else {
            let _ = self.context.kv_cache_seq_rm(seq_id, None, None);
            self.slots[index].cached_tokens.clear();
        }
        restored
    }

    /// At the end of the session (a restart, a new load): every slot's sequence and every
    /// state kept in host memory is saved to disk, and the writes are waited for, so the next
    /// session finds them.
    pub(super) fn persist_for_next_session(&mut self) {
        if self.tiers.writer.is_none() {
            return;
        }
        for index in 0..self.slots.len() {
            if self.slots[index].cached_tokens.len() < MIN_SAVED_TOKENS
                || self
                    .tiers
                    .on_disk_or_going(&self.slots[index].cached_tokens)
            {
                continue;
            }
            if let Some(state) = self.read_sequence_state(self.slots[index].seq_id) {
                let tokens = self.slots[index].cached_tokens.clone();
                self.tiers.send_to_disk(&tokens, state);
            }
        }
        for entry in self.tiers.host.clear() {
            self.tiers.send_to_disk(&entry.tokens, entry.payload);
        }
        if let Some(writer) = &mut self.tiers.writer {
            writer.finish();
        }
    }
}
