//! The local library: imports (copied and in place), discovery of other tools' stores, listing
//! with broken manifests, deletion, and id validation.

use std::path::{Path, PathBuf};

use hearth_models::{
    discover_external_models, DiscoveryRoots, ImportMode, ImportOrigin, ImportRequest, ModelId,
    ModelLibrary, ModelsError, NoProgress, Sha256Digest, MANIFEST_FILE_NAME,
};

use crate::support::*;

/// Size of the synthetic models: big enough that a copy would show in the disk usage.
const SYNTHETIC_MODEL_BYTES: usize = 4 * 1024 * 1024;
/// The models folder of an in-place import holds only a manifest and a lock file.
const MAX_IN_PLACE_FOOTPRINT_BYTES: u64 = 64 * 1024;

fn sha256_hex_of(path: &Path) -> String {
    hearth_models::sha256_of_file(path, |_| {})
        .unwrap()
        .to_hex()
}

#[cfg(unix)]
fn same_file(left: &Path, right: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (left, right) = (
        std::fs::metadata(left).unwrap(),
        std::fs::metadata(right).unwrap(),
    );
    (left.dev(), left.ino()) == (right.dev(), right.ino())
}

#[cfg(not(unix))]
fn same_file(left: &Path, right: &Path) -> bool {
    std::fs::canonicalize(left).unwrap() == std::fs::canonicalize(right).unwrap()
}

/// A fake Ollama store with one model (and a projector layer that must be ignored).
fn fake_ollama_store(root: &Path) -> PathBuf {
    let staging = root.join("staging.gguf");
    write_synthetic_gguf(&staging, "llama", SYNTHETIC_MODEL_BYTES);
    let digest = sha256_hex_of(&staging);
    let blob = root.join("blobs").join(format!("sha256-{digest}"));
    std::fs::create_dir_all(blob.parent().unwrap()).unwrap();
    std::fs::rename(&staging, &blob).unwrap();
    let projector = root
        .join("blobs")
        .join(format!("sha256-{}", "c".repeat(64)));
    std::fs::write(&projector, b"GGUF projector").unwrap();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",
            "config":{{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"sha256:{a}","size":10}},
            "layers":[
              {{"mediaType":"application/vnd.ollama.image.model","digest":"sha256:{digest}","size":{size}}},
              {{"mediaType":"application/vnd.ollama.image.projector","digest":"sha256:{c}","size":14}},
              {{"mediaType":"application/vnd.ollama.image.template","digest":"sha256:{a}","size":10}}]}}"#,
        a = "a".repeat(64),
        c = "c".repeat(64),
        size = SYNTHETIC_MODEL_BYTES
    );
    let manifest_path = root.join("manifests/registry.ollama.ai/library/llama3.2/1b");
    std::fs::create_dir_all(manifest_path.parent().unwrap()).unwrap();
    std::fs::write(&manifest_path, manifest).unwrap();
    // A corrupt manifest next to it is reported, not fatal.
    let broken_path = root.join("manifests/registry.ollama.ai/library/broken/latest");
    std::fs::create_dir_all(broken_path.parent().unwrap()).unwrap();
    std::fs::write(&broken_path, "{ not json").unwrap();
    blob
}

#[test]
fn imports_in_place_from_a_fake_ollama_store_without_copying() {
    let home = tempfile::tempdir().unwrap();
    let ollama_root = home.path().join(".ollama/models");
    let blob = fake_ollama_store(&ollama_root);
    let report = discover_external_models(&DiscoveryRoots::under_home(home.path()));
    assert_eq!(report.models.len(), 1, "{report:?}");
    assert_eq!(report.problems.len(), 1, "{report:?}");
    assert!(report.problems[0].contains("broken:latest"), "{report:?}");
    let discovered = &report.models[0];
    assert_eq!(discovered.display_name, "llama3.2:1b");
    assert_eq!(discovered.path, blob);
    assert_eq!(discovered.size_bytes, SYNTHETIC_MODEL_BYTES as u64);
    assert_eq!(
        discovered.sha256.map(|digest| digest.to_hex()),
        Some(sha256_hex_of(&blob))
    );
    assert_eq!(discovered.suggested_id.as_str(), "ollama-llama3.2-1b");

    let models_directory = home.path().join("hearth/models");
    let library = ModelLibrary::new(&models_directory);
    let installed = library
        .import(&ImportRequest::discovered(discovered), &NoProgress)
        .unwrap();
    assert!(installed.manifest.in_place);
    assert_eq!(installed.model_path, blob);
    assert!(same_file(&installed.model_path, &blob));
    assert!(
        bytes_on_disk(&models_directory) < MAX_IN_PLACE_FOOTPRINT_BYTES,
        "the model was copied"
    );
    assert_eq!(
        installed.manifest.source,
        hearth_models::ModelSource::Import {
            original_path: blob.clone(),
            origin: ImportOrigin::Ollama {
                model_name: "llama3.2:1b".to_string()
            }
        }
    );
    assert_eq!(
        installed.manifest.summary.architecture.as_deref(),
        Some("llama")
    );
    assert_eq!(
        installed.manifest.summary.quantization.as_deref(),
        Some("Q8_0")
    );

    let listing = library.list().unwrap();
    assert_eq!(listing.installed.len(), 1);
    assert_eq!(listing.installed[0].model_path, blob);

    // Deleting the in-place model forgets it and leaves Ollama's blob alone.
    library.delete(&installed.manifest.id).unwrap();
    assert!(blob.is_file());
    assert!(library.list().unwrap().installed.is_empty());
}

