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

use std::process::ExitCode;

/// The first argument that turns this binary into an engine worker.
const ENGINE_ARGUMENT: &str = "engine";
/// The first argument that turns this binary into the server's probe process (the data
/// directory follows).
const PROBE_REPORT_ARGUMENT: &str = hearth_server::system::PROBE_REPORT_SUBCOMMAND;

fn main() -> ExitCode {
    let first_argument = std::env::args_os().nth(1);
    let is_worker = first_argument.as_deref() == Some(ENGINE_ARGUMENT.as_ref());
    let is_probe = first_argument.as_deref() == Some(PROBE_REPORT_ARGUMENT.as_ref());
    if !is_worker && !is_probe {
        // Before any thread starts: the environment is read by WebKit when it starts.
        desktop::prefer_cpu_compositing();
    }
    if is_probe && std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        // lavapipe (Mesa's Vulkan on the CPU) warns without one, though compute needs none
        // (as `hearth` does). Before any thread starts.
        std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir());
    }
    let _log_guard = hearth_engine::logging::init(&launch::data_dir(), is_worker || is_probe);
    if is_worker {
        return match hearth_engine::worker::run_worker() {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("error: engine worker failed: {error}");
                ExitCode::FAILURE
            }
        };
    }
    if is_probe {
        return match print_probe_report() {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("error: the probe failed: {error:#}");
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

/// `hearth-desktop probe-report DATA_DIR`: the server's probe process, as `hearth probe-report`.
fn print_probe_report() -> anyhow::Result<()> {
    use anyhow::Context;
    let data_dir = std::env::args_os()
        .nth(2)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(launch::data_dir);
    let engine = hearth_supervisor::WorkerCommand::hearth_engine(
        std::env::current_exe().context("cannot find this program to start the engine")?,
    );
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(hearth_server::system::print_probe_report(data_dir, engine))
        .context("cannot print the report")
}
