//! The shapes of the model-management answers. Fields are declared in sorted order, as the
//! `json!` objects these types replaced sent them ([`crate::wire`]). An installed model and a
//! download's status are the library's own shapes less their paths, so they stay JSON values
//! (`installed_json`, `status_json`), with sorted keys as before.

use serde::Serialize;
use serde_json::Value;

use crate::fit::{Fit, Recommendation};

/// `GET /api/models`.
#[derive(Debug, Serialize)]
pub struct ModelsListing {
    /// Model folders that cannot be used, and why.
    pub broken: Vec<BrokenModel>,
    pub catalog: Vec<CatalogEntry>,
    /// The installed models: manifests without paths, with a `fit` when the machine is known.
    pub models: Vec<Value>,
    /// The first-run pick for this machine (`null` when the machine is not known).
    pub recommendation: Option<Recommendation>,
}

#[derive(Debug, Serialize)]
pub struct BrokenModel {
    pub id: String,
    pub reason: String,
}

/// A catalog model, and whether it is installed.
#[derive(Debug, Serialize)]
pub struct CatalogEntry {
    pub context_length: Option<u64>,
    pub default_quantization: String,
    pub display_name: String,
    pub family: String,
    pub files: Vec<CatalogFile>,
    /// The default quantization's fit (`null` when the planner cannot tell).
    pub fit: Option<Fit>,
    pub id: String,
    pub installed: bool,
    /// The installed models made from it (its id, or other ids for other quantizations).
    pub installed_ids: Vec<String>,
    pub license: String,
    pub parameters_billions: f64,
    pub purpose: String,
    pub repo: String,
}

/// One quantization of a catalog model.
#[derive(Debug, Serialize)]
pub struct CatalogFile {
    pub fit: Option<Fit>,
    pub quantization: String,
    pub size_bytes: Option<u64>,
}

/// `GET /api/downloads`.
#[derive(Debug, Serialize)]
pub struct DownloadList {
    pub downloads: Vec<Value>,
}
