//! Captures what the binary is built from, as compile-time environment variables for `lib.rs`:
//!
//! - `HEARTH_GIT_COMMIT`: `git rev-parse --short=12 HEAD` of the checkout, or `unknown`
//!   outside one (a source tarball, a build without git). `HEARTH_GIT_COMMIT` in the build's
//!   environment wins (a packager building from a tarball can say where it came from).
//! - `HEARTH_LLAMA_CPP_SYS_VERSION` and `HEARTH_GGML_VERSION`: the vendored `llama-cpp-sys-2`
//!   crate's version (its `Cargo.toml`) and the ggml version in the llama.cpp it ships
//!   (`ggml/CMakeLists.txt`). The crate ships llama.cpp without its git history, so llama.cpp's
//!   own build number is 0 and its commit `unknown` in its build info; these two name it.
//!
//! It reruns when HEAD moves (git's HEAD file and the branch it points to), so a new commit
//! is picked up by the next build.

use std::path::{Path, PathBuf};
use std::process::Command;

const COMMIT_ENV: &str = "HEARTH_GIT_COMMIT";
const UNKNOWN: &str = "unknown";

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let root = manifest_dir.join("../..");
    println!("cargo:rerun-if-env-changed={COMMIT_ENV}");
    let commit = std::env::var(COMMIT_ENV)
        .ok()
        .filter(|commit| !commit.trim().is_empty())
        .unwrap_or_else(|| git_commit(&root));
    println!("cargo:rustc-env={COMMIT_ENV}={}", commit.trim());

    let vendor = root.join("vendor/llama-cpp-sys-2");
    let crate_manifest = vendor.join("Cargo.toml");
    let ggml_cmake = vendor.join("llama.cpp/ggml/CMakeLists.txt");
    println!("cargo:rerun-if-changed={}", crate_manifest.display());
    println!("cargo:rerun-if-changed={}", ggml_cmake.display());
    let sys_version = read(&crate_manifest)
        .and_then(|text| package_version(&text))
        .unwrap_or_else(|| UNKNOWN.to_string());
    let ggml_version = read(&ggml_cmake)
        .and_then(|text| ggml_version(&text))
        .unwrap_or_else(|| UNKNOWN.to_string());
    println!("cargo:rustc-env=HEARTH_LLAMA_CPP_SYS_VERSION={sys_version}");
    println!("cargo:rustc-env=HEARTH_GGML_VERSION={ggml_version}");
}

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

fn git(root: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .arg("-C")
        .arg(root)
        .args(args)
        .output()
        .ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    (output.status.success() && !text.trim().is_empty()).then(|| text.trim().to_string())
}

/// The short commit, watching the files that change when HEAD moves.
fn git_commit(root: &Path) -> String {
    let Some(commit) = git(root, &["rev-parse", "--short=12", "HEAD"]) else {
        return UNKNOWN.to_string();
    };
    let mut watched = vec!["HEAD".to_string(), "packed-refs".to_string()];
    if let Some(branch) = git(root, &["symbolic-ref", "-q", "HEAD"]) {
        watched.push(branch);
    }
    for name in watched {
        if let Some(path) = git(
            root,
            &["rev-parse", "--path-format=absolute", "--git-path", &name],
        ) {
            if Path::new(&path).exists() {
                println!("cargo:rerun-if-changed={path}");
            }
        }
    }
    commit
}

/// `version = "…"` of the `[package]` table.
fn package_version(manifest: &str) -> Option<String> {
    let package = manifest.split("[package]").nth(1)?;
    let section = package.split("\n[").next()?;
    section.lines().find_map(|line| {
        let value = line
            .trim()
            .strip_prefix("version")?
            .trim()
            .strip_prefix('=')?;
        Some(value.trim().trim_matches('"').to_string())
    })
}

/// `GGML_VERSION_MAJOR.MINOR.PATCH` from ggml's CMakeLists.txt.
fn ggml_version(cmake: &str) -> Option<String> {
    let part = |name: &str| {
        cmake.lines().find_map(|line| {
            let rest = line.trim().strip_prefix(&format!("set({name} "))?;
            Some(rest.trim_end_matches(')').trim().to_string())
        })
    };
    Some(format!(
        "{}.{}.{}",
        part("GGML_VERSION_MAJOR")?,
        part("GGML_VERSION_MINOR")?,
        part("GGML_VERSION_PATCH")?
    ))
}
