//! `kind: train` — SFT, DPO or GRPO on a model, from scratch or from a
//! checkpoint; writes a checkpoint directory and per-step metrics.
//!
//! - `sft`: masked cross-entropy on response tokens (METHODS §0.4); rows
//!   with `prompt` and `response` (or `messages` with `chat: true`).
//! - `dpo`: METHODS §0.3 against the frozen starting model; rows with
//!   `prompt`, `chosen`, `rejected`.
//! - `grpo`: METHODS §0.2, online groups from the current policy rewarded by
//!   the Countdown verifier; rows with `prompt`, `nums`, `target`.
//!
//! A `models:` entry with `tiny:` starts from scratch: a character
//! tokenizer over printable ASCII (plus whatever else the data holds) and a
//! randomly initialised model seeded from the stage's seed.

use std::collections::BTreeMap;
use std::io::Write as _;

use anyhow::{anyhow, bail, Context};
use burn::tensor::Device;
use retort_engine::{InputArtifact, InputDecl, Metrics, Row, Source, Stage, StageCtx, StageImpl};
use retort_lm::config::TokenIds;
use retort_lm::tokenizer::Tokenizer;
use retort_lm::train::{self, DpoExample, GrpoConfig, LrSchedule, SftExample, StepMetrics, TrainConfig};
use retort_lm::LlamaConfig;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::data::verify_countdown;
use crate::generate::Sampling;
use crate::model_io::{self, prompt_text, LoadedModel};
use crate::verify::round4;

/// Which objective.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Objective {
    /// Masked supervised fine-tuning.
    Sft,
    /// Direct preference optimisation.
    Dpo,
    /// Group-relative policy optimisation with the Countdown reward.
    Grpo,
}

/// Learning-rate schedule.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// The same rate every step.
    #[default]
    Constant,
    /// Linear warmup over `warmup` (a share of the steps), then cosine to `min_lr_ratio`.
    WarmupCosine,
}

/// Train a model.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrainStage {
    /// Where to start: a `models:` entry (a checkpoint, a GGUF, or `tiny:` for from scratch) or a stage's model.
    pub model: String,
    /// Training rows: `STAGE` or `STAGE.OUTPUT`.
    pub data: String,
    /// sft, dpo or grpo.
    pub objective: Objective,
    /// Peak learning rate.
    #[serde(default = "default_lr")]
    pub lr: f64,
    /// constant (default) or warmup_cosine.
    #[serde(default)]
    pub schedule: Schedule,
    /// warmup_cosine: share of the steps spent warming up (e.g. 0.05).
    #[serde(default)]
    pub warmup: f64,
    /// warmup_cosine: final rate as a share of `lr`.
    #[serde(default)]
    pub min_lr_ratio: f64,
    /// Passes over the data (SFT, DPO).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epochs: Option<usize>,
    /// Optimizer steps (SFT, DPO) or sampling rounds (GRPO).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<usize>,
    /// Sequences (pairs for DPO) per micro-batch.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Micro-batches per optimizer step.
    #[serde(default = "one")]
    pub grad_accum: usize,
    /// Clip the global gradient norm to this (null = off).
    #[serde(default = "default_clip")]
    pub grad_clip: Option<f32>,
    /// AdamW weight decay.
    #[serde(default)]
    pub weight_decay: f64,
    /// Longest sequence (prompt + response) in tokens.
    #[serde(default = "default_max_len")]
    pub max_len: usize,
    /// Apply the tokenizer's chat template to prompts.
    #[serde(default)]
    pub chat: bool,
    /// DPO: β.
    #[serde(default = "default_beta")]
    pub beta: f64,
    /// GRPO: samples per prompt.
    #[serde(default = "default_group")]
    pub group_size: usize,
    /// GRPO: prompts per round.
    #[serde(default = "default_group")]
    pub prompts_per_step: usize,
    /// GRPO: passes over each round's samples.
    #[serde(default = "one")]
    pub ppo_epochs: usize,
    /// GRPO: ratio clip ε.
    #[serde(default = "default_clip_eps")]
    pub clip: f32,
    /// GRPO: k3 KL coefficient to the starting model.
    #[serde(default = "default_kl")]
    pub kl_coef: f32,
    /// GRPO: reward for an answer that exists but is wrong (SkillFactory: 0).
    #[serde(default)]
    pub format_reward: f32,
    /// GRPO: how rollouts are sampled.
    #[serde(default = "rollout_sampling")]
    pub sampling: Sampling,
}

