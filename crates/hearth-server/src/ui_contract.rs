//! The UI's types checked against what the server sends: `ui/src/lib/types.ts` declares the
//! shapes the web UI reads, and this test sends real requests through `router(state)` (the
//! conversations, settings, about, health, model list and model library routes) and builds the
//! streamed events (conversation answers, download statuses), then checks every JSON value
//! against its TypeScript declaration (`ts.rs` reads the file):
//!
//! - a key the server sends that types.ts does not declare fails (unless the interface has an
//!   index signature), as does a required field the server leaves out, or a value of another
//!   kind (a string where types.ts says number, a literal outside its union);
//! - a field types.ts declares that none of the values here holds fails too, unless it is in
//!   [`UI_ONLY_FIELDS`] with the reason the UI keeps it.
//!
//! So a field renamed, added or removed on either side fails here, naming it.

mod ts;

use std::path::Path;
use std::sync::Arc;

use axum::http::Method;
use hearth_models::{
    DownloadConfig, DownloadManager, DownloadState, DownloadStatus, HubClient, ImportOrigin,
    ModelLibrary, ModelSource,
};
use hearth_protocol::{ErrorKind, FinishReason, RequestMetrics, WorkerError};
use hearth_store::{ConversationStore, Message, MessageStatus, NewMessage, Role};
use hearth_supervisor::SupervisorError;
use serde::Serialize;
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::conversations::events::{ChatEvent, ChatEventType, StartEvent};
use crate::conversations::{answer_metrics, SAMPLING_SETTING_KEYS};
use crate::error::ApiError;
use crate::handlers::{Health, HealthLoading, HealthModel};
use crate::management::{installed_json, status_json};
use crate::test_support::{loopback_state, request};
use crate::wire::{assert_sorted, SortedKeys};
use crate::{router, AppState, ServableModel};

/// The file checked.
const TYPES_TS: &str = include_str!("../../../ui/src/lib/types.ts");

/// Fields types.ts declares that the server never sends, and why the UI keeps them.
const UI_ONLY_FIELDS: &[(&str, &str)] = &[
    (
        "AnswerMetrics.completion_tokens",
        "OpenAI's name; the UI reads it before the server's generated_tokens",
    ),
    (
        "DownloadStatus.downloaded_bytes",
        "the first UI contract's name; the UI reads it after the server's bytes_done",
    ),
];

/// One JSON value and the types.ts declaration it must match.
struct Sample {
    ty: &'static str,
    what: String,
    value: Value,
}

#[derive(Default)]
struct Samples(Vec<Sample>);

impl Samples {
    fn add(&mut self, ty: &'static str, what: impl Into<String>, value: Value) {
        self.0.push(Sample {
            ty,
            what: what.into(),
            value,
        });
    }

    /// A typed value, whose JSON must also keep the sorted key order of the `json!` objects
    /// the typed shapes replaced.
    fn add_typed(&mut self, ty: &'static str, what: impl Into<String>, value: &impl Serialize) {
        assert_sorted(value);
        self.add(ty, what, serde_json::to_value(value).unwrap());
    }
}

/// A successful answer's JSON.
async fn call(state: &AppState, method: Method, path: &str, body: Option<Value>) -> Value {
    call_raw(state, method, path, body).await.1
}

/// A successful answer's JSON, which must be written with sorted keys, as the `json!`
/// objects its typed shapes replaced were.
async fn call_sorted(state: &AppState, method: Method, path: &str, body: Option<Value>) -> Value {
    let (text, value) = call_raw(state, method, path, body).await;
    assert_eq!(text, value.to_string(), "{path}: keys not in sorted order");
    value
}

