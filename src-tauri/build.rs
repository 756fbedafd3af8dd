//! Tauri's build step for the desktop app: reads `tauri.conf.json` at the repository root,
//! the capabilities in `src-tauri/capabilities/` and the permissions of the app's own commands
//! in `src-tauri/permissions/` (the UI's remote origin may call only what a capability grants).
//! It writes capability schemas to `gen/schemas/` (ignored by git).

fn main() {
    println!("cargo:rerun-if-changed=src-tauri/capabilities");
    println!("cargo:rerun-if-changed=src-tauri/permissions");
    let attributes = tauri_build::Attributes::new()
        .capabilities_path_pattern("src-tauri/capabilities/**/*")
        .app_manifest(
            tauri_build::AppManifest::new()
                .permissions_path_pattern("src-tauri/permissions/*.toml"),
        );
    tauri_build::try_build(attributes).expect("cannot run the Tauri build step");
}