fn default_lr() -> f64 {
    1e-4
}
fn default_batch() -> usize {
    8
}
fn one() -> usize {
    1
}
fn default_clip() -> Option<f32> {
    Some(1.0)
}
fn default_max_len() -> usize {
    512
}
fn default_beta() -> f64 {
    0.1
}
fn default_group() -> usize {
    8
}
fn default_clip_eps() -> f32 {
    0.2
}
fn default_kl() -> f32 {
    0.001
}
fn rollout_sampling() -> Sampling {
    Sampling { temperature: 1.0, ..Sampling::default() }
}

impl StageImpl for TrainStage {
    const KIND: &'static str = "train";
    // 2: from-scratch weights come from a host PRNG (`init_seeded`), not
    // burn's global one, so the same seed gives other bytes than version 1.
    const VERSION: u32 = 2;
    const ABOUT: &'static str = "Train a model (sft, dpo, grpo), from scratch or from a checkpoint; outputs a checkpoint.";
}

impl Stage for TrainStage {
    fn inputs(&self) -> Vec<InputDecl> {
        vec![
            InputDecl::new("model", Source::Model(self.model.clone()), "model"),
            InputDecl::new("data", Source::stage_ref(&self.data), "data"),
        ]
    }

    fn outputs(&self) -> Vec<String> {
        vec!["model".into(), "metrics".into()]
    }

    fn check(&self) -> Result<(), retort_engine::FieldError> {
        if self.objective == Objective::Grpo && self.steps.is_none() {
            return Err(retort_engine::FieldError::new("objective", "grpo needs `steps` (sampling rounds)"));
        }
        Ok(())
    }

    fn run(&self, ctx: &mut StageCtx<'_>) -> anyhow::Result<Metrics> {
        let device = model_io::device(ctx.device)?;
        let rows = ctx.read_rows_nonempty("data", "training examples")?;
        let input = ctx.input("model")?.clone();
        let lm = start_model(&input, &self.model, &rows, ctx.seed, &device)?;
        let cfg = self.train_config(ctx.seed);
        let mut log = Vec::new();
        let total = self.steps;
        let mut on_step = |m: &StepMetrics| {
            log.push(m.clone());
            ctx.progress(m.step as u64 + 1, total.map(|t| t as u64), "steps");
        };
        let LoadedModel { model, tokenizer } = lm;
        let eos = tokenizer.eos_id();
        let model = match self.objective {
            Objective::Sft => {
                let ex = rows
                    .iter()
                    .enumerate()
                    .map(|(i, r)| self.sft_example(r, &tokenizer, eos).with_context(|| format!("data row {i}")))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                train::train_sft(model, &ex, &cfg, &mut on_step)?
            }
            Objective::Dpo => {
                let ex = rows
                    .iter()
                    .enumerate()
                    .map(|(i, r)| self.dpo_example(r, &tokenizer, eos).with_context(|| format!("data row {i}")))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                train::train_dpo(model, &ex, self.beta, &cfg, &mut on_step)?
            }
            Objective::Grpo => self.grpo(model, &tokenizer, &rows, &cfg, ctx.seed, &mut on_step)?,
        };
        let dir = ctx.output_path("model");
        retort_lm::weights::save_safetensors_dir(&model, &dir)?;
        tokenizer.save_dir(&dir)?;
        let mut f = std::io::BufWriter::new(std::fs::File::create(ctx.output_path("metrics"))?);
        for m in &log {
            serde_json::to_writer(&mut f, m)?;
            f.write_all(b"\n")?;
        }
        f.flush()?;
        Ok(headline(&log))
    }
}

