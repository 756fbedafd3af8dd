//! The in-process engine harness shared by the engine's integration tests.

#![allow(dead_code)]

use std::path::Path;
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

use hearth_engine::EngineHandle;
use hearth_protocol::{
    ChatMessage, FinishReason, GenerateRequest, LoadParams, ModelInfo, Prompt, RequestMetrics,
    Role, SamplingParams, TemplateSource, WorkerError, WorkerEvent, WorkerRequest,
};

pub const EVENT_TIMEOUT: Duration = Duration::from_secs(120);

pub struct TestEngine {
    pub engine: EngineHandle,
    pub events: Receiver<WorkerEvent>,
    pub next_id: u64,
}

#[derive(Debug)]
pub struct Outcome {
    pub pieces: Vec<String>,
    pub result: Result<(FinishReason, RequestMetrics), WorkerError>,
}

impl Outcome {
    pub fn text(&self) -> String {
        self.pieces.concat()
    }
    pub fn done(&self) -> (FinishReason, &RequestMetrics) {
        match &self.result {
            Ok((reason, metrics)) => (*reason, metrics),
            Err(error) => panic!("generation failed: {error:?}"),
        }
    }
}

impl TestEngine {
    pub fn start() -> Self {
        Self::start_with(hearth_engine::EngineOptions::default())
    }

    pub fn start_with(options: hearth_engine::EngineOptions) -> Self {
        // As the `hearth` binary does: llama.cpp's log goes through tracing, and the capture
        // layer keeps the lines that explain a failed load.
        {
            use tracing_subscriber::layer::SubscriberExt;
            use tracing_subscriber::util::SubscriberInitExt;
            let _ = tracing_subscriber::registry()
                .with(hearth_engine::LlamaLogCapture)
                .try_init();
        }
        let (sender, events) = mpsc::channel();
        let engine = EngineHandle::spawn_with_options(
            move |event| {
                let _ = sender.send(event);
            },
            options,
        )
        .unwrap();
        Self {
            engine,
            events,
            next_id: 1,
        }
    }

    pub fn with_model(path: &Path, params: LoadParams) -> (Self, ModelInfo) {
        let mut engine = Self::start();
        let info = engine.load(path, params).unwrap();
        (engine, info)
    }

    pub fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    pub fn next_event(&self) -> WorkerEvent {
        self.events
            .recv_timeout(EVENT_TIMEOUT)
            .expect("engine event")
    }

    pub fn load(&mut self, path: &Path, params: LoadParams) -> Result<ModelInfo, WorkerError> {
        let request_id = self.id();
        self.engine.submit(WorkerRequest::Load {
            request_id,
            model_path: path.to_path_buf(),
            params,
        });
        match self.next_event() {
            WorkerEvent::Loaded { model, .. } => Ok(model),
            WorkerEvent::Error { error, .. } => Err(error),
            other => panic!("unexpected {other:?}"),
        }
    }

    pub fn submit(
        &mut self,
        prompt: Prompt,
        sampling: SamplingParams,
        max_tokens: Option<u32>,
        stop: &[&str],
    ) -> u64 {
        let request_id = self.id();
        self.engine.submit(WorkerRequest::Generate(GenerateRequest {
            request_id,
            prompt,
            sampling,
            max_tokens,
            stop: stop.iter().map(|s| s.to_string()).collect(),
            ignore_eos: false,
            constraint: None,
            logprobs: None,
            context_overflow: Default::default(),
            tools: Vec::new(),
            enable_thinking: true,
            speculate: true,
        }));
        request_id
    }

    pub fn collect(&self, request_id: u64) -> Outcome {
        let mut pieces = Vec::new();
        loop {
            let event = self.next_event();
            assert_eq!(event.request_id(), Some(request_id), "{event:?}");
            match event {
                WorkerEvent::Started { .. } => {}
                WorkerEvent::Token { text, .. } => pieces.push(text),
                WorkerEvent::Done {
                    finish_reason,
                    metrics,
                    ..
                } => {
                    return Outcome {
                        pieces,
                        result: Ok((finish_reason, metrics)),
                    }
                }
                WorkerEvent::Error { error, .. } => {
                    return Outcome {
                        pieces,
                        result: Err(error),
                    }
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    pub fn generate(
        &mut self,
        prompt: Prompt,
        sampling: SamplingParams,
        max_tokens: Option<u32>,
        stop: &[&str],
    ) -> Outcome {
        let id = self.submit(prompt, sampling, max_tokens, stop);
        self.collect(id)
    }

    pub fn render(&mut self, messages: Vec<ChatMessage>) -> (String, TemplateSource, u32) {
        let request_id = self.id();
        self.engine.submit(WorkerRequest::RenderChat {
            request_id,
            messages,
        });
        match self.next_event() {
            WorkerEvent::Rendered {
                text,
                template_source,
                prompt_tokens,
                ..
            } => (text, template_source, prompt_tokens),
            other => panic!("unexpected {other:?}"),
        }
    }
}

pub fn chat(user: &str) -> Prompt {
    Prompt::Chat {
        messages: vec![ChatMessage::new(Role::User, user)],
    }
}

impl TestEngine {
    /// Submits a fully specified request (its id is replaced by a fresh one).
    pub fn submit_request(&mut self, mut request: GenerateRequest) -> u64 {
        request.request_id = self.id();
        let id = request.request_id;
        self.engine.submit(WorkerRequest::Generate(request));
        id
    }

    /// Queued, running and decoded-batch counts, skipping events of other requests (returned
    /// in order so the caller can replay them).
    pub fn stats(&mut self) -> (u32, u32, u64, Vec<WorkerEvent>) {
        let request_id = self.id();
        self.engine.submit(WorkerRequest::Stats { request_id });
        let mut others = Vec::new();
        loop {
            match self.next_event() {
                WorkerEvent::Stats {
                    queued,
                    running,
                    steps,
                    ..
                } => return (queued, running, steps, others),
                other => others.push(other),
            }
        }
    }
}

/// A greedy request with defaults for everything else.
pub fn greedy_request(prompt: Prompt, max_tokens: u32) -> GenerateRequest {
    GenerateRequest {
        request_id: 0,
        prompt,
        sampling: SamplingParams::greedy(),
        max_tokens: Some(max_tokens),
        stop: Vec::new(),
        ignore_eos: false,
        constraint: None,
        logprobs: None,
        context_overflow: Default::default(),
        tools: Vec::new(),
        enable_thinking: true,
        speculate: true,
    }
}

/// Collects the events of several concurrent requests until each has ended.
pub fn collect_all(engine: &TestEngine, ids: &[u64]) -> std::collections::HashMap<u64, Outcome> {
    let mut pieces: std::collections::HashMap<u64, Vec<String>> =
        ids.iter().map(|id| (*id, Vec::new())).collect();
    let mut outcomes = std::collections::HashMap::new();
    while outcomes.len() < ids.len() {
        let event = engine.next_event();
        let Some(id) = event.request_id() else {
            continue;
        };
        match event {
            WorkerEvent::Token { text, .. } => pieces.entry(id).or_default().push(text),
            WorkerEvent::Done {
                finish_reason,
                metrics,
                ..
            } => {
                outcomes.insert(
                    id,
                    Outcome {
                        pieces: pieces.remove(&id).unwrap_or_default(),
                        result: Ok((finish_reason, metrics)),
                    },
                );
            }
            WorkerEvent::Error { error, .. } => {
                outcomes.insert(
                    id,
                    Outcome {
                        pieces: pieces.remove(&id).unwrap_or_default(),
                        result: Err(error),
                    },
                );
            }
            _ => {}
        }
    }
    outcomes
}
