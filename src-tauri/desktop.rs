//! The desktop app: one Tauri window over the Hearth server, which runs in this process.
//!
//! Launch: the single-instance plugin first (a second launch shows the first window and exits),
//! then the server starts on 127.0.0.1, on the API port from the settings (a free port when
//! that one is taken), with a per-launch token as its API key besides the user's own key from
//! the settings; then the window opens on the server's page with the token handed over by an
//! initialization script, and the tray icon appears.
//!
//! Quitting: the tray's Quit, Ctrl+Q in the window, closing the window (except on macOS, where
//! closing hides it and the Dock brings it back), SIGTERM and SIGINT all end the event loop the
//! same way; then the server shuts down (answers stop and are saved, engine workers end) within
//! [`QUIT_TIMEOUT`], and the process exits 0.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use hearth_server::{RunningServer, ServerOptions, SettingsStore, StartError};
use tauri::webview::{DownloadEvent, NewWindowResponse};
use tauri::{AppHandle, Manager, RunEvent, WebviewUrl, WebviewWindowBuilder};
use tauri_plugin_dialog::{DialogExt, MessageDialogKind};

use crate::{launch, tray, updates};

/// The window's label (capabilities name it).
pub const MAIN_WINDOW: &str = "main";
/// How long quitting waits for the server to stop (its own grace period for answers in flight
/// is shorter); after that the process exits anyway, and the workers follow when their stdin
/// closes.
pub const QUIT_TIMEOUT: Duration = Duration::from_secs(10);
/// The window's first size, in logical pixels, and the smallest the UI is laid out for.
const WINDOW_SIZE: (f64, f64) = (1180.0, 800.0);
const WINDOW_MIN_SIZE: (f64, f64) = (640.0, 480.0);
/// Async worker threads: the server's I/O, not the model (that runs in the worker process).
const RUNTIME_THREADS: usize = 2;
/// WebKitGTK composites pages on the GPU (through OpenGL) unless told otherwise. Hearth's UI
/// is text and forms, which the CPU draws fine; GPU compositing costs about 120 MB more in the
/// web process (measured under Xvfb with Mesa's software OpenGL), and it is what leaves
/// WebKitGTK windows blank with some GPU drivers. A user's own setting is kept. Call before
/// any thread starts (it sets an environment variable).
pub fn prefer_cpu_compositing() {
    #[cfg(target_os = "linux")]
    if std::env::var_os(WEBKIT_COMPOSITING_ENV).is_none() {
        std::env::set_var(WEBKIT_COMPOSITING_ENV, "1");
    }
}

/// WebKitGTK's switch for GPU compositing.
#[cfg(target_os = "linux")]
const WEBKIT_COMPOSITING_ENV: &str = "WEBKIT_DISABLE_COMPOSITING_MODE";

