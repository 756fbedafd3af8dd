//! Speculative decoding's draft model for an installed or catalog model: the smaller model of
//! the same family its catalog entry names (`draft_model`), and whether it is installed. The
//! CLI and the server both choose a draft through here.

use std::path::PathBuf;

use crate::{Catalog, ModelId, ModelLibrary, ModelSource};

/// The draft the catalog names for `reference`: an installed model pulled from the catalog
/// (by its catalog id), or a catalog id itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DraftChoice {
    pub id: String,
    /// Where the draft is installed; `None` when it is not.
    pub installed_path: Option<PathBuf>,
}

/// The draft model for `reference`, if the catalog names one.
pub fn catalog_draft(
    catalog: &Catalog,
    library: &ModelLibrary,
    reference: &str,
) -> Option<DraftChoice> {
    let id = ModelId::new(reference).ok()?;
    let catalog_id = match library.get(&id) {
        Ok(installed) => match installed.manifest.source {
            ModelSource::Catalog { catalog_id, .. } => catalog_id,
            _ => return None,
        },
        Err(_) => reference.to_string(),
    };
    let draft_id = catalog.find(&catalog_id)?.draft_model.clone()?;
    let installed_path = ModelId::new(draft_id.as_str())
        .ok()
        .and_then(|draft| library.get(&draft).ok())
        .map(|draft| draft.model_path);
    Some(DraftChoice {
        id: draft_id,
        installed_path,
    })
}
