//! Files only the user may read (settings with an API key, provider keys), written so that a
//! crash or a planted link never leaves a half-written or misplaced file.

use std::io::Write;
use std::path::Path;

/// Writes `bytes` to a new file beside `path` (mode 0600), flushes it to disk and renames it
/// over `path`. The temporary file is created exclusively (`O_CREAT | O_EXCL`, which never
/// follows a symbolic link): whatever lies at its name (a file left by a crash, a link planted
/// to make Hearth write elsewhere) is removed first (a link itself, never its target).
pub(crate) fn write_private_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let folder = path.parent().unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(folder)?;
    let file_name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = path.with_file_name(format!("{file_name}.{}.tmp", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // The user's eyes only: these files hold keys.
        options.mode(0o600);
    }
    let open = || match options.open(&temporary) {
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::remove_file(&temporary)?;
            options.open(&temporary)
        }
        opened => opened,
    };
    let result = (|| {
        let mut file = open()?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    result?;
    // The rename itself reaches the disk with the folder.
    if let Ok(folder) = std::fs::File::open(folder) {
        let _ = folder.sync_all();
    }
    Ok(())
}
