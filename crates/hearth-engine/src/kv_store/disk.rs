//! The disk tier: saved sequences as files in one folder under the data folder, within a byte
//! budget (least recently used files removed first, a file's age being its modification
//! time, so the order survives restarts). Opening the tier lists the folder: files made under
//! this cache key join the index by their header and tokens, files of other keys (another
//! model or context) only count against the budget, and anything unreadable, truncated or
//! left half-written is removed. A file is verified whole before it is used; one that fails
//! is removed and the prompt computed fresh.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::file::{self, Digest, FileError, FILE_EXTENSION};
use super::policy::{Insertion, SavedEntry, SavedSequences};

/// What the disk tier holds, for the settings view.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskUsage {
    pub files: u64,
    pub bytes: u64,
}

/// Writes files of one tier without holding it: a write takes tens of milliseconds, which the
/// engine thread should not wait for.
#[derive(Debug, Clone)]
pub struct FileWriter {
    dir: PathBuf,
    key: Digest,
    budget_bytes: u64,
}

impl FileWriter {
    /// Writes a sequence's file; returns its name and length, or `None` for a sequence not
    /// worth a file (empty, or larger than the whole budget).
    pub fn write(&self, tokens: &[i32], state: &[u8]) -> io::Result<Option<(String, u64)>> {
        let expected = (file::HEADER_LEN + tokens.len() * 4 + state.len()) as u64;
        if tokens.is_empty() || expected > self.budget_bytes {
            return Ok(None);
        }
        let name = file::file_name(&self.key, tokens);
        let bytes = file::write(&self.dir.join(&name), &self.key, tokens, state)?;
        Ok(Some((name, bytes)))
    }
}

/// The disk tier of one loaded model.
#[derive(Debug)]
pub struct DiskTier {
    dir: PathBuf,
    key: Digest,
    key_prefix: String,
    /// Payload: the file's name. Files of other keys have no tokens: they never match.
    index: SavedSequences<i32, String>,
}

fn modified_secs(metadata: &fs::Metadata) -> u64 {
    metadata
        .modified()
        .ok()
        .and_then(|at| at.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |age| age.as_secs())
}

/// Creates the folder, private to its owner.
fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

impl DiskTier {
    /// Opens (creating) the tier's folder for `key` and lists what it holds.
    pub fn open(dir: &Path, key: Digest, budget_bytes: u64) -> io::Result<Self> {
        create_private_dir(dir)?;
        let mut tier = Self {
            dir: dir.to_path_buf(),
            key,
            key_prefix: file::key_prefix(&key),
            index: SavedSequences::new(u64::MAX),
        };
        for dir_entry in fs::read_dir(dir)? {
            let Ok(dir_entry) = dir_entry else { continue };
            let Ok(name) = dir_entry.file_name().into_string() else {
                continue;
            };
            let path = dir_entry.path();
            let Ok(metadata) = dir_entry.metadata() else {
                continue;
            };
            if !metadata.is_file() {
                continue;
            }
            if name.starts_with('.') {
                // A write of this key cut short (a crash between write and rename): never
                // renamed into place, so never used; only this key's writers name files so.
                if name.starts_with(&format!(".{}", tier.key_prefix)) {
                    let _ = fs::remove_file(&path);
                }
                continue;
            }
            if !name.ends_with(&format!(".{FILE_EXTENSION}")) {
                continue;
            }
            let age = Some(modified_secs(&metadata));
            if !name.starts_with(&tier.key_prefix) {
                tier.index.insert(Vec::new(), metadata.len(), name, age);
                continue;
            }
            match file::read_tokens(&path, &key) {
                Ok((_, tokens)) if file::file_name(&key, &tokens) == name => {
                    tier.index.insert(tokens, metadata.len(), name, age);
                }
                Ok(_) | Err(_) => {
                    tracing::info!("removing an unusable KV cache file {name}");
                    let _ = fs::remove_file(&path);
                }
            }
        }
        let evicted = tier.index.set_budget(budget_bytes);
        tier.remove_files(evicted);
        Ok(tier)
    }

