//! The provider rules, the store's files, and the client against scripted loopback servers
//! (a remote that answers, refuses, breaks off mid-stream, says nothing, or is not there).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use hearth_protocol::{ChatMessage, FinishReason, Prompt, Role};
use hearth_supervisor::{Generation, GenerationEvent, RemoteFailure, SupervisorError};

use super::*;

#[test]
fn provider_names_are_plain_and_never_local() {
    for good in ["lab", "gpu-box", "team_2", "a"] {
        assert!(validate_provider_name(good).is_ok(), "{good}");
    }
    for bad in [
        "",
        "local",
        "Lab",
        "2lab",
        "la/b",
        "la b",
        "../x",
        "é",
        &"a".repeat(33),
    ] {
        assert!(validate_provider_name(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn base_urls_are_normalised_and_never_carry_credentials() {
    assert_eq!(
        normalize_base_url("http://gpu-box:8000").unwrap(),
        "http://gpu-box:8000/v1"
    );
    assert_eq!(
        normalize_base_url(" https://x.example/v1/ ").unwrap(),
        "https://x.example/v1"
    );
    assert_eq!(
        normalize_base_url("http://127.0.0.1:9/openai/v1").unwrap(),
        "http://127.0.0.1:9/openai/v1"
    );
    for bad in [
        "ftp://x/v1",
        "gpu-box:8000",
        "http://user:pw@x/v1",
        "http://x/v1?key=1",
        "http://x/v1#a",
        "http:///v1",
        "http://x/ v1",
    ] {
        assert!(normalize_base_url(bad).is_err(), "{bad}");
    }
}

#[test]
fn the_store_keeps_keys_apart_in_private_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = ProviderStore::new(dir.path());
    assert!(store.list().is_empty());
    store
        .add("lab", "http://127.0.0.1:1", Some("sk-secret-123"))
        .unwrap();
    store.add("open", "http://127.0.0.1:2/v1", None).unwrap();
    assert!(matches!(
        store.add("lab", "http://127.0.0.1:3", None),
        Err(ProviderStoreError::Exists(_))
    ));
    assert!(matches!(
        store.add("bad", "http://127.0.0.1:3", Some("has space")),
        Err(ProviderStoreError::InvalidKey(_))
    ));
    let listed = store.list();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].base_url, "http://127.0.0.1:1/v1");
    assert_eq!(store.key("lab").as_deref(), Some("sk-secret-123"));
    assert_eq!(store.key("open"), None);
    let providers_text = std::fs::read_to_string(dir.path().join(PROVIDERS_FILE_NAME)).unwrap();
    assert!(!providers_text.contains("sk-secret-123"));
    #[cfg(unix)]
    for name in [PROVIDERS_FILE_NAME, PROVIDER_KEYS_FILE_NAME] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(name))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name}");
    }
    store.remove("lab").unwrap();
    assert_eq!(store.key("lab"), None);
    assert!(matches!(
        store.remove("lab"),
        Err(ProviderStoreError::NotFound(_))
    ));
    // A corrupt file reads as empty, never as an error.
    std::fs::write(dir.path().join(PROVIDERS_FILE_NAME), b"{not json").unwrap();
    assert!(store.list().is_empty());
}

#[test]
fn a_keychain_keeps_the_key_and_the_file_only_says_where() {
    use super::secrets::fake::MemoryVault;
    let dir = tempfile::tempdir().unwrap();
    let vault = std::sync::Arc::new(MemoryVault::default());
    let store = ProviderStore::with_vault(dir.path(), Some(vault.clone()));
    store
        .add("lab", "http://127.0.0.1:1", Some("sk-in-the-keychain"))
        .unwrap();
    assert_eq!(
        vault.secrets.lock().unwrap().get("lab").map(String::as_str),
        Some("sk-in-the-keychain")
    );
    for name in [PROVIDERS_FILE_NAME, PROVIDER_KEYS_FILE_NAME] {
        let text = std::fs::read_to_string(dir.path().join(name)).unwrap();
        assert!(!text.contains("sk-in-the-keychain"), "{name}: {text}");
    }
    assert_eq!(store.key_storage("lab").as_deref(), Some("os-keychain"));
    assert_eq!(store.key("lab").as_deref(), Some("sk-in-the-keychain"));
    // Another store on the same folder (the CLI beside a server) finds it the same way.
    let again = ProviderStore::with_vault(dir.path(), Some(vault.clone()));
    assert_eq!(again.key("lab").as_deref(), Some("sk-in-the-keychain"));
    // Without that keychain (the folder copied to another platform) the key is simply absent.
    assert_eq!(ProviderStore::with_vault(dir.path(), None).key("lab"), None);
    store.remove("lab").unwrap();
    assert!(
        vault.secrets.lock().unwrap().is_empty(),
        "removed from the keychain"
    );
    assert_eq!(store.key_storage("lab"), None);
}

