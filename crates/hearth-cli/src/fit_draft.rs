//! `hearth fit`'s speculative-decoding line: which draft model the plan takes (`--draft-model`,
//! else the one the catalog names), whether it fits beside the model, and the decode speedup
//! `hearth_probe::draft` predicts at an acceptance rate: `--draft-acceptance` when given, else
//! the one measured on this machine for the pair (`hearth run` and `hearth serve` record it,
//! [`hearth_server::draft_acceptance`]) once enough tokens stand behind it, else the prior.

use std::path::Path;

use anyhow::Context;
use hearth_probe::draft::{plan_draft, Acceptance, AcceptanceSource, DraftPlan, VerifyCostSource};
use hearth_probe::{variant_from_file, DeviceProfile, Plan};
use hearth_server::draft_acceptance::{
    file_name_of, DraftAcceptanceFile, PairCounts, MIN_MEASURED_DECODE_TOKENS,
};
use serde::Serialize;

/// What the plan decided about a draft model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DraftStatus {
    /// It fits and is predicted to speed decode up.
    Chosen,
    /// It fits, but the predicted speedup is below 1 on this machine.
    NotAdvised,
    /// The model and the draft do not fit the memory budgets together.
    DoesNotFit,
    /// The catalog names a draft that is not installed.
    NotInstalled,
    /// No `--draft-model` and no draft in the catalog.
    NoCatalogDraft,
}

/// `hearth fit`'s draft report (`draft` in `--json`).
#[derive(Debug, Serialize)]
pub struct DraftReport {
    pub status: DraftStatus,
    /// The catalog's draft id, or `--draft-model` as given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// True when the catalog named the draft, false for `--draft-model`.
    pub from_catalog: bool,
    pub installed: bool,
    /// Memory, fit and predicted speedup, when the draft's file could be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<DraftPlan>,
    /// What this machine measured for the pair so far (used once it reaches
    /// `measured_min_decode_tokens` decoded tokens and no `--draft-acceptance` is given).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub measured: Option<PairCounts>,
    pub measured_min_decode_tokens: u64,
}

/// The draft for `model`: `draft_model` (a file or an installed id) when given, else the
/// catalog's, planned beside `plan` at `acceptance` (the prior when `None`).
pub fn draft_report(
    model: &str,
    draft_model: Option<&str>,
    acceptance: Option<f64>,
    plan: &Plan,
    profile: &DeviceProfile,
) -> anyhow::Result<DraftReport> {
    let (id, from_catalog, path) = match draft_model {
        Some(given) => {
            let path = crate::models::resolve_model_path(Path::new(given))
                .with_context(|| format!("draft model {given}"))?;
            (given.to_string(), false, Some(path))
        }
        None => match crate::models::catalog_draft(model) {
            Some(choice) => (choice.id, true, choice.installed_path),
            None => {
                return Ok(DraftReport {
                    status: DraftStatus::NoCatalogDraft,
                    id: None,
                    from_catalog: false,
                    installed: false,
                    plan: None,
                    measured: None,
                    measured_min_decode_tokens: MIN_MEASURED_DECODE_TOKENS,
                })
            }
        },
    };
    let Some(path) = path else {
        return Ok(DraftReport {
            status: DraftStatus::NotInstalled,
            id: Some(id),
            from_catalog,
            installed: false,
            plan: None,
            measured: None,
            measured_min_decode_tokens: MIN_MEASURED_DECODE_TOKENS,
        });
    };
    let variant = variant_from_file(&path)
        .with_context(|| format!("cannot read the GGUF header of the draft model {id}"))?;
    // What `hearth run` and `hearth serve` measured for this pair (a model not on disk has
    // never run here).
    let measured = crate::models::resolve_model_path(Path::new(model))
        .ok()
        .and_then(|model_path| {
            DraftAcceptanceFile::load(&hearth_supervisor::process::data_dir())
                .counts(&file_name_of(&model_path), &file_name_of(&path))
        });
    let acceptance = match (
        acceptance,
        measured.and_then(|counts| counts.acceptance_rate()),
    ) {
        (Some(given), _) => Acceptance::from_measurement(Some(given)),
        (None, Some(rate)) => Acceptance::measured(rate),
        (None, None) => Acceptance::from_measurement(None),
    };
    let draft_plan = plan_draft(
        plan,
        &variant.facts,
        profile,
        acceptance,
        hearth_protocol::DEFAULT_MAX_DRAFT_TOKENS,
    );
    let status = if !draft_plan.fits {
        DraftStatus::DoesNotFit
    } else if draft_plan.advised {
        DraftStatus::Chosen
    } else {
        DraftStatus::NotAdvised
    };
    Ok(DraftReport {
        status,
        id: Some(id),
        from_catalog,
        installed: true,
        plan: Some(draft_plan),
        measured,
        measured_min_decode_tokens: MIN_MEASURED_DECODE_TOKENS,
    })
}

/// The report's lines for a person.
pub fn draft_lines(report: &DraftReport) -> Vec<String> {
    let id = report.id.as_deref().unwrap_or("");
    let Some(plan) = &report.plan else {
        return vec![match report.status {
            DraftStatus::NotInstalled => format!(
                "speculative decoding: the catalog's draft {id} is not installed (`hearth pull {id}` to plan it)"
            ),
            _ => "speculative decoding: no draft model (the catalog names none; --draft-model D plans one)".to_string(),
        }];
    };
    let extra = format!("{:.1} MiB", plan.extra_bytes as f64 / (1024.0 * 1024.0));
    let decision = match report.status {
        DraftStatus::Chosen => format!("draft {id} chosen (+{extra})"),
        DraftStatus::DoesNotFit => {
            format!("draft {id} does not fit beside the model (it needs {extra} more)")
        }
        _ => format!("draft {id} fits (+{extra}) but speculation is not advised for this machine"),
    };
    let measured = report.measured.unwrap_or_default();
    let acceptance = match plan.acceptance_source {
        AcceptanceSource::Given => "given".to_string(),
        AcceptanceSource::Measured => format!(
            "measured here: {:.2} tokens per decode step over {} decoded tokens of {} answers",
            measured.tokens_per_step(),
            measured.decode_tokens,
            measured.answers
        ),
        AcceptanceSource::Prior if measured.decode_tokens > 0 => format!(
            "prior; {} of the {} decoded tokens needed to use the rate measured here so far",
            measured.decode_tokens, report.measured_min_decode_tokens
        ),
        AcceptanceSource::Prior => "prior; `hearth run` and `hearth serve` measure it as they answer with the draft (--speculative draft), or pass --draft-acceptance".to_string(),
    };
    let verify = match plan.verify_cost_source {
        VerifyCostSource::MeasuredCpu => "measured on the reference CPU",
        VerifyCostSource::Predicted => "predicted",
    };
    let mut lines = vec![
        format!("speculative decoding: {decision}"),
        format!(
            "  predicted decode {:.2}× with {} guesses per step: {:.2} tokens per step at acceptance {:.2} ({acceptance})",
            plan.predicted_speedup, plan.draft_tokens, plan.tokens_per_step, plan.acceptance_rate
        ),
        format!(
            "  a guess costs {:.2} of a decode step to draft (the draft's predicted time per token) and {:.2} to verify ({verify})",
            plan.draft_cost_per_guess, plan.verify_cost_per_guess
        ),
    ];
    if report.from_catalog {
        lines.push(
            match report.status {
                DraftStatus::Chosen => "  run, chat and serve load it",
                _ => "  run, chat and serve leave it out (--speculative draft forces it)",
            }
            .to_string(),
        );
    }
    lines
}
