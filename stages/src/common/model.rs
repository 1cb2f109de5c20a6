//! Getting a model and its tokenizer from a stage input, and the text a
//! model is prompted with for a row.
//!
//! A model input is a `.gguf` file, a checkpoint directory (`config.json`,
//! `model.safetensors`, `tokenizer.json`: what `train` writes), or a
//! `models:` entry with `tiny:` (a spec with no weights: only `train` can
//! start from it; the engine rejects it elsewhere at load time), or with
//! `openai:` (a remote server: it samples, see [`Sampler`]).

use anyhow::{anyhow, bail, Context};
use retort_engine::{Device, Endpoint, InputArtifact, Row, StageCtx};
use retort_lm::chat::ChatMessage;
use retort_lm::tokenizer::Tokenizer;
use retort_lm::train::{OptimState, TrainConfig};
use retort_lm::DeviceKind;

pub use retort_lm::LoadedModel;

use crate::common::rows::field;
use crate::common::sampler::Prompt;
use crate::openai;

/// What a sampling stage draws from: a model loaded here, or a remote
/// OpenAI-compatible server. Both go through the same item cache.
// One per stage run, never in a collection: its size does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Sampler {
    /// Weights in this process.
    Local(LoadedModel),
    /// An `openai:` model.
    Remote(openai::Client),
}

/// The sampler behind `input` (named `what` in errors), on the stage's
/// device.
pub fn sampler(input: &InputArtifact, what: &str, ctx: &StageCtx<'_>) -> anyhow::Result<Sampler> {
    match input.model_spec.as_ref().and_then(|s| s.openai.as_ref()) {
        Some(remote) => Ok(Sampler::Remote(openai::Client::new(remote).map_err(|m| anyhow!("model `{what}`: {m}"))?)),
        None => Ok(Sampler::Local(load(input, what, ctx)?)),
    }
}

impl Sampler {
    /// What the model is asked for `row`: for a local model, the text of
    /// [`prompt_text`]; for a remote one, the prompt as is (completions) or
    /// turns the server applies its template to (chat).
    pub fn prompt(&self, row: &Row, chat: bool, system: Option<&str>) -> anyhow::Result<Prompt> {
        let remote = match self {
            Sampler::Local(lm) => return Ok(Prompt::Text(prompt_text(row, lm.text_tokenizer()?, chat, system)?)),
            Sampler::Remote(client) => &client.spec,
        };
        match remote.endpoint {
            Endpoint::Chat => Ok(Prompt::Chat(turns(row, system)?)),
            Endpoint::Completions if chat => {
                bail!("`chat: true` needs a chat endpoint: set `endpoint: chat` on model `{}` (the server applies its chat template)", remote.model)
            }
            Endpoint::Completions => {
                let prompt = row.get(field::PROMPT).and_then(|v| v.as_str());
                Ok(Prompt::Text(prompt.ok_or_else(|| anyhow!("row has no string `prompt` (use `endpoint: chat` for `messages`)"))?.to_string()))
            }
        }
    }
}

/// The runtime's device for the pipeline's `device:` (the engine's enum
/// and lm's are kept apart because the engine never depends on burn).
pub fn device_kind(device: Device) -> DeviceKind {
    match device {
        Device::Cpu => DeviceKind::Cpu,
        Device::Wgpu => DeviceKind::Wgpu,
        Device::Cuda => DeviceKind::Cuda,
    }
}

/// The burn device for the stage's `device:`, or an error naming the
/// cargo feature this binary lacks (or the driver to install). Every stage
/// that runs a model gets its device here or through [`load`], which
/// records the backend with the run (see [`StageCtx::note_backend`]).
pub fn burn_device(ctx: &StageCtx<'_>) -> anyhow::Result<burn::tensor::Device> {
    let kind = device_kind(ctx.device);
    let device = kind.device()?;
    ctx.note_backend(kind.describe()?);
    Ok(device)
}

/// Brings up the pipeline's device before a run (the engine's preflight):
/// a binary without the feature, or wgpu without a Vulkan driver, is one
/// message saying what to rebuild or install.
pub fn check_device(device: Device) -> Result<(), String> {
    device_kind(device).device().map(|_| ()).map_err(|e| match e {
        retort_lm::LmError::Device { why, .. } => why,
        other => other.to_string(),
    })
}

/// Loads the model behind `input` (named `what` in errors) onto the
/// stage's device.
pub fn load(input: &InputArtifact, what: &str, ctx: &StageCtx<'_>) -> anyhow::Result<LoadedModel> {
    let Some(path) = &input.path else {
        bail!("model `{what}` is a spec without weights (`tiny:`); train it first and point this stage at the train stage");
    };
    let kind = device_kind(ctx.device);
    let lm = LoadedModel::load(path, kind).with_context(|| format!("loading model `{what}` from {}", path.display()))?;
    lm.text_tokenizer()?;
    ctx.note_backend(kind.describe()?);
    Ok(lm)
}

/// The AdamW state saved with model `what`'s checkpoint (`train` with
/// `save_optimizer: true`), with `cfg`'s AdamW settings; `needed_by` says
/// which setting asked for it, for the error when there is none.
pub fn optimizer_state(input: &InputArtifact, what: &str, needed_by: &str, cfg: &TrainConfig) -> anyhow::Result<OptimState> {
    let dir = input.path.as_deref().filter(|p| p.is_dir() && OptimState::exists_in(p)).ok_or_else(|| {
        anyhow!("{needed_by} restores the AdamW moments saved with model `{what}`, but `{what}` has no optimizer state: train it with `save_optimizer: true`")
    })?;
    Ok(OptimState::load_dir(dir, cfg)?)
}

/// The text fed to the model for a row: its `prompt`, or with `chat`, the
/// tokenizer's chat template over `messages` (or a user turn holding
/// `prompt`), ending with the assistant's turn.
pub fn prompt_text(row: &Row, tokenizer: &Tokenizer, chat: bool, system: Option<&str>) -> anyhow::Result<String> {
    let prompt = row.get(field::PROMPT).and_then(|v| v.as_str());
    if !chat {
        return prompt.map(str::to_string).ok_or_else(|| anyhow!("row has no string `prompt` (set `chat: true` for `messages`)"));
    }
    Ok(tokenizer.apply_chat_template(&turns(row, system)?, true)?)
}

/// The chat turns for a row: the system message, then its `messages`, or
/// a user turn holding its `prompt`.
fn turns(row: &Row, system: Option<&str>) -> anyhow::Result<Vec<ChatMessage>> {
    let mut messages: Vec<ChatMessage> = system.map(|s| vec![ChatMessage::system(s)]).unwrap_or_default();
    match (row.get(field::MESSAGES), row.get(field::PROMPT).and_then(|v| v.as_str())) {
        (Some(m), _) => {
            let list: Vec<ChatMessage> = serde_json::from_value(m.clone()).context("`messages` must be [{role, content}]")?;
            messages.extend(list);
        }
        (None, Some(p)) => messages.push(ChatMessage::user(p)),
        (None, None) => bail!("row has neither `prompt` nor `messages`"),
    }
    Ok(messages)
}
