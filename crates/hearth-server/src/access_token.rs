//! `hearth serve`'s access token, as Jupyter's: a random token kept in
//! `<data dir>/api-token` (0600), printed in the URL that opens the web UI, and accepted as
//! `Authorization: Bearer` beside the user's own keys. A restart reuses it, so open tabs keep
//! working; deleting the file makes the next start pick a new one.
//!
//! The file is created exclusively (`create_new`, never through a symlink or over another
//! file) and read without following a symlink.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The token's file inside the data directory.
pub const ACCESS_TOKEN_FILE_NAME: &str = "api-token";
/// Bytes of randomness in a token (64 hex digits).
const TOKEN_BYTES: usize = 32;

/// Why the token could not be read or created.
#[derive(Debug, thiserror::Error)]
pub enum AccessTokenError {
    #[error("cannot read or create the access token {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a regular file; remove it and start again")]
    NotAFile { path: PathBuf },
    #[error("the operating system gave no random bytes for the access token")]
    NoRandomness,
}

/// Where the token of the data directory `data_dir` is kept.
pub fn access_token_path(data_dir: &Path) -> PathBuf {
    data_dir.join(ACCESS_TOKEN_FILE_NAME)
}

/// The token stored in `data_dir`, or a new one stored there (0600). A file that holds no
/// well-formed token is replaced.
pub fn load_or_create_access_token(data_dir: &Path) -> Result<String, AccessTokenError> {
    let path = access_token_path(data_dir);
    let io = |source| AccessTokenError::Io {
        path: path.clone(),
        source,
    };
    for _ in 0..3 {
        match read_token(&path) {
            Ok(Some(token)) => return Ok(token),
            Ok(None) => std::fs::remove_file(&path).map_err(io)?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(classify(&path, error)),
        }
        let token = new_token()?;
        std::fs::create_dir_all(data_dir).map_err(io)?;
        match create_exclusive(&path, &token) {
            Ok(()) => return Ok(token),
            // Another `hearth serve` created it first: use theirs.
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(error) => return Err(io(error)),
        }
    }
    Err(io(std::io::Error::other("the token file keeps changing")))
}

/// A symlink or other non-file is refused rather than followed.
fn classify(path: &Path, error: std::io::Error) -> AccessTokenError {
    let not_a_file = std::fs::symlink_metadata(path).is_ok_and(|meta| !meta.file_type().is_file());
    if not_a_file {
        AccessTokenError::NotAFile {
            path: path.to_path_buf(),
        }
    } else {
        AccessTokenError::Io {
            path: path.to_path_buf(),
            source: error,
        }
    }
}

/// The token in `path`; `None` when the file holds no well-formed token.
fn read_token(path: &Path) -> std::io::Result<Option<String>> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW);
    }
    let file = options.open(path)?;
    if !file.metadata()?.file_type().is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut text = String::new();
    file.take(1024).read_to_string(&mut text)?;
    let token = text.trim();
    let well_formed =
        token.len() == TOKEN_BYTES * 2 && token.bytes().all(|byte| byte.is_ascii_hexdigit());
    Ok(well_formed.then(|| token.to_string()))
}

fn create_exclusive(path: &Path, token: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    // `create_new` fails on any existing entry, a symlink included (O_CREAT | O_EXCL).
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(format!("{token}\n").as_bytes())?;
    file.sync_all()
}

fn new_token() -> Result<String, AccessTokenError> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; TOKEN_BYTES];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| AccessTokenError::NoRandomness)?;
    Ok(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_created_0600_and_reused() {
        let home = tempfile::tempdir().unwrap();
        let data = home.path().join("data");
        let first = load_or_create_access_token(&data).unwrap();
        assert_eq!(first.len(), 64);
        assert_eq!(load_or_create_access_token(&data).unwrap(), first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(access_token_path(&data))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // A damaged file is replaced by a new token.
        std::fs::write(access_token_path(&data), "short").unwrap();
        let second = load_or_create_access_token(&data).unwrap();
        assert_ne!(second, first);
        assert_eq!(second.len(), 64);
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_is_never_followed() {
        let home = tempfile::tempdir().unwrap();
        let elsewhere = home.path().join("elsewhere");
        std::fs::write(&elsewhere, "a".repeat(64)).unwrap();
        std::os::unix::fs::symlink(&elsewhere, access_token_path(home.path())).unwrap();
        assert!(matches!(
            load_or_create_access_token(home.path()),
            Err(AccessTokenError::NotAFile { .. })
        ));
        // A dangling link is not created through either.
        let dangling = tempfile::tempdir().unwrap();
        let target = dangling.path().join("target");
        std::os::unix::fs::symlink(&target, access_token_path(dangling.path())).unwrap();
        assert!(load_or_create_access_token(dangling.path()).is_err());
        assert!(!target.exists());
    }
}
