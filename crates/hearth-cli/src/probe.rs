//! `hearth probe` (what this machine is, with measured bandwidths) and `hearth fit` (the plan
//! for a model on this machine, and with `--verify`, the plan checked against what llama.cpp
//! really allocates when the model is loaded).
//!
//! Both ask the engine worker which devices llama.cpp's backends offer (only it links
//! llama.cpp), then probe the rest in this process with `hearth-probe`.

use std::path::Path;

use anyhow::Context;
use clap::{Args, ValueEnum};
use hearth_models::{
    Catalog, DownloadConfig, HubClient, HubRepo, ModelLibrary, MAX_HEADER_PREFIX_BYTES,
};
use hearth_probe::catalog::{add_estimated_variants, installed_catalog_variants, LocatedVariants};
use hearth_probe::{
    plan, variant_from_file, variant_from_gguf, DeviceMemory, Plan, ProbeOptions, ProbeReport,
    QualityPreference, Variant, Wishes,
};
use hearth_protocol::{FlashAttention, LoadParams, MemoryReport};
use serde::Serialize;

use crate::fit_draft::{draft_lines, draft_report, DraftReport};

/// Largest |relative error| of the predicted total that `--verify` accepts (the goal is 5%).
pub const VERIFY_TOLERANCE: f64 = 0.10;
const BYTES_PER_MIB: f64 = 1024.0 * 1024.0;
const BYTES_PER_GIB: f64 = 1024.0 * 1024.0 * 1024.0;

#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// Print one JSON object instead of a report.
    #[arg(long)]
    pub json: bool,
    /// Use only cached bandwidth figures; run no kernel.
    #[arg(long)]
    pub no_measure: bool,
    /// Measure again even if cached figures exist.
    #[arg(long)]
    pub refresh: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum QualityArg {
    Fastest,
    Balanced,
    Best,
}

#[derive(Debug, Args)]
pub struct FitArgs {
    /// A GGUF file, an installed model id, a catalog id or `owner/name:FILE.gguf`; a model not
    /// on disk is planned from its header, read from the hub (`HF_ENDPOINT`) without a download.
    pub model: String,
    /// Exact context length (all parallel sequences together); default: the longest that fits.
    #[arg(long = "ctx")]
    pub n_ctx: Option<u32>,
    /// Least context per sequence when choosing the length.
    #[arg(long)]
    pub min_ctx: Option<u32>,
    /// Sequences served at once.
    #[arg(long = "parallel", default_value_t = 1)]
    pub n_parallel: u32,
    #[arg(long, value_enum, default_value = "balanced")]
    pub quality: QualityArg,
    /// Load the model with the plan and compare the prediction with what llama.cpp allocates.
    #[arg(long)]
    pub verify: bool,
    /// Print one JSON object instead of a report.
    #[arg(long)]
    pub json: bool,
    /// Use only cached bandwidth figures; run no kernel.
    #[arg(long)]
    pub no_measure: bool,
    /// Plan this draft model for speculative decoding (a GGUF file or an installed id)
    /// instead of the one the catalog names.
    #[arg(long)]
    pub draft_model: Option<String>,
    /// The draft's per-token acceptance rate to predict the speedup from (from `hearth bench
    /// --draft-model`: 1 − 1/tokens_per_step is a close lower bound). Default: the rate
    /// measured on this machine by `hearth run`/`hearth serve` for the pair once it stands on
    /// enough tokens, else a prior of 0.7 (the report says which).
    #[arg(long, value_parser = acceptance_rate)]
    pub draft_acceptance: Option<f64>,
}

fn acceptance_rate(text: &str) -> Result<f64, String> {
    let rate: f64 = text
        .parse()
        .map_err(|_| format!("{text} is not a number"))?;
    if (0.0..=1.0).contains(&rate) {
        Ok(rate)
    } else {
        Err(format!("{text} is not between 0 and 1"))
    }
}

/// Asks the worker for llama.cpp's devices, then probes the machine (kernels off the async
/// threads: they take seconds).
async fn probe_machine(
    supervisor: &hearth_supervisor::Supervisor,
    measure: bool,
    refresh: bool,
) -> anyhow::Result<ProbeReport> {
    let options =
        ProbeOptions::for_data_dir(hearth_supervisor::process::data_dir(), measure, refresh);
    Ok(hearth_probe::machine::probe_machine(supervisor, options).await)
}

