//! Chat templates: turning messages into the prompt text a model was trained on.
//!
//! Order of preference: llama.cpp's built-in template engine when it recognises the model's
//! template (fast, well tested); otherwise the model's Jinja template rendered by minijinja in a
//! sandbox (no loader, so no file access; no network; fuel bounds the time and the output is
//! capped); and for a model without a template, ChatML, reported as a fallback. The engine
//! makes that choice once per model, at load (`ChatTemplate::detect`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use hearth_protocol::{
    ChatMessage, ErrorKind, Role, TemplateSource, ThinkTags, ThinkingSyntax, ToolDefinition,
    WorkerError,
};
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::token::LlamaToken;
use minijinja::{context, Environment, Error as JinjaError, ErrorKind as JinjaErrorKind};

use crate::tool_prompt;

/// Instructions a template render may execute before it is stopped (a template that loops
/// forever must not hang the engine). Real chat templates use a few thousand per message.
pub const JINJA_FUEL: u64 = 5_000_000;
/// Largest prompt text a template may produce. The render writes into a buffer that refuses
/// to grow past it, and everything the template prints (`{{ … }}`, also into a `{% set %}`
/// block or a macro's output) counts towards it as printed, so a template that loops to build
/// a huge string stops here instead of first building it in memory.
pub const MAX_RENDERED_BYTES: usize = 16 * 1024 * 1024;
/// Largest template source accepted from a model file.
pub const MAX_TEMPLATE_BYTES: usize = 256 * 1024;

/// How this model's chat prompts are rendered (decided once, at load).
pub(crate) struct ChatTemplate {
    kind: TemplateKind,
    /// The model's Jinja source, when it has one that takes `tools`: a chat with tools is
    /// rendered by it even when llama.cpp's built-in engine renders the model's other chats
    /// (the built-in engine knows no tools).
    tool_source: Option<String>,
    tokens: TemplateTokens,
    /// The tags the model thinks in, when its template names them.
    think_tags: Option<ThinkTags>,
    /// Its generation prompt opens the thinking tag (Qwen3, the DeepSeek-R1 distills).
    opens_thinking: bool,
}

enum TemplateKind {
    Builtin(LlamaChatTemplate),
    Jinja { source: String },
    FallbackChatml,
}

impl ChatTemplate {
    pub(crate) fn detect(model: &LlamaModel) -> Self {
        let vocab = model.vocab();
        let token_text = |token: LlamaToken| {
            String::from_utf8_lossy(&vocab.token_to_piece(token, true, None)).into_owned()
        };
        let tokens = TemplateTokens {
            bos_token: token_text(vocab.bos()),
            eos_token: token_text(vocab.eos()),
        };
        let Ok(template) = model.chat_template(None) else {
            return ChatTemplate {
                kind: TemplateKind::FallbackChatml,
                tool_source: None,
                tokens,
                think_tags: None,
                opens_thinking: false,
            };
        };
        let source = template.to_string().unwrap_or_default();
        let tool_source = tool_prompt::template_takes_tools(&source).then(|| source.clone());
        let think_tags = hearth_protocol::think_tags_in_template(&source);
        if let Some(tags) = think_tags {
            // A thinking template is rendered by itself, not by llama.cpp's built-in engine,
            // which knows neither `enable_thinking` nor a generation prompt that opens the tag.
            let probe = [ChatMessage::new(Role::User, "hi")];
            if let Ok(rendered) = render_jinja(&source, &probe, &[], &tokens, true) {
                return ChatTemplate {
                    kind: TemplateKind::Jinja { source },
                    tool_source,
                    tokens,
                    think_tags,
                    opens_thinking: hearth_protocol::prompt_opens_thinking(&rendered, tags),
                };
            }
        }
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
        let kind = if recognised {
            TemplateKind::Builtin(template)
        } else {
            TemplateKind::Jinja { source }
        };
        ChatTemplate {
            kind,
            tool_source,
            tokens,
            think_tags,
            opens_thinking: false,
        }
    }

    /// How a chat's output thinks (`None`: the model does not think in tags). With thinking
    /// off the prompt closed the block, but the output is still read for one: a model that
    /// thinks anyway keeps its thinking out of the answer.
    pub(crate) fn thinking(&self, enable_thinking: bool) -> Option<ThinkingSyntax> {
        let tags = self.think_tags?;
        Some(ThinkingSyntax {
            open: tags.open.to_string(),
            close: tags.close.to_string(),
            opened_in_prompt: enable_thinking && self.opens_thinking,
        })
    }

    pub(crate) fn source(&self) -> TemplateSource {
        match self.kind {
            TemplateKind::Builtin(_) => TemplateSource::Builtin,
            TemplateKind::Jinja { .. } => TemplateSource::Jinja,
            TemplateKind::FallbackChatml => TemplateSource::FallbackChatml,
        }
    }

