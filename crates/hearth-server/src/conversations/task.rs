//! An answer's own task: it generates the answer, sends its events to the client while the
//! client stays, and saves it every [`STREAMING_SAVE_INTERVAL`] and at its end, whether or not
//! the client stays. [`AnswerTasks`] lets a shutdown stop them all and wait for them.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use hearth_protocol::{FinishReason, RequestMetrics};
use hearth_store::{ConversationStore, MessageId, MessageStatus, Reasoning, StoreError};
use hearth_supervisor::{GenerationEvent, GenerationStream, SupervisorError};
use serde_json::{Map, Value};
use tokio::sync::{mpsc, watch};

use super::events::ChatEvent;
use super::{store_error, CONTENT_PARAM, STREAMING_SAVE_INTERVAL};
use crate::error::{ApiError, TYPE_INVALID_REQUEST};
use crate::models::ModelLease;
use crate::reasoning::ReasoningStream;

/// The answers being generated: a shutdown stops them all (each is saved as `stopped`) and
/// waits for them to be saved before the engine workers go.
#[derive(Debug)]
pub struct AnswerTasks {
    stop: watch::Sender<bool>,
    running: watch::Sender<usize>,
}

impl Default for AnswerTasks {
    fn default() -> Self {
        Self {
            stop: watch::channel(false).0,
            running: watch::channel(0).0,
        }
    }
}

/// Counts one answer as running for as long as it lives.
#[derive(Debug)]
struct RunningAnswer {
    tasks: Arc<AnswerTasks>,
}

impl Drop for RunningAnswer {
    fn drop(&mut self) {
        self.tasks
            .running
            .send_modify(|running| *running = running.saturating_sub(1));
    }
}

impl AnswerTasks {
    fn begin(self: &Arc<Self>) -> (RunningAnswer, watch::Receiver<bool>) {
        self.running.send_modify(|running| *running += 1);
        (
            RunningAnswer {
                tasks: self.clone(),
            },
            self.stop.subscribe(),
        )
    }

    /// Stops every answer, now and from now on.
    pub fn stop_all(&self) {
        self.stop.send_replace(true);
    }

    /// Waits until no answer runs, at most `limit`; whether they all ended.
    pub async fn wait_finished(&self, limit: Duration) -> bool {
        let mut running = self.running.subscribe();
        let ended = tokio::time::timeout(limit, async move {
            let _ = running.wait_for(|running| *running == 0).await;
        })
        .await;
        ended.is_ok()
    }
}

/// One answer to generate and save, independent of the client's connection ([`spawn`]).
pub(super) struct AnswerTask {
    pub store: Arc<ConversationStore>,
    pub message_id: MessageId,
    pub stream: GenerationStream,
    /// Held until the answer ends, so the model is not unloaded under it.
    pub lease: ModelLease,
    pub metrics: Arc<crate::Metrics>,
    pub sender: mpsc::Sender<ChatEvent>,
    /// Splits the model's thinking from its answer; both are sent and saved apart.
    pub reasoning: ReasoningStream,
}

/// Runs `task` on a task of its own, counted as running by `tasks` until it is saved, and
/// stopped (saved as `stopped`) by [`AnswerTasks::stop_all`].
pub(super) fn spawn(tasks: &Arc<AnswerTasks>, task: AnswerTask) {
    let (running, stop) = tasks.begin();
    tokio::spawn(run_answer(task, stop, running));
}

enum AnswerEnd {
    Done(FinishReason, RequestMetrics),
    Failed(SupervisorError),
    ClientLeft,
    /// The answer's message was removed (regenerated or edited away while it streamed).
    Removed,
}

