//! One loaded model's life on the engine thread: load it (with the out-of-memory retry),
//! report it, then run the loop that takes requests off the channel between steps until a
//! new load or a shutdown ends the session. Requests that need no slot (tokenize, render,
//! stats, memory) are answered here; `Generate` only joins the queue, for admission.

use std::path::Path;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hearth_protocol::{
    EmbedRequest, ErrorKind, GenerateRequest, GpuLayers, LoadParams, ModelInfo, SpeculativeMode,
    TemplateSource, WorkerError, WorkerEvent, WorkerRequest,
};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::model::LlamaModel;

use super::embedding::Embedder;
use super::tiers::Tiers;
use super::{
    error_event, Commands, EngineOptions, EventSink, SchedulerGauges, Session, SessionEnd,
};
use crate::ceiling;
use crate::constraint::{GrammarBuilder, GrammarLimits};
use crate::load::{self, file_name, LlamaLogCapture};
use crate::memory;
use crate::offload;
use crate::speculative::{self, DraftModel, Guesser};
use crate::template::ChatTemplate;

mod serving;

/// How often an engine with nothing to step but work on helper threads (grammars being built,
/// constrained tokens being sampled) looks for their results.
pub(super) const HELPER_POLL_INTERVAL: Duration = Duration::from_millis(2);

pub(super) fn engine_main(
    receiver: Receiver<WorkerRequest>,
    mut sink: Box<dyn EventSink>,
    gauges: &Arc<SchedulerGauges>,
    options: EngineOptions,
) {
    let commands = Commands::new(receiver);
    let mut next_load: Option<SessionEnd> = None;
    loop {
        let request = match next_load.take() {
            Some(load) => load,
            None => match wait_for_load(&commands, sink.as_mut()) {
                Some(load) => load,
                None => return,
            },
        };
        let SessionEnd::Load {
            request_id,
            model_path,
            params,
        } = request
        else {
            return;
        };
        // Before the ceiling, which leaves room for the host tier.
        let params = crate::kv_host_budget::resolved(&model_path, params);
        if options.memory_ceiling {
            ceiling::set_for_model(&model_path, &params);
        }
        let session = run_model_session(
            &model_path,
            &params,
            request_id,
            &commands,
            sink.as_mut(),
            gauges,
            options.grammar,
        );
        gauges.unload();
        match session {
            Ok(end @ SessionEnd::Load { .. }) => next_load = Some(end),
            Ok(SessionEnd::Shutdown) => return,
            Err(error) => sink.emit(error_event(Some(request_id), error)),
        }
    }
}

/// Before any model is loaded, answers everything but `Load` with an error.
fn wait_for_load(commands: &Commands, sink: &mut dyn EventSink) -> Option<SessionEnd> {
    loop {
        match commands.recv() {
            Err(_) | Ok(WorkerRequest::Shutdown) => return None,
            Ok(WorkerRequest::Load {
                request_id,
                model_path,
                params,
            }) => {
                return Some(SessionEnd::Load {
                    request_id,
                    model_path,
                    params,
                })
            }
            Ok(WorkerRequest::Cancel { .. }) => {}
            Ok(WorkerRequest::Devices { request_id }) => sink.emit(devices_event(request_id)),
            Ok(WorkerRequest::Generate(GenerateRequest { request_id, .. }))
            | Ok(WorkerRequest::Embed(EmbedRequest { request_id, .. }))
            | Ok(WorkerRequest::Tokenize { request_id, .. })
            | Ok(WorkerRequest::RenderChat { request_id, .. })
            | Ok(WorkerRequest::MemoryReport { request_id })
            | Ok(WorkerRequest::Stats { request_id }) => sink.emit(error_event(
                Some(request_id),
                WorkerError::new(ErrorKind::NoModelLoaded, "no model is loaded"),
            )),
        }
    }
}