pub async fn probe(args: ProbeArgs) -> anyhow::Result<()> {
    let supervisor = crate::supervisor()?;
    let report = probe_machine(&supervisor, !args.no_measure, args.refresh).await;
    supervisor.shutdown().await;
    let report = report?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_probe(&report);
    }
    Ok(())
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / BYTES_PER_GIB)
}

fn mib(bytes: u64) -> String {
    format!("{:.2} MiB", bytes as f64 / BYTES_PER_MIB)
}

fn rate(bytes_per_second: Option<f64>) -> String {
    bytes_per_second.map_or_else(
        || "not measured".to_string(),
        |rate| format!("{:.1} GB/s", rate / 1e9),
    )
}

/// The engine's backends: how they were built, the CPU variant, each library's fate.
fn print_backends(backends: &hearth_protocol::BackendReport) {
    let build = match backends.build {
        hearth_protocol::BackendBuild::Static => "built in (for the CPU this was compiled on)",
        hearth_protocol::BackendBuild::Dynamic => "loaded from the backends folder",
    };
    println!("Backends  {build}; --backend {}", backends.choice);
    if let Some(variant) = &backends.cpu_variant {
        println!("CPU code  {variant} variant");
    }
    for line in backends.library_lines() {
        println!("Backend   {line}");
    }
    if let Some(error) = &backends.error {
        println!("Backend   error: {error}");
    }
}