impl TrainStage {
    fn train_config(&self, seed: u64) -> TrainConfig {
        let steps = if self.objective == Objective::Grpo { None } else { self.steps };
        let schedule = match self.schedule {
            Schedule::Constant => LrSchedule::Constant,
            Schedule::WarmupCosine => {
                // The trainer fills total_steps with the run's length; warmup
                // is given as a fraction, so resolve it against `steps` when known.
                let warmup_steps = self.steps.map_or(0, |s| (self.warmup * s as f64).round() as usize);
                LrSchedule::WarmupCosine { warmup_steps, total_steps: 0, min_lr_ratio: self.min_lr_ratio }
            }
        };
        TrainConfig {
            lr: self.lr,
            schedule,
            epochs: self.epochs,
            steps,
            batch_size: self.batch_size,
            grad_accum: self.grad_accum,
            grad_clip: self.grad_clip,
            weight_decay: self.weight_decay,
            max_len: self.max_len,
            seed,
            ..TrainConfig::default()
        }
    }

    fn prompt(&self, row: &Row, tok: &Tokenizer) -> anyhow::Result<Vec<u32>> {
        Ok(tok.encode(&prompt_text(row, tok, self.chat, None)?, false)?)
    }

    fn completion(&self, row: &Row, key: &str, tok: &Tokenizer, eos: Option<u32>) -> anyhow::Result<Vec<u32>> {
        let text = row.get(key).and_then(Value::as_str).ok_or_else(|| anyhow!("missing string field `{key}`"))?;
        let mut ids = tok.encode(text, false)?;
        ids.extend(eos);
        Ok(ids)
    }

    fn sft_example(&self, row: &Row, tok: &Tokenizer, eos: Option<u32>) -> anyhow::Result<SftExample> {
        if self.chat && row.contains_key("messages") && !row.contains_key("response") {
            // Conversational rows: everything before the last assistant turn is the prompt.
            let mut msgs: Vec<retort_lm::chat::ChatMessage> =
                serde_json::from_value(row["messages"].clone()).context("`messages` must be [{role, content}]")?;
            let last = msgs.pop().filter(|m| m.role == "assistant").ok_or_else(|| anyhow!("last message must be the assistant's"))?;
            let prompt = tok.apply_chat_template(&msgs, true)?;
            let mut response = tok.encode(&last.content, false)?;
            response.extend(eos);
            return Ok(SftExample { prompt: tok.encode(&prompt, false)?, response });
        }
        Ok(SftExample { prompt: self.prompt(row, tok)?, response: self.completion(row, "response", tok, eos)? })
    }

    fn dpo_example(&self, row: &Row, tok: &Tokenizer, eos: Option<u32>) -> anyhow::Result<DpoExample> {
        Ok(DpoExample {
            prompt: self.prompt(row, tok)?,
            chosen: self.completion(row, "chosen", tok, eos)?,
            rejected: self.completion(row, "rejected", tok, eos)?,
        })
    }