/// Loads one model, serves requests until a new load or a shutdown, then frees everything.
/// With `--gpu-layers auto`, a load that runs out of memory (the weights or the context) is
/// retried once with a smaller offload, and the log says so.
fn run_model_session(
    model_path: &Path,
    params: &LoadParams,
    load_request_id: u64,
    commands: &Commands,
    sink: &mut dyn EventSink,
    gauges: &Arc<SchedulerGauges>,
    grammar_limits: GrammarLimits,
) -> Result<SessionEnd, WorkerError> {
    let started = Instant::now();
    // A proposed draft model (the catalog's) stays out unless the planner advises it.
    let (resolved, draft_verdict) = speculative::choice::resolve(model_path, params);
    let params = &resolved;
    let gpu_devices = crate::backends::gpu_device_indices();
    let mut n_gpu_layers = offload::resolve_gpu_layers(model_path, params, &gpu_devices);
    let mut may_retry = params.n_gpu_layers == GpuLayers::Auto && n_gpu_layers > 0;
    loop {
        let context_params = load::context_params(model_path, params, n_gpu_layers)
            .map_err(|e| e.to_worker_error())?;
        let failure = match load::load_model(model_path, params, n_gpu_layers, &gpu_devices) {
            Err(error) => error,
            Ok(model) => {
                // Shared with the threads that build grammar samplers (`constraint`).
                let model = Arc::new(model);
                let backend = load::backend().map_err(|detail| {
                    load::LoadError::NoBackend {
                        path: model_path.to_path_buf(),
                        detail,
                    }
                    .to_worker_error()
                })?;
                LlamaLogCapture::clear();
                let embedding_params = context_params.clone();
                let context = model.new_context(backend, context_params);
                match context {
                    Ok(context) => {
                        let draft = load_draft(&model, params, n_gpu_layers, &gpu_devices)?;
                        let loaded = LoadedModel {
                            n_gpu_layers,
                            gpu_devices: &gpu_devices,
                            started,
                            grammar_limits,
                            embedding_params,
                            draft_verdict: draft_verdict.clone(),
                        };
                        let guesser = guesser(params, draft.as_ref(), n_gpu_layers)?;
                        return Ok(serve_model(
                            model_path,
                            params,
                            &model,
                            context,
                            guesser,
                            loaded,
                            load_request_id,
                            commands,
                            sink,
                            gauges,
                        ));
                    }
                    Err(_) => load::classify_load_failure(model_path, &LlamaLogCapture::take()),
                }
            }
        };
        if !(may_retry && failure.kind() == ErrorKind::OutOfMemory) {
            return Err(failure.to_worker_error());
        }
        let replanned = offload::planned_gpu_layers(model_path, params).ok();
        let retry = offload::smaller_offload(n_gpu_layers, replanned);
        tracing::warn!(
            model = %file_name(model_path),
            "out of memory with {n_gpu_layers} GPU layers ({failure}); retrying once with {retry}"
        );
        n_gpu_layers = retry;
        may_retry = false;
    }
}

/// The draft model of `--speculative draft`, checked against the model's vocabulary; `None`
/// for the other modes.
fn load_draft(
    model: &LlamaModel,
    params: &LoadParams,
    n_gpu_layers: u32,
    gpu_devices: &[usize],
) -> Result<Option<LlamaModel>, WorkerError> {
    if params.speculative != SpeculativeMode::Draft {
        return Ok(None);
    }
    let Some(path) = params.draft_model.as_deref() else {
        return Err(WorkerError::new(
            ErrorKind::InvalidRequest,
            "speculative decoding with a draft model needs a draft model file",
        ));
    };
    // The draft goes where the model goes: fully offloaded with it, or on the CPU.
    let draft_layers = if n_gpu_layers > 0 { u32::MAX } else { 0 };
    let draft = load::load_model(path, params, draft_layers, gpu_devices).map_err(|error| {
        let error = error.to_worker_error();
        WorkerError::new(error.kind, format!("draft model: {}", error.message))
    })?;
    speculative::draft::check_vocabulary(model, &draft)?;
    Ok(Some(draft))
}

/// The session's guesser: n-gram lookup, the draft model in a context of its own, or none.
fn guesser<'draft>(
    params: &LoadParams,
    draft: Option<&'draft LlamaModel>,
    n_gpu_layers: u32,
) -> Result<Guesser<'draft>, WorkerError> {
    match (params.speculative, draft) {
        (SpeculativeMode::Ngram, _) => Ok(Guesser::Ngram),
        (SpeculativeMode::Draft, Some(draft)) => {
            let path = params.draft_model.as_deref().unwrap_or(Path::new("draft"));
            let context_params = load::context_params(path, params, n_gpu_layers)
                .map_err(|e| e.to_worker_error())?;
            let backend = load::backend()
                .map_err(|detail| WorkerError::new(ErrorKind::LoadFailed, detail))?;
            let context = draft
                .new_context(backend, context_params)
                .map_err(|error| {
                    WorkerError::new(
                        ErrorKind::LoadFailed,
                        format!("draft model: cannot create its context: {error}"),
                    )
                })?;
            let n_seq = params.n_parallel.max(1) as usize;
            Ok(Guesser::Draft(Box::new(DraftModel::new(
                draft, context, n_seq,
            ))))
        }
        _ => Ok(Guesser::Off),
    }
}

