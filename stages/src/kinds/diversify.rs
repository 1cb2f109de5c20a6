//! `kind: diversify` — more samples per prompt from another model, minus
//! the near-duplicates (SPHERE's diversity induction, METHODS §2 P3, §9.1:
//! a smaller model explores with a budget of 2E).
//!
//! ```yaml
//! more:
//!   kind: diversify
//!   model: small            # another model, local or remote
//!   prompts: problems       # rows with `prompt`
//!   existing: samples       # optional: rows whose `response`s are already there, matched by `prompt`
//!   samples: 10
//!   ngram: 3                # word n-grams compared
//!   threshold: 0.7          # Jaccard above this is a near-duplicate
//!   sampling: {temperature: 1.0, max_tokens: 256}
//! ```
//!
//! For each prompt, a sample is dropped when its n-gram Jaccard similarity
//! to one of the prompt's `existing` responses, or to a sample kept before
//! it, is above `threshold`. Output rows are the prompt's row plus
//! `response`, `sample_index`, `seed` and `source: diversify`. Every sample
//! goes through the item cache, as `generate`'s do.

use std::collections::HashMap;

use anyhow::anyhow;
use retort_engine::{Ask, FieldError, Fields, Hashed, InputDecl, Metrics, Row, Stage, StageCtx, StageImpl};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::common::model;
use crate::common::rows::{field, plus, str_field};
use crate::common::sampler::{sample_all, Item};
use crate::common::sampling::Sampling;
use crate::methods::dedupe::Kept;

/// Sample more per prompt from another model and drop near-duplicates.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DiversifyStage {
    /// The model that explores: a `models:` entry (local or remote) or a stage's model.
    pub model: String,
    /// Rows with `prompt`: `STAGE` or `STAGE.OUTPUT`.
    pub prompts: String,
    /// Rows with `prompt` and `response` already there (their responses count as kept).
    #[serde(default)]
    pub existing: Option<String>,
    /// Samples per prompt.
    #[serde(default = "ten")]
    pub samples: usize,
    /// Word n-gram length compared.
    #[serde(default = "three")]
    pub ngram: usize,
    /// Jaccard similarity above which a sample is a near-duplicate.
    #[serde(default = "default_threshold")]
    pub threshold: f64,
    /// Apply the tokenizer's chat template (or use a remote chat endpoint).
    #[serde(default)]
    pub chat: bool,
    /// How the model samples (temperature 1 by default: exploration).
    #[serde(default = "Sampling::unit_temperature")]
    pub sampling: Sampling,
    /// Sequences per forward pass (a local model).
    #[serde(default = "sixteen")]
    pub batch_size: usize,
}

fn ten() -> usize {
    10
}
fn three() -> usize {
    3
}
fn default_threshold() -> f64 {
    0.7
}
fn sixteen() -> usize {
    16
}

impl StageImpl for DiversifyStage {
    const KIND: &'static str = "diversify";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "More samples per prompt from another model, minus near-duplicates by n-gram Jaccard (METHODS §2 P3).";

    fn hashed(&self) -> Hashed {
        let DiversifyStage { model: _, prompts: _, existing: _, samples, ngram, threshold, chat, sampling, batch_size: _ } = self;
        Hashed::new()
            .field("samples", samples)
            .field("ngram", ngram)
            .field("threshold", threshold)
            .field("chat", chat)
            .field("sampling", sampling.hashed().into_value())
    }
}

impl Stage for DiversifyStage {
    fn inputs(&self) -> Vec<InputDecl> {
        let mut model = InputDecl::sampler("model", &self.model, "model");
        if self.chat {
            model = model.asking(Ask::ChatTurns, "chat");
        }
        let mut v = vec![model, InputDecl::rows("prompts", &self.prompts, "prompts").needing(&[field::PROMPT], "diversify's prompts")];
        if let Some(e) = &self.existing {
            v.push(InputDecl::rows("existing", e, "existing").needing(&[field::PROMPT], "diversify's existing rows").needing(&[field::RESPONSE], "diversify's existing rows"));
        }
        v
    }

    fn outputs(&self) -> Vec<String> {
        vec!["out".into()]
    }

    fn output_fields(&self, _name: &str, input: &dyn Fn(&str) -> Fields) -> Fields {
        plus(input("prompts"), &[field::RESPONSE, field::SAMPLE_INDEX, field::SEED, "source"])
    }

    fn check(&self) -> Result<(), FieldError> {
        if self.samples == 0 {
            return Err(FieldError::new("samples", "must be at least 1"));
        }
        if self.ngram == 0 {
            return Err(FieldError::new("ngram", "must be at least 1"));
        }
        if !(0.0..=1.0).contains(&self.threshold) {
            return Err(FieldError::new("threshold", format!("is {}: a Jaccard similarity, between 0 and 1", self.threshold)));
        }
        Ok(())
    }

    fn run(&self, ctx: &mut StageCtx<'_>) -> anyhow::Result<Metrics> {
        let input = ctx.input("model")?.clone();
        let sampler = model::sampler(&input, &self.model, ctx)?;
        let rows = ctx.read_rows_nonempty("prompts", "prompts")?;
        // What each prompt already has.
        let mut kept: HashMap<String, Kept> = HashMap::new();
        let mut existing = 0usize;
        if self.existing.is_some() {
            for (i, r) in ctx.read_rows("existing")?.iter().enumerate() {
                let (p, resp) = (str_field(r, field::PROMPT), str_field(r, field::RESPONSE));
                let (p, resp) = (p.map_err(|e| anyhow!("existing row {i}: {e}"))?, resp.map_err(|e| anyhow!("existing row {i}: {e}"))?);
                kept.entry(p.to_string()).or_insert_with(|| Kept::new(self.ngram, self.threshold)).admit(resp);
                existing += 1;
            }
        }
        let mut items = Vec::with_capacity(rows.len() * self.samples);
        for (i, row) in rows.iter().enumerate() {
            let prompt = sampler.prompt(row, self.chat, None).map_err(|e| anyhow!("prompt row {i}: {e}"))?;
            items.extend((0..self.samples).map(|s| Item { prompt: prompt.clone(), sample_index: s, row: i }));
        }
        let (sampled, cached) = sample_all(ctx, &sampler, input.hash, &self.sampling, ctx.seed, None, &items, self.batch_size)?;
        let mut out: Vec<Row> = Vec::new();
        let mut dropped = 0usize;
        for (row, group) in rows.iter().zip(sampled.chunks(self.samples)) {
            let key = str_field(row, field::PROMPT)?.to_string();
            let k = kept.entry(key).or_insert_with(|| Kept::new(self.ngram, self.threshold));
            for (s, sample) in group.iter().enumerate() {
                if !k.admit(&sample.response) {
                    dropped += 1;
                    continue;
                }
                let mut r = row.clone();
                r.insert(field::RESPONSE.into(), sample.response.clone().into());
                r.insert(field::SAMPLE_INDEX.into(), s.into());
                r.insert(field::SEED.into(), sample.seed.into());
                r.insert("source".into(), "diversify".into());
                out.push(r);
            }
        }
        ctx.write_rows("out", &out)?;
        ctx.log(format!("{cached} of {} samples came from the item cache", sampled.len()));
        Ok(Metrics::from([
            ("samples".to_string(), sampled.len().into()),
            ("kept".to_string(), out.len().into()),
            ("near_duplicates".to_string(), dropped.into()),
            ("existing".to_string(), existing.into()),
        ]))
    }
}