#[cfg(unix)]
#[test]
fn imports_in_place_from_a_fake_huggingface_cache_without_copying() {
    let home = tempfile::tempdir().unwrap();
    let repo_root = home
        .path()
        .join(".cache/huggingface/hub/models--bartowski--Tiny-Model-GGUF");
    let staging = repo_root.join("staging.gguf");
    write_synthetic_gguf(&staging, "qwen2", SYNTHETIC_MODEL_BYTES);
    let digest = sha256_hex_of(&staging);
    let blob = repo_root.join("blobs").join(&digest);
    std::fs::create_dir_all(blob.parent().unwrap()).unwrap();
    std::fs::rename(&staging, &blob).unwrap();
    let revision = "0123456789abcdef0123456789abcdef01234567";
    let snapshot = repo_root.join("snapshots").join(revision);
    std::fs::create_dir_all(&snapshot).unwrap();
    let link = snapshot.join("Tiny-Model-Q8_0.gguf");
    std::os::unix::fs::symlink(format!("../../blobs/{digest}"), &link).unwrap();
    // A dangling link (its blob was garbage-collected) is reported, not fatal.
    std::os::unix::fs::symlink("../../blobs/missing", snapshot.join("Gone-Q4_K_M.gguf")).unwrap();
    std::fs::write(snapshot.join("README.md"), "not a model").unwrap();

    let report = discover_external_models(&DiscoveryRoots::under_home(home.path()));
    assert_eq!(report.models.len(), 1, "{report:?}");
    assert_eq!(report.problems.len(), 1, "{report:?}");
    let discovered = &report.models[0];
    assert_eq!(
        discovered.origin,
        ImportOrigin::HuggingFaceCache {
            repo: "bartowski/Tiny-Model-GGUF".to_string(),
            revision: revision.to_string()
        }
    );
    assert_eq!(discovered.path, link);
    assert_eq!(
        discovered.sha256,
        Some(Sha256Digest::from_hex(&digest).unwrap())
    );

    let models_directory = home.path().join("hearth/models");
    let library = ModelLibrary::new(&models_directory);
    let installed = library
        .import(&ImportRequest::discovered(discovered), &NoProgress)
        .unwrap();
    assert_eq!(installed.manifest.id.as_str(), "tiny-model-q8_0");
    assert_eq!(
        installed.model_path, link,
        "the snapshot link is what is recorded"
    );
    assert!(same_file(&installed.model_path, &blob));
    assert!(bytes_on_disk(&models_directory) < MAX_IN_PLACE_FOOTPRINT_BYTES);
    assert_eq!(installed.manifest.sha256.to_hex(), digest);
    assert_eq!(library.list().unwrap().installed.len(), 1);
}

#[test]
fn discovers_lm_studio_models_and_skips_companions() {
    let home = tempfile::tempdir().unwrap();
    let root = home
        .path()
        .join(".lmstudio/models/lmstudio-community/Qwen3-4B-GGUF");
    write_synthetic_gguf(&root.join("Qwen3-4B-Q4_K_M.gguf"), "qwen3", 4096);
    write_synthetic_gguf(&root.join("mmproj-Qwen3-4B-F16.gguf"), "clip", 4096);
    write_synthetic_gguf(&root.join("Big-00001-of-00002.gguf"), "qwen3", 4096);
    std::fs::write(root.join("notes.txt"), "hello").unwrap();
    std::fs::write(root.join("Fake-Q4_K_M.gguf"), "<html>not a model</html>").unwrap();
    let old_root = home
        .path()
        .join(".cache/lm-studio/models/TheBloke/Old-GGUF");
    write_synthetic_gguf(&old_root.join("old.Q4_K_M.gguf"), "llama", 4096);

    let report = discover_external_models(&DiscoveryRoots::under_home(home.path()));
    let names: Vec<&str> = report
        .models
        .iter()
        .map(|model| model.display_name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "lmstudio-community/Qwen3-4B-GGUF/Qwen3-4B-Q4_K_M.gguf",
            "TheBloke/Old-GGUF/old.Q4_K_M.gguf"
        ]
    );
    assert_eq!(report.problems.len(), 1, "{report:?}");
    assert!(report.problems[0].contains("Fake-Q4_K_M.gguf"));
    assert_eq!(
        report.models[0].suggested_id.as_str(),
        "lmstudio-qwen3-4b-q4_k_m"
    );
}

