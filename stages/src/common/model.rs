//! Getting a model and its tokenizer from a stage input, and the text a
//! model is prompted with for a row.
//!
//! A model input is a `.gguf` file, a checkpoint directory (`config.json`,
//! `model.safetensors`, `tokenizer.json`: what `train` writes), or a
//! `models:` entry with `tiny:` (a spec with no weights: only `train` can
//! start from it; the engine rejects it elsewhere at load time).

use anyhow::{anyhow, bail, Context};
use retort_engine::{Device, InputArtifact, Row};
use retort_lm::chat::ChatMessage;
use retort_lm::tokenizer::Tokenizer;
use retort_lm::DeviceKind;

pub use retort_lm::LoadedModel;

use crate::common::rows::field;

/// The runtime's device for the pipeline's `device:` (the engine's enum
/// and lm's are kept apart because the engine never depends on burn).
pub fn device_kind(device: Device) -> DeviceKind {
    match device {
        Device::Cpu => DeviceKind::Cpu,
        Device::Wgpu => DeviceKind::Wgpu,
        Device::Cuda => DeviceKind::Cuda,
    }
}

/// The burn device for the pipeline's `device:`, or an error naming the
/// cargo feature this binary lacks.
pub fn burn_device(device: Device) -> anyhow::Result<burn::tensor::Device> {
    Ok(device_kind(device).device()?)
}

/// Loads the model behind `input` (named `what` in errors) onto `device`.
pub fn load(input: &InputArtifact, what: &str, device: Device) -> anyhow::Result<LoadedModel> {
    let Some(path) = &input.path else {
        bail!("model `{what}` is a spec without weights (`tiny:`); train it first and point this stage at the train stage");
    };
    let lm = LoadedModel::load(path, device_kind(device)).with_context(|| format!("loading model `{what}` from {}", path.display()))?;
    lm.text_tokenizer()?;
    Ok(lm)
}

/// The text fed to the model for a row: its `prompt`, or with `chat`, the
/// tokenizer's chat template over `messages` (or a user turn holding
/// `prompt`), ending with the assistant's turn.
pub fn prompt_text(row: &Row, tokenizer: &Tokenizer, chat: bool, system: Option<&str>) -> anyhow::Result<String> {
    let prompt = row.get(field::PROMPT).and_then(|v| v.as_str());
    if !chat {
        return prompt.map(str::to_string).ok_or_else(|| anyhow!("row has no string `prompt` (set `chat: true` for `messages`)"));
    }
    let mut messages: Vec<ChatMessage> = system.map(|s| vec![ChatMessage::system(s)]).unwrap_or_default();
    match (row.get(field::MESSAGES), prompt) {
        (Some(m), _) => {
            let list: Vec<ChatMessage> = serde_json::from_value(m.clone()).context("`messages` must be [{role, content}]")?;
            messages.extend(list);
        }
        (None, Some(p)) => messages.push(ChatMessage::user(p)),
        (None, None) => bail!("row has neither `prompt` nor `messages`"),
    }
    Ok(tokenizer.apply_chat_template(&messages, true)?)
}
