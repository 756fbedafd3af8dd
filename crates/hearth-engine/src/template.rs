//! Chat templates: turning messages into the prompt text a model was trained on.
//!
//! Order of preference: llama.cpp's built-in template engine when it recognises the model's
//! template (fast, well tested); otherwise the model's Jinja template rendered by minijinja in a
//! sandbox (no loader, so no file access; no network; fuel bounds the time and the output is
//! capped); and for a model without a template, ChatML, reported as a fallback. The engine
//! makes that choice once per model, at load (`ChatTemplate::detect`).

use hearth_protocol::{ChatMessage, ErrorKind, TemplateSource, WorkerError};
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::token::LlamaToken;
use minijinja::{context, Environment, Error as JinjaError, ErrorKind as JinjaErrorKind};

/// Instructions a template render may execute before it is stopped (a template that loops
/// forever must not hang the engine). Real chat templates use a few thousand per message.
pub const JINJA_FUEL: u64 = 5_000_000;
/// Largest prompt text a template may produce.
pub const MAX_RENDERED_BYTES: usize = 16 * 1024 * 1024;
/// Largest template source accepted from a model file.
pub const MAX_TEMPLATE_BYTES: usize = 256 * 1024;

/// How this model's chat prompts are rendered (decided once, at load).
pub(crate) enum ChatTemplate {
    Builtin(LlamaChatTemplate),
    Jinja {
        source: String,
        tokens: TemplateTokens,
    },
    FallbackChatml,
}

impl ChatTemplate {
    pub(crate) fn detect(model: &LlamaModel) -> Self {
        let Ok(template) = model.chat_template(None) else {
            return ChatTemplate::FallbackChatml;
        };
        let probe = [LlamaChatMessage::new("user".into(), "hi".into())];
        let recognised = probe
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
            .ok()
            .map(|messages| {
                model
                    .apply_chat_template(&template, &messages, true)
                    .is_ok()
            })
            .unwrap_or(false);
        if recognised {
            return ChatTemplate::Builtin(template);
        }
        let source = template.to_string().unwrap_or_default();
        let vocab = model.vocab();
        let token_text = |token: LlamaToken| {
            String::from_utf8_lossy(&vocab.token_to_piece(token, true, None)).into_owned()
        };
        ChatTemplate::Jinja {
            source,
            tokens: TemplateTokens {
                bos_token: token_text(vocab.bos()),
                eos_token: token_text(vocab.eos()),
            },
        }
    }

    pub(crate) fn source(&self) -> TemplateSource {
        match self {
            ChatTemplate::Builtin(_) => TemplateSource::Builtin,
            ChatTemplate::Jinja { .. } => TemplateSource::Jinja,
            ChatTemplate::FallbackChatml => TemplateSource::FallbackChatml,
        }
    }

    pub(crate) fn render(
        &self,
        model: &LlamaModel,
        messages: &[ChatMessage],
    ) -> Result<String, WorkerError> {
        match self {
            ChatTemplate::Builtin(template) => {
                let messages = messages
                    .iter()
                    .map(|m| LlamaChatMessage::new(m.role.as_str().into(), m.content.clone()))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| {
                        WorkerError::new(
                            ErrorKind::InvalidRequest,
                            "a message contains a NUL character",
                        )
                    })?;
                model
                    .apply_chat_template(template, &messages, true)
                    .map_err(|error| {
                        WorkerError::new(
                            ErrorKind::TemplateFailed,
                            format!("the chat template could not be applied: {error}"),
                        )
                    })
            }
            ChatTemplate::Jinja { source, tokens } => render_jinja(source, messages, tokens),
            ChatTemplate::FallbackChatml => Ok(render_chatml(messages)),
        }
    }
}

/// Renders messages as ChatML with the assistant turn opened, the format of SmolLM2, Qwen
/// and many others; used when a model carries no template at all.
pub fn render_chatml(messages: &[ChatMessage]) -> String {
    let mut prompt = String::new();
    for message in messages {
        prompt.push_str("<|im_start|>");
        prompt.push_str(message.role.as_str());
        prompt.push('\n');
        prompt.push_str(&message.content);
        prompt.push_str("<|im_end|>\n");
    }
    prompt.push_str("<|im_start|>assistant\n");
    prompt
}

/// Special token texts a Jinja template may refer to.
#[derive(Debug, Clone, Default)]
pub struct TemplateTokens {
    pub bos_token: String,
    pub eos_token: String,
}

