//! `hearth-desktop`: Hearth's desktop app, a Tauri window over the local server.
//!
//! The server runs in this process ([`hearth_server::start`]) on 127.0.0.1 with a free port and
//! a per-launch token; the window shows the web UI it serves. llama.cpp never runs here: the
//! server starts engine workers as child processes of this same binary with `engine` as the
//! first argument, exactly as the `hearth` CLI does with `hearth engine`. The app reads and
//! writes the same data directory as the CLI (`HEARTH_HOME`, else the platform's data
//! directory), so both see the same models, conversations and settings.

// No console window behind the app on Windows.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

mod desktop;
mod launch;
mod logging;

use std::process::ExitCode;

/// The first argument that turns this binary into an engine worker.
const ENGINE_ARGUMENT: &str = "engine";

fn main() -> ExitCode {
    let is_worker = std::env::args_os().nth(1).as_deref() == Some(ENGINE_ARGUMENT.as_ref());
    if !is_worker {
        // Before any thread starts: the environment is read by WebKit when it starts.
        desktop::prefer_cpu_compositing();
    }
    let _log_guard = logging::init(&launch::data_dir(), is_worker);
    if is_worker {
        return match hearth_engine::worker::run_worker() {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("error: engine worker failed: {error}");
                ExitCode::FAILURE
            }
        };
    }
    match desktop::run() {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