async fn call_raw(
    state: &AppState,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (String, Value) {
    let response = router(state.clone())
        .oneshot(request(method, path, body))
        .await
        .unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    assert!(status.is_success(), "{path}: {status} {value}");
    (text, value)
}

fn data_of(list: &Value) -> Vec<Value> {
    list["data"].as_array().cloned().unwrap_or_default()
}

/// A server with every part: history, settings, a model library and a known machine.
fn full_state(home: &Path) -> AppState {
    let hub = HubClient::new("http://127.0.0.1:9", DownloadConfig::default()).unwrap();
    let models_dir = home.join("models");
    let model = ServableModel {
        id: "m".into(),
        path: "/nonexistent/m.gguf".into(),
        created: 1_700_000_000,
    };
    AppState {
        conversations: Some(Arc::new(
            ConversationStore::open(&home.join("hearth.sqlite3")).unwrap(),
        )),
        settings: Some(Arc::new(crate::settings::SettingsStore::new(home))),
        downloads: Some(Arc::new(DownloadManager::new(
            ModelLibrary::new(&models_dir),
            hub,
        ))),
        machine: Arc::new(crate::system::MachineInfo::with_report(
            crate::management::tests::laptop_report(),
        )),
        ..loopback_state(vec![model], Vec::new(), &[])
    }
}

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
async fn conversation_samples(state: &AppState, samples: &mut Samples) {
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

/// The settings, KV cache, about, health and model-list routes.
async fn server_samples(state: &AppState, samples: &mut Samples) {
    samples.add(
        "ServerSettings",
        "GET /api/settings",
        call_sorted(state, Method::GET, "/api/settings", None).await,
    );
    samples.add(
        "ServerSettings",
        "PATCH /api/settings",
        call_sorted(
            state,
            Method::PATCH,
            "/api/settings",
            Some(
                json!({"default_model": "m", "api_key": "sk-x", "theme": "dark",
                "check_for_updates": true, "ollama_api": true}),
            ),
        )
        .await,
    );
    samples.add(
        "KvCacheStatus",
        "GET /api/kv-cache",
        call_sorted(state, Method::GET, "/api/kv-cache", None).await,
    );
    samples.add(
        "KvCacheCleared",
        "DELETE /api/kv-cache",
        call_sorted(state, Method::DELETE, "/api/kv-cache", None).await,
    );
    samples.add(
        "About",
        "GET /api/about",
        call_sorted(state, Method::GET, "/api/about", None).await,
    );
    samples.add(
        "Health",
        "GET /health",
        call_sorted(state, Method::GET, "/health", None).await,
    );
    let loaded = Health {
        models: Some(vec![HealthModel {
            id: "m".into(),
            state: "loaded",
        }]),
        status: "ok",
    };
    samples.add_typed("Health", "a model loaded", &loaded);
    let loading = HealthLoading {
        error: ApiError::unavailable("model_loading", "A model is loading.", 1).object(),
        models: Some(vec![HealthModel {
            id: "m".into(),
            state: "loading",
        }]),
        status: "loading",
    };
    samples.add_typed("Health", "a model loading (503)", &loading);
    // A loaded model's plan on `/api/system`, speculating with a draft and without.
    for (speculative, draft_model) in [
        (
            hearth_protocol::SpeculativeMode::Draft,
            Some("smollm2-135m-instruct".to_string()),
        ),
        (hearth_protocol::SpeculativeMode::Ngram, None),
    ] {
        let plan = crate::system::LoadedPlanJson {
            architecture: "llama".into(),
            draft_model,
            flash_attention: hearth_protocol::FlashAttention::Auto,
            kv_cache_type: hearth_protocol::KvCacheType::F16,
            kv_host_budget_bytes: 1 << 30,
            memory_bytes: Some(1 << 27),
            n_ctx: 4096,
            n_ctx_total: 4096,
            n_gpu_layers: 0,
            n_parallel: 1,
            n_threads: 2,
            speculative,
        };
        samples.add_typed("Plan", format!("a loaded model, {speculative:?}"), &plan);
    }
    samples.add_typed(
        "ServableModel",
        "a remote provider's model",
        &crate::openai::remote_model_object("lab/big", 1, "lab"),
    );
    for (what, models) in [
        ("a provider that answers", Ok(Vec::new())),
        (
            "a provider that is down",
            Err("it refused the connection".to_string()),
        ),
    ] {
        let status = crate::providers::ProviderStatus {
            config: crate::providers::ProviderConfig {
                name: "lab".into(),
                base_url: "http://127.0.0.1:9/v1".into(),
            },
            key_storage: Some("file".into()),
            models,
        };
        samples.add_typed(
            "ProviderView",
            what,
            &crate::providers::ProviderView::from(status),
        );
    }
    for item in data_of(&call_sorted(state, Method::GET, "/v1/models", None).await) {
        samples.add("ServableModel", "GET /v1/models", item);
    }
    // A conversation's settings hold exactly the chat completion fields it may.
    let settings: serde_json::Map<String, Value> = SAMPLING_SETTING_KEYS
        .iter()
        .map(|key| {
            let value = match *key {
                "stop" => json!(["\n\n"]),
                "ignore_eos" => json!(true),
                "reasoning_effort" => json!("none"),
                "seed" | "top_k" | "max_tokens" => json!(7),
                _ => json!(0.5),
            };
            (key.to_string(), value)
        })
        .collect();
    crate::request::parse_sampling_settings(&settings).expect("valid settings");
    samples.add(
        "SamplingSettings",
        "SAMPLING_SETTING_KEYS",
        Value::Object(settings),
    );
}

/// The model library (an imported model, a broken folder, the catalog with fits) and a
/// download's status in each of its states.
async fn model_samples(state: &AppState, home: &Path, samples: &mut Samples) {
    let broken = home.join("models").join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(broken.join(hearth_models::MANIFEST_FILE_NAME), "{").unwrap();
    let imported = call(
        state,
        Method::POST,
        "/api/models/import",
        Some(json!({"path": hearth_testkit::smollm2(), "in_place": true})),
    )
    .await;
    samples.add("InstalledModel", "POST /api/models/import", imported);
    let listing = call_sorted(state, Method::GET, "/api/models", None).await;
    assert!(
        !listing["broken"].as_array().unwrap().is_empty(),
        "{listing}"
    );
    samples.add("ModelsListing", "GET /api/models", listing);

    // The other sources an installed model may come from.
    let manager = state.downloads.clone().unwrap();
    let installed = manager.library().list().unwrap().installed.remove(0);
    let pulled = |source: ModelSource| {
        let mut model = installed.clone();
        model.manifest.source = source;
        installed_json(&model)
    };
    samples.add(
        "InstalledModel",
        "from the catalog",
        pulled(ModelSource::Catalog {
            catalog_id: "smollm2-135m-instruct".into(),
            quantization: "Q8_0".into(),
            repo: "owner/repo".into(),
            revision: "main".into(),
            file: "model.gguf".into(),
            url: "https://huggingface.co/owner/repo/resolve/main/model.gguf".into(),
            commit: Some("0123abcd".into()),
        }),
    );
    samples.add(
        "InstalledModel",
        "from a repository",
        pulled(ModelSource::Hub {
            repo: "owner/repo".into(),
            revision: "main".into(),
            file: "model.gguf".into(),
            url: "https://huggingface.co/owner/repo/resolve/main/model.gguf".into(),
            commit: None,
        }),
    );

    for origin in [
        ImportOrigin::File,
        ImportOrigin::Ollama {
            model_name: "llama3.2:1b".into(),
        },
        ImportOrigin::LmStudio {
            model_name: "publisher/repository".into(),
        },
        ImportOrigin::HuggingFaceCache {
            repo: "owner/repo".into(),
            revision: "0123abcd".into(),
        },
    ] {
        let what = format!("imported, {origin:?}");
        let source = ModelSource::Import {
            original_path: home.join("elsewhere/model.gguf"),
            origin,
        };
        samples.add("InstalledModel", what, pulled(source));
    }

    let states = [
        DownloadState::Starting,
        DownloadState::WaitingForOtherDownload,
        DownloadState::Downloading,
        DownloadState::Retrying {
            failed_attempts: 2,
            delay_seconds: 4.0,
            reason: "the connection was reset".into(),
        },
        DownloadState::Paused,
        DownloadState::Installed {
            model_path: home.join("models/m/model.gguf"),
        },
        DownloadState::Failed {
            error: "the checksum did not match".into(),
        },
        DownloadState::Cancelled,
    ];
    for download_state in states {
        // A new state fails to compile here until it has a sample above.
        match download_state {
            DownloadState::Starting
            | DownloadState::WaitingForOtherDownload
            | DownloadState::Downloading
            | DownloadState::Retrying { .. }
            | DownloadState::Paused
            | DownloadState::Installed { .. }
            | DownloadState::Failed { .. }
            | DownloadState::Cancelled => {}
        }
        let status = DownloadStatus {
            id: 3,
            model_id: "smollm2-135m-instruct".into(),
            repo: "owner/repo".into(),
            file: "model.gguf".into(),
            state: download_state,
            bytes_done: 1000,
            total_bytes: Some(4000),
            bytes_per_second: 500.0,
            eta_seconds: Some(6.0),
        };
        let what = format!("a download, {:?}", status.state);
        samples.add("DownloadStatus", what, status_json(&status));
    }
}

/// `a[3].b[0]` as `a[].b[]`.
fn without_indices(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_index = false;
    for c in text.chars() {
        match c {
            '[' => {
                in_index = true;
                out.push(c);
            }
            ']' => {
                in_index = false;
                out.push(c);
            }
            c if in_index && c.is_ascii_digit() => {}
            c => out.push(c),
        }
    }
    out
}

#[tokio::test]
async fn the_ui_types_match_what_the_server_sends() {
    let declared = ts::parse(TYPES_TS).expect("types.ts parses");
    let home = tempfile::tempdir().unwrap();
    let state = full_state(home.path());
    let mut samples = Samples::default();
    conversation_samples(&state, &mut samples).await;
    server_samples(&state, &mut samples).await;
    model_samples(&state, home.path(), &mut samples).await;

    let mut checker = ts::Checker::new(&declared);
    let mut problems: Vec<String> = Vec::new();
    for sample in &samples.0 {
        checker.check_named(&sample.value, sample.ty);
        for error in checker.errors.drain(..) {
            // One line per field, not per array item.
            let problem = format!("{} [{}]", without_indices(&error), sample.what);
            if !problems.contains(&problem) {
                problems.push(problem);
            }
        }
    }
    for field in checker.never_sent() {
        if !UI_ONLY_FIELDS.iter().any(|(known, _)| *known == field) {
            problems.push(format!(
                "{field}: declared in types.ts, sent by none of the server's answers here"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "ui/src/lib/types.ts and the server disagree:\n{}",
        problems.join("\n")
    );
}

#[test]
fn every_ui_only_field_is_still_declared() {
    let declared = ts::parse(TYPES_TS).unwrap();
    for (field, _) in UI_ONLY_FIELDS {
        let (interface, name) = field.split_once('.').unwrap();
        let Some(ts::Ty::Object(object)) = declared.get(interface) else {
            panic!("types.ts has no interface {interface}");
        };
        assert!(
            object.fields.iter().any(|declared| declared.name == name),
            "{field} is no longer in types.ts: remove it from UI_ONLY_FIELDS"
        );
    }
}
