//! `hearth serve`: the local OpenAI-compatible API (`hearth-server`) on a socket.
//!
//! It checks the security options before binding (no key, no listening beyond loopback),
//! binds, prints the bound address on stdout (`--port 0` picks a free port, and tests read
//! it from there), starts loading the first models in the background so `/health` turns 200
//! when they are ready, and serves until Ctrl-C or SIGTERM.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use hearth_models::{ModelId, ModelLibrary};
use hearth_protocol::{LoadParams, DEFAULT_MAX_QUEUE, DEFAULT_N_CTX};
use hearth_server::{
    AppState, Metrics, ModelManager, ModelManagerConfig, SecurityPolicy, ServableModel,
    DEFAULT_PORT,
};
use hearth_supervisor::WorkerCommand;

/// Environment variable read for the API key when `--api-key` is not given (a key on the
/// command line is visible to every user of the machine in the process list).
pub const API_KEY_ENV: &str = "HEARTH_API_KEY";
/// Sequences answered at once per model: a chat window and a tool or two side by side.
const DEFAULT_SERVE_PARALLEL: u32 = 2;
/// Unload a model unused for five minutes (as Ollama does), giving its memory back.
const DEFAULT_IDLE_UNLOAD_SECS: u64 = 300;
/// How long a request waits for its model to load before it gets 503 and `Retry-After`.
const DEFAULT_LOAD_WAIT_SECS: u64 = 5;
/// Models loaded at once: one by default, since a laptop rarely has memory for two.
const DEFAULT_MAX_LOADED: usize = 1;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on: 127.0.0.1 (default), localhost, or an IP address. Anything but
    /// loopback needs an API key.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on; 0 picks a free port (the bound address is printed).
    #[arg(long, default_value_t = DEFAULT_PORT)]
    pub port: u16,
    /// A model to serve: a GGUF file, or the id of an installed model (repeatable). The first
    /// is loaded at startup; every installed model is also served by its id.
    #[arg(long = "model", short = 'm', value_name = "ID_OR_PATH")]
    pub models: Vec<String>,
    /// Require `Authorization: Bearer KEY` on every API request (default: $HEARTH_API_KEY).
    #[arg(long, value_name = "KEY")]
    pub api_key: Option<String>,
    /// Requests each model answers at once.
    #[arg(long, default_value_t = DEFAULT_SERVE_PARALLEL)]
    pub parallel: u32,
    /// Context length of each request, in tokens (the KV cache holds ctx × parallel).
    #[arg(long = "ctx", default_value_t = DEFAULT_N_CTX)]
    pub n_ctx: u32,
    /// Unload a model after this many seconds unused (0: never).
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_IDLE_UNLOAD_SECS)]
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
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_LOAD_WAIT_SECS)]
    pub load_wait: u64,
    /// Threads per model (default: the physical cores).
    #[arg(long = "threads")]
    pub n_threads: Option<u32>,
    /// Layers to offload to the GPU.
    #[arg(long = "gpu-layers", default_value_t = 0)]
    pub n_gpu_layers: u32,
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

