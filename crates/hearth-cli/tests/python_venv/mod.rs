//! A Python virtual environment with the packages an SDK test imports, installed by pip and
//! cached outside the repository (`~/.cache/hearth/<name>`, or the folder an environment
//! variable names) so reruns are fast; a cold run builds it in a staging folder and renames it
//! into place, so an interrupted install is never mistaken for a good one. Shared by the
//! tests that drive `hearth serve` with official SDKs (`openai`, `ollama`).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A cold `pip install` on a slow link.
const PIP_TIMEOUT: Duration = Duration::from_secs(600);

/// Which virtual environment, and what it must import.
pub struct Venv {
    /// The folder under `~/.cache/hearth` (`venv-openai`).
    pub name: &'static str,
    /// The environment variable that names another folder instead.
    pub folder_env: &'static str,
    /// The packages pip installs and the test imports.
    pub packages: &'static [&'static str],
}

fn venv_dir(venv: &Venv) -> PathBuf {
    if let Some(dir) = std::env::var_os(venv.folder_env).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".cache/hearth").join(venv.name)
}

fn venv_python(venv: &Path) -> PathBuf {
    if cfg!(windows) {
        venv.join("Scripts").join("python.exe")
    } else {
        venv.join("bin").join("python")
    }
}

/// Runs `command`, killing it after `timeout`.
pub fn run_bounded(command: &mut Command, timeout: Duration) -> Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot run {command:?}: {error}"));
    // Drain both pipes on threads so a chatty child never blocks on a full pipe.
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stdout, &mut bytes);
        bytes
    });
    let err = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stderr, &mut bytes);
        bytes
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let status = child.wait().unwrap();
            eprintln!("{command:?} ran past {timeout:?} and was killed");
            break status;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

fn has_packages(python: &Path, packages: &[&str]) -> bool {
    let imports = format!("import {}", packages.join(", "));
    python.is_file()
        && run_bounded(
            Command::new(python).args(["-c", &imports]),
            Duration::from_secs(60),
        )
        .status
        .success()
}

/// The virtual environment's Python with the packages installed, creating it when needed.
pub fn python(spec: &Venv) -> PathBuf {
    let venv = venv_dir(spec);
    let python = venv_python(&venv);
    if has_packages(&python, spec.packages) {
        return python;
    }
    let parent = venv.parent().expect("the venv has a parent folder");
    std::fs::create_dir_all(parent).unwrap();
    let staging = parent.join(format!(
        "{}.staging-{}",
        venv.file_name().unwrap().to_string_lossy(),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&staging);
    let created = run_bounded(
        Command::new("python3").args(["-m", "venv"]).arg(&staging),
        Duration::from_secs(120),
    );
    assert!(
        created.status.success(),
        "python3 -m venv failed: {}",
        String::from_utf8_lossy(&created.stderr)
    );
    let staging_python = venv_python(&staging);
    let installed = run_bounded(
        Command::new(&staging_python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(spec.packages),
        PIP_TIMEOUT,
    );
    assert!(
        installed.status.success(),
        "pip install {:?} failed:\n{}\n{}",
        spec.packages,
        String::from_utf8_lossy(&installed.stdout),
        String::from_utf8_lossy(&installed.stderr)
    );
    // Another run may have finished first: keep whichever venv works.
    if has_packages(&python, spec.packages) {
        let _ = std::fs::remove_dir_all(&staging);
        return python;
    }
    let _ = std::fs::remove_dir_all(&venv);
    std::fs::rename(&staging, &venv).expect("cannot move the venv into place");
    assert!(
        has_packages(&python, spec.packages),
        "the venv does not import {:?}",
        spec.packages
    );
    python
}
