//! Talking to a remote provider over HTTP (blocking `ureq`, on threads of its own so the
//! server's runtime never waits on a remote): its model list, and a streamed generation
//! turned into the engine's own events, so every answering path (the API, the conversations)
//! serves a remote answer exactly as a local one, with Hearth's own TTFT/ITL figures.
//!
//! Every wait is bounded ([`RemoteTimeouts`]): a remote that is down fails within the connect
//! timeout, one that accepts and says nothing within the response timeout, one that stops
//! mid-stream within the idle timeout. A closed client (the answer's stream dropped) stops the
//! thread at its next chunk.

use std::io::{BufRead, BufReader, Read};
use std::time::{Duration, Instant};

use hearth_protocol::{
    FinishReason, MetricsRecorder, OutputConstraint, Prompt, RequestMetrics, Role, WorkerEvent,
};
use hearth_supervisor::{Generation, GenerationStream, RemoteFailure, SupervisorError};
use serde_json::Value;
use tokio::sync::mpsc;
use ureq::Agent;

use super::store::ProviderConfig;
use super::wire::{
    remote_error_message, RemoteChunk, RemoteJsonSchema, RemoteMessage, RemoteModel,
    RemoteModelList, RemoteRequest, RemoteResponseFormat, RemoteUsage, StreamOptions,
};
use crate::error::redact_paths;

/// The longest line of a remote's stream (one chunk); a longer one ends the answer.
const MAX_STREAM_LINE_BYTES: u64 = 1024 * 1024;
/// The largest model list or error body read from a remote.
const MAX_SMALL_BODY_BYTES: u64 = 4 * 1024 * 1024;
/// The longest remote error message passed on.
const MAX_REMOTE_MESSAGE_CHARS: usize = 500;

/// How long each part of a remote exchange may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteTimeouts {
    /// Making the connection (TCP and TLS): a remote that is down fails this fast.
    pub connect: Duration,
    /// From the request sent to the answer's headers (a busy cluster may queue requests).
    pub response: Duration,
    /// The longest silence inside a streamed answer.
    pub idle: Duration,
    /// The whole model list exchange (listing models must not wait on a slow remote).
    pub list: Duration,
}

impl Default for RemoteTimeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(3),
            response: Duration::from_secs(120),
            idle: Duration::from_secs(120),
            list: Duration::from_secs(5),
        }
    }
}

/// Where a generation goes: the provider, its key and the model's id there.
#[derive(Debug, Clone)]
pub struct RemoteTarget {
    pub provider: ProviderConfig,
    pub key: Option<String>,
    pub remote_model: String,
}

/// A failure of one exchange, before it becomes a [`SupervisorError::Remote`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteError {
    pub failure: RemoteFailure,
    pub message: String,
}

impl RemoteError {
    fn new(failure: RemoteFailure, message: impl Into<String>) -> Self {
        Self {
            failure,
            message: message.into(),
        }
    }

    fn into_supervisor(self, provider: &str) -> SupervisorError {
        SupervisorError::Remote {
            provider: provider.to_string(),
            failure: self.failure,
            message: self.message,
        }
    }
}

/// Two agents, as for downloads: one honouring the proxy environment, one without proxy for
/// loopback (a corporate proxy cannot reach this machine's 127.0.0.1).
#[derive(Debug, Clone)]
pub struct RemoteClient {
    internet_agent: Agent,
    loopback_agent: Agent,
    timeouts: RemoteTimeouts,
}

impl RemoteClient {
    pub fn new(timeouts: RemoteTimeouts) -> Self {
        let build = |use_proxy_environment: bool| -> Agent {
            let builder = Agent::config_builder()
                // Error statuses come back as responses, so their message can be passed on.
                .http_status_as_error(false)
                // A provider's URL is the one configured; a redirect elsewhere is not followed
                // (it would carry the key to another host).
                .max_redirects(0)
                .timeout_connect(Some(timeouts.connect))
                .timeout_recv_response(Some(timeouts.response))
                .timeout_per_read(Some(timeouts.idle))
                .user_agent(concat!("hearth/", env!("CARGO_PKG_VERSION")));
            let builder = if use_proxy_environment {
                builder
            } else {
                builder.proxy(None)
            };
            builder.build().into()
        };
        Self {
            internet_agent: build(true),
            loopback_agent: build(false),
            timeouts,
        }
    }