/// The real OS keychain (the Windows Credential Manager; run under Wine by
/// `scripts/test-windows-keychain`): a key stored, read back, and removed.
#[cfg(target_os = "windows")]
#[test]
fn the_os_keychain_keeps_a_key_and_removes_it() {
    let dir = tempfile::tempdir().unwrap();
    let vault = super::secrets::os_keychain(dir.path()).expect("Windows has a keychain");
    let store = ProviderStore::with_vault(dir.path(), Some(vault.clone()));
    store
        .add(
            "lab",
            "http://127.0.0.1:1",
            Some("sk-in-the-credential-manager"),
        )
        .unwrap();
    assert_eq!(store.key_storage("lab").as_deref(), Some("os-keychain"));
    let keys = std::fs::read_to_string(dir.path().join(PROVIDER_KEYS_FILE_NAME)).unwrap();
    assert!(!keys.contains("sk-in-the-credential-manager"), "{keys}");
    assert_eq!(
        vault.load("lab").unwrap().as_deref(),
        Some("sk-in-the-credential-manager")
    );
    assert_eq!(
        store.key("lab").as_deref(),
        Some("sk-in-the-credential-manager")
    );
    store.remove("lab").unwrap();
    assert_eq!(vault.load("lab").unwrap(), None);
}

#[test]
fn a_keychain_that_refuses_leaves_the_key_in_the_private_file() {
    use super::secrets::fake::MemoryVault;
    let dir = tempfile::tempdir().unwrap();
    let locked = std::sync::Arc::new(MemoryVault {
        refuse: true,
        ..MemoryVault::default()
    });
    let store = ProviderStore::with_vault(dir.path(), Some(locked));
    store
        .add("lab", "http://127.0.0.1:1", Some("sk-kept-in-the-file"))
        .unwrap();
    assert_eq!(store.key_storage("lab").as_deref(), Some("file"));
    assert_eq!(store.key("lab").as_deref(), Some("sk-kept-in-the-file"));
    // Keys files written before keychains were used read the same.
    let plain = ProviderStore::with_vault(dir.path(), None);
    assert_eq!(plain.key("lab").as_deref(), Some("sk-kept-in-the-file"));
}

/// A scripted remote: answers each connection with `reply` (raw HTTP), after `delay`.
fn scripted_remote(
    reply: &'static str,
    delay: Duration,
) -> (String, std::thread::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let request = read_request(&mut stream);
        std::thread::sleep(delay);
        let _ = stream.write_all(reply.as_bytes());
        let _ = stream.flush();
        request
    });
    (url, handle)
}

/// The request's head and body (by Content-Length).
fn read_request(stream: &mut TcpStream) -> String {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut head = String::new();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = value.trim().parse().unwrap_or(0);
        }
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0; length];
    let _ = reader.read_exact(&mut body);
    head + &String::from_utf8_lossy(&body)
}

fn target(url: &str, key: Option<&str>) -> RemoteTarget {
    RemoteTarget {
        provider: ProviderConfig {
            name: "lab".into(),
            base_url: url.into(),
        },
        key: key.map(str::to_string),
        remote_model: "big".into(),
    }
}

fn chat() -> Generation {
    Generation::new(Prompt::Chat {
        messages: vec![ChatMessage::new(Role::User, "Hello")],
    })
}

