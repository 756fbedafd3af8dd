//! Update checks, only when the user turned on "Check for updates" in Settings
//! (`check_for_updates`, off by default): with it off, the updater plugin is not even
//! registered and nothing contacts the network. With it on, the app asks the release feed
//! (`plugins.updater.endpoints` in `tauri.conf.json`: the `latest.json` the release workflow
//! publishes) once at start, in the background; an update found is offered in a dialog and
//! installed only if the user agrees, after Tauri's updater has checked its signature against
//! the public key in `tauri.conf.json`; then the app restarts.

use hearth_server::Settings;
use tauri::{AppHandle, Runtime};
use tauri_plugin_dialog::{DialogExt, MessageDialogButtons, MessageDialogKind};
use tauri_plugin_updater::UpdaterExt;

/// Whether this launch may use the updater at all (registering the plugin, checking).
pub fn should_check(settings: &Settings) -> bool {
    settings.check_for_updates
}

/// The updater plugin, for the app builder; `None` when updates are off.
pub fn plugin<R: Runtime>(
    settings: &Settings,
) -> Option<tauri::plugin::TauriPlugin<R, tauri_plugin_updater::Config>> {
    should_check(settings).then(|| tauri_plugin_updater::Builder::new().build())
}

/// Starts the background check when the settings allow it.
pub fn check_at_start(app: &AppHandle, settings: &Settings) {
    if !should_check(settings) {
        tracing::info!("update checks are off (Settings > Updates)");
        return;
    }
    let app = app.clone();
    tauri::async_runtime::spawn(async move {
        if let Err(error) = check_and_offer(&app).await {
            tracing::warn!(%error, "the update check failed");
        }
    });
}

async fn check_and_offer(app: &AppHandle) -> Result<(), tauri_plugin_updater::Error> {
    let Some(update) = app.updater()?.check().await? else {
        tracing::info!("Hearth is up to date");
        return Ok(());
    };
    tracing::info!(version = %update.version, "an update is available");
    let install_app = app.clone();
    app.dialog()
        .message(format!(
            "Hearth {} is available (this is {}). Install it and restart Hearth?",
            update.version, update.current_version
        ))
        .title("Hearth update")
        .kind(MessageDialogKind::Info)
        .buttons(MessageDialogButtons::OkCancelCustom(
            "Install and restart".into(),
            "Not now".into(),
        ))
        .show(move |install| {
            if !install {
                return;
            }
            tauri::async_runtime::spawn(async move {
                // The plugin verifies the signature before it installs anything.
                match update.download_and_install(|_, _| {}, || {}).await {
                    Ok(()) => install_app.restart(),
                    Err(error) => tracing::error!(%error, "the update could not be installed"),
                }
            });
        });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_are_off_unless_the_user_turns_them_on() {
        assert!(!should_check(&Settings::default()));
        assert!(plugin::<tauri::Wry>(&Settings::default()).is_none());
        // A settings file from before the setting existed.
        let old: Settings = serde_json::from_str(r#"{"theme": "dark"}"#).unwrap();
        assert!(!should_check(&old));
        let on = Settings {
            check_for_updates: true,
            ..Settings::default()
        };
        assert!(should_check(&on));
    }
}