    fn agent(&self, url: &str) -> &Agent {
        if is_loopback_url(url) {
            &self.loopback_agent
        } else {
            &self.internet_agent
        }
    }

    /// The remote's `GET /models`, within [`RemoteTimeouts::list`].
    pub fn list_models(
        &self,
        provider: &ProviderConfig,
        key: Option<&str>,
    ) -> Result<Vec<RemoteModel>, RemoteError> {
        let url = format!("{}/models", provider.base_url);
        let mut request = self
            .agent(&url)
            .get(&url)
            .config()
            .timeout_global(Some(self.timeouts.list))
            .build();
        if let Some(key) = key {
            request = request.header("Authorization", format!("Bearer {key}"));
        }
        let response = request.call().map_err(map_ureq_error)?;
        let status = response.status().as_u16();
        let body = read_small_body(response.into_body().into_reader())?;
        if status != 200 {
            return Err(status_error(status, &body));
        }
        let list: RemoteModelList = serde_json::from_slice(&body).map_err(|_| {
            RemoteError::new(
                RemoteFailure::Broken,
                "its model list is not the JSON of an OpenAI-compatible server",
            )
        })?;
        Ok(list
            .data
            .into_iter()
            .filter(|model| !model.id.is_empty() && model.id.len() <= 256)
            .collect())
    }

    /// Starts a generation on the remote, on a thread of its own; its events arrive on the
    /// returned stream as an engine worker's would.
    pub fn generate(
        &self,
        target: RemoteTarget,
        generation: Generation,
        request_id: u64,
    ) -> GenerationStream {
        let (sender, receiver) = mpsc::unbounded_channel();
        let client = self.clone();
        let arrived_at = Instant::now();
        let spawned = std::thread::Builder::new()
            .name("hearth-remote".into())
            .spawn(move || {
                let provider = target.provider.name.clone();
                if let Err(error) =
                    client.run_generation(&target, &generation, request_id, arrived_at, &sender)
                {
                    let _ = sender.send(Err(error.into_supervisor(&provider)));
                }
            });
        if let Err(error) = spawned {
            tracing::error!(%error, "cannot start a thread for a remote generation");
        }
        GenerationStream::from_events(request_id, receiver)
    }

