//! The catalog shipped in `models/catalog.toml`.

use std::collections::HashSet;

use hearth_models::{is_known_quantization, Catalog, HubRepo, ModelId, PullRequest};

use crate::support::{SMOLLM2_FILE, SMOLLM2_SHA256, SMOLLM2_SIZE_BYTES};

#[test]
fn the_shipped_catalog_is_valid() {
    let catalog = Catalog::builtin().unwrap_or_else(|error| panic!("{error}"));
    assert!(catalog.problems().is_empty());

    let mut ids = HashSet::new();
    for model in &catalog.models {
        assert!(ids.insert(model.id.as_str()), "duplicate id {}", model.id);
        ModelId::new(model.id.as_str()).unwrap();
        HubRepo::parse(&model.repo).unwrap();
        for file in &model.files {
            assert!(
                is_known_quantization(&file.quantization),
                "{}",
                file.quantization
            );
            if let Some(sha256) = &file.sha256 {
                assert!(hearth_models::is_sha256_hex(sha256), "{sha256}");
            }
            // Every entry turns into a pull request with a well-formed URL.
            let request =
                PullRequest::from_catalog(&catalog, &model.id, Some(&file.quantization)).unwrap();
            let url = hearth_models::resolve_url(
                hearth_models::DEFAULT_HUB_ENDPOINT,
                &request.repo,
                &request.revision,
                &request.file,
            );
            assert!(url.starts_with("https://huggingface.co/"), "{url}");
            assert!(url.ends_with(".gguf"), "{url}");
        }
    }

    let families: HashSet<&str> = catalog
        .models
        .iter()
        .map(|model| model.family.as_str())
        .collect();
    for family in [
        "SmolLM2",
        "Qwen2.5",
        "Qwen3",
        "Llama 3.2",
        "Gemma 3",
        "Phi",
        "Mistral",
    ] {
        assert!(
            families.contains(family),
            "no {family} model in the catalog"
        );
    }
    assert!(catalog
        .models
        .iter()
        .all(|model| model.parameters_billions <= 15.0));
}

#[test]
fn the_default_model_carries_its_verified_figures() {
    let catalog = Catalog::builtin().unwrap();
    let default_model = catalog.default_model().unwrap();
    assert_eq!(default_model.id, "smollm2-135m-instruct");
    let file = default_model.file_for(None).unwrap();
    assert_eq!(file.quantization, "Q4_1");
    assert_eq!(file.file, SMOLLM2_FILE);
    assert_eq!(file.size_bytes, Some(SMOLLM2_SIZE_BYTES));
    assert_eq!(file.sha256.as_deref(), Some(SMOLLM2_SHA256));

    let gemma = catalog
        .get("gemma-3-270m")
        .unwrap()
        .file_for(Some("Q4_K_M"))
        .unwrap();
    assert_eq!(gemma.file, "gemma-3-270m-q4_k_m.gguf");
    assert_eq!(gemma.size_bytes, Some(253_113_024));
    assert_eq!(
        gemma.sha256.as_deref(),
        Some("a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818")
    );

    // Figures are never half known: a size without a digest would be an unverified guess.
    for model in &catalog.models {
        for file in &model.files {
            assert_eq!(
                file.size_bytes.is_some(),
                file.sha256.is_some(),
                "{} {}",
                model.id,
                file.quantization
            );
        }
    }
}

#[test]
fn other_quantizations_install_under_their_own_id() {
    let catalog = Catalog::builtin().unwrap();
    let default_pull = PullRequest::from_catalog(&catalog, "qwen3-4b", None).unwrap();
    assert_eq!(default_pull.model_id.as_str(), "qwen3-4b");
    assert_eq!(default_pull.file, "Qwen3-4B-Q4_K_M.gguf");
    let q8_pull = PullRequest::from_catalog(&catalog, "qwen3-4b", Some("q8_0")).unwrap();
    assert_eq!(q8_pull.model_id.as_str(), "qwen3-4b-q8_0");
    assert_eq!(
        q8_pull.catalog_entry,
        Some(("qwen3-4b".to_string(), "Q8_0".to_string()))
    );
    let error = PullRequest::from_catalog(&catalog, "qwen3-4b", Some("Q2_K")).unwrap_err();
    assert!(error.to_string().contains("Q4_K_M, Q8_0"), "{error}");
    assert!(PullRequest::from_catalog(&catalog, "no-such-model", None).is_err());
}
