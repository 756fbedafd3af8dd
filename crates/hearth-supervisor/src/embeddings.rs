//! [`Supervisor::embed`]: texts to embeddings through the worker. The worker sends each
//! input's vector as soon as its batch is decoded; this collects them in input order. A
//! caller that stops waiting (a closed HTTP connection) cancels the rest in the worker.

use hearth_protocol::{EmbedRequest, EmbeddingInput, WorkerEvent, WorkerRequest};

use crate::worker::SharedStdin;
use crate::{next_reply, send_cancel, Supervisor, SupervisorError};

/// The embeddings of a request's inputs, in input order, and the tokens they took.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    pub vectors: Vec<Vec<f32>>,
    pub prompt_tokens: u32,
}

/// Sends the request's `Cancel` if it is dropped before its answer arrived.
struct CancelOnDrop {
    stdin: Option<SharedStdin>,
    request_id: u64,
    finished: bool,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        if let (Some(stdin), Ok(runtime)) =
            (self.stdin.take(), tokio::runtime::Handle::try_current())
        {
            let request_id = self.request_id;
            runtime.spawn(async move { send_cancel(&stdin, request_id).await });
        }
    }
}

impl Supervisor {
    /// Embeds `inputs` with the loaded model: one pooled, L2-normalized vector per input.
    pub async fn embed(&self, inputs: Vec<EmbeddingInput>) -> Result<Embeddings, SupervisorError> {
        let count = inputs.len();
        let mut state = self.state.lock().await;
        if state.loaded.is_none() {
            return Err(SupervisorError::NoModelLoaded);
        }
        self.ensure_worker(&mut state).await?;
        let request_id = self.new_request_id();
        let request = WorkerRequest::Embed(EmbedRequest { request_id, inputs });
        let mut events = self.send(&mut state, request_id, request).await?;
        let mut guard = CancelOnDrop {
            stdin: state.worker.as_ref().map(|worker| worker.stdin.clone()),
            request_id,
            finished: false,
        };
        drop(state);
        let mut vectors: Vec<Option<Vec<f32>>> = vec![None; count];
        loop {
            let event = next_reply(&mut events).await;
            if !matches!(event, Ok(WorkerEvent::Embedding { .. })) {
                guard.finished = true;
            }
            match event? {
                WorkerEvent::Embedding {
                    index, embedding, ..
                } => match vectors.get_mut(index as usize) {
                    Some(slot) => *slot = Some(embedding),
                    None => {
                        return Err(SupervisorError::Protocol(format!(
                            "embedding {index} of {count} inputs"
                        )))
                    }
                },
                WorkerEvent::Embedded { prompt_tokens, .. } => {
                    let vectors =
                        vectors
                            .into_iter()
                            .collect::<Option<Vec<_>>>()
                            .ok_or_else(|| {
                                SupervisorError::Protocol("an input without its embedding".into())
                            })?;
                    return Ok(Embeddings {
                        vectors,
                        prompt_tokens,
                    });
                }
                other => return Err(SupervisorError::Protocol(format!("{other:?}"))),
            }
        }
    }
}
