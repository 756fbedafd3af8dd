//! What both Hearth binaries (`hearth` and `hearth-desktop`) set up the same way: the data
//! directory, the hidden subcommands that turn either binary into an engine worker or the
//! server's probe process, and the environment fixed before any thread starts.
//!
//! Every `main` starts with [`setup`]; the supervisor starts workers with
//! [`WorkerCommand::engine`](crate::WorkerCommand::engine) and the server its probe with
//! [`WorkerCommand::probe_report`](crate::WorkerCommand::probe_report), which spell the
//! subcommands named here.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

/// Environment variable that overrides the data directory.
pub const HEARTH_HOME_ENV: &str = "HEARTH_HOME";
/// The hidden subcommand that makes a Hearth binary an engine worker (`BINARY engine`): it
/// speaks the worker protocol on stdin and stdout.
pub const ENGINE_SUBCOMMAND: &str = "engine";
/// The hidden subcommand that makes a Hearth binary the server's probe process (`BINARY
/// probe-report DATA_DIR`): it probes the machine with DATA_DIR's cache, prints the report as
/// one JSON line and exits.
pub const PROBE_REPORT_SUBCOMMAND: &str = "probe-report";

/// The models folder inside the data directory (the model library).
pub const MODELS_FOLDER: &str = "models";

/// The data directory: `HEARTH_HOME`, else the platform's data directory. The CLI and the
/// desktop app read the same one, so they share models, conversations and settings.
pub fn data_dir() -> PathBuf {
    data_dir_from(std::env::var_os(HEARTH_HOME_ENV))
}

/// The model library's folder in `data_dir`.
pub fn models_dir(data_dir: &Path) -> PathBuf {
    data_dir.join(MODELS_FOLDER)
}

fn data_dir_from(hearth_home: Option<OsString>) -> PathBuf {
    if let Some(home) = hearth_home.filter(|value| !value.is_empty()) {
        return PathBuf::from(home);
    }
    directories::ProjectDirs::from("", "", "hearth")
        .map(|dirs| dirs.data_dir().to_path_buf())
        .unwrap_or_else(|| PathBuf::from(".hearth"))
}

/// What a Hearth process was started as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// An engine worker ([`ENGINE_SUBCOMMAND`]).
    Engine,
    /// The server's probe process ([`PROBE_REPORT_SUBCOMMAND`]).
    ProbeReport,
    /// A front end (a `hearth` command, the desktop app). `probes`: it, or the processes it
    /// starts, run the hardware probe's GPU code (`hearth probe`, `hearth fit`, `hearth
    /// serve`).
    FrontEnd { probes: bool },
}

impl Role {
    /// The role a binary's first argument names: one of the hidden subcommands, else a front
    /// end that does not probe (the desktop app, whose probe runs in a probe process).
    pub fn from_first_argument(argument: Option<&OsStr>) -> Role {
        match argument.and_then(OsStr::to_str) {
            Some(ENGINE_SUBCOMMAND) => Role::Engine,
            Some(PROBE_REPORT_SUBCOMMAND) => Role::ProbeReport,
            _ => Role::FrontEnd { probes: false },
        }
    }

    /// Whether the process is a worker (an engine or a probe process), started by a front end.
    pub fn is_worker(self) -> bool {
        matches!(self, Role::Engine | Role::ProbeReport)
    }

    /// Whether the process (or its children, which inherit its environment) loads GPU drivers
    /// to probe the machine.
    fn loads_gpu_drivers(self) -> bool {
        matches!(self, Role::ProbeReport | Role::FrontEnd { probes: true })
    }
}

/// A Hearth process, set up by [`setup`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    pub role: Role,
    /// The data directory ([`data_dir`]).
    pub data_dir: PathBuf,
}

/// The first call of both binaries' `main`, before any thread starts (it sets environment
/// variables, which threads may be reading): quiets the GPU drivers of a process that probes,
/// and finds the data directory.
pub fn setup(role: Role) -> Process {
    if role.loads_gpu_drivers() {
        quiet_gpu_drivers();
    }
    keep_new_files_private();
    let data_dir = data_dir();
    make_private_if_present(&data_dir);
    Process { role, data_dir }
}

