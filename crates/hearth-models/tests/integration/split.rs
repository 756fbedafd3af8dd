//! Split models (`NAME-00001-of-00003.gguf`) as one model: imported (copied or in place) with
//! all their parts checked, downloaded part by part from a scripted hub on 127.0.0.1, listed
//! with the summed size, refused when a part is missing or changed, deleted whole.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use hearth_gguf::split::split_gguf;
use hearth_gguf::{GgmlType, GgufBuilder, MetadataValue};
use hearth_models::{
    DownloadControl, HubRepo, ImportMode, ImportRequest, ModelLibrary, ModelsError, NoProgress,
    PullOutcome, PullRequest,
};

use crate::support::*;

const PARTS: u16 = 3;

/// A small model with six tensors, as three parts' bytes.
fn split_model() -> Vec<Vec<u8>> {
    let mut builder = GgufBuilder::new()
        .metadata(
            "general.architecture",
            MetadataValue::String("llama".into()),
        )
        .metadata("llama.context_length", MetadataValue::U32(2048))
        .metadata("general.file_type", MetadataValue::U32(0));
    for index in 0..6 {
        builder = builder.tensor(&format!("blk.{index}.weight"), GgmlType::F32, &[64, 16]);
    }
    split_gguf(&builder.build(), PARTS).unwrap()
}

/// Writes the parts into `folder` under their standard names; their paths.
fn write_parts(folder: &Path, parts: &[Vec<u8>]) -> Vec<PathBuf> {
    std::fs::create_dir_all(folder).unwrap();
    parts
        .iter()
        .enumerate()
        .map(|(index, bytes)| {
            let path = folder.join(format!("tiny-{:05}-of-{PARTS:05}.gguf", index + 1));
            std::fs::write(&path, bytes).unwrap();
            path
        })
        .collect()
}

fn total(parts: &[Vec<u8>]) -> u64 {
    parts.iter().map(|part| part.len() as u64).sum()
}

#[test]
fn a_split_model_is_imported_listed_and_deleted_as_one_model() {
    let home = tempfile::tempdir().unwrap();
    let parts = split_model();
    let paths = write_parts(&home.path().join("elsewhere"), &parts);
    let library = ModelLibrary::new(home.path().join("models"));

    // Copied: every part lands in the model's folder under its own name.
    let copied = library
        .import(
            &ImportRequest::file(&paths[0], ImportMode::Copy),
            &NoProgress,
        )
        .unwrap();
    assert_eq!(copied.manifest.parts.len(), usize::from(PARTS));
    assert_eq!(copied.manifest.size_bytes, total(&parts));
    let folder = copied.model_path.parent().unwrap().to_path_buf();
    for path in &paths {
        assert!(folder.join(path.file_name().unwrap()).is_file());
    }
    assert!(copied.model_path.ends_with("tiny-00001-of-00003.gguf"));

    // In place, under another id: the parts stay where they are.
    let mut request = ImportRequest::file(&paths[0], ImportMode::InPlace);
    request.model_id = Some(hearth_models::ModelId::new("tiny-in-place").unwrap());
    let in_place = library.import(&request, &NoProgress).unwrap();
    assert_eq!(in_place.model_path, paths[0]);
    assert_eq!(in_place.manifest.size_bytes, total(&parts));

    let listing = library.list().unwrap();
    assert_eq!(listing.installed.len(), 2, "{listing:?}");
    assert!(listing
        .installed
        .iter()
        .all(|model| model.manifest.size_bytes == total(&parts)));

    // A later part rewritten in place: the in-place model is refused; the copy is not.
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(60);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&paths[2])
        .unwrap()
        .set_modified(later)
        .unwrap();
    let error = library.get(&in_place.manifest.id).unwrap_err();
    assert!(
        matches!(error, ModelsError::ModelFileChanged { .. }),
        "{error}"
    );
    assert!(
        error.to_string().contains("tiny-00003-of-00003.gguf"),
        "{error}"
    );
    assert!(library.get(&copied.manifest.id).is_ok());

    // A missing part of the copy breaks it.
    std::fs::remove_file(folder.join("tiny-00002-of-00003.gguf")).unwrap();
    assert!(library.get(&copied.manifest.id).is_err());

    // Deleting removes every part of a copy, and none of an in-place model.
    library.delete(&copied.manifest.id).unwrap();
    assert!(!folder.exists());
    library.delete(&in_place.manifest.id).unwrap();
    assert!(paths.iter().all(|path| path.is_file()));
}