/// Runs the app on `data_dir` until it quits; returns the exit code.
pub fn run(data_dir: PathBuf) -> anyhow::Result<i32> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(RUNTIME_THREADS)
        .thread_name("hearth-desktop")
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    tauri::async_runtime::set(runtime.handle().clone());
    // Listen for SIGTERM and SIGINT from the start, so a signal never kills the app uncleanly.
    let termination = {
        let _entered = runtime.enter();
        TerminationSignals::listen()?
    };

    let token = launch::new_token()?;
    let worker_program =
        std::env::current_exe().context("cannot find this program to start the engine")?;
    let settings = SettingsStore::new(&data_dir).load();
    let mut options = ServerOptions::for_binary(&data_dir, worker_program);
    options.host = IpAddr::V4(Ipv4Addr::LOCALHOST);
    // The port other programs are told to use (Settings); a free one when it is taken, which
    // the window then reports.
    options.port = settings.api_port;
    options.ollama_port = settings
        .ollama_api
        .then_some(hearth_server::DEFAULT_OLLAMA_PORT);
    options.api_keys = launch::api_keys(&token, settings.api_key.as_deref());

    let server: Arc<Mutex<Option<RunningServer>>> = Arc::default();
    let server_in_setup = server.clone();
    let webview_data = launch::webview_data_dir(&data_dir);
    let mut builder = tauri::Builder::default()
        // First: a second launch hands over to the first and exits before starting anything.
        .plugin(tauri_plugin_single_instance::init(|app, _argv, _cwd| {
            show_window(app);
        }))
        .plugin(tauri_plugin_dialog::init());
    // Only when the user turned update checks on (Settings); otherwise there is no updater.
    if let Some(updater) = updates::plugin(&settings) {
        builder = builder.plugin(updater);
    }
    let app = builder
        .invoke_handler(tauri::generate_handler![quit])
        .setup(move |app| {
            let handle = app.handle().clone();
            termination.quit_on_signal(handle.clone());
            updates::check_at_start(&handle, &settings);
            if let Err(error) = start(&handle, options, &token, &server_in_setup, &webview_data) {
                tracing::error!("{error:#}");
                eprintln!("error: {error:#}");
                let exit_handle = handle.clone();
                handle
                    .dialog()
                    .message(format!("Hearth cannot start.\n\n{error:#}"))
                    .title("Hearth")
                    .kind(MessageDialogKind::Error)
                    .show(move |_| exit_handle.exit(1));
            }
            Ok(())
        })
        .on_window_event(|window, event| {
            // macOS keeps an app running without windows (the Dock brings it back); elsewhere
            // closing the window quits, as users of a window whose tray may be hidden expect.
            if cfg!(target_os = "macos") {
                if let tauri::WindowEvent::CloseRequested { api, .. } = event {
                    api.prevent_close();
                    hide_window(window.app_handle());
                }
            }
        })
        .build(tauri::generate_context!("tauri.conf.json"))
        .context("cannot start the window")?;

    let exit_code = app.run_return(|app, event| match event {
        RunEvent::ExitRequested { code, .. } => {
            tracing::info!(?code, "quitting");
            // Hide at once: stopping the server may take a moment.
            if let Some(window) = app.get_webview_window(MAIN_WINDOW) {
                let _ = window.hide();
            }
        }
        #[cfg(target_os = "macos")]
        RunEvent::Reopen { .. } => show_window(app),
        _ => {}
    });

    let running = lock(&server).take();
    if let Some(running) = running {
        // The timeout is made inside the runtime: its timer belongs to it.
        match runtime
            .block_on(async { tokio::time::timeout(QUIT_TIMEOUT, running.shutdown()).await })
        {
            Ok(Ok(())) => tracing::info!("the server stopped"),
            Ok(Err(error)) => tracing::warn!(%error, "the server stopped with an error"),
            Err(_) => tracing::warn!("the server did not stop in time; exiting anyway"),
        }
    }
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(exit_code)
}

/// Starts the server, then opens the window on it and adds the tray icon.
fn start(
    app: &AppHandle,
    options: ServerOptions,
    token: &str,
    server: &Mutex<Option<RunningServer>>,
    webview_data: &std::path::Path,
) -> anyhow::Result<()> {
    let running =
        tauri::async_runtime::block_on(start_server(options)).context("the server cannot start")?;
    let address = running.local_addr();
    *lock(server) = Some(running);
    tracing::info!(%address, "the server is up");
    // Tests and scripts read the address here (the token is never printed).
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "Hearth desktop: server on http://{address}");
    let _ = stdout.flush();
    open_window(app, address, token, webview_data)?;
    tray::create_tray(app)?;
    Ok(())
}