fn short_timeouts() -> RemoteTimeouts {
    RemoteTimeouts {
        connect: Duration::from_millis(500),
        response: Duration::from_millis(800),
        idle: Duration::from_millis(800),
        list: Duration::from_secs(2),
    }
}

/// Every event of a stream, up to its end.
async fn collect(mut stream: GenerationStream) -> Vec<Result<GenerationEvent, SupervisorError>> {
    let mut events = Vec::new();
    while let Some(event) = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("the stream ended in time")
    {
        events.push(event);
    }
    events
}

const STREAMED: &str =
    "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n\
data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\n\
data: {\"choices\":[{\"delta\":{\"content\":\"Par\"}}]}\n\n\
data: {\"choices\":[{\"delta\":{\"content\":\"is\"}}]}\n\n\
data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"length\"}]}\n\n\
data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2}}\n\n\
data: [DONE]\n\n";

#[tokio::test]
async fn a_streamed_answer_becomes_engine_events_with_hearths_figures() {
    let (url, remote) = scripted_remote(STREAMED, Duration::ZERO);
    let client = RemoteClient::new(short_timeouts());
    let events = collect(client.generate(target(&url, Some("sk-abc")), chat(), 7)).await;
    let request = remote.join().unwrap();
    assert!(
        request.starts_with("POST /v1/chat/completions "),
        "{request}"
    );
    assert!(request.contains("Bearer sk-abc"));
    assert!(request.contains("\"model\":\"big\""));
    assert!(matches!(events[0], Ok(GenerationEvent::Started { .. })));
    let text: String = events
        .iter()
        .filter_map(|event| match event {
            Ok(GenerationEvent::Text { text, .. }) => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(text, "Paris");
    match events.last() {
        Some(Ok(GenerationEvent::Done {
            finish_reason,
            metrics,
            ..
        })) => {
            assert_eq!(*finish_reason, FinishReason::Length);
            assert_eq!(metrics.prompt_tokens, 9);
            assert_eq!(metrics.generated_tokens, 2);
            assert!(metrics.ttft_ms > 0.0);
        }
        other => panic!("no Done at the end: {other:?}"),
    }
}

fn remote_failure(events: &[Result<GenerationEvent, SupervisorError>]) -> (RemoteFailure, String) {
    match events.last() {
        Some(Err(SupervisorError::Remote {
            provider,
            failure,
            message,
        })) => {
            assert_eq!(provider, "lab");
            (*failure, message.clone())
        }
        other => panic!("expected a remote failure, got {other:?}"),
    }
}

#[tokio::test]
async fn a_remote_stopped_mid_stream_ends_with_an_error() {
    const CUT: &str =
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n\
data: {\"choices\":[{\"delta\":{\"content\":\"Par\"}}]}\n\n";
    let (url, remote) = scripted_remote(CUT, Duration::ZERO);
    let client = RemoteClient::new(short_timeouts());
    let events = collect(client.generate(target(&url, None), chat(), 1)).await;
    remote.join().unwrap();
    assert!(matches!(events[1], Ok(GenerationEvent::Text { .. })));
    let (failure, message) = remote_failure(&events);
    assert_eq!(failure, RemoteFailure::Broken);
    assert!(message.contains("broke off"), "{message}");
}

#[tokio::test]
async fn refusals_keep_their_status_and_message() {
    const REFUSED: &str = "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 46\r\nconnection: close\r\n\r\n{\"error\":{\"message\":\"prompt is far too long\"}}";
    let (url, remote) = scripted_remote(REFUSED, Duration::ZERO);
    let client = RemoteClient::new(short_timeouts());
    let events = collect(client.generate(target(&url, None), chat(), 1)).await;
    remote.join().unwrap();
    assert_eq!(events.len(), 1, "no Started before a refusal");
    let (failure, message) = remote_failure(&events);
    assert_eq!(failure, RemoteFailure::Status(400));
    assert_eq!(message, "prompt is far too long");
}

#[tokio::test]
async fn a_remote_that_is_not_there_fails_fast() {
    // A port that was just free: nothing listens on it.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client = RemoteClient::new(short_timeouts());
    let started = Instant::now();
    let events = collect(client.generate(
        target(&format!("http://127.0.0.1:{port}/v1"), None),
        chat(),
        1,
    ))
    .await;
    let (failure, _) = remote_failure(&events);
    assert_eq!(failure, RemoteFailure::Unreachable);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn a_remote_that_says_nothing_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    // Accepts and reads, never answers (held open until the test ends).
    let silent = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        read_request(&mut stream);
        std::thread::sleep(Duration::from_secs(3));
    });
    let client = RemoteClient::new(short_timeouts());
    let started = Instant::now();
    let events = collect(client.generate(target(&url, None), chat(), 1)).await;
    let (failure, _) = remote_failure(&events);
    assert_eq!(failure, RemoteFailure::TimedOut);
    assert!(started.elapsed() < Duration::from_secs(3));
    silent.join().unwrap();
}

#[tokio::test]
async fn model_lists_are_prefixed_and_a_down_provider_is_reported() {
    const MODELS: &str = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 72\r\nconnection: close\r\n\r\n{\"object\":\"list\",\"data\":[{\"id\":\"llama-70b\",\"object\":\"model\"},{\"id\":\"\"}]}";
    let (url, remote) = scripted_remote(MODELS, Duration::ZERO);
    let dir = tempfile::tempdir().unwrap();
    let registry = ProviderRegistry::new(dir.path(), short_timeouts());
    registry.store().add("lab", &url, Some("k")).unwrap();
    registry
        .store()
        .add("gone", "http://127.0.0.1:9/v1", None)
        .unwrap();
    let statuses = registry.statuses().await;
    let request = remote.join().unwrap();
    assert!(request.starts_with("GET /v1/models "), "{request}");
    assert_eq!(statuses.len(), 2);
    let models = statuses[0].models.as_ref().unwrap();
    assert_eq!(models.len(), 1);
    assert_eq!(models[0].id, "lab/llama-70b");
    assert_eq!(statuses[0].key_storage.as_deref(), Some("file"));
    assert!(statuses[1].models.is_err());
    // Cached: the scripted remote is gone, the list is still there.
    assert_eq!(registry.remote_models().await.len(), 1);
    // Resolution needs the provider, and a model after the separator.
    assert!(registry.resolve("lab/anything").is_some());
    assert!(registry.resolve("lab/").is_none());
    assert!(registry.resolve("nobody/x").is_none());
    assert!(registry.resolve("smollm2").is_none());
}

mod routes {
    //! `/api/providers` through the whole router (oneshot), and a remote model's path through
    //! `/v1/chat/completions` when its provider is down.

    use axum::http::{Method, StatusCode};
    use serde_json::json;

    use super::*;
    use crate::test_support::{loopback_state_with_providers, request, send_json, HOST};

    fn state(dir: &Path) -> crate::AppState {
        let registry = ProviderRegistry::new(dir, short_timeouts());
        loopback_state_with_providers(Vec::new(), Vec::new(), &[], Some(registry))
    }

    #[tokio::test]
    async fn providers_are_added_listed_and_removed_without_showing_keys() {
        let dir = tempfile::tempdir().unwrap();
        let state = state(dir.path());
        let body =
            json!({"name": "lab", "base_url": "http://127.0.0.1:9", "api_key": "sk-never-shown"});
        let (status, added) =
            send_json(&state, request(Method::POST, "/api/providers", Some(body))).await;
        assert_eq!(status, StatusCode::CREATED, "{added}");
        assert_eq!(added["base_url"], "http://127.0.0.1:9/v1");
        assert_eq!(added["has_key"], true);
        assert_eq!(added["status"], "unreachable");
        assert!(!added.to_string().contains("sk-never-shown"));
        let (status, listed) =
            send_json(&state, request(Method::GET, "/api/providers", None)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(listed["data"][0]["name"], "lab");
        assert!(!listed.to_string().contains("sk-never-shown"));
        let (status, _) =
            send_json(&state, request(Method::DELETE, "/api/providers/lab", None)).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, missing) =
            send_json(&state, request(Method::DELETE, "/api/providers/lab", None)).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(missing["error"]["code"], "provider_not_found");
    }

    #[tokio::test]
    async fn bad_providers_get_exact_errors() {
        let dir = tempfile::tempdir().unwrap();
        let state = state(dir.path());
        for (body, code) in [
            (
                json!({"name": "Lab", "base_url": "http://x"}),
                "invalid_provider_name",
            ),
            (
                json!({"name": "local", "base_url": "http://x"}),
                "invalid_provider_name",
            ),
            (
                json!({"name": "lab", "base_url": "file:///etc/passwd"}),
                "invalid_base_url",
            ),
            (
                json!({"name": "lab", "base_url": "http://u:p@x"}),
                "invalid_base_url",
            ),
            (
                json!({"name": "lab", "base_url": "http://x", "api_key": "a b"}),
                "invalid_api_key",
            ),
            (
                json!({"name": "lab", "base_url": "http://x", "extra": 1}),
                "invalid_provider",
            ),
            (
                json!({"name": 5, "base_url": "http://x"}),
                "invalid_provider",
            ),
            (json!([]), "invalid_provider"),
        ] {
            let (status, error) = send_json(
                &state,
                request(Method::POST, "/api/providers", Some(body.clone())),
            )
            .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {error}");
            assert_eq!(error["error"]["code"], code, "{body}: {error}");
        }
        let (status, _) = send_json(
            &state,
            request(Method::DELETE, "/api/providers/..%2Fx", None),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        // Nothing was saved by the refusals.
        assert!(ProviderStore::new(dir.path()).list().is_empty());
    }

    #[tokio::test]
    async fn the_provider_routes_need_the_key_as_every_private_route() {
        let dir = tempfile::tempdir().unwrap();
        let state = state(dir.path());
        let keyless = axum::http::Request::builder()
            .method(Method::GET)
            .uri("/api/providers")
            .header(axum::http::header::HOST, HOST)
            .body(axum::body::Body::empty())
            .unwrap();
        let (status, _) = send_json(&state, keyless).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn a_remote_model_whose_provider_is_down_is_a_named_502() {
        let dir = tempfile::tempdir().unwrap();
        let state = state(dir.path());
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        ProviderStore::new(dir.path())
            .add("lab", &format!("http://127.0.0.1:{port}"), None)
            .unwrap();
        let body = json!({"model": "lab/big", "messages": [{"role": "user", "content": "Hi"}], "stream": true});
        let (status, error) = send_json(
            &state,
            request(Method::POST, "/v1/chat/completions", Some(body)),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{error}");
        assert_eq!(error["error"]["code"], "provider_unreachable");
        assert!(error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`lab`"));
        // An id with an unknown provider is an unknown model, as any other.
        let body = json!({"model": "nobody/big", "messages": [{"role": "user", "content": "Hi"}]});
        let (status, _) = send_json(
            &state,
            request(Method::POST, "/v1/chat/completions", Some(body)),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}

#[test]
fn only_a_conversations_first_message_to_a_provider_needs_confirmation() {
    use crate::conversations::needs_remote_confirmation;
    let answer = |metrics: Option<serde_json::Value>| hearth_store::Message {
        id: 1,
        conversation_id: 1,
        role: hearth_store::Role::Assistant,
        content: "x".into(),
        reasoning: hearth_store::Reasoning::default(),
        status: hearth_store::MessageStatus::Complete,
        metrics,
        created_at: 0,
        updated_at: 0,
        hidden: false,
        notice: None,
    };
    assert!(needs_remote_confirmation("lab", &[]));
    let local = answer(Some(serde_json::json!({"ttft_ms": 3.0})));
    assert!(needs_remote_confirmation(
        "lab",
        std::slice::from_ref(&local)
    ));
    let from_lab = answer(Some(serde_json::json!({"provider": "lab"})));
    assert!(!needs_remote_confirmation(
        "lab",
        &[local, from_lab.clone()]
    ));
    // Another provider is another machine: asked again.
    assert!(needs_remote_confirmation("other", &[from_lab]));
}
