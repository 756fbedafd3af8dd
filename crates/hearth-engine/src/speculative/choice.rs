//! Whether a proposed draft model is loaded: the catalog's draft (`LoadParams::
//! draft_when_advised`) goes in only when the fit planner says the model and the draft fit in
//! memory together and the predicted decode speedup is above 1 ([`hearth_probe::draft`]), at
//! the acceptance rate measured for the pair when the caller has one, else the prior. A draft
//! the user named (`--draft-model`, `--speculative draft`) and the other modes are taken as
//! given. Deciding here, right before the load, serves `hearth run`, `hearth serve` and the
//! desktop alike, with the devices and free memory this worker will use.

use std::path::Path;

use hearth_probe::{plan_draft, Acceptance, AcceptanceSource, DraftPlan};
use hearth_protocol::{
    DraftAcceptanceSource, DraftVerdict, GpuLayers, LoadParams, SpeculativeMode,
};

use crate::load::file_name;

/// The speculative decoding a load runs with: the mode asked for, except that a proposed draft
/// is dropped (speculation off) unless the planner's verdict advises it.
pub fn chosen_mode(params: &LoadParams, verdict: Option<&DraftVerdict>) -> SpeculativeMode {
    if params.speculative != SpeculativeMode::Draft || !params.draft_when_advised {
        return params.speculative;
    }
    match verdict {
        Some(verdict) if verdict.advised && verdict.error.is_none() => SpeculativeMode::Draft,
        _ => SpeculativeMode::Off,
    }
}

/// The verdict on `draft_file` from its plan beside the model.
pub fn verdict_from_plan(draft_file: String, plan: &DraftPlan) -> DraftVerdict {
    DraftVerdict {
        draft_model: draft_file,
        advised: plan.advised,
        fits: plan.fits,
        predicted_speedup: plan.predicted_speedup,
        acceptance_rate: plan.acceptance_rate,
        acceptance_source: match plan.acceptance_source {
            AcceptanceSource::Measured | AcceptanceSource::Given => DraftAcceptanceSource::Measured,
            AcceptanceSource::Prior => DraftAcceptanceSource::Prior,
        },
        error: None,
    }
}

/// `params` as the load runs them (a proposed draft dropped when not advised), and the verdict
/// on a proposed draft; logged once.
pub fn resolve(model_path: &Path, params: &LoadParams) -> (LoadParams, Option<DraftVerdict>) {
    if params.speculative != SpeculativeMode::Draft || !params.draft_when_advised {
        return (params.clone(), None);
    }
    let Some(draft_path) = params.draft_model.as_deref() else {
        return (params.clone(), None);
    };
    let verdict =
        plan_verdict(model_path, draft_path, params).unwrap_or_else(|error| DraftVerdict {
            draft_model: file_name(draft_path),
            advised: false,
            fits: false,
            predicted_speedup: 0.0,
            acceptance_rate: 0.0,
            acceptance_source: DraftAcceptanceSource::Prior,
            error: Some(error),
        });
    let speculative = chosen_mode(params, Some(&verdict));
    if speculative == SpeculativeMode::Draft {
        tracing::info!(model = %file_name(model_path), "{}", verdict.summary());
    } else {
        tracing::warn!(model = %file_name(model_path), "{}", verdict.summary());
    }
    let resolved = LoadParams {
        speculative,
        draft_model: params
            .draft_model
            .clone()
            .filter(|_| speculative == SpeculativeMode::Draft),
        ..params.clone()
    };
    (resolved, Some(verdict))
}

/// The planner's verdict on `draft_path` beside `model_path` on this worker's devices now.
fn plan_verdict(
    model_path: &Path,
    draft_path: &Path,
    params: &LoadParams,
) -> Result<DraftVerdict, String> {
    let model = hearth_probe::variant_from_file(model_path).map_err(|error| error.to_string())?;
    let draft = hearth_probe::variant_from_file(draft_path)
        .map_err(|error| format!("draft model: {error}"))?;
    let with_gpus = params.n_gpu_layers != GpuLayers::Count(0);
    let (profile, wishes) = crate::offload::planner_inputs(params, with_gpus);
    let plan =
        hearth_probe::plan(&[model], &profile, &wishes).map_err(|error| error.to_string())?;
    let acceptance = params
        .draft_acceptance
        .map_or_else(|| Acceptance::from_measurement(None), Acceptance::measured);
    let draft_plan = plan_draft(
        &plan,
        &draft.facts,
        &profile,
        acceptance,
        params.max_draft_tokens,
    );
    Ok(verdict_from_plan(file_name(draft_path), &draft_plan))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(advised: bool) -> DraftVerdict {
        DraftVerdict {
            draft_model: "draft.gguf".to_string(),
            advised,
            fits: true,
            predicted_speedup: if advised { 1.4 } else { 0.46 },
            acceptance_rate: 0.7,
            acceptance_source: DraftAcceptanceSource::Prior,
            error: None,
        }
    }

    fn params(speculative: SpeculativeMode, draft_when_advised: bool) -> LoadParams {
        LoadParams {
            speculative,
            draft_model: Some("draft.gguf".into()),
            draft_when_advised,
            ..LoadParams::default()
        }
    }

    #[test]
    fn a_proposed_draft_follows_the_verdict() {
        let proposed = params(SpeculativeMode::Draft, true);
        assert_eq!(
            chosen_mode(&proposed, Some(&verdict(true))),
            SpeculativeMode::Draft
        );
        assert_eq!(
            chosen_mode(&proposed, Some(&verdict(false))),
            SpeculativeMode::Off
        );
        assert_eq!(chosen_mode(&proposed, None), SpeculativeMode::Off);
        let unjudged = DraftVerdict {
            error: Some("unreadable header".to_string()),
            ..verdict(true)
        };
        assert_eq!(
            chosen_mode(&proposed, Some(&unjudged)),
            SpeculativeMode::Off
        );
    }

    #[test]
    fn a_mode_the_user_chose_is_kept() {
        let named = params(SpeculativeMode::Draft, false);
        assert_eq!(
            chosen_mode(&named, Some(&verdict(false))),
            SpeculativeMode::Draft
        );
        for mode in [SpeculativeMode::Off, SpeculativeMode::Ngram] {
            assert_eq!(chosen_mode(&params(mode, true), Some(&verdict(true))), mode);
        }
    }

    #[test]
    fn an_unreadable_draft_is_left_out_with_the_reason() {
        let folder = std::env::temp_dir();
        let proposed = LoadParams {
            draft_model: Some(folder.join("no-such-draft.gguf")),
            ..params(SpeculativeMode::Draft, true)
        };
        let (resolved, verdict) = resolve(&folder.join("no-such-model.gguf"), &proposed);
        assert_eq!(resolved.speculative, SpeculativeMode::Off);
        assert_eq!(resolved.draft_model, None);
        let verdict = verdict.unwrap();
        assert!(!verdict.advised);
        assert!(verdict.error.is_some());
        // A draft the user named is not judged at all.
        let (kept, none) = resolve(
            &folder.join("no-such-model.gguf"),
            &params(SpeculativeMode::Draft, false),
        );
        assert_eq!(kept.speculative, SpeculativeMode::Draft);
        assert!(none.is_none());
    }
}
