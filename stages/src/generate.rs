//! `kind: generate` — prompts × N samples from a model.
//!
//! Each output row is its input row plus `response`, `sample_index` and
//! `seed`. Samples go through the item cache (see `sampler`), so adding
//! prompts samples only the new ones and a killed run resumes.
//!
//! The prompt is the row's `prompt` (or `messages` with `chat`), or a
//! `template` over the row's fields; `variants` gives several named templates
//! and samples each row under each (SkillFactory S1), adding `variant`. With
//! `field` and `collect` the same stage writes model-written annotations of a
//! dataset: e.g. S3's reflections, `collect: true` puts the N samples of a row
//! into one list-valued field instead of N rows.

use std::collections::BTreeMap;

use retort_engine::{FieldError, InputDecl, Metrics, Row, Source, Stage, StageCtx, StageImpl};
use retort_lm::SamplingParams;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model_io::{self, prompt_text};
use crate::sampler::{sample_all, Item};
use crate::template::Templates;

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
    /// A prompt template over the row's fields (Jinja2 syntax, e.g.
    /// `"Check this answer: {{ response }}"`), used instead of `prompt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Named prompt templates: every row is sampled under each, and output
    /// rows carry the name in `variant`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variants: BTreeMap<String, String>,
    /// The output field that holds the generated text.
    // Defaults are left out of the hashed parameters, so stages written
    // before these options existed keep their cache.
    #[serde(default = "default_field", skip_serializing_if = "is_default_field")]
    pub field: String,
    /// One output row per input row (per variant), `field` holding the list
    /// of its `samples` texts, instead of one row per sample.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub collect: bool,
    /// max_tokens, temperature, top_k, top_p, min_p, stop.
    #[serde(default)]
    pub sampling: Sampling,
    /// Sequences per forward pass. Not hashed: a sample does not depend on
    /// its batch.
    #[serde(default = "default_batch", skip_serializing)]
    pub batch_size: usize,
}

fn default_field() -> String {
    "response".into()
}

fn is_default_field(f: &str) -> bool {
    f == "response"
}

impl GenerateStage {
    /// The field that holds the templates (for errors) and the variants to
    /// sample: template names, or `None` for the row's own prompt.
    fn templates(&self) -> (&'static str, Vec<Option<String>>) {
        if !self.variants.is_empty() {
            ("variants", self.variants.keys().cloned().map(Some).collect())
        } else if self.template.is_some() {
            ("template", vec![Some("template".into())])
        } else {
            ("template", vec![None])
        }
    }

    fn template_sources(&self) -> Vec<(&str, &str)> {
        match &self.template {
            Some(t) => vec![("template", t.as_str())],
            None => self.variants.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect(),
        }
    }
}

fn one() -> usize {
    1
}
fn default_batch() -> usize {
    16
}

impl StageImpl for GenerateStage {
    const KIND: &'static str = "generate";
    // 2: the runtime's inference numerics changed (fused RMSNorm/SwiGLU on
    // burn's path, gemm prefill attention on the packed path), so sampled
    // tokens from version 1 may differ from a fresh run's.
    const VERSION: u32 = 2;
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

    fn check(&self) -> Result<(), FieldError> {
        if self.template.is_some() && !self.variants.is_empty() {
            return Err(FieldError::new("variants", "give either `template` or `variants`, not both"));
        }
        if self.samples == 0 {
            return Err(FieldError::new("samples", "must be at least 1"));
        }
        if self.field.is_empty() {
            return Err(FieldError::new("field", "must name an output field, e.g. `response`"));
        }
        let (field, _) = self.templates();
        Templates::new(self.template_sources()).map_err(|e| FieldError::new(field, e))?;
        Ok(())
    }

    fn run(&self, ctx: &mut StageCtx<'_>) -> anyhow::Result<Metrics> {
        let device = model_io::device(ctx.device)?;
        let input = ctx.input("model")?.clone();
        let lm = model_io::load(&input, &self.model, &device)?;
        let rows = ctx.read_rows("prompts")?;
        let templates = Templates::new(self.template_sources()).map_err(anyhow::Error::msg)?;
        let (_, variants) = self.templates();
        // One prompt per (row, variant), in that order; `samples` items each.
        let mut prompts: Vec<(usize, Option<&str>, String)> = Vec::with_capacity(rows.len() * variants.len());
        for (i, row) in rows.iter().enumerate() {
            for variant in &variants {
                let text = match variant {
                    Some(name) => {
                        let rendered = templates.render(name, row).map_err(|e| anyhow::anyhow!("prompt row {i}: {e}"))?;
                        let mut templated = row.clone();
                        templated.insert("prompt".into(), rendered.into());
                        templated.remove("messages");
                        prompt_text(&templated, &lm.tokenizer, self.chat, self.system.as_deref())
                    }
                    None => prompt_text(row, &lm.tokenizer, self.chat, self.system.as_deref()),
                }
                .map_err(|e| anyhow::anyhow!("prompt row {i}: {e}"))?;
                let label = if self.variants.is_empty() { None } else { variant.as_deref() };
                prompts.push((i, label, text));
            }
        }
        let items: Vec<Item> = prompts
            .iter()
            .flat_map(|(row, _, text)| (0..self.samples).map(|s| Item { prompt: text.clone(), sample_index: s, row: *row }))
            .collect();
        let params = self.sampling.params(ctx.seed);
        let (sampled, cached) = sample_all(ctx, &lm, input.hash, &params, &items, self.batch_size)?;
        let tokens: usize = sampled.iter().map(|s| s.tokens).sum();
        let n = sampled.len();
        let mut out: Vec<Row> = Vec::with_capacity(if self.collect { prompts.len() } else { n });
        for ((i, variant, _), group) in prompts.iter().zip(sampled.chunks(self.samples)) {
            let mut base = rows[*i].clone();
            if let Some(v) = variant {
                base.insert("variant".into(), (*v).into());
            }
            if self.collect {
                base.insert(self.field.clone(), group.iter().map(|s| s.response.clone()).collect::<Vec<_>>().into());
                out.push(base);
                continue;
            }
            for (k, s) in group.iter().enumerate() {
                let mut row = base.clone();
                row.insert(self.field.clone(), s.response.clone().into());
                row.insert("sample_index".into(), k.into());
                row.insert("seed".into(), s.seed.into());
                out.push(row);
            }
        }
        ctx.write_rows("out", &out)?;
        ctx.log(format!("{cached} of {n} samples came from the item cache"));
        Ok(Metrics::from([
            ("rows".to_string(), out.len().into()),
            ("samples".to_string(), n.into()),
            ("mean_tokens".to_string(), crate::verify::round4(tokens as f64 / n.max(1) as f64).into()),
        ]))
    }
}