/// Starts the server on the settings' port, or on a free port when that one is taken (another
/// Hearth, `hearth serve`, or any other program): the window works either way, and the UI says
/// which port was taken (`/api/system`'s `server.configured_port_taken`), since other programs
/// find the API only on the settings' port.
async fn start_server(options: ServerOptions) -> Result<RunningServer, StartError> {
    let running = hearth_server::start(ServerOptions {
        port_fallback: true,
        ..options
    })
    .await?;
    if let Some(port) = running.port_taken() {
        tracing::warn!(
            port,
            address = %running.local_addr(),
            "the API port from the settings is taken; serving on a free port (the window says so)"
        );
    }
    Ok(running)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Ctrl+Q in the window (the initialization script calls this).
#[tauri::command]
fn quit(app: AppHandle) {
    app.exit(0);
}

/// The window on the server's page. Only the server's own pages load in it: links elsewhere
/// open in the system's browser, and new windows are refused.
fn open_window(
    app: &AppHandle,
    address: SocketAddr,
    token: &str,
    webview_data: &std::path::Path,
) -> anyhow::Result<()> {
    let port = address.port();
    let url = tauri::Url::parse(&format!("{}/", launch::app_origin(port)))
        .context("the server's address is not a URL")?;
    WebviewWindowBuilder::new(app, MAIN_WINDOW, WebviewUrl::External(url))
        .title("Hearth")
        .data_directory(webview_data.to_path_buf())
        .inner_size(WINDOW_SIZE.0, WINDOW_SIZE.1)
        .min_inner_size(WINDOW_MIN_SIZE.0, WINDOW_MIN_SIZE.1)
        .center()
        .initialization_script(launch::initialization_script(port, token))
        .on_navigation(move |url| {
            // An export is a link to a blob the page made: it navigates, then downloads.
            if launch::is_app_url(url, port) || launch::is_app_download(url, port) {
                return true;
            }
            if launch::is_web_link(url) {
                launch::open_in_browser(url);
            } else {
                tracing::warn!(%url, "the window refused to leave the app");
            }
            false
        })
        .on_download(move |_webview, event| match event {
            DownloadEvent::Requested { url, destination } => {
                let allowed = launch::is_app_download(&url, port);
                if allowed {
                    tracing::info!(destination = %destination.display(), "saving a download");
                } else {
                    tracing::warn!(%url, "the window refused a download from elsewhere");
                }
                allowed
            }
            DownloadEvent::Finished { path, success, .. } => {
                tracing::info!(?path, success, "download finished");
                true
            }
            _ => true,
        })
        .on_new_window(|url, _features| {
            if launch::is_web_link(&url) {
                launch::open_in_browser(&url);
            }
            NewWindowResponse::Deny
        })
        .build()
        .context("cannot open the window")?;
    Ok(())
}

pub(crate) fn window_visible(app: &AppHandle) -> bool {
    app.get_webview_window(MAIN_WINDOW)
        .and_then(|window| window.is_visible().ok())
        .unwrap_or(false)
}

/// Shows, unminimizes and focuses the window (the tray, a second launch, the Dock).
pub(crate) fn show_window(app: &AppHandle) {
    if let Some(window) = app.get_webview_window(MAIN_WINDOW) {
        let _ = window.show();
        let _ = window.unminimize();
        let _ = window.set_focus();
    }
    tray::relabel_toggle(app, true);
}

pub(crate) fn hide_window(app: &AppHandle) {
    if let Some(window) = app.get_webview_window(MAIN_WINDOW) {
        let _ = window.hide();
    }
    tray::relabel_toggle(app, false);
}

/// SIGTERM and SIGINT (Ctrl-C in a terminal; Windows: Ctrl-C and Ctrl-Break), listened for
/// from launch and turned into a normal quit once the app runs.
struct TerminationSignals {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
}

impl TerminationSignals {
    /// Must run inside the runtime.
    fn listen() -> anyhow::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Self {
                terminate: signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?,
                interrupt: signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    fn quit_on_signal(self, app: AppHandle) {
        tauri::async_runtime::spawn(async move {
            self.received().await;
            tracing::info!("quit requested by a signal");
            app.exit(0);
        });
    }

    #[cfg(unix)]
    async fn received(mut self) {
        tokio::select! {
            _ = self.terminate.recv() => {}
            _ = self.interrupt.recv() => {}
        }
    }

    #[cfg(not(unix))]
    async fn received(self) {
        let _ = tokio::signal::ctrl_c().await;
    }
}
