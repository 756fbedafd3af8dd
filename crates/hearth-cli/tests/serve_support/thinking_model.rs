//! A copy of the SmolLM2 test model whose chat template thinks in `<think>` tags: its
//! generation prompt opens the tag (as Qwen3's and the DeepSeek-R1 distills' do) and it honours
//! `enable_thinking`. The template shows one worked example first, so the small model copies
//! the shape (thinking, `</think>`, answer) and the closing tag really comes from the model.

use std::path::{Path, PathBuf};

use hearth_gguf::{GgufBuilder, GgufFile, MetadataValue, RawTensor};

/// The file name of the copy (its model id is derived from it).
pub const THINKING_MODEL_FILE: &str = "smollm2-thinking.gguf";

/// The GGUF key of a model's chat template.
pub const CHAT_TEMPLATE_KEY: &str = "tokenizer.chat_template";

/// ChatML with a worked example, a generation prompt that opens `<think>`, and Qwen3's
/// `enable_thinking=false` branch.
pub const THINKING_TEMPLATE: &str = "{{ '<|im_start|>system\\nThink between <think> and </think>, then answer.<|im_end|>\\n<|im_start|>user\\nWhat is 1+1?<|im_end|>\\n<|im_start|>assistant\\n<think>\\nOne plus one is two.\\n</think>\\n\\nThe answer is 2.<|im_end|>\\n' }}\
{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}{% endfor %}\
{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}\
{% if enable_thinking is defined and enable_thinking is false %}{{ '<think>\\n\\n</think>\\n\\n' }}{% else %}{{ '<think>\\n' }}{% endif %}{% endif %}";

/// Writes a copy of the GGUF model `source` to `target` with another chat template (every
/// other key and every tensor as they were).
pub fn with_chat_template(source: &Path, target: &Path, template: &str) {
    let bytes = std::fs::read(source).unwrap();
    let file = GgufFile::parse(&bytes).unwrap();
    let mut builder = GgufBuilder::new()
        .version(file.version())
        .alignment(u32::try_from(file.alignment()).unwrap());
    for entry in file.metadata() {
        let value = if entry.key == CHAT_TEMPLATE_KEY {
            MetadataValue::String(template.to_string())
        } else {
            entry.value.clone()
        };
        if entry.key != "general.alignment" {
            builder = builder.metadata(&entry.key, value);
        }
    }
    for tensor in file.tensors() {
        builder = builder.raw_tensor(RawTensor {
            name: tensor.name.clone(),
            n_dims: u32::try_from(tensor.dimensions.len()).unwrap(),
            dimensions: tensor.dimensions.clone(),
            type_id: tensor.ggml_type.id(),
            offset: None,
            data: file.tensor_data(&bytes, tensor).unwrap().to_vec(),
        });
    }
    std::fs::write(target, builder.build()).unwrap();
}

/// Writes the thinking copy of SmolLM2 into `folder`; returns its path.
pub fn write_thinking_model(folder: &Path) -> PathBuf {
    let model = folder.join(THINKING_MODEL_FILE);
    with_chat_template(&hearth_testkit::smollm2(), &model, THINKING_TEMPLATE);
    model
}