    pub fn usage(&self) -> DiskUsage {
        DiskUsage {
            files: self.index.len() as u64,
            bytes: self.index.used_bytes(),
        }
    }

    pub fn budget_bytes(&self) -> u64 {
        self.index.budget_bytes()
    }

    /// Changes the budget, removing the oldest files beyond it.
    pub fn set_budget(&mut self, budget_bytes: u64) {
        let evicted = self.index.set_budget(budget_bytes);
        self.remove_files(evicted);
    }

    fn remove_files(&self, entries: Vec<SavedEntry<i32, String>>) {
        for entry in entries {
            let _ = fs::remove_file(self.dir.join(&entry.payload));
        }
    }

    /// Whether a file already holds these tokens (and possibly more).
    pub fn covers(&self, tokens: &[i32]) -> bool {
        self.index.covers(tokens)
    }

    /// What writes this tier's files, for a thread of its own.
    pub fn file_writer(&self) -> FileWriter {
        FileWriter {
            dir: self.dir.clone(),
            key: self.key,
            budget_bytes: self.index.budget_bytes(),
        }
    }

    /// Saves a sequence; files it supersedes, and the oldest beyond the budget, are removed.
    pub fn save(&mut self, tokens: &[i32], state: &[u8]) -> io::Result<()> {
        if self.index.covers(tokens) {
            return Ok(());
        }
        if let Some((name, bytes)) = self.file_writer().write(tokens, state)? {
            self.register(tokens.to_vec(), name, bytes);
        }
        Ok(())
    }

    /// Adds a file [`FileWriter::write`] made to the index.
    pub fn register(&mut self, tokens: Vec<i32>, name: String, bytes: u64) {
        let Insertion {
            superseded,
            evicted,
            ..
        } = self.index.insert(tokens, bytes, name.clone(), None);
        // A file rewritten under the same name (the same tokens) is not removed as its own
        // predecessor.
        let not_this = |entries: Vec<SavedEntry<i32, String>>| {
            entries
                .into_iter()
                .filter(|entry| entry.payload != name)
                .collect::<Vec<_>>()
        };
        self.remove_files(not_this(superseded));
        self.remove_files(not_this(evicted));
    }

    /// The saved sequence sharing the longest prefix with `prompt`, and that prefix's length.
    pub fn best_match(&self, prompt: &[i32]) -> Option<(u64, usize)> {
        self.index.best_match(prompt)
    }

    /// Reads and verifies the file of entry `id`. A file that fails is removed with its entry.
    pub fn load(&mut self, id: u64) -> Result<(Vec<i32>, Vec<u8>), FileError> {
        let name = self
            .index
            .touch(id)
            .map(|entry| entry.payload.clone())
            .ok_or(FileError::WrongLength)?;
        let path = self.dir.join(&name);
        match file::read(&path, &self.key) {
            Ok(loaded) => {
                // Its age is what orders eviction after a restart.
                if let Ok(handle) = fs::File::options().write(true).open(&path) {
                    let _ = handle.set_modified(SystemTime::now());
                }
                Ok(loaded)
            }
            Err(error) => {
                tracing::info!("removing an unusable KV cache file {name}: {error}");
                let _ = fs::remove_file(&path);
                self.index.remove(id);
                Err(error)
            }
        }
    }