fn print_probe(report: &ProbeReport) {
    let profile = &report.profile;
    println!("OS        {}", profile.os);
    println!(
        "CPU       {} ({}, {} cores / {} threads)",
        profile.cpu.model,
        profile.cpu.architecture,
        profile.cpu.physical_cores,
        profile.cpu.logical_cores
    );
    println!("SIMD      {}", profile.cpu.features.join(" "));
    println!(
        "CPU read  {}{}",
        rate(profile.cpu.read_bandwidth_bytes_per_second),
        if report.cpu_bandwidth_from_cache {
            " (cached)"
        } else {
            ""
        }
    );
    println!(
        "RAM       {} total, {} available",
        gib(profile.memory.total_bytes),
        gib(profile.memory.available_bytes)
    );
    if let Some(free) = profile.models_disk_free_bytes {
        println!("Disk      {} free for models", gib(free));
    }
    println!(
        "Unified   {}",
        if profile.unified_memory { "yes" } else { "no" }
    );
    if let Some(backends) = &report.backends {
        print_backends(backends);
    }
    match &report.llama_devices {
        Some(devices) => {
            for device in devices {
                println!(
                    "llama.cpp {} ({}, {}, {}): {} total, {} free{}",
                    device.name,
                    device.description,
                    device.backend,
                    device.device_type,
                    gib(device.memory_total_bytes),
                    gib(device.memory_free_bytes),
                    if device.used { "" } else { " (not used)" }
                );
            }
        }
        None => println!("llama.cpp devices: unknown (the engine could not be asked)"),
    }
    if report.adapters.is_empty() {
        println!("GPU       none found by wgpu");
    }
    for probed in &report.adapters {
        let adapter = &probed.adapter;
        let measured = match (&probed.measurement, &probed.measurement_error) {
            (Some(measurement), _) => format!(
                "read {:.1} GB/s, f32 {:.1} TFLOP/s{}",
                measurement.read_bytes_per_second / 1e9,
                measurement.f32_flops_per_second / 1e12,
                if probed.from_cache { " (cached)" } else { "" }
            ),
            (None, Some(error)) => error.clone(),
            (None, None) => "not measured".to_string(),
        };
        println!(
            "GPU       {} ({} {:?}, {}, {}): {}",
            adapter.name,
            adapter.vendor,
            adapter.device_type,
            adapter.backend,
            adapter.driver,
            measured
        );
    }
    let usable = if profile.gpus.is_empty() {
        "none (layers run on the CPU)".to_string()
    } else {
        profile
            .gpus
            .iter()
            .map(|gpu| gpu.name.clone())
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!("Offload   {usable}");
}

/// The variant of a GGUF file on the hub (`HF_ENDPOINT`), planned from its header alone: the
/// first bytes of the file, fetched with HTTP Range requests before any download.
fn remote_variant(repo: &HubRepo, revision: &str, file: &str) -> anyhow::Result<Variant> {
    let hub = HubClient::from_environment(DownloadConfig::default())?;
    let header = hub
        .fetch_gguf_header(repo, revision, file, MAX_HEADER_PREFIX_BYTES)
        .with_context(|| {
            format!(
                "cannot read the header of {file} in {repo} from the hub (offline? once the \
                 model is on disk, `hearth pull` it or `hearth import` it, and fit works offline)"
            )
        })?;
    variant_from_gguf(&header.gguf)
        .with_context(|| format!("cannot plan from the header of {file} in {repo}"))
}

/// The variants `model` names, and the file of each one that is on disk.
fn resolve_variants(model: &str) -> anyhow::Result<(String, LocatedVariants)> {
    let path = Path::new(model);
    if path.is_file() {
        let variant = variant_from_file(path)
            .with_context(|| format!("cannot read the GGUF header of {}", path.display()))?;
        return Ok((model.to_string(), vec![(variant, Some(path.to_path_buf()))]));
    }
    let library = ModelLibrary::new(crate::models::models_directory());
    let catalog = Catalog::builtin().context("the built-in catalog is invalid")?;
    if let Ok(entry) = catalog.get(model) {
        let installed = library
            .list()
            .map(|listing| listing.installed)
            .unwrap_or_default();
        let mut known = installed_catalog_variants(entry, &installed)?;
        if known.is_empty() {
            // Not on disk: read the default quantization's header from the hub.
            let file = entry
                .file_for(None)
                .with_context(|| format!("the catalog entry {model} names no file"))?;
            let repo = entry
                .hub_repo()
                .with_context(|| format!("the catalog entry {model} names no valid repository"))?;
            let mut variant = remote_variant(&repo, entry.revision(), &file.file)?;
            variant.quantization = file.quantization.clone();
            known.push((variant, None));
        }
        add_estimated_variants(&mut known, entry);
        return Ok((entry.display_name.clone(), known));
    }
    if let Some((repo, file)) = model.split_once(':') {
        if repo.contains('/') && file.to_ascii_lowercase().ends_with(".gguf") {
            let repo = HubRepo::parse(repo)?;
            let variant = remote_variant(&repo, "main", file)?;
            return Ok((model.to_string(), vec![(variant, None)]));
        }
    }
    let id = hearth_models::ModelId::new(model)
        .with_context(|| format!("{model} is neither a file, a catalog id nor a model id"))?;
    let installed = library.get(&id).with_context(|| {
        format!("{model} is neither a file, a catalog id nor an installed model")
    })?;
    let variant = variant_from_file(&installed.model_path)
        .with_context(|| format!("cannot read {}", installed.model_path.display()))?;
    Ok((
        model.to_string(),
        vec![(variant, Some(installed.model_path))],
    ))
}

/// Memory totals by purpose.
#[derive(Debug, Serialize)]
pub struct MemoryTotals {
    pub weights_bytes: u64,
    pub kv_cache_bytes: u64,
    pub output_bytes: u64,
    pub compute_bytes: u64,
    pub total_bytes: u64,
}

impl MemoryTotals {
    fn predicted(memory: &[DeviceMemory]) -> MemoryTotals {
        let sum = |field: fn(&DeviceMemory) -> u64| memory.iter().map(field).sum::<u64>();
        MemoryTotals {
            weights_bytes: sum(|device| device.weights_bytes),
            kv_cache_bytes: sum(|device| device.kv_cache_bytes),
            output_bytes: sum(|device| device.output_bytes),
            compute_bytes: sum(|device| device.compute_bytes),
            total_bytes: sum(DeviceMemory::buffers_bytes),
        }
    }

    fn measured(report: &MemoryReport) -> MemoryTotals {
        MemoryTotals {
            weights_bytes: report.model_bytes,
            kv_cache_bytes: report.kv_cache_bytes,
            output_bytes: report.output_bytes,
            compute_bytes: report.compute_bytes,
            total_bytes: report.total_bytes,
        }
    }
}

/// What `hearth fit` reports.
#[derive(Debug, Serialize)]
pub struct FitReport {
    pub model: String,
    pub plan: Plan,
    /// The plan's llama.cpp buffers by purpose (overheads excluded: they are no buffer).
    pub predicted: MemoryTotals,
    /// With `--verify`: what llama.cpp allocated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub measured: Option<MemoryTotals>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub measured_buffers: Option<MemoryReport>,
    /// With `--verify`: (predicted - measured) / measured of the totals.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relative_error: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub within_tolerance: Option<bool>,
    pub tolerance: f64,
    /// Speculative decoding's draft model: chosen or why not, its memory and predicted gain.
    pub draft: DraftReport,
}

fn load_params(plan: &Plan) -> LoadParams {
    LoadParams {
        n_ctx: plan.n_ctx,
        n_batch: plan.n_batch,
        n_ubatch: plan.n_ubatch,
        n_gpu_layers: hearth_protocol::GpuLayers::Count(plan.n_gpu_layers),
        n_parallel: plan.n_parallel,
        flash_attention: match plan.flash_attention {
            hearth_probe::plan::FlashAttentionChoice::Auto => FlashAttention::Auto,
            hearth_probe::plan::FlashAttentionChoice::On => FlashAttention::On,
        },
        kv_cache_type: plan.kv_cache_type,
        ..LoadParams::default()
    }
}

pub async fn fit(args: FitArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.n_parallel >= 1, "--parallel must be at least 1");
    // Resolving may read a remote header over blocking HTTP.
    let model = args.model.clone();
    let (model_name, variants) = tokio::task::spawn_blocking(move || resolve_variants(&model))
        .await
        .context("resolving the model panicked")??;
    let supervisor = crate::supervisor()?;
    let result = fit_with(&supervisor, &args, model_name, variants).await;
    supervisor.shutdown().await;
    let report = result?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_fit(&report);
    }
    if report.within_tolerance == Some(false) {
        anyhow::bail!(
            "the prediction is off by {:+.1}% (more than {:.0}%)",
            report.relative_error.unwrap_or(0.0) * 100.0,
            VERIFY_TOLERANCE * 100.0
        );
    }
    Ok(())
}

