//! `hearth serve` takes its port and API key from the shared settings file (the one the
//! desktop app and `PATCH /api/settings` write), while `--port`/`HEARTH_PORT` and
//! `--api-key`/`HEARTH_API_KEY` still win (issue 13, item 8). No model is loaded.

mod serve_support;

use std::ffi::OsStr;

use hearth_testkit::http_client::Client;
use serve_support::TestServer;

/// A port nothing listens on now (the OS's pick, released again).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A data folder whose settings give `port` and the key `sk-from-settings`.
fn home_with_settings(port: u16) -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    let settings = format!(r#"{{"api_port": {port}, "api_key": "sk-from-settings"}}"#);
    std::fs::write(home.path().join("settings.json"), settings).unwrap();
    home
}

fn status_with_key(server: &TestServer, key: Option<&str>) -> u16 {
    let client = Client {
        address: server.address,
        api_key: key.map(str::to_string),
    };
    client.get("/v1/models").status
}

#[test]
fn serve_applies_the_settings_port_and_key_and_flags_and_environment_win() {
    let port = free_port();
    let server = TestServer::start_with(home_with_settings(port), &[], &[]);
    assert_eq!(server.address.port(), port, "the settings' port");
    assert_eq!(status_with_key(&server, None), 401, "the settings' key");
    assert_eq!(status_with_key(&server, Some("sk-from-settings")), 200);
    let home = server.stop();

    // The environment wins over the settings.
    let env_port = free_port();
    let env_port_text = env_port.to_string();
    let server = TestServer::start_with(
        home,
        &[],
        &[
            ("HEARTH_PORT", &env_port_text),
            ("HEARTH_API_KEY", "sk-env"),
        ],
    );
    assert_eq!(server.address.port(), env_port);
    assert_eq!(status_with_key(&server, Some("sk-from-settings")), 401);
    assert_eq!(status_with_key(&server, Some("sk-env")), 200);
    let home = server.stop();

    // And the command line over both.
    let args: [&OsStr; 4] = [
        "--port".as_ref(),
        "0".as_ref(),
        "--api-key".as_ref(),
        "sk-flag".as_ref(),
    ];
    let server = TestServer::start_with(home, &args, &[("HEARTH_API_KEY", "sk-env")]);
    assert_ne!(server.address.port(), port);
    assert_ne!(server.address.port(), env_port);
    assert_eq!(status_with_key(&server, Some("sk-env")), 401);
    assert_eq!(status_with_key(&server, Some("sk-flag")), 200);
    server.stop();
}
