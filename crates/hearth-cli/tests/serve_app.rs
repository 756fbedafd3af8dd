//! What the UI gets from the real `hearth serve` binary: the web UI itself (no key, strict CSP,
//! client-side routes), the machine report with a real probe (in a probe process of its own,
//! llama.cpp's devices from a real engine worker), the fit badges on `/api/models`, and the
//! settings, all behind the key.

use std::collections::BTreeSet;

mod serve_support;

use serde_json::{json, Value};
use serve_support::{request, TestServer};

const KEY: &str = "sk-serve-app";
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The shared objects mapped into process `pid` (Linux).
fn mapped_libraries(pid: u32) -> BTreeSet<String> {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .filter(|path| path.contains(".so"))
        .map(str::to_string)
        .collect()
}

fn with_key(server: &TestServer, method: &str, path: &str, body: Option<&Value>) -> Value {
    let authorization = format!("Bearer {KEY}");
    let mut headers = vec![("Authorization", authorization.as_str())];
    if body.is_some() {
        headers.push(("Content-Type", "application/json"));
    }
    let body = body.map(Value::to_string).unwrap_or_default();
    let response = request(server.address, method, path, &headers, body.as_bytes());
    assert_eq!(response.status, 200, "{method} {path}: {}", response.text());
    response.json()
}

#[test]
fn the_ui_system_report_fits_and_settings_through_the_real_server() {
    let home = tempfile::tempdir().unwrap();
    let model = hearth_testkit::smollm2();
    let server = TestServer::start_in(home, Some(&model), &["--api-key", KEY]);

    // The UI: no key needed, under the contract's policy, also for client-side routes.
    for path in ["/", "/chat/3"] {
        let page = request(server.address, "GET", path, &[("Accept", "text/html")], b"");
        assert_eq!(page.status, 200, "{path}");
        assert_eq!(page.header("content-security-policy"), Some(CSP));
        assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(page.header("referrer-policy"), Some("no-referrer"));
        assert!(page.text().to_ascii_lowercase().contains("<!doctype html"));
    }
    // The API still wants the key.
    for path in ["/api/system", "/api/settings", "/api/models"] {
        let refused = request(server.address, "GET", path, &[("Accept", "text/html")], b"");
        assert_eq!(refused.status, 401, "{path}");
    }

    let libraries_before = mapped_libraries(server.pid());
    let system = with_key(&server, "GET", "/api/system", None);
    assert_eq!(system["server"]["port"], server.address.port());
    assert_eq!(system["server"]["api_key_required"], true);
    assert_eq!(system["probe_error"], Value::Null, "{system}");
    let probe = &system["probe"];
    assert!(
        probe["cpu"]["physical_cores"].as_u64().unwrap() >= 1,
        "{system}"
    );
    assert!(!probe["cpu"]["features"].as_array().unwrap().is_empty());
    assert!(probe["bandwidth"]["cpu_gb_per_s"].as_f64().unwrap() > 0.0);
    assert!(probe["memory"]["total_bytes"].as_u64().unwrap() > 0);
    assert!(probe["gpus"].is_array());

    let models = with_key(&server, "GET", "/api/models", None);
    let catalog = models["catalog"].as_array().unwrap();
    assert!(
        catalog
            .iter()
            .all(|entry| entry["fit"]["badge"].is_string()),
        "{models}"
    );
    assert!(models["recommendation"]["model"].is_string(), "{models}");
    // The probe ran in a process of its own: no GPU driver (Vulkan loader, lavapipe's LLVM)
    // was loaded into the server, where it would stay mapped for the server's life.
    if cfg!(target_os = "linux") {
        let loaded: Vec<String> = mapped_libraries(server.pid())
            .difference(&libraries_before)
            .cloned()
            .collect();
        assert!(loaded.is_empty(), "the server loaded {loaded:?}");
    }

    let settings = with_key(&server, "GET", "/api/settings", None);
    assert_eq!(settings["theme"], "system");
    assert_eq!(settings["api_key_set"], false);
    let patched = with_key(
        &server,
        "PATCH",
        "/api/settings",
        Some(&json!({"theme": "dark", "api_port": 8765})),
    );
    assert_eq!(patched["theme"], "dark");
    assert_eq!(patched["api_port"], 8765);
    assert_eq!(with_key(&server, "GET", "/api/settings", None), patched);
}