    /// The prompt text of a chat. A chat with tools (or tool calls and results in its
    /// history) goes through the model's own template when it takes tools; otherwise the
    /// tools are described in the system message and the calls and results written as text,
    /// in the Hermes format ([`tool_prompt::as_plain_messages`]).
    pub(crate) fn render(
        &self,
        model: &LlamaModel,
        messages: &[ChatMessage],
        tools: &[ToolDefinition],
        enable_thinking: bool,
    ) -> Result<String, WorkerError> {
        let prompt = if !tool_prompt::uses_tools(messages, tools) {
            self.render_plain(model, messages, enable_thinking)?
        } else {
            match &self.tool_source {
                Some(source) => {
                    render_jinja(source, messages, tools, &self.tokens, enable_thinking)?
                }
                None => self.render_plain(
                    model,
                    &tool_prompt::as_plain_messages(messages, tools),
                    enable_thinking,
                )?,
            }
        };
        Ok(match self.think_tags {
            Some(tags) if !enable_thinking => {
                hearth_protocol::close_thinking_in_prompt(&prompt, tags)
            }
            _ => prompt,
        })
    }

    fn render_plain(
        &self,
        model: &LlamaModel,
        messages: &[ChatMessage],
        enable_thinking: bool,
    ) -> Result<String, WorkerError> {
        match &self.kind {
            TemplateKind::Builtin(template) => {
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
            TemplateKind::Jinja { source } => {
                render_jinja(source, messages, &[], &self.tokens, enable_thinking)
            }
            TemplateKind::FallbackChatml => Ok(render_chatml(messages)),
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

/// Renders a Hugging Face style Jinja chat template in a sandbox; `tools` (when any) and the
/// messages' tool calls are given in the shapes Hugging Face templates read, and
/// `enable_thinking` as Qwen3's templates read it.
pub fn render_jinja(
    template_source: &str,
    messages: &[ChatMessage],
    tools: &[ToolDefinition],
    tokens: &TemplateTokens,
    enable_thinking: bool,
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
    // Counts what `{{ … }}` prints, wherever it goes: a `{% set %}` block or a macro call
    // collects its output in memory, out of `CappedOutput`'s reach.
    let printed = Arc::new(AtomicUsize::new(0));
    let counter = printed.clone();
    environment.set_formatter(move |out, state, value| {
        let bytes = value
            .as_str()
            .map_or_else(|| value.to_string().len(), str::len);
        let total = counter
            .fetch_add(bytes, Ordering::Relaxed)
            .saturating_add(bytes);
        if total > MAX_RENDERED_BYTES {
            return Err(JinjaError::new(
                JinjaErrorKind::InvalidOperation,
                "the template prints too much",
            ));
        }
        minijinja::escape_formatter(out, state, value)
    });
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
        .map(tool_prompt::TemplateMessage::from)
        .collect();
    let tools = (!tools.is_empty()).then(|| {
        tools
            .iter()
            .map(tool_prompt::TemplateTool::from)
            .collect::<Vec<_>>()
    });
    let mut output = CappedOutput::default();
    let rendered = template.render_captured_to(
        context! {
            messages => minijinja::Value::from_serialize(&messages),
            tools => minijinja::Value::from_serialize(&tools),
            add_generation_prompt => true,
            enable_thinking => enable_thinking,
            bos_token => tokens.bos_token.as_str(),
            eos_token => tokens.eos_token.as_str(),
        },
        &mut output,
    );
    let too_large = || {
        failed(format!(
            "the rendered prompt exceeds the {MAX_RENDERED_BYTES} bytes allowed"
        ))
    };
    if output.overflowed || printed.load(Ordering::Relaxed) > MAX_RENDERED_BYTES {
        return Err(too_large());
    }
    rendered.map_err(|error| failed(error.to_string()))?;
    String::from_utf8(output.bytes).map_err(|_| failed("the output is not UTF-8".into()))
}

/// The prompt text of a render, refusing to grow past [`MAX_RENDERED_BYTES`]: the write that
/// would cross it fails, which stops the render.
#[derive(Default)]
struct CappedOutput {
    bytes: Vec<u8>,
    overflowed: bool,
}

impl std::io::Write for CappedOutput {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len() + data.len() > MAX_RENDERED_BYTES {
            self.overflowed = true;
            return Err(std::io::Error::other("the prompt is too large"));
        }
        self.bytes.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
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
        let rendered =
            render_jinja(source, &chat(), &[], &TemplateTokens::default(), true).unwrap();
        assert_eq!(rendered, render_chatml(&chat()));
    }

    /// A Qwen-style template reads `tools`, an assistant's `tool_calls` (arguments as an
    /// object, through `tojson`) and a tool result's `tool_call_id`.
    #[test]
    fn a_jinja_template_gets_tools_and_tool_calls() {
        let source = "{% if tools %}TOOLS:{% for t in tools %}{{ t.function.name }}({{ t.function.parameters | tojson }});{% endfor %}\n{% endif %}{% for m in messages %}{{ m.role }}:{{ m.content }}{% for c in m.tool_calls %}[{{ c.function.name }} {{ c.function.arguments | tojson }}]{% endfor %}{% if m.tool_call_id %}#{{ m.tool_call_id }}{% endif %}\n{% endfor %}";
        let tools = [hearth_protocol::ToolDefinition {
            name: "add".into(),
            description: None,
            parameters: serde_json::json!({"type": "object"}),
        }];
        let mut call = ChatMessage::new(Role::Assistant, "");
        call.tool_calls = vec![hearth_protocol::ToolCall {
            id: "c1".into(),
            name: "add".into(),
            arguments: serde_json::json!({"a": 1}),
        }];
        let mut result = ChatMessage::new(Role::Tool, "2");
        result.tool_call_id = Some("c1".into());
        let messages = [ChatMessage::new(Role::User, "1+1?"), call, result];
        let rendered =
            render_jinja(source, &messages, &tools, &TemplateTokens::default(), true).unwrap();
        assert_eq!(
            rendered,
            "TOOLS:add({\"type\":\"object\"});\nuser:1+1?\nassistant:[add {\"a\":1}]\ntool:2#c1\n"
        );
        // Without tools, `tools` is undefined-like and the template skips it.
        let rendered = render_jinja(
            source,
            &messages[..1],
            &[],
            &TemplateTokens::default(),
            true,
        )
        .unwrap();
        assert_eq!(rendered, "user:1+1?\n");
    }

    #[test]
    fn bos_token_and_raise_exception_work() {
        let source = "{{ bos_token }}{% if messages[0]['role'] != 'system' %}{{ raise_exception('system first') }}{% endif %}ok";
        let tokens = TemplateTokens {
            bos_token: "<s>".into(),
            eos_token: "</s>".into(),
        };
        assert_eq!(
            render_jinja(source, &chat(), &[], &tokens, true).unwrap(),
            "<s>ok"
        );
        let error = render_jinja(source, &chat()[1..], &[], &tokens, true).unwrap_err();
        assert_eq!(error.kind, ErrorKind::TemplateFailed);
        assert!(error.message.contains("system first"), "{}", error.message);
    }

    #[test]
    fn an_endless_template_is_stopped_by_fuel() {
        let source = "{% for i in range(100000000) %}{% for j in range(100000000) %}x{% endfor %}{% endfor %}";
        let error =
            render_jinja(source, &chat(), &[], &TemplateTokens::default(), true).unwrap_err();
        assert_eq!(error.kind, ErrorKind::TemplateFailed);
    }

    /// Template bombs: 100,000 iterations each printing a 1 MB string would be 100 GB, printed
    /// out or collected by a `{% set %}` block. The render stops at the cap, fast, holding no
    /// more than the cap (plus one 1 MB value).
    #[test]
    fn a_template_that_loops_to_build_a_huge_string_stops_at_the_cap() {
        let bombs: [&str; 4] = [
            "{% for i in range(100000) %}{{ 'x' * 1000000 }}{% endfor %}",
            "{% set s %}{% for i in range(100000) %}{{ 'x' * 1000000 }}{% endfor %}{% endset %}{{ s|length }}",
            &format!("{{% for i in range(100000) %}}{}{{% endfor %}}", "raw text ".repeat(30)),
            "{% for message in messages %}{% for i in range(100000) %}{{ message['content'] * 1000 }}{% endfor %}{% endfor %}",
        ];
        for source in &bombs {
            let started = std::time::Instant::now();
            let error =
                render_jinja(source, &chat(), &[], &TemplateTokens::default(), true).unwrap_err();
            assert_eq!(error.kind, ErrorKind::TemplateFailed, "{source}");
            assert!(
                error.message.contains("exceeds the 16777216 bytes allowed"),
                "{source}: {}",
                error.message
            );
            assert!(
                started.elapsed() < std::time::Duration::from_secs(5),
                "{source}: {:?}",
                started.elapsed()
            );
        }
        // A large prompt under the cap still renders.
        let source = "{% for i in range(1000) %}{{ 'x' * 1000 }}{% endfor %}";
        let rendered =
            render_jinja(source, &chat(), &[], &TemplateTokens::default(), true).unwrap();
        assert_eq!(rendered.len(), 1_000_000);
    }

    #[test]
    fn the_sandbox_has_no_file_access() {
        let source = "{% include '/etc/passwd' %}";
        assert!(render_jinja(source, &chat(), &[], &TemplateTokens::default(), true).is_err());
        let source = "{% import '/etc/hostname' as h %}";
        assert!(render_jinja(source, &chat(), &[], &TemplateTokens::default(), true).is_err());
    }

    #[test]
    fn a_broken_template_is_an_error_not_a_panic() {
        let error =
            render_jinja("{% for %}", &chat(), &[], &TemplateTokens::default(), true).unwrap_err();
        assert_eq!(error.kind, ErrorKind::TemplateFailed);
    }
}