#[test]
fn imports_the_real_model_in_place_and_a_copy() {
    let home = tempfile::tempdir().unwrap();
    let models_directory = home.path().join("models");
    let library = ModelLibrary::new(&models_directory);

    // In place: the real 98 MB model is registered where it lies.
    let real_model = smollm2_path();
    let mut request = ImportRequest::file(&real_model, ImportMode::InPlace);
    request.model_id = Some(ModelId::new("smollm2-in-place").unwrap());
    let installed = library.import(&request, &NoProgress).unwrap();
    assert!(same_file(&installed.model_path, &real_model));
    assert_eq!(installed.manifest.sha256, smollm2_digest());
    assert_eq!(
        installed.manifest.summary.parameter_count,
        Some(134_515_008)
    );
    assert!(bytes_on_disk(&models_directory) < MAX_IN_PLACE_FOOTPRINT_BYTES);

    // Copy: a synthetic model is copied in, byte for byte.
    let source = home.path().join("elsewhere/Tiny-Q8_0.gguf");
    write_synthetic_gguf(&source, "phi3", SYNTHETIC_MODEL_BYTES);
    let copied = library
        .import(&ImportRequest::file(&source, ImportMode::Copy), &NoProgress)
        .unwrap();
    assert_eq!(copied.manifest.id.as_str(), "tiny-q8_0");
    assert!(!copied.manifest.in_place);
    assert_eq!(
        copied.model_path,
        models_directory.join("tiny-q8_0/Tiny-Q8_0.gguf")
    );
    assert!(!same_file(&copied.model_path, &source));
    assert_eq!(sha256_hex_of(&copied.model_path), sha256_hex_of(&source));
    assert_eq!(copied.manifest.sha256.to_hex(), sha256_hex_of(&source));
    assert!(files_ending_with(&models_directory.join("tiny-q8_0"), ".partial").is_empty());

    let ids: Vec<String> = library
        .list()
        .unwrap()
        .installed
        .iter()
        .map(|model| model.manifest.id.to_string())
        .collect();
    assert_eq!(ids, ["smollm2-in-place", "tiny-q8_0"]);

    // Deleting the copy removes its file; the source stays.
    library.delete(&copied.manifest.id).unwrap();
    assert!(!models_directory.join("tiny-q8_0").exists());
    assert!(source.is_file());

    // The id is taken while installed.
    let error = library.import(&request, &NoProgress).unwrap_err();
    assert!(matches!(error, ModelsError::ModelIdTaken { .. }), "{error}");
}

#[test]
fn corrupt_manifests_are_reported_broken_and_the_rest_still_listed() {
    let home = tempfile::tempdir().unwrap();
    let models_directory = home.path().join("models");
    let library = ModelLibrary::new(&models_directory);
    let mut ids = Vec::new();
    for name in ["good", "corrupt", "tampered", "mismatched", "gone"] {
        let source = home.path().join(format!("sources/{name}.gguf"));
        write_synthetic_gguf(&source, "llama", 4096);
        let mut request = ImportRequest::file(&source, ImportMode::Copy);
        if name == "gone" {
            request.mode = ImportMode::InPlace;
        }
        ids.push(library.import(&request, &NoProgress).unwrap().manifest.id);
    }
    let manifest_of = |id: &str| models_directory.join(id).join(MANIFEST_FILE_NAME);
    std::fs::write(manifest_of("corrupt"), "{ this is not json").unwrap();
    let tampered = std::fs::read_to_string(manifest_of("tampered"))
        .unwrap()
        .replace("\"tampered.gguf\"", "\"../../../etc/passwd\"");
    std::fs::write(manifest_of("tampered"), tampered).unwrap();
    let mismatched = std::fs::read_to_string(manifest_of("mismatched"))
        .unwrap()
        .replace("\"id\": \"mismatched\"", "\"id\": \"good\"");
    std::fs::write(manifest_of("mismatched"), mismatched).unwrap();
    std::fs::remove_file(home.path().join("sources/gone.gguf")).unwrap();
    // A folder without a manifest is an unfinished download, not a model.
    std::fs::create_dir_all(models_directory.join("unfinished")).unwrap();

    let listing = library.list().unwrap();
    let installed: Vec<&str> = listing
        .installed
        .iter()
        .map(|model| model.manifest.id.as_str())
        .collect();
    assert_eq!(installed, ["good"]);
    let broken: Vec<(&str, &str)> = listing
        .broken
        .iter()
        .map(|model| (model.id.as_str(), model.reason.as_str()))
        .collect();
    assert_eq!(broken.len(), 4, "{broken:?}");
    assert_eq!(broken[0].0, "corrupt");
    assert_eq!(broken[1].0, "gone");
    assert!(broken[1].1.contains("missing"), "{broken:?}");
    assert_eq!(broken[2].0, "mismatched");
    assert!(broken[2].1.contains("not the folder's"), "{broken:?}");
    assert_eq!(broken[3].0, "tampered");
    assert!(broken[3].1.contains("not a plain file name"), "{broken:?}");

    let corrupt = ModelId::new("corrupt").unwrap();
    assert!(matches!(
        library.get(&corrupt),
        Err(ModelsError::BrokenManifest { .. })
    ));
    // Broken models can be removed like any other.
    library.delete(&corrupt).unwrap();
    assert_eq!(library.list().unwrap().broken.len(), 3);
    assert!(matches!(
        library.delete(&corrupt),
        Err(ModelsError::ModelNotInstalled { .. })
    ));
}

