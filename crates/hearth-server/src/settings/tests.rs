//! The settings file and the PATCH body parser.

use super::*;
use serde_json::json;

fn patch(body: Value) -> Result<SettingsPatch, ApiError> {
    parse_patch(&body, |model| model == "smollm2")
}

#[test]
fn patches_are_validated_field_by_field() {
    assert_eq!(
        patch(json!({"theme": "dark", "default_model": "smollm2", "api_port": 8123, "api_key": "sk-1"}))
            .unwrap(),
        SettingsPatch {
            theme: Some("dark".into()),
            default_model: Some(Some("smollm2".into())),
            api_port: Some(8123),
            api_key: Some(Some("sk-1".into())),
            ..SettingsPatch::default()
        }
    );
    assert_eq!(
        patch(json!({"default_model": null, "api_key": null})).unwrap(),
        SettingsPatch {
            default_model: Some(None),
            api_key: Some(None),
            ..SettingsPatch::default()
        }
    );
    for (body, param) in [
        (json!({"theme": "purple"}), "theme"),
        (json!({"default_model": "nope"}), "model"),
        (json!({"default_model": 3}), "default_model"),
        (json!({"api_port": 80}), "api_port"),
        (json!({"api_port": 70000}), "api_port"),
        (json!({"api_port": "4327"}), "api_port"),
        (json!({"api_key": ""}), "api_key"),
        (json!({"api_key": "has space"}), "api_key"),
        (json!({"data_dir": "/elsewhere"}), "data_dir"),
        (json!({"colour": "red"}), "colour"),
    ] {
        let error = patch(body.clone()).unwrap_err();
        assert_eq!(error.param.as_deref(), Some(param), "{body}");
    }
    assert!(patch(json!([1])).is_err());
}

#[test]
fn a_missing_file_gives_the_defaults_and_updates_persist_atomically() {
    let home = tempfile::tempdir().unwrap();
    let store = SettingsStore::new(home.path().join("data"));
    assert_eq!(store.load(), Settings::default());
    let saved = store
        .update(SettingsPatch {
            theme: Some("light".into()),
            api_key: Some(Some("sk-secret".into())),
            ..SettingsPatch::default()
        })
        .unwrap();
    assert_eq!(saved.theme, "light");
    let reopened = SettingsStore::new(home.path().join("data"));
    assert_eq!(reopened.load(), saved);
    // No temporary file is left behind.
    let names: Vec<String> = std::fs::read_dir(home.path().join("data"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, [SETTINGS_FILE_NAME]);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(store.path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "only the user may read the key");
    }
    // The key is write-only through the API's view.
    let shown = serde_json::to_value(ServerSettings::new(&saved, store.data_dir())).unwrap();
    assert_eq!(shown["api_key_set"], true);
    assert!(!shown.to_string().contains("sk-secret"));
    // A later patch keeps what it does not name.
    let saved = store
        .update(SettingsPatch {
            api_port: Some(9000),
            ..SettingsPatch::default()
        })
        .unwrap();
    assert_eq!(saved.theme, "light");
    assert_eq!(saved.api_key.as_deref(), Some("sk-secret"));
}

/// The temporary file is created exclusively and never through a symbolic link: a link
/// planted at its name (to make Hearth write the key elsewhere) is replaced, its target left
/// alone; the settings file ends up 0600.
#[cfg(unix)]
#[test]
fn the_temporary_file_is_never_written_through_a_symlink() {
    use std::os::unix::fs::PermissionsExt;
    let home = tempfile::tempdir().unwrap();
    let data = home.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let elsewhere = home.path().join("elsewhere.txt");
    std::fs::write(&elsewhere, "untouched").unwrap();
    let store = SettingsStore::new(&data);
    let temporary = data.join(format!("{SETTINGS_FILE_NAME}.{}.tmp", std::process::id()));
    std::os::unix::fs::symlink(&elsewhere, &temporary).unwrap();
    store
        .update(SettingsPatch {
            api_key: Some(Some("sk-secret".into())),
            ..SettingsPatch::default()
        })
        .unwrap();
    assert_eq!(std::fs::read_to_string(&elsewhere).unwrap(), "untouched");
    assert!(
        std::fs::symlink_metadata(&temporary).is_err(),
        "no temporary file is left"
    );
    assert!(!std::fs::symlink_metadata(store.path())
        .unwrap()
        .file_type()
        .is_symlink());
    let mode = std::fs::metadata(store.path())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(store.load().api_key.as_deref(), Some("sk-secret"));
}

#[test]
fn a_corrupt_file_gives_the_defaults_and_is_moved_aside_on_the_next_write() {
    let home = tempfile::tempdir().unwrap();
    let store = SettingsStore::new(home.path());
    for corrupt in [
        "{ not json",
        "[1, 2]",
        r#"{"theme": "neon"}"#,
        r#"{"api_port": 7}"#,
    ] {
        std::fs::write(store.path(), corrupt).unwrap();
        assert_eq!(store.load(), Settings::default(), "{corrupt}");
    }
    std::fs::write(store.path(), "{ not json").unwrap();
    let saved = store
        .update(SettingsPatch {
            theme: Some("dark".into()),
            ..SettingsPatch::default()
        })
        .unwrap();
    assert_eq!(saved.theme, "dark");
    assert_eq!(store.load().theme, "dark");
    let aside = home
        .path()
        .join(format!("{SETTINGS_FILE_NAME}{CORRUPT_SUFFIX}"));
    assert_eq!(std::fs::read_to_string(aside).unwrap(), "{ not json");
    // Unknown fields from a newer Hearth are ignored, known ones kept.
    std::fs::write(store.path(), r#"{"theme": "light", "future": 1}"#).unwrap();
    assert_eq!(store.load().theme, "light");
}

#[tokio::test]
async fn check_for_updates_and_ollama_api_are_off_by_default_and_round_trip_through_the_api() {
    use axum::http::Method;

    use crate::test_support::{loopback_state, request, send_json};

    for name in ["check_for_updates", "ollama_api"] {
        let home = tempfile::tempdir().unwrap();
        let state = AppState {
            settings: Some(std::sync::Arc::new(SettingsStore::new(home.path()))),
            ..loopback_state(Vec::new(), Vec::new(), &[])
        };
        let call = |method: Method, body: Option<Value>| {
            let state = state.clone();
            async move { send_json(&state, request(method, "/api/settings", body)).await }
        };
        let stored = |home: &std::path::Path| {
            let settings = SettingsStore::new(home).load();
            match name {
                "check_for_updates" => settings.check_for_updates,
                _ => settings.ollama_api,
            }
        };
        let (status, shown) = call(Method::GET, None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            shown[name], false,
            "{name} is off unless the user turns it on"
        );

        let (status, shown) = call(Method::PATCH, Some(json!({name: true}))).await;
        assert_eq!(status, StatusCode::OK, "{shown}");
        assert_eq!(shown[name], true);
        assert!(stored(home.path()), "{name}");
        let (_, shown) = call(Method::GET, None).await;
        assert_eq!(shown[name], true, "{name} is kept in the settings file");

        let (status, error) = call(Method::PATCH, Some(json!({name: "yes"}))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(error["error"]["param"], name);
        let (_, shown) = call(Method::PATCH, Some(json!({name: false}))).await;
        assert_eq!(shown[name], false);
    }
}