/// What `--model` values name: files (served under ids made from their names) and installed
/// ids. Returns the models given by path and every model to preload, in order.
fn resolve_models(
    specs: &[String],
    library: &ModelLibrary,
) -> anyhow::Result<(Vec<ServableModel>, Vec<ServableModel>)> {
    let mut by_path: Vec<ServableModel> = Vec::new();
    let mut preload = Vec::new();
    for spec in specs {
        let path = Path::new(spec);
        if path.is_file() {
            let mut model = ServableModel::from_path(path);
            // Two files with the same name in different folders get distinct ids.
            let base = model.id.clone();
            let mut suffix = 2;
            while by_path.iter().any(|m| m.id == model.id) {
                model.id = format!("{base}-{suffix}");
                suffix += 1;
            }
            by_path.push(model.clone());
            preload.push(model);
            continue;
        }
        let installed = ModelId::new(spec.as_str())
            .ok()
            .and_then(|id| library.get(&id).ok());
        match installed {
            Some(installed) => preload.push(ServableModel {
                id: spec.clone(),
                path: installed.model_path,
                created: 0,
            }),
            None => bail!(
                "--model {spec}: there is no such file, and no installed model has this id (`hearth ls` lists them)"
            ),
        }
    }
    Ok((by_path, preload))
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let ip = parse_host(&args.host)?;
    if args.parallel == 0 {
        bail!("--parallel must be at least 1");
    }
    let n_ctx = args
        .n_ctx
        .checked_mul(args.parallel)
        .context("--ctx × --parallel is too large")?;
    let api_key = args.api_key.clone().or_else(|| {
        std::env::var(API_KEY_ENV)
            .ok()
            .filter(|key| !key.is_empty())
    });
    // Refuse an unsafe configuration before binding anything.
    SecurityPolicy::for_bound_address(
        SocketAddr::new(ip, args.port),
        api_key.clone(),
        &args.allowed_origins,
    )?;

    let library = ModelLibrary::new(crate::data_dir().join("models"));
    let (by_path, preload) = resolve_models(&args.models, &library)?;

    let listener = tokio::net::TcpListener::bind(SocketAddr::new(ip, args.port))
        .await
        .with_context(|| format!("cannot listen on {}", SocketAddr::new(ip, args.port)))?;
    let bound = listener
        .local_addr()
        .context("cannot read the bound address")?;
    let security = SecurityPolicy::for_bound_address(bound, api_key, &args.allowed_origins)?;

    let exe =
        std::env::current_exe().context("cannot find the hearth binary to start the engine")?;
    let metrics = Arc::new(Metrics::default());
    let models = ModelManager::new(
        ModelManagerConfig {
            models: by_path,
            library: Some(library.clone()),
            worker_command: WorkerCommand::hearth_engine(exe),
            load_params: LoadParams {
                n_ctx,
                n_parallel: args.parallel,
                max_queue: args.max_queue,
                n_threads: args.n_threads,
                n_gpu_layers: args.n_gpu_layers,
                ..LoadParams::default()
            },
            idle_unload: (args.idle_unload > 0).then(|| Duration::from_secs(args.idle_unload)),
            load_wait: Duration::from_secs(args.load_wait),
            max_loaded_models: args.max_loaded.max(1),
        },
        metrics.clone(),
    );
    for model in preload.into_iter().take(args.max_loaded.max(1)) {
        if let Err(error) = models.preload(model) {
            tracing::warn!(%error, "cannot preload a model");
        }
    }
    let served: Vec<String> = models.list().into_iter().map(|m| m.id).collect();

    let mut stdout = std::io::stdout();
    writeln!(stdout, "Hearth API listening on http://{bound}")?;
    if served.is_empty() {
        writeln!(
            stdout,
            "No models yet: pass --model FILE, or install one with `hearth pull`."
        )?;
    } else {
        writeln!(stdout, "Models: {}", served.join(", "))?;
    }
    stdout.flush()?;

    let conversations = hearth_server::conversations::open_store(&crate::data_dir())
        .context("cannot open the conversation history")?;
    let state = AppState {
        models,
        metrics,
        security: Arc::new(security),
        conversations: Some(conversations),
        downloads: Some(Arc::new(hearth_models::DownloadManager::new(
            library,
            hearth_models::HubClient::from_environment(Default::default())?,
        ))),
    };
    hearth_server::serve(listener, state, shutdown_signal())
        .await
        .context("the server failed")
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

    #[test]
    fn unknown_models_are_refused_at_startup() {
        let home = tempfile::tempdir().unwrap();
        let library = ModelLibrary::new(home.path().join("models"));
        let error = resolve_models(&["no-such-model".into()], &library).unwrap_err();
        assert!(error.to_string().contains("no-such-model"));
    }

    #[test]
    fn files_with_the_same_name_get_distinct_ids() {
        let home = tempfile::tempdir().unwrap();
        let (a, b) = (home.path().join("a"), home.path().join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        std::fs::write(a.join("m.gguf"), b"x").unwrap();
        std::fs::write(b.join("m.gguf"), b"x").unwrap();
        let library = ModelLibrary::new(home.path().join("models"));
        let specs = [
            a.join("m.gguf").display().to_string(),
            b.join("m.gguf").display().to_string(),
        ];
        let (by_path, preload) = resolve_models(&specs, &library).unwrap();
        assert_eq!(by_path[0].id, "m");
        assert_eq!(by_path[1].id, "m-2");
        assert_eq!(preload.len(), 2);
    }
}