    fn run_generation(
        &self,
        target: &RemoteTarget,
        generation: &Generation,
        request_id: u64,
        arrived_at: Instant,
        events: &mpsc::UnboundedSender<Result<WorkerEvent, SupervisorError>>,
    ) -> Result<(), RemoteError> {
        let (path, body) = remote_request_body(&target.remote_model, generation)?;
        let url = format!("{}{path}", target.provider.base_url);
        let mut request = self
            .agent(&url)
            .post(&url)
            .header("Content-Type", "application/json")
            .header("Accept", "text/event-stream");
        if let Some(key) = &target.key {
            request = request.header("Authorization", format!("Bearer {key}"));
        }
        let response = request.send(&body[..]).map_err(map_ureq_error)?;
        let status = response.status().as_u16();
        let mut reader = response.into_body().into_reader();
        if status != 200 {
            let body = read_small_body(reader)?;
            return Err(status_error(status, &body));
        }
        let headers_at = Instant::now();
        let mut recorder = MetricsRecorder::new(arrived_at);
        recorder.admitted(headers_at, 0, 0);
        let started = WorkerEvent::Started {
            request_id,
            prompt_tokens: 0,
            cached_prompt_tokens: 0,
            template_source: None,
            dropped_messages: 0,
            thinking: None,
        };
        if events.send(Ok(started)).is_err() {
            return Ok(());
        }
        let mut lines = BufReader::new(&mut reader);
        let mut usage: Option<RemoteUsage> = None;
        let mut finish: Option<FinishReason> = None;
        let mut line = Vec::new();
        loop {
            line.clear();
            let read = (&mut lines)
                .take(MAX_STREAM_LINE_BYTES)
                .read_until(b'\n', &mut line)
                .map_err(map_io_error)?;
            if read == 0 {
                break;
            }
            if line.last() != Some(&b'\n') && read as u64 == MAX_STREAM_LINE_BYTES {
                return Err(RemoteError::new(
                    RemoteFailure::Broken,
                    "its stream sent a line longer than 1 MiB",
                ));
            }
            let text = String::from_utf8_lossy(&line);
            let Some(data) = text.trim_end().strip_prefix("data:") else {
                continue;
            };
            let data = data.trim_start();
            if data == "[DONE]" {
                break;
            }
            let chunk: RemoteChunk = match serde_json::from_str(data) {
                Ok(chunk) => chunk,
                Err(_) => {
                    return Err(RemoteError::new(
                        RemoteFailure::Broken,
                        "its stream sent a chunk that is not JSON",
                    ))
                }
            };
            if let Some(error) = &chunk.error {
                let message =
                    remote_error_message(error).unwrap_or_else(|| "the answer failed".into());
                return Err(RemoteError::new(
                    RemoteFailure::Broken,
                    clean_message(&message),
                ));
            }
            if chunk.usage.is_some() {
                usage = chunk.usage;
            }
            for choice in chunk.choices {
                let piece = choice
                    .delta
                    .and_then(|delta| delta.content)
                    .or(choice.text)
                    .unwrap_or_default();
                if !piece.is_empty() {
                    recorder.token_generated(Instant::now());
                    let token = WorkerEvent::Token {
                        request_id,
                        text: piece,
                        logprobs: Vec::new(),
                    };
                    if events.send(Ok(token)).is_err() {
                        return Ok(());
                    }
                }
                if let Some(reason) = choice.finish_reason {
                    finish = Some(finish_reason(&reason));
                }
            }
        }
        let Some(finish_reason) = finish else {
            return Err(RemoteError::new(
                RemoteFailure::Broken,
                "its answer broke off before its end",
            ));
        };
        let metrics = final_metrics(&mut recorder, headers_at, usage);
        let _ = events.send(Ok(WorkerEvent::Done {
            request_id,
            finish_reason,
            metrics,
            // OpenAI's stream does not say which stop string ended the text.
            stop_sequence: None,
        }));
        Ok(())
    }
}

/// The figures of a remote answer: Hearth's own timings, and the remote's token counts when it
/// sent them (a server may stream several tokens in one chunk).
fn final_metrics(
    recorder: &mut MetricsRecorder,
    headers_at: Instant,
    usage: Option<RemoteUsage>,
) -> RequestMetrics {
    if let Some(usage) = usage {
        recorder.admitted(headers_at, usage.prompt_tokens, 0);
    }
    let mut metrics = recorder.finish(Instant::now());
    if let Some(usage) = usage.filter(|usage| usage.completion_tokens > 0) {
        metrics.generated_tokens = usage.completion_tokens;
    }
    metrics
}

/// The endpoint path and JSON body for a generation: chat messages go to `/chat/completions`,
/// raw text to `/completions`. Only the fields every OpenAI-compatible server takes are sent
/// (top-k, min-p and the repetition penalty are the local engine's alone).
pub(crate) fn remote_request_body(
    remote_model: &str,
    generation: &Generation,
) -> Result<(&'static str, Vec<u8>), RemoteError> {
    let (path, messages, prompt) = match &generation.prompt {
        Prompt::Chat { messages } => (
            "/chat/completions",
            Some(
                messages
                    .iter()
                    .map(|message| RemoteMessage {
                        role: role_name(message.role),
                        content: &message.content,
                    })
                    .collect(),
            ),
            None,
        ),
        Prompt::Text { text } => ("/completions", None, Some(text.as_str())),
        Prompt::Tokens { .. } => {
            return Err(RemoteError::new(
                RemoteFailure::Status(400),
                "token-id prompts are for the local engine only",
            ))
        }
    };
    let sampling = &generation.sampling;
    let response_format = match &generation.constraint {
        None => None,
        Some(OutputConstraint::JsonObject) => Some(RemoteResponseFormat::JsonObject),
        Some(OutputConstraint::JsonSchema { schema }) => Some(RemoteResponseFormat::JsonSchema {
            json_schema: RemoteJsonSchema {
                name: "response",
                schema,
                strict: true,
            },
        }),
        Some(OutputConstraint::Grammar { .. }) => {
            return Err(RemoteError::new(
                RemoteFailure::Status(400),
                "GBNF grammars are for the local engine only",
            ))
        }
    };
    let request = RemoteRequest {
        model: remote_model,
        messages,
        prompt,
        stream: true,
        stream_options: StreamOptions {
            include_usage: true,
        },
        max_tokens: generation.max_tokens,
        temperature: sampling.temperature.max(0.0),
        top_p: sampling.top_p,
        stop: generation.stop.iter().map(String::as_str).collect(),
        seed: sampling.seed,
        presence_penalty: sampling.presence_penalty,
        frequency_penalty: sampling.frequency_penalty,
        response_format,
        ignore_eos: generation.ignore_eos,
    };
    let body = serde_json::to_vec(&request)
        .map_err(|error| RemoteError::new(RemoteFailure::Status(400), error.to_string()))?;
    Ok((path, body))
}