/// Renders a Hugging Face style Jinja chat template in a sandbox.
pub fn render_jinja(
    template_source: &str,
    messages: &[ChatMessage],
    tokens: &TemplateTokens,
) -> Result<String, WorkerError> {
    let failed = |detail: String| {
        WorkerError::new(
            ErrorKind::TemplateFailed,
            format!("the model's chat template could not be rendered: {detail}"),
        )
    };
    if template_source.len() > MAX_TEMPLATE_BYTES {
        return Err(failed(format!(
            "template is {} bytes, more than the {MAX_TEMPLATE_BYTES} accepted",
            template_source.len()
        )));
    }
    let mut environment = Environment::new();
    environment.set_fuel(Some(JINJA_FUEL));
    // Python string methods (`.strip()`, `.startswith()`) that HF templates use.
    environment.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    environment.add_function(
        "raise_exception",
        |message: String| -> Result<String, JinjaError> {
            Err(JinjaError::new(JinjaErrorKind::InvalidOperation, message))
        },
    );
    // Templates that print today's date get a fixed one: rendering stays deterministic and
    // needs no clock.
    environment.add_function("strftime_now", |_format: String| "01 Jan 2025".to_string());
    environment
        .add_template("chat", template_source)
        .map_err(|error| failed(error.to_string()))?;
    let template = environment
        .get_template("chat")
        .map_err(|error| failed(error.to_string()))?;
    let messages: Vec<_> = messages
        .iter()
        .map(|m| context! { role => m.role.as_str(), content => m.content.as_str() })
        .collect();
    let rendered = template
        .render(context! {
            messages => messages,
            add_generation_prompt => true,
            bos_token => tokens.bos_token.as_str(),
            eos_token => tokens.eos_token.as_str(),
        })
        .map_err(|error| failed(error.to_string()))?;
    if rendered.len() > MAX_RENDERED_BYTES {
        return Err(failed(format!(
            "rendered prompt is {} bytes, more than the {MAX_RENDERED_BYTES} allowed",
            rendered.len()
        )));
    }
    Ok(rendered)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_protocol::Role;

    fn chat() -> Vec<ChatMessage> {
        vec![
            ChatMessage::new(Role::System, "Be brief."),
            ChatMessage::new(Role::User, "Hi"),
        ]
    }

    #[test]
    fn chatml_fallback_opens_the_assistant_turn() {
        assert_eq!(
            render_chatml(&chat()),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn a_jinja_template_renders_like_chatml() {
        let source = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'].strip() + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
        let rendered = render_jinja(source, &chat(), &TemplateTokens::default()).unwrap();
        assert_eq!(rendered, render_chatml(&chat()));
    }

    #[test]
    fn bos_token_and_raise_exception_work() {
        let source = "{{ bos_token }}{% if messages[0]['role'] != 'system' %}{{ raise_exception('system first') }}{% endif %}ok";
        let tokens = TemplateTokens {
            bos_token: "<s>".into(),
            eos_token: "</s>".into(),
        };
        assert_eq!(render_jinja(source, &chat(), &tokens).unwrap(), "<s>ok");
        let error = render_jinja(source, &chat()[1..], &tokens).unwrap_err();
        assert_eq!(error.kind, ErrorKind::TemplateFailed);
        assert!(error.message.contains("system first"), "{}", error.message);
    }

    #[test]
    fn an_endless_template_is_stopped_by_fuel() {
        let source = "{% for i in range(100000000) %}{% for j in range(100000000) %}x{% endfor %}{% endfor %}";
        let error = render_jinja(source, &chat(), &TemplateTokens::default()).unwrap_err();
        assert_eq!(error.kind, ErrorKind::TemplateFailed);
    }

    #[test]
    fn the_sandbox_has_no_file_access() {
        let source = "{% include '/etc/passwd' %}";
        assert!(render_jinja(source, &chat(), &TemplateTokens::default()).is_err());
        let source = "{% import '/etc/hostname' as h %}";
        assert!(render_jinja(source, &chat(), &TemplateTokens::default()).is_err());
    }

    #[test]
    fn a_broken_template_is_an_error_not_a_panic() {
        let error = render_jinja("{% for %}", &chat(), &TemplateTokens::default()).unwrap_err();
        assert_eq!(error.kind, ErrorKind::TemplateFailed);
    }
}
