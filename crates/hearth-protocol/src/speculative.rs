//! Speculative decoding's figures that cross the process boundary: the planner's verdict on a
//! proposed draft model, as the worker reports it when it loads (or leaves out) that draft.

use serde::{Deserialize, Serialize};

/// Where the acceptance rate a verdict was planned with came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DraftAcceptanceSource {
    /// Measured on this machine for this model and draft pair (`LoadParams::draft_acceptance`).
    Measured,
    /// The planner's prior.
    Prior,
}

/// The planner's verdict on a draft model proposed for a load (the catalog's draft).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DraftVerdict {
    /// The draft's file name.
    pub draft_model: String,
    /// Whether it was loaded: it fits beside the model and the predicted speedup is above 1.
    pub advised: bool,
    /// Whether the model and the draft fit the memory budgets together.
    pub fits: bool,
    /// Predicted decode tokens/s with the draft over without.
    pub predicted_speedup: f64,
    /// The per-token acceptance rate the speedup was predicted at, and where it came from.
    pub acceptance_rate: f64,
    pub acceptance_source: DraftAcceptanceSource,
    /// Why the planner could not judge it (an unreadable header); the draft is then left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl DraftVerdict {
    /// One line for a person: what was decided, and the figure it was decided on.
    pub fn summary(&self) -> String {
        if let Some(error) = &self.error {
            return format!(
                "the draft model {} was not loaded: the planner could not judge it ({error})",
                self.draft_model
            );
        }
        let acceptance = match self.acceptance_source {
            DraftAcceptanceSource::Measured => "measured",
            DraftAcceptanceSource::Prior => "prior",
        };
        let figure = format!(
            "predicted decode {:.2}× at acceptance {:.2} ({acceptance})",
            self.predicted_speedup, self.acceptance_rate
        );
        if self.advised {
            format!(
                "speculative decoding with the draft model {}: {figure}",
                self.draft_model
            )
        } else if !self.fits {
            format!(
                "speculative decoding is off: the draft model {} does not fit beside the model",
                self.draft_model
            )
        } else {
            format!(
                "speculative decoding is off: the draft model {} is not advised on this machine ({figure}); --speculative draft forces it",
                self.draft_model
            )
        }
    }
}

/// Tokens a verify step yields with `draft_tokens` guesses, each accepted with probability
/// `acceptance` and the first rejection ending the step: the accepted run plus the model's own
/// next token, `(1 − α^(k+1)) / (1 − α)`.
pub fn expected_tokens_per_step(acceptance: f64, draft_tokens: u32) -> f64 {
    let acceptance = acceptance.clamp(0.0, 1.0);
    if acceptance >= 1.0 - 1e-12 {
        return f64::from(draft_tokens) + 1.0;
    }
    (1.0 - acceptance.powi(draft_tokens as i32 + 1)) / (1.0 - acceptance)
}

/// The per-token acceptance rate `α` at which [`expected_tokens_per_step`] with
/// `draft_tokens` guesses yields `tokens_per_step`: the inverse of the planner's own formula,
/// so a rate measured this way predicts back the tokens per step that were measured.
///
/// Accepted over drafted overstates `α`: a draft model stops guessing at a token it is unsure
/// of, so the guesses it does make are the likely ones, and a step that guessed nothing still
/// costs a step. Tokens per decode step counts every step. The engine bounds its guesses per
/// step by `max_draft_tokens` (adapting below it), so that bound is the `k` to invert at: a
/// step that guessed fewer yields what a lower `α` at that `k` would, which is what the
/// planner's prediction at that `k` must reproduce. The formula increases with `α` on
/// `0..=1`, so bisection finds the one answer.
pub fn acceptance_from_tokens_per_step(tokens_per_step: f64, draft_tokens: u32) -> f64 {
    let most = f64::from(draft_tokens) + 1.0;
    if !tokens_per_step.is_finite() || tokens_per_step <= 1.0 || draft_tokens == 0 {
        return 0.0;
    }
    if tokens_per_step >= most {
        return 1.0;
    }
    let (mut low, mut high) = (0.0_f64, 1.0_f64);
    for _ in 0..64 {
        let middle = (low + high) / 2.0;
        if expected_tokens_per_step(middle, draft_tokens) < tokens_per_step {
            low = middle;
        } else {
            high = middle;
        }
    }
    (low + high) / 2.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_per_step_follow_the_geometric_series() {
        assert!((expected_tokens_per_step(0.0, 4) - 1.0).abs() < 1e-12);
        assert!((expected_tokens_per_step(1.0, 4) - 5.0).abs() < 1e-12);
        // 1 + 0.5 + 0.25 + 0.125
        assert!((expected_tokens_per_step(0.5, 3) - 1.875).abs() < 1e-12);
        assert!(expected_tokens_per_step(0.7, 8) < 1.0 / 0.3);
    }

    #[test]
    fn the_acceptance_rate_inverts_the_tokens_per_step() {
        for k in [1, 4, 8] {
            for alpha in [0.05, 0.21, 0.5, 0.7, 0.95] {
                let tokens = expected_tokens_per_step(alpha, k);
                let back = acceptance_from_tokens_per_step(tokens, k);
                assert!((back - alpha).abs() < 1e-9, "k {k} α {alpha}: {back}");
            }
        }
        // README's draft pair: 1.27 tokens per step at k = 8 is α ≈ 0.21, far from its
        // accepted/drafted of 1.00.
        let alpha = acceptance_from_tokens_per_step(1.27, 8);
        assert!((alpha - 0.2126).abs() < 0.001, "{alpha}");
        // At k = 1 the same yield needs a higher rate: 1 + α = 1.27.
        assert!((acceptance_from_tokens_per_step(1.27, 1) - 0.27).abs() < 1e-9);
    }

    #[test]
    fn yields_outside_the_formula_clamp() {
        assert_eq!(acceptance_from_tokens_per_step(1.0, 8), 0.0);
        assert_eq!(acceptance_from_tokens_per_step(0.5, 8), 0.0);
        assert_eq!(acceptance_from_tokens_per_step(f64::NAN, 8), 0.0);
        assert_eq!(acceptance_from_tokens_per_step(9.0, 8), 1.0);
        assert_eq!(acceptance_from_tokens_per_step(2.0, 0), 0.0);
    }

    #[test]
    fn a_verdict_states_its_figure() {
        let verdict = DraftVerdict {
            draft_model: "draft.gguf".to_string(),
            advised: false,
            fits: true,
            predicted_speedup: 0.46,
            acceptance_rate: 0.7,
            acceptance_source: DraftAcceptanceSource::Prior,
            error: None,
        };
        let line = verdict.summary();
        assert!(line.contains("not advised"), "{line}");
        assert!(
            line.contains("0.46×") && line.contains("0.70 (prior)"),
            "{line}"
        );
    }
}
