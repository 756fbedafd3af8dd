//! Server-sent events, written once for every stream the server sends: the OpenAI
//! completions (`handlers/streaming.rs`), the conversation answers (`conversations/`) and
//! the download progress (`management.rs`).
//!
//! An event is one `data: <JSON>\n\n` frame (no `event:` names: the conversation events say
//! what they are in their `type`); OpenAI's streams end with [`DONE`]. Anthropic's Messages
//! stream (`anthropic.rs`) names each event, as its clients dispatch on the name
//! ([`named_frame`]). Every stream is
//! `text/event-stream`, `Cache-Control: no-cache`, and asks reverse proxies not to buffer it.

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue};
use axum::response::Response;
use futures_util::{Stream, StreamExt};
use serde::Serialize;
use tokio::sync::mpsc;

/// The frame that ends an OpenAI stream.
pub(crate) const DONE: &str = "data: [DONE]\n\n";

/// One event as its `data:` frame.
pub(crate) fn frame(event: &impl Serialize) -> String {
    // The wire types serialize infallibly (no maps with non-string keys, no failing impls).
    let json = serde_json::to_string(event).unwrap_or_else(|error| {
        tracing::error!(%error, "an event could not be serialized");
        "null".to_string()
    });
    format!("data: {json}\n\n")
}

/// One event as its `event: <name>` and `data:` frame.
pub(crate) fn named_frame(name: &str, event: &impl Serialize) -> String {
    format!("event: {name}\n{}", frame(event))
}

/// A response whose body is `frames`, each already framed ([`frame`], [`DONE`]); several
/// frames may travel in one piece.
pub(crate) fn response(frames: impl Stream<Item = Bytes> + Send + 'static) -> Response {
    let mut response = Response::new(Body::from_stream(frames.map(Ok::<Bytes, Infallible>)));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Tell reverse proxies not to buffer the stream.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// A response of one frame per event, until `events` ends.
pub(crate) fn events<T: Serialize>(events: impl Stream<Item = T> + Send + 'static) -> Response {
    response(events.map(|event| Bytes::from(frame(&event))))
}

/// [`events`] of what a task sends on a bounded channel, until every sender is gone.
pub(crate) fn from_channel<T: Serialize + Send + 'static>(receiver: mpsc::Receiver<T>) -> Response {
    events(futures_util::stream::unfold(
        receiver,
        |mut receiver| async move {
            let event = receiver.recv().await?;
            Some((event, receiver))
        },
    ))
}

/// [`events`] of what a callback sends on an unbounded channel, until every sender is gone.
pub(crate) fn from_unbounded_channel<T: Serialize + Send + 'static>(
    receiver: mpsc::UnboundedReceiver<T>,
) -> Response {
    events(futures_util::stream::unfold(
        receiver,
        |mut receiver| async move {
            let event = receiver.recv().await?;
            Some((event, receiver))
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    async fn body_of(response: Response) -> String {
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn events_are_data_frames_with_stream_headers() {
        let (sender, receiver) = mpsc::channel(4);
        sender
            .send(json!({"type": "token", "text": "a\nb"}))
            .await
            .unwrap();
        sender.send(json!({"type": "done"})).await.unwrap();
        drop(sender);
        let response = from_channel(receiver);
        let headers = response.headers();
        assert_eq!(headers[header::CONTENT_TYPE], "text/event-stream");
        assert_eq!(headers[header::CACHE_CONTROL], "no-cache");
        assert_eq!(headers["x-accel-buffering"], "no");
        assert_eq!(
            body_of(response).await,
            "data: {\"text\":\"a\\nb\",\"type\":\"token\"}\n\ndata: {\"type\":\"done\"}\n\n"
        );
    }

    #[tokio::test]
    async fn unbounded_channels_and_preframed_bodies_take_the_same_shape() {
        let (sender, receiver) = mpsc::unbounded_channel();
        sender.send(json!({"state": "downloading"})).unwrap();
        drop(sender);
        assert_eq!(
            body_of(from_unbounded_channel(receiver)).await,
            "data: {\"state\":\"downloading\"}\n\n"
        );
        let frames = futures_util::stream::iter([
            Bytes::from(frame(&json!({"a": 1}))),
            Bytes::from_static(DONE.as_bytes()),
        ]);
        assert_eq!(
            body_of(response(frames)).await,
            "data: {\"a\":1}\n\ndata: [DONE]\n\n"
        );
        assert_eq!(
            named_frame("ping", &json!({"type": "ping"})),
            "event: ping\ndata: {\"type\":\"ping\"}\n\n"
        );
    }
}
