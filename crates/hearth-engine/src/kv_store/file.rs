//! The disk tier's file format: one saved sequence per file, a fixed header (magic, format
//! version, the cache key, the lengths and a SHA-256 checksum) followed by the tokens and the
//! llama.cpp state. A file is only ever used whole and verified: one that is truncated,
//! corrupt, or made for another key (model, context parameters, llama.cpp version) is
//! refused. Files are written to a temporary name with mode 0600, then renamed, so a crash
//! leaves either the old state or a complete file, never half of one under a real name.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;

/// The first bytes of every file.
pub const MAGIC: [u8; 8] = *b"HEARTHKV";
/// Bumped whenever the layout below changes.
pub const FORMAT_VERSION: u32 = 1;
/// Bytes of the header: magic, version, key, token count, state length, checksum.
pub const HEADER_LEN: usize = 8 + 4 + 32 + 4 + 8 + 32;
/// Saved files end in this; temporary ones start with a dot.
pub use hearth_protocol::KV_CACHE_FILE_EXTENSION as FILE_EXTENSION;

/// A SHA-256 digest.
pub type Digest = [u8; 32];

pub fn sha256(parts: &[&[u8]]) -> Digest {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    for part in parts {
        context.update(part);
    }
    let mut digest = [0u8; 32];
    digest.copy_from_slice(context.finish().as_ref());
    digest
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Why a file was refused.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read it: {0}")]
    Io(#[from] io::Error),
    #[error("it is not a Hearth KV cache file")]
    BadMagic,
    #[error("its format version is {0}, this build reads {FORMAT_VERSION}")]
    OtherVersion(u32),
    #[error("it was made for another model, context or llama.cpp version")]
    OtherKey,
    #[error("its length does not match its header (truncated?)")]
    WrongLength,
    #[error("its checksum does not match its contents (corrupt)")]
    BadChecksum,
}

/// A file's header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub key: Digest,
    pub n_tokens: u32,
    pub state_len: u64,
    pub checksum: Digest,
}

impl Header {
    /// The whole file's expected length.
    pub fn file_len(&self) -> u64 {
        HEADER_LEN as u64 + u64::from(self.n_tokens) * 4 + self.state_len
    }

    fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0..8].copy_from_slice(&MAGIC);
        out[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        out[12..44].copy_from_slice(&self.key);
        out[44..48].copy_from_slice(&self.n_tokens.to_le_bytes());
        out[48..56].copy_from_slice(&self.state_len.to_le_bytes());
        out[56..88].copy_from_slice(&self.checksum);
        out
    }

    /// Parses and checks a header against the expected key.
    fn decode(bytes: &[u8; HEADER_LEN], key: &Digest) -> Result<Self, FileError> {
        if bytes[0..8] != MAGIC {
            return Err(FileError::BadMagic);
        }
        let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        if version != FORMAT_VERSION {
            return Err(FileError::OtherVersion(version));
        }
        let header = Header {
            key: bytes[12..44].try_into().expect("32 bytes"),
            n_tokens: u32::from_le_bytes(bytes[44..48].try_into().expect("4 bytes")),
            state_len: u64::from_le_bytes(bytes[48..56].try_into().expect("8 bytes")),
            checksum: bytes[56..88].try_into().expect("32 bytes"),
        };
        if &header.key != key {
            return Err(FileError::OtherKey);
        }
        Ok(header)
    }
}

fn token_bytes(tokens: &[i32]) -> Vec<u8> {
    tokens
        .iter()
        .flat_map(|token| token.to_le_bytes())
        .collect()
}

/// The file's name for a sequence of `tokens` under `key`: the key's and the tokens' hashes,
/// so each sequence has one file and files of different keys never collide.
pub fn file_name(key: &Digest, tokens: &[i32]) -> String {
    let tokens_hash = sha256(&[&token_bytes(tokens)]);
    format!(
        "{}-{}.{FILE_EXTENSION}",
        key_prefix(key),
        &hex(&tokens_hash)[..32]
    )
}

/// The start of the names of every file made under `key`.
pub fn key_prefix(key: &Digest) -> String {
    hex(&key[..8])
}