    fn grpo(
        &self,
        model: retort_lm::Llama,
        tok: &Tokenizer,
        rows: &[Row],
        cfg: &TrainConfig,
        seed: u64,
        on_step: &mut dyn FnMut(&StepMetrics),
    ) -> anyhow::Result<retort_lm::Llama> {
        let mut prompts = Vec::with_capacity(rows.len());
        let mut tasks = Vec::with_capacity(rows.len());
        for (i, r) in rows.iter().enumerate() {
            prompts.push(self.prompt(r, tok).with_context(|| format!("data row {i}"))?);
            let nums: Vec<i64> = r
                .get("nums")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_i64).collect())
                .ok_or_else(|| anyhow!("data row {i}: grpo needs `nums` (the countdown reward)"))?;
            let target = r.get("target").and_then(Value::as_i64).ok_or_else(|| anyhow!("data row {i}: grpo needs `target`"))?;
            tasks.push((nums, target));
        }
        let format_reward = f64::from(self.format_reward);
        let reward = |i: usize, response: &[u32]| -> f32 {
            let text = tok.decode_skip_special(response);
            verify_countdown(&text, &tasks[i].0, tasks[i].1, format_reward).reward as f32
        };
        let decode = |t: &[u32]| tok.decode(t);
        let grpo = GrpoConfig {
            group_size: self.group_size,
            prompts_per_step: self.prompts_per_step,
            steps: self.steps.expect("checked"),
            ppo_epochs: self.ppo_epochs,
            clip: self.clip,
            kl_coef: self.kl_coef,
            sampling: self.sampling.params(seed),
            ..GrpoConfig::default()
        };
        Ok(train::train_grpo(model, &prompts, &reward, Some(&decode), &grpo, cfg, on_step)?)
    }
}

/// The model to start from: loaded, or (for `tiny:`) built from scratch.
fn start_model(input: &InputArtifact, name: &str, rows: &[Row], seed: u64, device: &Device) -> anyhow::Result<LoadedModel> {
    if input.path.is_some() {
        return model_io::load(input, name, device);
    }
    let spec = input.model_spec.as_ref().and_then(|s| s.get("tiny")).ok_or_else(|| anyhow!("model `{name}` has no path and no `tiny:`"))?;
    let tokenizer = char_tokenizer(rows)?;
    let mut cfg = tiny_config(spec, tokenizer.vocab_size())?;
    cfg.eos_token_id = tokenizer.eos_id().map(TokenIds::One);
    cfg.bos_token_id = tokenizer.bos_id();
    let model = cfg.init_seeded(seed, device);
    Ok(LoadedModel { model, tokenizer })
}

/// Printable ASCII, newline and tab, plus every other character in the
/// data: what a from-scratch model can read and write.
fn char_tokenizer(rows: &[Row]) -> anyhow::Result<Tokenizer> {
    let mut texts: Vec<String> = vec![(32u8..127).map(char::from).chain(['\n', '\t']).collect()];
    for r in rows {
        for v in r.values() {
            if let Value::String(s) = v {
                texts.push(s.clone());
            }
        }
    }
    Ok(Tokenizer::train_char_level(texts, &retort_lm::tokenizer::DEFAULT_SPECIALS)?)
}

/// `tiny: tiny` (a preset) or `tiny: {preset: tiny, hidden_size: 128, ...}`.
fn tiny_config(spec: &Value, vocab: usize) -> anyhow::Result<LlamaConfig> {
    let (preset, overrides) = match spec {
        Value::String(p) => (p.as_str(), serde_json::Map::new()),
        Value::Object(o) => (o.get("preset").and_then(Value::as_str).unwrap_or("tiny"), o.clone()),
        _ => bail!("`tiny:` must be a preset name or a mapping"),
    };
    let cfg = LlamaConfig::preset(preset, vocab)?;
    let mut json = serde_json::to_value(&cfg)?;
    for (k, v) in overrides {
        if k == "preset" {
            continue;
        }
        if json.get(&k).is_none() {
            bail!("`tiny.{k}` is not a model setting");
        }
        json[&k] = v;
    }
    Ok(serde_json::from_value(json)?)
}

/// Loss of the first and last steps, and the last step's extras.
fn headline(log: &[StepMetrics]) -> Metrics {
    let mut m = Metrics::new();
    m.insert("steps".into(), log.len().into());
    if let (Some(first), Some(last)) = (log.first(), log.last()) {
        m.insert("loss_first".into(), round4(first.loss).into());
        m.insert("loss_last".into(), round4(last.loss).into());
        let tail: BTreeMap<&String, f64> = last.extra.iter().map(|(k, v)| (k, round4(*v))).collect();
        for (k, v) in tail {
            if k != "tokens" && !k.ends_with("secs") {
                m.insert(format!("last_{k}"), v.into());
            }
        }
    }
    m
}
