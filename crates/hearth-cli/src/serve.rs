//! `hearth serve`: the local OpenAI-compatible API (`hearth-server`) on a socket.
//!
//! It checks the security options before binding (no key, no listening beyond loopback),
//! binds, prints the bound address on stdout (`--port 0` picks a free port, and tests read
//! it from there) and the web UI's URL with the access token (kept 0600 in
//! `<data dir>/api-token`, as Jupyter does), starts loading the first models in the background so `/health` turns 200
//! when they are ready, and serves until Ctrl-C or SIGTERM.
//!
//! The port and the API key come from the shared settings file (`<data dir>/settings.json`,
//! which the desktop app and `PATCH /api/settings` write) unless `--port`/`HEARTH_PORT` or
//! `--api-key`/`HEARTH_API_KEY` say otherwise ([`port_and_key`]).

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use hearth_protocol::{DEFAULT_MAX_QUEUE, DEFAULT_N_CTX};
use hearth_server::{
    ServerOptions, Settings, SettingsStore, DEFAULT_IDLE_UNLOAD, DEFAULT_LOAD_WAIT,
    DEFAULT_MAX_LOADED, DEFAULT_PARALLEL,
};

/// Environment variable read for the API key when `--api-key` is not given (a key on the
/// command line is visible to every user of the machine in the process list).
pub const API_KEY_ENV: &str = "HEARTH_API_KEY";
/// Environment variable read for the port when `--port` is not given.
pub const PORT_ENV: &str = "HEARTH_PORT";

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on: 127.0.0.1 (default), localhost, or an IP address. Anything but
    /// loopback needs an API key.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on; 0 picks a free port (the bound address is printed). Default: the
    /// API port in the settings ($HEARTH_PORT wins over it), else 4327.
    #[arg(long, env = PORT_ENV)]
    pub port: Option<u16>,
    /// A model to serve: a GGUF file, or the id of an installed model (repeatable). The first
    /// is loaded at startup; every installed model is also served by its id.
    #[arg(long = "model", short = 'm', value_name = "ID_OR_PATH")]
    pub models: Vec<String>,
    /// Require `Authorization: Bearer KEY` on every API request (default: $HEARTH_API_KEY,
    /// else the API key in the settings).
    #[arg(long, value_name = "KEY")]
    pub api_key: Option<String>,
    /// Requests each model answers at once.
    #[arg(long, default_value_t = DEFAULT_PARALLEL)]
    pub parallel: u32,
    /// Context length of each request, in tokens (the KV cache holds ctx × parallel).
    #[arg(long = "ctx", default_value_t = DEFAULT_N_CTX)]
    pub n_ctx: u32,
    /// Unload a model after this many seconds unused (0: never).
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_IDLE_UNLOAD.as_secs())]
    pub idle_unload: u64,
    /// A web origin allowed to call the API from a browser, e.g. http://localhost:5173
    /// (repeatable; never a wildcard). The server's own origin is always allowed.
    #[arg(long = "allowed-origin", value_name = "ORIGIN")]
    pub allowed_origins: Vec<String>,
    /// Requests that may wait for a free sequence per model; more get 503 and Retry-After.
    #[arg(long, default_value_t = DEFAULT_MAX_QUEUE)]
    pub max_queue: u32,
    /// Models loaded at once; loading another unloads the least recently used idle one.
    #[arg(long, default_value_t = DEFAULT_MAX_LOADED)]
    pub max_loaded: usize,
    /// Seconds a request waits for its model to load before it gets 503 and Retry-After.
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_LOAD_WAIT.as_secs())]
    pub load_wait: u64,
    /// Threads per model (default: the physical cores).
    #[arg(long = "threads")]
    pub n_threads: Option<u32>,
    /// Layers to offload to the GPU: `auto` (the planner's offload for the GPU's free memory;
    /// none without a GPU) or a number.
    #[arg(long = "gpu-layers", default_value = hearth_protocol::GpuLayers::AUTO)]
    pub n_gpu_layers: hearth_protocol::GpuLayers,
    /// Speculative decoding for every model: `ngram` (guesses from the prompt and the answer
    /// so far) or `off`. Default: each model's catalog draft, when it is installed and the
    /// planner advises it for this machine, else off.
    #[arg(long, value_enum)]
    pub speculative: Option<hearth_protocol::SpeculativeMode>,
    /// Also serve Ollama's API (/api/chat, /api/generate, /api/embed, /api/tags, …) on
    /// --ollama-port of the same host, where Ollama clients look (default: the `ollama_api`
    /// setting).
    #[arg(long)]
    pub ollama: bool,
    /// The Ollama API's port (implies --ollama).
    #[arg(long, value_name = "PORT")]
    pub ollama_port: Option<u16>,
}