/// Writes a saved sequence to `path` (mode 0600, through a temporary file and a rename).
/// Returns the file's length.
pub fn write(path: &Path, key: &Digest, tokens: &[i32], state: &[u8]) -> io::Result<u64> {
    let tokens_bytes = token_bytes(tokens);
    let header = Header {
        key: *key,
        n_tokens: u32::try_from(tokens.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "too many tokens"))?,
        state_len: state.len() as u64,
        checksum: sha256(&[&tokens_bytes, state]),
    };
    let name = path
        .file_name()
        .and_then(|name| name.to_str())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let temporary = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let written = (|| {
        let mut options = OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&temporary)?;
        file.write_all(&header.encode())?;
        file.write_all(&tokens_bytes)?;
        file.write_all(state)?;
        // No fsync: a file the system lost part of in a crash fails its length or checksum
        // and is removed, so the cache never needs the disk's guarantee, and a restart does
        // not wait for the disk.
        fs::rename(&temporary, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    written.map(|()| header.file_len())
}

/// Reads a file's header and tokens (not its state), checking what can be checked without
/// reading the state: magic, version, key and length.
pub fn read_tokens(path: &Path, key: &Digest) -> Result<(Header, Vec<i32>), FileError> {
    let mut file = File::open(path)?;
    let length = file.metadata()?.len();
    let (header, tokens) = read_head(&mut file, key)?;
    if header.file_len() != length {
        return Err(FileError::WrongLength);
    }
    Ok((header, tokens))
}

fn read_head(file: &mut File, key: &Digest) -> Result<(Header, Vec<i32>), FileError> {
    let mut header_bytes = [0u8; HEADER_LEN];
    read_exact(file, &mut header_bytes)?;
    let header = Header::decode(&header_bytes, key)?;
    let mut tokens_bytes = vec![0u8; header.n_tokens as usize * 4];
    read_exact(file, &mut tokens_bytes)?;
    let tokens = tokens_bytes
        .chunks_exact(4)
        .map(|chunk| i32::from_le_bytes(chunk.try_into().expect("4 bytes")))
        .collect();
    Ok((header, tokens))
}

fn read_exact(file: &mut File, buffer: &mut [u8]) -> Result<(), FileError> {
    file.read_exact(buffer).map_err(|error| match error.kind() {
        io::ErrorKind::UnexpectedEof => FileError::WrongLength,
        _ => FileError::Io(error),
    })
}

/// Reads a whole file and verifies it: its tokens and state, or why it cannot be used.
pub fn read(path: &Path, key: &Digest) -> Result<(Vec<i32>, Vec<u8>), FileError> {
    let mut file = File::open(path)?;
    let length = file.metadata()?.len();
    let (header, tokens) = read_head(&mut file, key)?;
    if header.file_len() != length {
        return Err(FileError::WrongLength);
    }
    let state_len = usize::try_from(header.state_len).map_err(|_| FileError::WrongLength)?;
    let mut state = vec![0u8; state_len];
    read_exact(&mut file, &mut state)?;
    if sha256(&[&token_bytes(&tokens), &state]) != header.checksum {
        return Err(FileError::BadChecksum);
    }
    Ok((tokens, state))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: Digest = [7u8; 32];

    fn saved(dir: &Path) -> std::path::PathBuf {
        let tokens = [1, 2, 3, -4];
        let path = dir.join(file_name(&KEY, &tokens));
        write(&path, &KEY, &tokens, b"state bytes").unwrap();
        path
    }

    #[test]
    fn a_written_file_reads_back_whole_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = saved(dir.path());
        let (tokens, state) = read(&path, &KEY).unwrap();
        assert_eq!(tokens, [1, 2, 3, -4]);
        assert_eq!(state, b"state bytes");
        assert_eq!(read_tokens(&path, &KEY).unwrap().1, tokens);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file is left behind");
    }

    #[test]
    fn a_truncated_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = saved(dir.path());
        let bytes = fs::read(&path).unwrap();
        for cut in [4, HEADER_LEN - 1, HEADER_LEN + 3, bytes.len() - 1] {
            fs::write(&path, &bytes[..cut]).unwrap();
            assert!(
                matches!(
                    read(&path, &KEY),
                    Err(FileError::WrongLength | FileError::BadMagic)
                ),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn a_corrupt_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = saved(dir.path());
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&path, &bytes).unwrap();
        assert!(matches!(read(&path, &KEY), Err(FileError::BadChecksum)));
        bytes[0] = b'X';
        fs::write(&path, &bytes).unwrap();
        assert!(matches!(read(&path, &KEY), Err(FileError::BadMagic)));
    }

    #[test]
    fn a_file_for_another_key_or_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = saved(dir.path());
        assert!(matches!(read(&path, &[8u8; 32]), Err(FileError::OtherKey)));
        let mut bytes = fs::read(&path).unwrap();
        bytes[8] = 99;
        fs::write(&path, &bytes).unwrap();
        assert!(matches!(
            read(&path, &KEY),
            Err(FileError::OtherVersion(99))
        ));
    }
}
