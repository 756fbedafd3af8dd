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
//! So a field renamed, added or removed on either side fails here, naming it.//!
//! The samples are gathered by contract area: `history` (conversations and their events),
//! `server` (settings, health, plans, providers, the model list), `library` (installed
//! models and downloads); this file holds the harness and the checks.

mod history;
mod library;
mod server;
mod ts;

use std::path::Path;
use std::sync::Arc;

use axum::http::Method;
use hearth_models::{DownloadConfig, DownloadManager, HubClient, ModelLibrary};
use hearth_store::ConversationStore;
use serde::Serialize;
use serde_json::Value;
use tower::ServiceExt;

use crate::test_support::{loopback_state, request};
use crate::wire::assert_sorted;
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
    history::conversation_samples(&state, &mut samples).await;
    server::server_samples(&state, &mut samples).await;
    library::model_samples(&state, home.path(), &mut samples).await;

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
