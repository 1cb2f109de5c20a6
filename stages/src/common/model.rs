//! Getting a model and its tokenizer from a stage input.
//!
//! A model input is a `.gguf` file, a checkpoint directory (`config.json`,
//! `model.safetensors`, `tokenizer.json`: what `train` writes), or a
//! `models:` entry with `tiny:` (a spec with no weights: only `train` can
//! start from it).

use std::path::Path;

use anyhow::{anyhow, bail, Context};
use burn::tensor::Device;
use retort_engine::{InputArtifact, Row};
use retort_lm::chat::ChatMessage;
use retort_lm::tokenizer::Tokenizer;
use retort_lm::{DeviceKind, GgufFile, Llama};

/// A loaded model with its tokenizer.
pub struct LoadedModel {
    /// The network.
    pub model: Llama,
    /// Its tokenizer.
    pub tokenizer: Tokenizer,
}

/// The burn device for the pipeline's `device:`.
pub fn device(name: &str) -> anyhow::Result<Device> {
    let kind: DeviceKind = name.parse()?;
    Ok(kind.device()?)
}

/// Loads the model behind `input` (named `what` in errors).
pub fn load(input: &InputArtifact, what: &str, device: &Device) -> anyhow::Result<LoadedModel> {
    let Some(path) = &input.path else {
        bail!("model `{what}` is a spec without weights (`tiny:`); train it first and point this stage at the train stage");
    };
    load_path(path, device).with_context(|| format!("loading model `{what}` from {}", path.display()))
}

/// Loads a `.gguf` file or a checkpoint directory.
pub fn load_path(path: &Path, device: &Device) -> anyhow::Result<LoadedModel> {
    let model = retort_lm::weights::load_path(path, device)?;
    let tokenizer = if path.is_dir() {
        Tokenizer::from_dir(path)?
    } else {
        Tokenizer::from_gguf(&GgufFile::open(path)?)?
    };
    Ok(LoadedModel { model, tokenizer })
}

/// The text fed to the model for a row: its `prompt`, or with `chat`, the
/// tokenizer's chat template over `messages` (or a user turn holding
/// `prompt`), ending with the assistant's turn.
pub fn prompt_text(row: &Row, tokenizer: &Tokenizer, chat: bool, system: Option<&str>) -> anyhow::Result<String> {
    let prompt = row.get("prompt").and_then(|v| v.as_str());
    if !chat {
        return prompt.map(str::to_string).ok_or_else(|| anyhow!("row has no string `prompt` (set `chat: true` for `messages`)"));
    }
    let mut messages: Vec<ChatMessage> = system.map(|s| vec![ChatMessage::system(s)]).unwrap_or_default();
    match (row.get("messages"), prompt) {
        (Some(m), _) => {
            let list: Vec<ChatMessage> = serde_json::from_value(m.clone()).context("`messages` must be [{role, content}]")?;
            messages.extend(list);
        }
        (None, Some(p)) => messages.push(ChatMessage::user(p)),
        (None, None) => bail!("row has neither `prompt` nor `messages`"),
    }
    Ok(tokenizer.apply_chat_template(&messages, true)?)
}