/// Other users of the machine get no access to anything of Hearth's: the data folder is 0700
/// (also when an older Hearth left it 0755) and the database with its `-wal` and `-shm`, the
/// logs and the settings are 0600.
#[cfg(unix)]
#[test]
fn the_data_folder_and_its_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let home = tempfile::tempdir().unwrap();
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let server = TestServer::start_in(home, None, &["--api-key", KEY]);
    let created = server.post_json("/api/conversations", &json!({"title": "private"}));
    assert_eq!(created.status, 201, "{}", created.text());
    with_key(
        &server,
        "PATCH",
        "/api/settings",
        Some(&json!({"theme": "dark"})),
    );
    let mode = |relative: &str| {
        let path = server.home().join(relative);
        let metadata =
            std::fs::metadata(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        metadata.permissions().mode() & 0o777
    };
    assert_eq!(mode(""), 0o700);
    for file in [
        "hearth.sqlite3",
        "hearth.sqlite3-wal",
        "hearth.sqlite3-shm",
        "logs/hearth.log",
    ] {
        assert_eq!(mode(file), 0o600, "{file}");
    }
    assert_eq!(mode("logs"), 0o700);
    for entry in std::fs::read_dir(server.home()).unwrap().flatten() {
        let mode = entry.metadata().unwrap().permissions().mode() & 0o077;
        assert_eq!(mode, 0, "{} is open to others", entry.path().display());
    }
}

/// `hearth serve` as Jupyter: a random token kept 0600 in the data folder, printed in the web
/// UI's URL and reused by the next start; `/api/*` needs it (or a key) even on loopback, while
/// `/v1/*` stays open there, and `/health` without it says only ready or loading.
#[test]
fn serve_prints_a_token_url_the_history_api_needs_and_a_restart_reuses() {
    let server = TestServer::start_in(tempfile::tempdir().unwrap(), None, &[]);
    let token = server.access_token().to_string();
    assert_eq!(token.len(), 64, "{token}");
    assert!(
        token.bytes().all(|byte| byte.is_ascii_hexdigit()),
        "{token}"
    );
    assert_eq!(
        server.ui_url(),
        format!("http://127.0.0.1:{}/?token={token}", server.address.port())
    );
    let token_file = server.home().join(serve_support::ACCESS_TOKEN_FILE);
    assert_eq!(std::fs::read_to_string(&token_file).unwrap().trim(), token);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&token_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let keyless = server.keyless();
    for path in [
        "/api/conversations",
        "/api/settings",
        "/api/models",
        "/api/downloads",
        "/api/system",
    ] {
        let refused = keyless.get(path);
        assert_eq!(refused.status, 401, "{path}: {}", refused.text());
        assert_eq!(refused.json()["error"]["code"], "invalid_api_key", "{path}");
    }
    let refused = keyless.post_json("/api/conversations", &json!({"title": "x"}));
    assert_eq!(refused.status, 401);
    assert_eq!(
        keyless.get("/v1/models").status,
        200,
        "/v1 stays open on loopback"
    );
    let health = keyless.get("/health");
    assert_eq!(health.status, 200);
    assert_eq!(
        health.json(),
        json!({"status": "ok"}),
        "no model list without a key"
    );
    assert!(server.get("/health").json().get("models").is_some());
    let created = server.post_json("/api/conversations", &json!({"title": "kept"}));
    assert_eq!(created.status, 201, "{}", created.text());

    // The setting closes `/v1/*` too.
    let patched = server.send(
        "PATCH",
        "/api/settings",
        Some(&json!({"require_key_for_openai_api": true})),
    );
    assert_eq!(patched.status, 200, "{}", patched.text());
    assert_eq!(keyless.get("/v1/models").status, 401);
    assert_eq!(server.get("/v1/models").status, 200);

    // A restart on the same data folder reuses the token: open tabs keep working.
    let home = server.stop();
    let again = TestServer::start_in(home, None, &[]);
    assert_eq!(again.access_token(), token);
    assert_eq!(again.get("/api/conversations").status, 200);
    assert_eq!(again.keyless().get("/api/conversations").status, 401);
}