async fn fit_with(
    supervisor: &hearth_supervisor::Supervisor,
    args: &FitArgs,
    model_name: String,
    variants: LocatedVariants,
) -> anyhow::Result<FitReport> {
    let report = probe_machine(supervisor, !args.no_measure, false).await?;
    let wishes = Wishes {
        context: args.n_ctx,
        min_context: args.min_ctx,
        quality: match args.quality {
            QualityArg::Fastest => QualityPreference::Fastest,
            QualityArg::Balanced => QualityPreference::Balanced,
            QualityArg::Best => QualityPreference::Best,
        },
        n_parallel: args.n_parallel,
    };
    let plain: Vec<Variant> = variants
        .iter()
        .map(|(variant, _)| variant.clone())
        .collect();
    let plan = plan(&plain, &report.profile, &wishes)
        .with_context(|| format!("no plan for {model_name} on this machine"))?;
    let predicted = MemoryTotals::predicted(&plan.memory);
    let mut fit = FitReport {
        model: model_name,
        predicted,
        measured: None,
        measured_buffers: None,
        relative_error: None,
        within_tolerance: None,
        tolerance: VERIFY_TOLERANCE,
        draft: draft_report(
            &args.model,
            args.draft_model.as_deref(),
            args.draft_acceptance,
            &plan,
            &report.profile,
        )?,
        plan,
    };
    if args.verify {
        let path = variants
            .iter()
            .find(|(variant, path)| variant.quantization == fit.plan.quantization && path.is_some())
            .and_then(|(_, path)| path.clone())
            .with_context(|| {
                format!(
                    "cannot verify: the planned {} variant is not on disk (`hearth pull` it)",
                    fit.plan.quantization
                )
            })?;
        supervisor
            .load(&path, load_params(&fit.plan))
            .await
            .with_context(|| format!("cannot load {}", path.display()))?;
        let memory = supervisor
            .memory_report()
            .await
            .context("the engine did not report its memory")?;
        anyhow::ensure!(
            memory.total_bytes > 0,
            "llama.cpp reported no buffers (is its log routed to the engine?)"
        );
        let measured = MemoryTotals::measured(&memory);
        let relative_error = (fit.predicted.total_bytes as f64 - measured.total_bytes as f64)
            / measured.total_bytes as f64;
        fit.relative_error = Some(relative_error);
        fit.within_tolerance = Some(relative_error.abs() <= VERIFY_TOLERANCE);
        fit.measured = Some(measured);
        fit.measured_buffers = Some(memory);
    }
    Ok(fit)
}