/// `localhost` or an IP address.
fn parse_host(host: &str) -> anyhow::Result<IpAddr> {
    if host.eq_ignore_ascii_case("localhost") {
        return Ok(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    let trimmed = host.trim_start_matches('[').trim_end_matches(']');
    trimmed
        .parse()
        .with_context(|| format!("--host {host:?} is not an IP address or localhost"))
}

/// The port and the API key `hearth serve` uses: the command line's, else the environment's
/// (`HEARTH_PORT` arrives through `port`; an empty `HEARTH_API_KEY` counts as unset), else
/// the shared settings'.
pub fn port_and_key(
    port: Option<u16>,
    api_key: Option<String>,
    api_key_env: Option<String>,
    settings: &Settings,
) -> (u16, Option<String>) {
    let api_key = api_key
        .or(api_key_env.filter(|key| !key.is_empty()))
        .or_else(|| settings.api_key.clone().filter(|key| !key.is_empty()));
    (port.unwrap_or(settings.api_port), api_key)
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.speculative != Some(hearth_protocol::SpeculativeMode::Draft),
        "hearth serve takes --speculative ngram or off; a draft model is chosen per model"
    );
    let exe =
        std::env::current_exe().context("cannot find the hearth binary to start the engine")?;
    let data_dir = hearth_supervisor::process::data_dir();
    let settings = SettingsStore::new(&data_dir).load();
    let (port, api_key) = port_and_key(
        args.port,
        args.api_key.clone(),
        std::env::var(API_KEY_ENV).ok(),
        &settings,
    );
    // The web UI's token (as Jupyter's): `/api/*` always needs it or a key; kept in the data
    // folder so a restart keeps open tabs working.
    let access_token = hearth_server::load_or_create_access_token(&data_dir)?;
    let token_path = hearth_server::access_token_path(&data_dir);
    let options = ServerOptions {
        host: parse_host(&args.host)?,
        port,
        models: args.models,
        api_keys: api_key.into_iter().collect(),
        access_token: Some(access_token.clone()),
        allowed_origins: args.allowed_origins,
        parallel: args.parallel,
        n_ctx: args.n_ctx,
        idle_unload: (args.idle_unload > 0).then(|| Duration::from_secs(args.idle_unload)),
        max_queue: args.max_queue,
        max_loaded: args.max_loaded,
        load_wait: Duration::from_secs(args.load_wait),
        n_threads: args.n_threads,
        n_gpu_layers: args.n_gpu_layers,
        speculative: args.speculative,
        ollama_port: (args.ollama || args.ollama_port.is_some() || settings.ollama_api).then(
            || {
                args.ollama_port
                    .unwrap_or(hearth_server::DEFAULT_OLLAMA_PORT)
            },
        ),
        ..ServerOptions::for_binary(data_dir, exe)
    };
    let server = hearth_server::start(options).await?;

    let mut stdout = std::io::stdout();
    writeln!(
        stdout,
        "Hearth API listening on http://{}",
        server.local_addr()
    )?;
    if let Some(address) = server.ollama_addr() {
        writeln!(stdout, "Ollama API listening on http://{address}")?;
    }
    writeln!(
        stdout,
        "Open the web UI at {} (the token is also in {})",
        ui_url(server.local_addr(), &access_token),
        token_path.display()
    )?;
    let served = server.served_model_ids();
    if served.is_empty() {
        writeln!(
            stdout,
            "No models yet: pass --model FILE, or install one with `hearth pull`."
        )?;
    } else {
        writeln!(stdout, "Models: {}", served.join(", "))?;
    }
    stdout.flush()?;
    server
        .run_until(shutdown_signal())
        .await
        .context("the server failed")
}

/// The web UI's address with the access token: a wildcard bind is opened on loopback.
fn ui_url(address: std::net::SocketAddr, token: &str) -> String {
    let host = match address.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => "127.0.0.1".to_string(),
        ip if ip.is_unspecified() => "[::1]".to_string(),
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) => format!("[{ip}]"),
    };
    format!("http://{host}:{}/?token={token}", address.port())
}

/// Resolves on Ctrl-C, or SIGTERM on Unix.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_ip_addresses_or_localhost() {
        assert_eq!(
            parse_host("localhost").unwrap(),
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        );
        assert_eq!(
            parse_host("0.0.0.0").unwrap(),
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        );
        assert!(parse_host("[::1]").unwrap().is_loopback());
        assert!(parse_host("example.com").is_err());
    }

    /// The settings' port and key apply unless the command line or the environment gives
    /// them (issue 13, item 8).
    #[test]
    fn the_settings_give_the_port_and_key_unless_flags_or_the_environment_do() {
        let settings = Settings {
            api_port: 5001,
            api_key: Some("sk-settings".into()),
            ..Settings::default()
        };
        let key = |key: &str| Some(key.to_string());
        assert_eq!(
            port_and_key(None, None, None, &settings),
            (5001, key("sk-settings"))
        );
        assert_eq!(
            port_and_key(Some(0), None, key("sk-env"), &settings),
            (0, key("sk-env"))
        );
        assert_eq!(
            port_and_key(Some(7000), key("sk-flag"), key("sk-env"), &settings),
            (7000, key("sk-flag"))
        );
        assert_eq!(
            port_and_key(None, None, key(""), &settings),
            (5001, key("sk-settings")),
            "an empty HEARTH_API_KEY is unset"
        );
        assert_eq!(
            port_and_key(None, None, None, &Settings::default()),
            (hearth_server::DEFAULT_PORT, None)
        );
    }
}