    /// Removes every file of the folder (every model's), and returns what was freed.
    pub fn clear(&mut self) -> DiskUsage {
        let freed = self.usage();
        let entries = self.index.clear();
        self.remove_files(entries);
        freed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: Digest = [1u8; 32];
    const OTHER_KEY: Digest = [2u8; 32];

    fn tokens(range: std::ops::Range<i32>) -> Vec<i32> {
        range.collect()
    }

    #[test]
    fn saved_sequences_survive_reopening_and_serve_a_matching_prompt() {
        let dir = tempfile::tempdir().unwrap();
        let mut tier = DiskTier::open(dir.path(), KEY, 1 << 20).unwrap();
        tier.save(&tokens(0..100), b"state of a").unwrap();
        drop(tier);
        let mut tier = DiskTier::open(dir.path(), KEY, 1 << 20).unwrap();
        let prompt = [tokens(0..100), tokens(1000..1010)].concat();
        let (id, shared) = tier.best_match(&prompt).unwrap();
        assert_eq!(shared, 100);
        let (saved, state) = tier.load(id).unwrap();
        assert_eq!(saved, tokens(0..100));
        assert_eq!(state, b"state of a");
    }

    #[test]
    fn another_keys_files_never_match_but_count_against_the_budget() {
        let dir = tempfile::tempdir().unwrap();
        let mut other = DiskTier::open(dir.path(), OTHER_KEY, 1 << 20).unwrap();
        other.save(&tokens(0..100), &[0u8; 1000]).unwrap();
        let tier = DiskTier::open(dir.path(), KEY, 1 << 20).unwrap();
        assert_eq!(tier.best_match(&tokens(0..100)), None);
        assert_eq!(tier.usage().files, 1);
    }

    #[test]
    fn the_oldest_files_are_removed_beyond_the_budget() {
        let dir = tempfile::tempdir().unwrap();
        let state = vec![0u8; 1000];
        let one_file = (file::HEADER_LEN + 100 * 4 + state.len()) as u64;
        let mut tier = DiskTier::open(dir.path(), KEY, 2 * one_file).unwrap();
        tier.save(&tokens(0..100), &state).unwrap();
        tier.save(&tokens(100..200), &state).unwrap();
        tier.save(&tokens(200..300), &state).unwrap();
        assert_eq!(tier.usage().files, 2);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
        assert_eq!(tier.best_match(&tokens(0..100)), None, "the oldest went");
        assert!(tier.best_match(&tokens(200..300)).is_some());
        tier.set_budget(one_file);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        let freed = tier.clear();
        assert_eq!(freed.files, 1);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn corrupt_truncated_and_foreign_files_are_removed_not_used() {
        let dir = tempfile::tempdir().unwrap();
        let mut tier = DiskTier::open(dir.path(), KEY, 1 << 20).unwrap();
        tier.save(&tokens(0..100), &[5u8; 500]).unwrap();
        tier.save(&tokens(100..200), &[6u8; 500]).unwrap();
        tier.save(&tokens(200..300), &[7u8; 500]).unwrap();
        drop(tier);
        let path_of =
            |range: std::ops::Range<i32>| dir.path().join(file::file_name(&KEY, &tokens(range)));
        // Truncated: found when the folder is listed.
        let truncated = fs::read(path_of(0..100)).unwrap();
        fs::write(path_of(0..100), &truncated[..truncated.len() - 10]).unwrap();
        // Corrupt state: found only when it is read whole.
        let mut corrupt = fs::read(path_of(100..200)).unwrap();
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0xff;
        fs::write(path_of(100..200), &corrupt).unwrap();
        // Made under another key but named as this key's.
        let foreign = dir.path().join("foreign.kv");
        file::write(&foreign, &OTHER_KEY, &tokens(200..300), &[7u8; 500]).unwrap();
        fs::rename(&foreign, path_of(200..300)).unwrap();

        let mut tier = DiskTier::open(dir.path(), KEY, 1 << 20).unwrap();
        assert!(!path_of(0..100).exists());
        assert!(!path_of(200..300).exists());
        assert_eq!(tier.best_match(&tokens(0..100)), None);
        let (id, _) = tier.best_match(&tokens(100..200)).unwrap();
        assert!(matches!(tier.load(id), Err(FileError::BadChecksum)));
        assert!(!path_of(100..200).exists());
        assert_eq!(tier.best_match(&tokens(100..200)), None);
        assert_eq!(tier.usage(), DiskUsage::default());
    }
}