fn print_fit(report: &FitReport) {
    let plan = &report.plan;
    let placement = match plan.offload {
        hearth_probe::Offload::Full => "all layers on the GPU".to_string(),
        hearth_probe::Offload::Partial => format!("{} layers on the GPU", plan.n_gpu_layers),
        hearth_probe::Offload::None => "CPU only".to_string(),
    };
    println!(
        "{} · {}{} · context {} ({} per sequence × {}) · {} · KV {} · flash attention {}",
        report.model,
        plan.quantization,
        if plan.estimated_from_other_variant {
            " (estimated)"
        } else {
            ""
        },
        plan.n_ctx,
        plan.n_ctx_per_sequence,
        plan.n_parallel,
        placement,
        plan.kv_cache_type.as_str(),
        match plan.flash_attention {
            hearth_probe::plan::FlashAttentionChoice::Auto => "auto",
            hearth_probe::plan::FlashAttentionChoice::On => "on",
        }
    );
    println!(
        "{:<10} {:>12} {:>12} {:>12} {:>12} {:>12} {:>12}",
        "device", "weights", "KV cache", "output", "compute", "overhead", "total"
    );
    for device in &plan.memory {
        println!(
            "{:<10} {:>12} {:>12} {:>12} {:>12} {:>12} {:>12}",
            device.device,
            mib(device.weights_bytes),
            mib(device.kv_cache_bytes),
            mib(device.output_bytes),
            mib(device.compute_bytes),
            mib(device.overhead_bytes),
            mib(device.total_bytes())
        );
    }
    for budget in &plan.budgets {
        println!(
            "budget {}: {} of {} free (margin {}) planned",
            budget.device,
            gib(budget.planned_bytes),
            gib(budget.free_bytes),
            gib(budget.margin_bytes)
        );
    }
    println!(
        "predicted: decode {:.1} tokens/s (at position {}), prefill {:.0} tokens/s",
        plan.speed.decode_tokens_per_second,
        plan.speed.decode_position,
        plan.speed.prefill_tokens_per_second
    );
    let kv_host = &plan.kv_host;
    println!(
        "KV cache in RAM: up to {} for conversations pushed out of their slots ({:.0}% of the {} the plan leaves free; {} at full context), then the disk tier",
        if kv_host.budget_bytes as f64 >= BYTES_PER_GIB {
            gib(kv_host.budget_bytes)
        } else {
            mib(kv_host.budget_bytes)
        },
        hearth_probe::kv_host::HEADROOM_SHARE * 100.0,
        gib(kv_host.headroom_bytes),
        match kv_host.full_sequences() {
            1 => "1 conversation".to_string(),
            many => format!("{many} conversations"),
        }
    );
    for note in &plan.notes {
        println!("note: {note}");
    }
    for line in draft_lines(&report.draft) {
        println!("{line}");
    }
    if let (Some(measured), Some(error)) = (&report.measured, report.relative_error) {
        println!(
            "verify: predicted {} · measured {} (weights {}, KV {}, output {}, compute {}) · error {:+.2}%",
            mib(report.predicted.total_bytes),
            mib(measured.total_bytes),
            mib(measured.weights_bytes),
            mib(measured.kv_cache_bytes),
            mib(measured.output_bytes),
            mib(measured.compute_bytes),
            error * 100.0
        );
    }
}