async fn run_answer(task: AnswerTask, mut stop: watch::Receiver<bool>, running: RunningAnswer) {
    let AnswerTask {
        store,
        message_id,
        mut stream,
        lease,
        metrics,
        sender,
        mut reasoning,
    } = task;
    let mut content = String::new();
    let mut thinking = String::new();
    let mut unsaved = false;
    let mut save_timer = tokio::time::interval(STREAMING_SAVE_INTERVAL);
    save_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let end = loop {
        tokio::select! {
            event = stream.next() => match event {
                Some(Ok(GenerationEvent::Text { text, .. })) => {
                    let split = reasoning.push(&text);
                    if !split.reasoning.is_empty() {
                        thinking.push_str(&split.reasoning);
                        unsaved = true;
                        if sender.send(ChatEvent::reasoning(split.reasoning)).await.is_err() {
                            break AnswerEnd::ClientLeft;
                        }
                    }
                    if !split.content.is_empty() {
                        content.push_str(&split.content);
                        unsaved = true;
                        if sender.send(ChatEvent::token(split.content)).await.is_err() {
                            break AnswerEnd::ClientLeft;
                        }
                    }
                }
                Some(Ok(GenerationEvent::Started { .. })) => {}
                Some(Ok(GenerationEvent::Done {
                    finish_reason,
                    metrics,
                    ..
                })) => {
                    break AnswerEnd::Done(finish_reason, metrics)
                }
                Some(Err(error)) => break AnswerEnd::Failed(error),
                None => break AnswerEnd::Failed(SupervisorError::WorkerCrashed {
                    status: "worker exited".into(),
                }),
            },
            _ = save_timer.tick() => {
                if unsaved {
                    let saved_reasoning = stored_reasoning(&reasoning, &thinking);
                    match store.update_streaming_message(message_id, &content, &saved_reasoning) {
                        Ok(()) => {}
                        // Nothing to save it to any more: stop generating it.
                        Err(StoreError::MessageNotFound(_)) => break AnswerEnd::Removed,
                        Err(error) => tracing::warn!(%error, "cannot save a streaming answer"),
                    }
                    unsaved = false;
                }
            }
            () = sender.closed() => break AnswerEnd::ClientLeft,
            // A shutdown stops the answer like a client that leaves: saved as `stopped`.
            () = stopping(&mut stop) => break AnswerEnd::ClientLeft,
        }
    };
    // Dropping the stream before its end cancels the generation in the engine.
    drop(stream);
    // What the splitter held back (a possible tag, trailing whitespace) belongs to the answer
    // as saved; the client reads the saved message at the end.
    let held = reasoning.finish();
    thinking.push_str(&held.reasoning);
    content.push_str(&held.content);
    let saved_reasoning = stored_reasoning(&reasoning, &thinking);
    let (status, figures, failure) = match end {
        AnswerEnd::Done(finish_reason, figures) => {
            metrics.record_generation(lease.id(), finish_reason, &figures);
            let mut figures = answer_metrics(finish_reason, &figures);
            if let (Some(provider), Some(object)) = (lease.provider(), figures.as_object_mut()) {
                object.insert(PROVIDER_METRIC.into(), provider.into());
            }
            (MessageStatus::Complete, Some(figures), None)
        }
        AnswerEnd::Failed(error) => {
            metrics.record_stream_error();
            let api = ApiError::from_supervisor(error, CONTENT_PARAM);
            (MessageStatus::Error, None, Some(api))
        }
        AnswerEnd::ClientLeft => {
            metrics.record_client_disconnect(lease.id());
            (MessageStatus::Stopped, None, None)
        }
        AnswerEnd::Removed => {
            let removed = ApiError::new(
                StatusCode::CONFLICT,
                TYPE_INVALID_REQUEST,
                "This answer was removed (regenerated or edited away) while it was written.",
            )
            .with_code("answer_removed");
            let _ = sender.send(ChatEvent::error(&removed, None)).await;
            drop(running);
            return;
        }
    };
    drop(lease);
    match store.finish_message(
        message_id,
        &content,
        &saved_reasoning,
        status,
        figures.as_ref(),
    ) {
        Ok(saved) => {
            let final_event = match failure {
                Some(error) => ChatEvent::error(&error, Some(saved)),
                None => ChatEvent::done(saved),
            };
            let _ = sender.send(final_event).await;
        }
        Err(error) => {
            tracing::warn!(%error, "cannot save a finished answer");
            let api = store_error(error);
            let _ = sender.send(ChatEvent::error(&api, None)).await;
        }
    }
    drop(running);
}

/// An answer's thinking as the store keeps it.
fn stored_reasoning(stream: &ReasoningStream, text: &str) -> Reasoning {
    Reasoning {
        text: text.to_string(),
        tokens: stream.tokens(),
        ms: u64::try_from(stream.thought_for().as_millis()).unwrap_or(u64::MAX),
    }
}

/// Resolves once `stop` turns true (never, if its sender is gone).
async fn stopping(stop: &mut watch::Receiver<bool>) {
    loop {
        let stopped = *stop.borrow_and_update();
        if stopped {
            return;
        }
        if stop.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// The key of an answer's figures that names the remote provider that wrote it.
pub(crate) const PROVIDER_METRIC: &str = "provider";

/// The figures kept with an answer: everything but the list of every inter-token gap.
pub(crate) fn answer_metrics(finish_reason: FinishReason, figures: &RequestMetrics) -> Value {
    let mut value = serde_json::to_value(figures).unwrap_or_else(|_| Value::Object(Map::new()));
    if let Some(object) = value.as_object_mut() {
        object.remove("itl_ms");
        object.insert("finish_reason".into(), finish_reason.as_str().into());
    }
    value
}
