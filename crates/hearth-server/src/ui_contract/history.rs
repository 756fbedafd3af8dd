//! The history's side of the contract: the conversation routes' answers (created, read,
//! renamed, listed, a damaged row shown with its notices) and a conversation answer's
//! stream of events (start, tokens, thinking, done, errors saved or not).

use axum::http::Method;
use hearth_protocol::{ErrorKind, FinishReason, RequestMetrics, WorkerError};
use hearth_store::{Message, MessageStatus, NewMessage, Role};
use hearth_supervisor::SupervisorError;
use serde_json::json;

use super::{call, call_sorted, data_of, Samples};
use crate::conversations::answer_metrics;
use crate::conversations::events::{ChatEvent, ChatEventType, StartEvent};
use crate::error::ApiError;
use crate::wire::SortedKeys;
use crate::AppState;

fn figures() -> RequestMetrics {
    RequestMetrics {
        prompt_tokens: 12,
        cached_prompt_tokens: 2,
        generated_tokens: 3,
        ttft_ms: 40.0,
        e2e_ms: 90.0,
        tpot_ms: 25.0,
        itl_ms: vec![20.0, 30.0],
        decode_tokens_per_s: 40.0,
        ..RequestMetrics::default()
    }
}

/// The conversation routes' answers, and a conversation's stream of events.
pub(super) async fn conversation_samples(state: &AppState, samples: &mut Samples) {
    let created = call(
        state,
        Method::POST,
        "/api/conversations",
        Some(
            json!({"title": "Garden", "model": "m", "system_prompt": "Be brief.",
            "settings": {"temperature": 0.3, "stop": ["\n"]}}),
        ),
    )
    .await;
    samples.add("Conversation", "POST /api/conversations", created.clone());
    let id = created["id"].as_i64().unwrap();
    let store = state.conversations.clone().unwrap();
    let append = |role, content: &str, status, metrics| {
        store
            .append_message(
                id,
                NewMessage {
                    role,
                    content: content.into(),
                    status,
                    metrics,
                },
            )
            .unwrap()
    };
    let question = append(Role::User, "Which bean?", MessageStatus::Complete, None);
    let metrics = answer_metrics(FinishReason::Stop, &figures());
    let answer = append(
        Role::Assistant,
        "Runner beans.",
        MessageStatus::Complete,
        Some(metrics),
    );
    let path = format!("/api/conversations/{id}");
    samples.add(
        "ConversationWithMessages",
        format!("GET {path}"),
        call_sorted(state, Method::GET, &path, None).await,
    );
    let patched = call_sorted(state, Method::PATCH, &path, Some(json!({"title": "Beans"}))).await;
    samples.add("Conversation", format!("PATCH {path}"), patched);
    for item in data_of(&call_sorted(state, Method::GET, "/api/conversations", None).await) {
        samples.add("Conversation", "GET /api/conversations", item);
    }

    // A row the store could only partly read: `notice`, and a `hidden` message.
    let mut damaged = store.conversation_with_messages(id).unwrap();
    damaged.conversation.notice = Some("The settings could not be read.".into());
    damaged.messages[0].hidden = true;
    damaged.messages[0].notice = Some("This message could not be read.".into());
    samples.add_typed(
        "ConversationWithMessages",
        "a damaged conversation",
        &SortedKeys(&damaged),
    );

    chat_event_samples(id, question, answer, samples);
}

fn chat_event_samples(
    conversation_id: i64,
    question: Message,
    answer: Message,
    samples: &mut Samples,
) {
    let streaming = Message {
        content: String::new(),
        status: MessageStatus::Streaming,
        metrics: None,
        ..answer.clone()
    };
    let start = ChatEvent::Start(Box::new(StartEvent {
        assistant_message: SortedKeys(streaming),
        conversation_id,
        dropped_messages: 1,
        model: "m".into(),
        n_ctx: Some(4096),
        prompt_tokens: 12,
        event_type: ChatEventType::Start,
        user_message: SortedKeys(question),
    }));
    samples.add_typed("ChatEvent", "start", &start);
    samples.add_typed("ChatEvent", "token", &ChatEvent::token("Run".into()));
    samples.add_typed(
        "ChatEvent",
        "reasoning",
        &ChatEvent::reasoning("Beans climb.".into()),
    );
    samples.add_typed("ChatEvent", "done", &ChatEvent::done(answer.clone()));
    let thought = Message {
        reasoning: hearth_store::Reasoning {
            text: "Which beans climb?".into(),
            tokens: 5,
            ms: 1250,
        },
        ..answer.clone()
    };
    samples.add_typed(
        "ChatEvent",
        "done, after thinking",
        &ChatEvent::done(thought),
    );
    let mut too_long = WorkerError::new(ErrorKind::ContextLengthExceeded, "too long");
    too_long.prompt_tokens = Some(5000);
    too_long.n_ctx = Some(4096);
    let error = ApiError::from_supervisor(SupervisorError::Worker(too_long), "content");
    let failed = Message {
        status: MessageStatus::Error,
        metrics: None,
        ..answer
    };
    samples.add_typed(
        "ChatEvent",
        "error, saved",
        &ChatEvent::error(&error, Some(failed)),
    );
    samples.add_typed(
        "ChatEvent",
        "error, not saved",
        &ChatEvent::error(&ApiError::model_not_found("m"), None),
    );
}
