//! `kind: generate` — prompts × N samples from a model.
//!
//! Each output row is its input row plus `response`, `sample_index` and
//! `seed`. Samples go through the item cache (see `sampler`), so adding
//! prompts samples only the new ones and a killed run resumes.

use retort_engine::{InputDecl, Metrics, Row, Source, Stage, StageCtx, StageImpl};
use retort_lm::SamplingParams;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model_io::{self, prompt_text};
use crate::sampler::{sample_all, Item};

/// The sampling settings stages share.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Sampling {
    /// Most new tokens per sample.
    #[serde(default = "default_max_tokens")]
    pub max_tokens: usize,
    /// 0 = greedy.
    #[serde(default = "default_temperature")]
    pub temperature: f32,
    /// Keep the k most likely tokens (0 = off).
    #[serde(default)]
    pub top_k: usize,
    /// Nucleus sampling threshold (1 = off).
    #[serde(default = "one_f")]
    pub top_p: f32,
    /// Drop tokens below min_p × the top probability (0 = off).
    #[serde(default)]
    pub min_p: f32,
    /// Stop when the text contains one of these (kept in the response).
    #[serde(default)]
    pub stop: Vec<String>,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling { max_tokens: default_max_tokens(), temperature: default_temperature(), top_k: 0, top_p: 1.0, min_p: 0.0, stop: vec![] }
    }
}

fn default_max_tokens() -> usize {
    256
}
fn default_temperature() -> f32 {
    0.7
}
fn one_f() -> f32 {
    1.0
}

impl Sampling {
    /// The runtime's parameters, seeded.
    pub fn params(&self, seed: u64) -> SamplingParams {
        SamplingParams {
            max_new_tokens: self.max_tokens,
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            seed,
            stop: self.stop.clone(),
            eos_token_ids: None,
        }
    }
}

/// Sample a model on a dataset of prompts.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GenerateStage {
    /// A `models:` entry or a stage that outputs a model.
    pub model: String,
    /// Rows with `prompt` (or `messages` with `chat: true`): `STAGE` or `STAGE.OUTPUT`.
    pub prompts: String,
    /// Samples per prompt.
    #[serde(default = "one")]
    pub samples: usize,
    /// Apply the tokenizer's chat template.
    #[serde(default)]
    pub chat: bool,
    /// A system message for `chat` (the template's default when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// max_tokens, temperature, top_k, top_p, min_p, stop.
    #[serde(default)]
    pub sampling: Sampling,
    /// Sequences per forward pass. Not hashed: a sample does not depend on
    /// its batch.
    #[serde(default = "default_batch", skip_serializing)]
    pub batch_size: usize,
}

fn one() -> usize {
    1
}
fn default_batch() -> usize {
    16
}

impl StageImpl for GenerateStage {
    const KIND: &'static str = "generate";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "Sample N responses per prompt from a model (item-cached, resumable).";
}

impl Stage for GenerateStage {
    fn inputs(&self) -> Vec<InputDecl> {
        vec![
            InputDecl::new("model", Source::Model(self.model.clone()), "model"),
            InputDecl::new("prompts", Source::stage_ref(&self.prompts), "prompts"),
        ]
    }

    fn outputs(&self) -> Vec<String> {
        vec!["out".into()]
    }

    fn run(&self, ctx: &mut StageCtx<'_>) -> anyhow::Result<Metrics> {
        let device = model_io::device(ctx.device)?;
        let input = ctx.input("model")?.clone();
        let lm = model_io::load(&input, &self.model, &device)?;
        let rows = ctx.read_rows("prompts")?;
        let mut items = Vec::with_capacity(rows.len() * self.samples);
        for (i, row) in rows.iter().enumerate() {
            let text = prompt_text(row, &lm.tokenizer, self.chat, self.system.as_deref())
                .map_err(|e| anyhow::anyhow!("prompt row {i}: {e}"))?;
            for s in 0..self.samples {
                items.push(Item { prompt: text.clone(), sample_index: s });
            }
        }
        let params = self.sampling.params(ctx.seed);
        let (sampled, cached) = sample_all(ctx, &lm, input.hash, &params, &items, self.batch_size)?;
        let mut out: Vec<Row> = Vec::with_capacity(sampled.len());
        let mut tokens = 0usize;
        for (k, s) in sampled.into_iter().enumerate() {
            let mut row = rows[k / self.samples].clone();
            row.insert("response".into(), s.response.into());
            row.insert("sample_index".into(), (k % self.samples).into());
            row.insert("seed".into(), s.seed.into());
            tokens += s.tokens;
            out.push(row);
        }
        ctx.write_rows("out", &out)?;
        ctx.log(format!("{cached} of {} samples came from the item cache", out.len()));
        Ok(Metrics::from([
            ("samples".to_string(), out.len().into()),
            ("mean_tokens".to_string(), crate::verify::round4(tokens as f64 / out.len().max(1) as f64).into()),
        ]))
    }
}
