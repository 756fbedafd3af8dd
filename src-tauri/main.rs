//! `hearth-desktop`: Hearth's desktop app, a Tauri window over the local server.
//!
//! The server runs in this process ([`hearth_server::start`]) on 127.0.0.1 with a free port and
//! a per-launch token; the window shows the web UI it serves. llama.cpp never runs here: the
//! server starts engine workers as child processes of this same binary with `engine` as the
//! first argument, exactly as the `hearth` CLI does with `hearth engine`; the hardware probe
//! (wgpu, Vulkan drivers) runs the same way, with `probe-report DATA_DIR`, in a process that
//! prints its report and exits, so its memory never stays in the app's. The app reads and
//! writes the same data directory as the CLI (`HEARTH_HOME`, else the platform's data
//! directory), so both see the same models, conversations and settings.

// No console window behind the app on Windows.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

mod desktop;
mod launch;
mod tray;
mod updates;

use std::path::Path;
use std::process::ExitCode;

use hearth_supervisor::process::{self, Role};

fn main() -> ExitCode {
    let process = process::setup(Role::from_first_argument(
        std::env::args_os().nth(1).as_deref(),
    ));
    if !process.role.is_worker() {
        // Before any thread starts: the environment is read by WebKit when it starts.
        desktop::prefer_cpu_compositing();
    }
    let _log_guard = hearth_engine::logging::init(&process.data_dir, process.role.is_worker());
    match process.role {
        Role::Engine => match hearth_engine::worker::run_worker() {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("error: engine worker failed: {error}");
                ExitCode::FAILURE
            }
        },
        Role::ProbeReport => match print_probe_report(&process.data_dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("error: the probe failed: {error:#}");
                ExitCode::FAILURE
            }
        },
        Role::FrontEnd { .. } => match desktop::run(process.data_dir) {
            Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
            Err(error) => {
                tracing::error!("{error:#}");
                eprintln!("error: {error:#}");
                ExitCode::FAILURE
            }
        },
    }
}

/// `hearth-desktop probe-report DATA_DIR`: the server's probe process, as `hearth probe-report`
/// (without DATA_DIR, the app's own data directory).
fn print_probe_report(own_data_dir: &Path) -> anyhow::Result<()> {
    use anyhow::Context;
    let data_dir = std::env::args_os()
        .nth(2)
        .map_or_else(|| own_data_dir.to_path_buf(), std::path::PathBuf::from);
    let engine = hearth_supervisor::WorkerCommand::engine(
        std::env::current_exe().context("cannot find this program to start the engine")?,
    );
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(hearth_probe::machine::print_probe_report(data_dir, engine))
        .context("cannot print the report")
}