/// What the load decided, for the `Loaded` report.
struct LoadedModel<'a> {
    n_gpu_layers: u32,
    gpu_devices: &'a [usize],
    started: Instant,
    grammar_limits: GrammarLimits,
    /// The generation context's parameters, which the embedding context starts from.
    embedding_params: llama_cpp_2::context::params::LlamaContextParams,
    /// The planner's verdict on a proposed draft model.
    draft_verdict: Option<hearth_protocol::DraftVerdict>,
}

/// Reports the loaded model and runs its session until a new load or a shutdown.
#[allow(clippy::too_many_arguments)]
fn serve_model(
    model_path: &Path,
    params: &LoadParams,
    model: &Arc<LlamaModel>,
    context: LlamaContext<'_>,
    guesser: Guesser<'_>,
    loaded: LoadedModel<'_>,
    load_request_id: u64,
    commands: &Commands,
    sink: &mut dyn EventSink,
    gauges: &Arc<SchedulerGauges>,
) -> SessionEnd {
    let template = ChatTemplate::detect(model);
    if template.source() == TemplateSource::FallbackChatml {
        tracing::warn!(
            model = %file_name(model_path),
            "the model has no chat template; using ChatML"
        );
    }
    let n_ctx = context.n_ctx();
    let n_parallel = params.n_parallel;
    let info = ModelInfo {
        file_name: file_name(model_path),
        architecture: model
            .meta_val_str("general.architecture")
            .unwrap_or_else(|_| "unknown".to_string()),
        n_params: model.n_params(),
        size_bytes: model.size(),
        n_vocab: model.n_vocab(),
        n_layer: model.n_layer(),
        n_embd: u32::try_from(model.n_embd_out()).unwrap_or(0),
        n_ctx_train: model.n_ctx_train(),
        n_ctx,
        n_ctx_per_sequence: n_ctx / n_parallel,
        n_parallel,
        n_threads: params.n_threads.unwrap_or_else(load::default_threads),
        n_batch: context.n_batch(),
        n_ubatch: context.n_ubatch(),
        n_gpu_layers: loaded.n_gpu_layers,
        gpu_devices: crate::backends::device_names(if loaded.n_gpu_layers > 0 {
            loaded.gpu_devices
        } else {
            &[]
        }),
        flash_attention: params.flash_attention,
        kv_cache_type: params.kv_cache_type,
        template_source: template.source(),
        load_time_ms: loaded.started.elapsed().as_secs_f64() * 1000.0,
        speculative: guesser.mode(),
        draft_model: params
            .draft_model
            .as_deref()
            .filter(|_| guesser.mode() == SpeculativeMode::Draft)
            .map(file_name),
        kv_host_budget_bytes: params.kv_host_budget_bytes.unwrap_or(0),
        draft_verdict: loaded.draft_verdict.clone(),
    };
    tracing::info!(model = %info.file_name, load_ms = info.load_time_ms, n_ctx, n_parallel, "model loaded");
    sink.emit(WorkerEvent::Loaded {
        request_id: load_request_id,
        model: info,
    });
    let grammars = GrammarBuilder::with_limits(model.clone(), loaded.grammar_limits);
    let embedder = Embedder::new(loaded.embedding_params);
    // Speculative decoding's guesser is set apart: its draft context borrows the draft model.
    let mut session = Session::new(
        model,
        context,
        template,
        grammars,
        embedder,
        commands,
        params,
        gauges.clone(),
    );
    session.guesser = guesser;
    let reuse = session.prefix_cache && session.partial_cache_reuse;
    session.tiers = Tiers::new(model_path, params, reuse);
    session.run(sink)
}

/// The answer to `Devices`: every device, and what became of each backend library.
pub(super) fn devices_event(request_id: u64) -> WorkerEvent {
    load::route_llama_logs();
    WorkerEvent::Devices {
        request_id,
        devices: memory::backend_devices(),
        backends: crate::backends::backends().report.clone(),
    }
}
