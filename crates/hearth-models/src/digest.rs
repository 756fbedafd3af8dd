//! SHA-256 digests: parsed from and shown as 64 lowercase hex digits, and computed over files
//! in a streaming way so that multi-gigabyte models never sit in memory.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{ModelsError, Result};

/// Read buffer for hashing files: large enough that the per-call overhead vanishes next to
/// the hashing itself, small enough to live on any thread's stack-adjacent heap cheaply.
pub(crate) const HASH_BUFFER_BYTES: usize = 1024 * 1024;

/// A SHA-256 digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Sha256Digest([u8; 32]);

impl Sha256Digest {
    /// Parses 64 hex digits (either case).
    pub fn from_hex(hex: &str) -> Result<Self> {
        let invalid = || ModelsError::InvalidDigest {
            value: hex.to_string(),
        };
        let bytes = hex.as_bytes();
        if bytes.len() != 64 {
            return Err(invalid());
        }
        let mut digest = [0u8; 32];
        for (index, pair) in bytes.chunks_exact(2).enumerate() {
            let high = hex_value(pair[0]).ok_or_else(invalid)?;
            let low = hex_value(pair[1]).ok_or_else(invalid)?;
            digest[index] = (high << 4) | low;
        }
        Ok(Sha256Digest(digest))
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Sha256Digest(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The digest as 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut hex = String::with_capacity(64);
        for byte in self.0 {
            hex.push(HEX_DIGITS[usize::from(byte >> 4)] as char);
            hex.push(HEX_DIGITS[usize::from(byte & 0x0f)] as char);
        }
        hex
    }
}

/// A running SHA-256. `ring`'s implementation is used (it is already linked for TLS) because
/// its assembly, with SHA extensions where the CPU has them, is fast in every build profile:
/// a pure-Rust hasher runs at a few tens of MB/s unoptimized, which made debug-build tests
/// over real models crawl.
#[derive(Clone)]
pub(crate) struct Sha256Hasher(ring::digest::Context);

impl Sha256Hasher {
    pub fn new() -> Self {
        Sha256Hasher(ring::digest::Context::new(&ring::digest::SHA256))
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    pub fn finish(self) -> Sha256Digest {
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(self.0.finish().as_ref());
        Sha256Digest(bytes)
    }
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// Whether `text` is exactly 64 hex digits, the form the catalog and hub headers use.
pub fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|byte| byte.is_ascii_hexdigit())
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "Sha256Digest({})", self.to_hex())
    }
}

impl TryFrom<String> for Sha256Digest {
    type Error = ModelsError;
    fn try_from(hex: String) -> Result<Self> {
        Sha256Digest::from_hex(&hex)
    }
}

impl From<Sha256Digest> for String {
    fn from(digest: Sha256Digest) -> String {
        digest.to_hex()
    }
}

impl std::str::FromStr for Sha256Digest {
    type Err = ModelsError;
    fn from_str(hex: &str) -> Result<Self> {
        Sha256Digest::from_hex(hex)
    }
}

/// Hashes a whole file, streaming. `on_bytes` is told how many bytes were hashed so far, so
/// callers can report progress on files of many gigabytes.
pub fn sha256_of_file(path: &Path, mut on_bytes: impl FnMut(u64)) -> Result<Sha256Digest> {
    let mut file = File::open(path).map_err(|error| ModelsError::io("cannot open", path, error))?;
    let mut hasher = Sha256Hasher::new();
    let mut buffer = vec![0u8; HASH_BUFFER_BYTES];
    let mut hashed_bytes = 0u64;
    loop {
        let read = match file.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(ModelsError::io("cannot read", path, error)),
        };
        hasher.update(&buffer[..read]);
        hashed_bytes += read as u64;
        on_bytes(hashed_bytes);
    }
    Ok(hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_case() {
        let hex = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
        let digest = Sha256Digest::from_hex(hex).unwrap();
        assert_eq!(digest.to_hex(), hex);
        assert_eq!(Sha256Digest::from_hex(&hex.to_uppercase()).unwrap(), digest);
        assert!(is_sha256_hex(hex));
    }

    #[test]
    fn rejects_bad_hex() {
        for bad in ["", "abc", &"g".repeat(64), &"a".repeat(63), &"a".repeat(65)] {
            assert!(Sha256Digest::from_hex(bad).is_err(), "{bad:?}");
        }
        // A multi-byte character must not be split into "hex digits".
        let tricky = format!("{}é", "a".repeat(62));
        assert_eq!(tricky.len(), 64);
        assert!(Sha256Digest::from_hex(&tricky).is_err());
    }

    #[test]
    fn hashes_a_file() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("abc");
        std::fs::write(&path, b"abc").unwrap();
        let digest = sha256_of_file(&path, |_| {}).unwrap();
        assert_eq!(
            digest.to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