fn role_name(role: Role) -> &'static str {
    role.as_str()
}

fn finish_reason(reason: &str) -> FinishReason {
    match reason {
        "length" => FinishReason::Length,
        _ => FinishReason::Stop,
    }
}

/// A remote's error status and its message (or what the status means).
fn status_error(status: u16, body: &[u8]) -> RemoteError {
    let message = serde_json::from_slice::<Value>(body)
        .ok()
        .as_ref()
        .and_then(remote_error_message)
        .map(|message| clean_message(&message))
        .unwrap_or_else(|| match status {
            401 | 403 => "it refused the API key".into(),
            404 => "it does not know this path or model".into(),
            _ => format!("it answered HTTP {status}"),
        });
    RemoteError::new(RemoteFailure::Status(status), message)
}

/// A remote's message as Hearth passes it on: one line, bounded, no local paths.
fn clean_message(message: &str) -> String {
    let one_line: String = message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_REMOTE_MESSAGE_CHARS)
        .collect();
    redact_paths(one_line.trim())
}

fn read_small_body(reader: impl Read) -> Result<Vec<u8>, RemoteError> {
    let mut body = Vec::new();
    reader
        .take(MAX_SMALL_BODY_BYTES)
        .read_to_end(&mut body)
        .map_err(map_io_error)?;
    Ok(body)
}

fn map_ureq_error(error: ureq::Error) -> RemoteError {
    match error {
        ureq::Error::Timeout(ureq::Timeout::Connect | ureq::Timeout::Resolve) => RemoteError::new(
            RemoteFailure::Unreachable,
            "it could not be reached in time",
        ),
        ureq::Error::Timeout(_) => {
            RemoteError::new(RemoteFailure::TimedOut, "it did not answer in time")
        }
        ureq::Error::HostNotFound => {
            RemoteError::new(RemoteFailure::Unreachable, "its host name was not found")
        }
        ureq::Error::ConnectionFailed => {
            RemoteError::new(RemoteFailure::Unreachable, "the connection to it failed")
        }
        ureq::Error::Io(error) => map_io_error(error),
        other => RemoteError::new(RemoteFailure::Broken, clean_message(&other.to_string())),
    }
}

fn map_io_error(error: std::io::Error) -> RemoteError {
    use std::io::ErrorKind;
    if let Some(inner) = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<ureq::Error>())
    {
        if matches!(inner, ureq::Error::Timeout(_)) {
            return RemoteError::new(RemoteFailure::TimedOut, "it stopped sending in time");
        }
    }
    match error.kind() {
        ErrorKind::ConnectionRefused
        | ErrorKind::HostUnreachable
        | ErrorKind::NetworkUnreachable => {
            RemoteError::new(RemoteFailure::Unreachable, "it refused the connection")
        }
        ErrorKind::TimedOut | ErrorKind::WouldBlock => {
            RemoteError::new(RemoteFailure::TimedOut, "it stopped sending in time")
        }
        _ => RemoteError::new(RemoteFailure::Broken, "the connection to it broke"),
    }
}

/// Whether a URL's host is this machine (no proxy for it).
fn is_loopback_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .unwrap_or(url);
    let authority = rest.split('/').next().unwrap_or("");
    let host = if let Some(bracketed) = authority.strip_prefix('[') {
        bracketed.split(']').next().unwrap_or("")
    } else {
        authority
            .rsplit_once(':')
            .map_or(authority, |(host, _)| host)
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|address| address.is_loopback())
}

#[cfg(test)]
mod tests;
