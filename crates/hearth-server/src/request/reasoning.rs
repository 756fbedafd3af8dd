//! The reasoning fields of a chat request: `reasoning_effort` (OpenAI's; `"none"` turns
//! thinking off), llama-server's `chat_template_kwargs.enable_thinking` and its
//! `reasoning_format` (`"none"` leaves the thinking inline in the content).

use super::fields::Fields;
use crate::error::ApiError;
use crate::reasoning::ReasoningFormat;

/// The values `reasoning_effort` takes; all but `none` leave thinking on (a model that thinks
/// in tags has no budget to set).
const REASONING_EFFORTS: &[&str] = &["none", "minimal", "low", "medium", "high"];
/// The values `reasoning_format` takes, as llama-server names them.
const REASONING_FORMATS: &[&str] = &["auto", "deepseek", "none"];

/// What a chat request asks of a thinking model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReasoningOptions {
    pub enable_thinking: bool,
    pub format: ReasoningFormat,
}

impl Default for ReasoningOptions {
    fn default() -> Self {
        Self {
            enable_thinking: true,
            format: ReasoningFormat::Separate,
        }
    }
}

/// Reads `reasoning_effort`, `chat_template_kwargs.enable_thinking` and `reasoning_format`.
pub(super) fn parse_reasoning_options(fields: &Fields<'_>) -> Result<ReasoningOptions, ApiError> {
    let effort = match fields.string("reasoning_effort")? {
        None => None,
        Some(effort) if REASONING_EFFORTS.contains(&effort) => Some(effort != "none"),
        Some(_) => return Err(ApiError::invalid_param(
            "reasoning_effort",
            "'reasoning_effort' must be \"none\", \"minimal\", \"low\", \"medium\" or \"high\".",
        )
        .with_code("unsupported_value")),
    };
    let kwarg = match fields.object("chat_template_kwargs")? {
        None => None,
        Some(kwargs) => Fields::new(kwargs, "chat_template_kwargs.").bool("enable_thinking")?,
    };
    let enable_thinking = match (effort, kwarg) {
        (Some(effort), Some(kwarg)) if effort != kwarg => {
            return Err(ApiError::invalid_param(
                "chat_template_kwargs.enable_thinking",
                "'chat_template_kwargs.enable_thinking' contradicts 'reasoning_effort': send one of them.",
            ))
        }
        (effort, kwarg) => effort.or(kwarg).unwrap_or(true),
    };
    let format = match fields.string("reasoning_format")? {
        None => ReasoningFormat::Separate,
        Some("none") => ReasoningFormat::Raw,
        Some(format) if REASONING_FORMATS.contains(&format) => ReasoningFormat::Separate,
        Some(_) => {
            return Err(ApiError::invalid_param(
                "reasoning_format",
                "'reasoning_format' must be \"auto\", \"deepseek\" or \"none\".",
            )
            .with_code("unsupported_value"))
        }
    };
    Ok(ReasoningOptions {
        enable_thinking,
        format,
    })
}
