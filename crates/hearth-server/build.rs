//! Embeds the built web UI (`ui/dist`, made by `npm run build` in `ui/`) into the server.
//!
//! It writes `$OUT_DIR/ui_assets.rs`: a sorted table of `(path, include_bytes!(file))` for
//! every file under `ui/dist`. `include_bytes!` makes rustc track each file's contents, and
//! `rerun-if-changed` on the folder (Cargo scans a folder recursively) catches files added or
//! removed, so a rebuild picks up a rebuilt UI. Without `ui/dist` the table is empty (the
//! server then answers `/` with a page saying how to build the UI) and the script watches
//! `ui/` instead, so building the UI later is noticed too. `HEARTH_UI_DIST` names another
//! folder.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Environment variable naming the folder to embed instead of `ui/dist`.
const UI_DIST_ENV: &str = "HEARTH_UI_DIST";
/// The generated table's file name inside `OUT_DIR`.
const GENERATED_FILE: &str = "ui_assets.rs";
/// Folders nested deeper than this are not embedded (a link loop cannot run forever).
const MAX_DEPTH: usize = 16;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed={UI_DIST_ENV}");
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let ui_dir = manifest_dir.join("../../ui");
    let dist = std::env::var_os(UI_DIST_ENV)
        .filter(|value| !value.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| ui_dir.join("dist"));

    let mut files = Vec::new();
    if dist.is_dir() {
        println!("cargo:rerun-if-changed={}", dist.display());
        collect(&dist, &dist, 0, &mut files);
    } else if ui_dir.is_dir() {
        // Not built yet: watching ui/ notices `npm run build` creating dist.
        println!("cargo:rerun-if-changed={}", ui_dir.display());
    }
    files.sort();

    let mut table = String::from(
        "/// The files of `ui/dist` (path relative to it, contents), sorted by path.\n\
         pub static EMBEDDED_UI: &[(&str, &[u8])] = &[\n",
    );
    for (relative, absolute) in &files {
        let _ = writeln!(
            table,
            "    ({relative:?}, include_bytes!({:?})),",
            absolute.display().to_string()
        );
    }
    table.push_str("];\n");
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    if let Err(error) = std::fs::write(out_dir.join(GENERATED_FILE), table) {
        panic!("cannot write {GENERATED_FILE} in OUT_DIR: {error}");
    }
}

/// Every regular file under `folder`, as (path relative to `root` with `/`, absolute path).
fn collect(root: &Path, folder: &Path, depth: usize, files: &mut Vec<(String, PathBuf)>) {
    if depth > MAX_DEPTH {
        println!(
            "cargo:warning=ui/dist nests deeper than {MAX_DEPTH} folders at {}; not embedded",
            folder.display()
        );
        return;
    }
    let entries = match std::fs::read_dir(folder) {
        Ok(entries) => entries,
        Err(error) => {
            println!("cargo:warning=cannot read {}: {error}", folder.display());
            return;
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(root, &path, depth + 1, files);
            continue;
        }
        if !path.is_file() {
            continue;
        }
        let relative = path.strip_prefix(root).ok().and_then(|relative| {
            let parts: Option<Vec<&str>> = relative.iter().map(|part| part.to_str()).collect();
            parts.map(|parts| parts.join("/"))
        });
        match relative {
            Some(relative) => files.push((relative, path.canonicalize().unwrap_or(path))),
            None => println!(
                "cargo:warning=skipping {} in ui/dist: its name is not UTF-8",
                path.display()
            ),
        }
    }
}