#[test]
fn model_ids_reject_traversal_and_imports_refuse_non_gguf_files() {
    for hostile in [
        "../outside",
        "..",
        "a/b",
        "/etc/passwd",
        "C:\\x",
        "a..b",
        ".hidden",
        "",
    ] {
        let error = ModelId::new(hostile).unwrap_err();
        assert!(
            matches!(error, ModelsError::InvalidModelId { .. }),
            "{hostile:?}: {error}"
        );
    }
    // Ids that arrive as JSON (from the API) are validated on the way in.
    assert!(serde_json::from_str::<ModelId>("\"../../x\"").is_err());

    let home = tempfile::tempdir().unwrap();
    let library = ModelLibrary::new(home.path().join("models"));
    let text_file = home.path().join("notes.gguf");
    std::fs::write(
        &text_file,
        "just some text, long enough to read a header from",
    )
    .unwrap();
    let error = library
        .import(
            &ImportRequest::file(&text_file, ImportMode::Copy),
            &NoProgress,
        )
        .unwrap_err();
    assert!(matches!(error, ModelsError::InvalidGguf { .. }), "{error}");
    assert!(library.list().unwrap().installed.is_empty());
    let error = library
        .import(
            &ImportRequest::file(home.path(), ImportMode::InPlace),
            &NoProgress,
        )
        .unwrap_err();
    assert!(matches!(error, ModelsError::NotAFile { .. }), "{error}");
}

/// An in-place model is the file that was imported: rewritten with the same size (a newer
/// modification time) or with another size, it is refused with a clear error until imported
/// again; a manifest written before the time was recorded still loads on its size.
#[test]
fn in_place_models_changed_since_import_are_refused_by_size_or_time() {
    let home = tempfile::tempdir().unwrap();
    let source = home.path().join("elsewhere/model.gguf");
    write_synthetic_gguf(&source, "llama", 64 * 1024);
    let library = ModelLibrary::new(home.path().join("models"));
    let installed = library
        .import(
            &ImportRequest::file(&source, ImportMode::InPlace),
            &NoProgress,
        )
        .unwrap();
    let id = installed.manifest.id.clone();
    assert!(installed.manifest.modified_unix_nanos.is_some());
    assert!(library.get(&id).is_ok());

    // Same size, new time (as a tool rewriting the file would leave it).
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(60);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&source)
        .unwrap();
    file.set_modified(later).unwrap();
    drop(file);
    let error = library.get(&id).unwrap_err();
    assert!(
        matches!(error, ModelsError::ModelFileChanged { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("modification time"), "{error}");
    assert!(error.to_string().contains("import it again"), "{error}");
    let listing = library.list().unwrap();
    assert!(listing.installed.is_empty());
    assert!(listing.broken[0]
        .reason
        .contains("changed since it was imported"));

    // A manifest from before the time was recorded: checked by size alone.
    let manifest_path = home
        .path()
        .join("models")
        .join(id.as_str())
        .join(MANIFEST_FILE_NAME);
    let mut manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest_path).unwrap()).unwrap();
    manifest
        .as_object_mut()
        .unwrap()
        .remove("modified_unix_nanos")
        .expect("the time is recorded");
    std::fs::write(&manifest_path, manifest.to_string()).unwrap();
    assert!(library.get(&id).is_ok(), "an old manifest still loads");

    // Another size is a change with or without the time.
    write_synthetic_gguf(&source, "llama", 80 * 1024);
    let error = library.get(&id).unwrap_err();
    assert!(
        matches!(error, ModelsError::ModelFileChanged { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("bytes"), "{error}");

    // Importing again records the new file.
    library.delete(&id).unwrap();
    let again = library
        .import(
            &ImportRequest::file(&source, ImportMode::InPlace),
            &NoProgress,
        )
        .unwrap();
    assert!(library.get(&again.manifest.id).is_ok());
}