#[test]
fn a_split_model_missing_a_part_or_given_by_a_later_part_is_refused() {
    let home = tempfile::tempdir().unwrap();
    let parts = split_model();
    let paths = write_parts(&home.path().join("elsewhere"), &parts);
    let library = ModelLibrary::new(home.path().join("models"));

    let error = library
        .import(
            &ImportRequest::file(&paths[1], ImportMode::Copy),
            &NoProgress,
        )
        .unwrap_err();
    assert!(
        matches!(error, ModelsError::IncompleteSplit { .. }),
        "{error}"
    );
    assert!(
        error.to_string().contains("tiny-00001-of-00003.gguf"),
        "{error}"
    );

    // A part that is not the one its name says.
    std::fs::copy(&paths[1], &paths[2]).unwrap();
    let error = library
        .import(
            &ImportRequest::file(&paths[0], ImportMode::InPlace),
            &NoProgress,
        )
        .unwrap_err();
    assert!(
        error.to_string().contains("says it is part 2 of 3"),
        "{error}"
    );

    std::fs::remove_file(&paths[2]).unwrap();
    let error = library
        .import(
            &ImportRequest::file(&paths[0], ImportMode::Copy),
            &NoProgress,
        )
        .unwrap_err();
    assert!(
        matches!(error, ModelsError::IncompleteSplit { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("part 3 of 3"), "{error}");
    assert!(library.list().unwrap().installed.is_empty());
}

#[test]
fn a_split_model_downloads_every_part() {
    const REPO: &str = "test-org/tiny-split";
    let parts: Vec<Arc<Vec<u8>>> = split_model().into_iter().map(Arc::new).collect();
    let served = parts.clone();
    let server = TestServer::start(move |request, _| {
        for (index, bytes) in served.iter().enumerate() {
            let name = format!("tiny-{:05}-of-{PARTS:05}.gguf", index + 1);
            if request.path == format!("/{REPO}/resolve/main/gguf/{name}") {
                return Reply::File(FileReply::new(Arc::clone(bytes)));
            }
        }
        Reply::Status(404)
    });
    let client = hub_client(&server, fast_config());
    let home = tempfile::tempdir().unwrap();
    let library = ModelLibrary::new(home.path().join("models"));
    let request = PullRequest::from_hub(
        HubRepo::parse(REPO).unwrap(),
        None,
        "gguf/tiny-00001-of-00003.gguf",
        None,
    )
    .unwrap();
    let outcome = library
        .pull(&client, &request, &DownloadControl::new(), &NoProgress)
        .unwrap();
    let PullOutcome::Installed(installed) = outcome else {
        panic!("expected Installed, got {outcome:?}");
    };
    let total: u64 = parts.iter().map(|part| part.len() as u64).sum();
    assert_eq!(installed.manifest.size_bytes, total);
    assert_eq!(installed.manifest.parts.len(), usize::from(PARTS));
    let folder = installed.model_path.parent().unwrap();
    for (index, bytes) in parts.iter().enumerate() {
        let name = format!("tiny-{:05}-of-{PARTS:05}.gguf", index + 1);
        assert_eq!(&std::fs::read(folder.join(&name)).unwrap(), bytes.as_ref());
        assert!(
            server
                .requests()
                .iter()
                .any(|seen| seen.path.ends_with(&name)),
            "{name} was fetched"
        );
    }
    assert!(library.get(&installed.manifest.id).is_ok());
    library.delete(&installed.manifest.id).unwrap();
    assert!(!folder.exists());
}