/// The permission bits a Hearth process creates files and folders without: none for the
/// group or others, so the conversation database (and its `-wal`/`-shm` files, which SQLite
/// creates with the database's mode), the logs, the probe cache, the settings and every saved
/// state file are the user's alone (0600; folders 0700).
pub const PRIVATE_UMASK: u32 = 0o077;

/// Sets the process's umask to [`PRIVATE_UMASK`] (inherited by the workers it starts).
#[cfg(unix)]
#[allow(unsafe_code)]
fn keep_new_files_private() {
    // SAFETY: umask only swaps the process's file-creation mask; it cannot fail and touches
    // no memory. It runs first in `main`, before any thread creates files.
    unsafe {
        libc::umask(PRIVATE_UMASK as libc::mode_t);
    }
}

/// Windows has no umask and no mode bits: new files inherit their folder's access control list.
/// The default data folder (under the user's profile, `%APPDATA%`) grants access to the user,
/// SYSTEM and administrators only; a `HEARTH_HOME` elsewhere keeps that folder's list. Hearth
/// sets no list of its own (docs/portable.md).
#[cfg(not(unix))]
fn keep_new_files_private() {}

/// Takes the group's and others' access away from `path` if it exists and has any (a data
/// folder or database made by an older Hearth, or under a looser umask). A failure is logged
/// by the caller's next use of the file, not here: this runs before logging is set up.
pub fn make_private_if_present(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(metadata) = std::fs::metadata(path) {
            let mode = metadata.permissions().mode();
            if mode & PRIVATE_UMASK != 0 {
                let private = mode & !PRIVATE_UMASK & 0o7777;
                let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(private));
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// lavapipe (Mesa's Vulkan on the CPU) warns on stderr when `XDG_RUNTIME_DIR` is unset, though
/// compute needs no runtime directory.
pub fn quiet_gpu_drivers() {
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hearth_home_wins_and_empty_is_ignored() {
        assert_eq!(
            data_dir_from(Some("/tmp/hearth-home".into())),
            PathBuf::from("/tmp/hearth-home")
        );
        assert_ne!(data_dir_from(Some("".into())), PathBuf::from(""));
        assert_eq!(data_dir_from(Some("".into())), data_dir_from(None));
    }

    #[cfg(unix)]
    #[test]
    fn an_existing_file_or_folder_loses_the_access_of_others() {
        use std::os::unix::fs::PermissionsExt;
        let folder = tempfile::tempdir().unwrap();
        let file = folder.path().join("hearth.sqlite3");
        std::fs::write(&file, b"x").unwrap();
        for (path, loose, private) in [
            (folder.path(), 0o755, 0o700),
            (file.as_path(), 0o644, 0o600),
        ] {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(loose)).unwrap();
            make_private_if_present(path);
            let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, private, "{}", path.display());
        }
        make_private_if_present(&folder.path().join("absent"));
    }

    #[test]
    fn the_first_argument_names_the_hidden_subcommands() {
        let role = |argument: &str| Role::from_first_argument(Some(OsStr::new(argument)));
        assert_eq!(role("engine"), Role::Engine);
        assert_eq!(role("probe-report"), Role::ProbeReport);
        assert_eq!(role("--help"), Role::FrontEnd { probes: false });
        assert_eq!(
            Role::from_first_argument(None),
            Role::FrontEnd { probes: false }
        );
        assert!(Role::Engine.is_worker() && Role::ProbeReport.is_worker());
        assert!(!Role::FrontEnd { probes: true }.is_worker());
        assert!(Role::ProbeReport.loads_gpu_drivers());
        assert!(Role::FrontEnd { probes: true }.loads_gpu_drivers());
        assert!(!Role::Engine.loads_gpu_drivers());
        assert!(!Role::FrontEnd { probes: false }.loads_gpu_drivers());
    }
}
