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
//!
//! `logprobs: K` adds each sample's per-token log-probs (`logprobs`:
//! `[{token, logprob, top_logprobs}]`, the `K` most likely alternatives at
//! each position; with `collect`, one such list per sample). A model loaded
//! here scores its own tokens (K must be 0); a remote server returns them
//! in either API's format and they are stored in one.

use std::collections::BTreeMap;

use retort_engine::{Ask, FieldError, Fields, Hashed, InputDecl, Metrics, Row, Stage, StageCtx, StageImpl};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::common::model;
use crate::common::round4;
use crate::common::rows::{field, plus};
use crate::common::sampler::{sample_all, Item, Prompt, Sampled};
use crate::common::sampling::Sampling;
use crate::common::template::Templates;
use crate::openai::wire::MAX_TOP_LOGPROBS;

/// Sample a model on a dataset of prompts.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
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
    #[serde(default)]
    pub system: Option<String>,
    /// A prompt template over the row's fields (Jinja2 syntax, e.g.
    /// `"Check this answer: {{ response }}"`), used instead of `prompt`.
    #[serde(default)]
    pub template: Option<String>,
    /// Named prompt templates: every row is sampled under each, and output
    /// rows carry the name in `variant`.
    #[serde(default)]
    pub variants: BTreeMap<String, String>,
    /// The output field that holds the generated text.
    #[serde(default = "default_field")]
    pub field: String,
    /// One output row per input row (per variant), `field` holding the list
    /// of its `samples` texts, instead of one row per sample.
    #[serde(default)]
    pub collect: bool,
    /// max_tokens, temperature, top_k, top_p, min_p, stop.
    #[serde(default)]
    pub sampling: Sampling,
    /// Add each token's log-prob and this many most likely alternatives
    /// (0: the sampled tokens' alone; above 0 needs an `openai:` model; at
    /// most 20) to every sample, in `logprobs`.
    #[serde(default)]
    pub logprobs: Option<usize>,
    /// Sequences per forward pass.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
}

fn default_field() -> String {
    field::RESPONSE.into()
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

/// A sample's log-probs as a row value (the sampler stores them when asked).
fn logprobs_value(s: &Sampled) -> serde_json::Value {
    serde_json::to_value(s.logprobs.as_deref().unwrap_or_default()).expect("log-probs serialize")
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

    fn hashed(&self) -> Hashed {
        // batch_size is not hashed: a sample does not depend on its batch
        // (each item's RNG is seeded from its own id).
        let GenerateStage {
            model: _,
            prompts: _,
            samples,
            chat,
            system,
            template,
            variants,
            field,
            collect,
            sampling,
            logprobs,
            batch_size: _,
        } = self;
        Hashed::new()
            .field("samples", samples)
            .field("chat", chat)
            .opt("system", system)
            .opt("template", template)
            .field("variants", variants)
            .field("field", field)
            .field("collect", collect)
            .field("sampling", sampling.hashed().into_value())
            // Only when set, so stages without it keep their fingerprints.
            .opt("logprobs", logprobs)
    }
}

impl Stage for GenerateStage {
    fn inputs(&self) -> Vec<InputDecl> {
        let prompts = InputDecl::rows("prompts", &self.prompts, "prompts");
        // A template (or variants) makes the prompt from the row's fields.
        let prompts = if self.template.is_none() && self.variants.is_empty() {
            prompts.needing(&[field::PROMPT, field::MESSAGES], "generate's prompt")
        } else {
            prompts
        };
        let mut model = InputDecl::sampler("model", &self.model, "model");
        if self.chat {
            model = model.asking(Ask::ChatTurns, "chat");
        }
        if self.logprobs.is_some_and(|k| k > 0) {
            model = model.asking(Ask::TopLogprobs, "logprobs");
        }
        vec![model, prompts]
    }

    fn output_fields(&self, _name: &str, input: &dyn Fn(&str) -> Fields) -> Fields {
        let mut extra = vec![self.field.as_str()];
        if !self.variants.is_empty() {
            extra.push(field::VARIANT);
        }
        if !self.collect {
            extra.extend([field::SAMPLE_INDEX, field::SEED]);
        }
        if self.logprobs.is_some() {
            extra.push(field::LOGPROBS);
        }
        plus(input("prompts"), &extra)
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
        if self.logprobs.is_some() && self.field == field::LOGPROBS {
            return Err(FieldError::new("field", "`logprobs` holds the log-probs; name the text's field otherwise"));
        }
        if self.logprobs.is_some_and(|k| k > MAX_TOP_LOGPROBS) {
            return Err(FieldError::new("logprobs", format!("at most {MAX_TOP_LOGPROBS} alternatives per token (the servers' limit)")));
        }
        let (field, _) = self.templates();
        Templates::new(self.template_sources()).map_err(|e| FieldError::new(field, e))?;
        Ok(())
    }

    fn run(&self, ctx: &mut StageCtx<'_>) -> anyhow::Result<Metrics> {
        let input = ctx.input("model")?.clone();
        let sampler = model::sampler(&input, &self.model, ctx)?;
        let rows = ctx.read_rows_nonempty("prompts", "prompts")?;
        let templates = Templates::new(self.template_sources()).map_err(anyhow::Error::msg)?;
        let (_, variants) = self.templates();
        // One prompt per (row, variant), in that order; `samples` items each.
        let mut prompts: Vec<(usize, Option<&str>, Prompt)> = Vec::with_capacity(rows.len() * variants.len());
        for (i, row) in rows.iter().enumerate() {
            for variant in &variants {
                let text = match variant {
                    Some(name) => {
                        let rendered = templates.render(name, row).map_err(|e| anyhow::anyhow!("prompt row {i}: {e}"))?;
                        let mut templated = row.clone();
                        templated.insert(field::PROMPT.into(), rendered.into());
                        templated.remove(field::MESSAGES);
                        sampler.prompt(&templated, self.chat, self.system.as_deref())
                    }
                    None => sampler.prompt(row, self.chat, self.system.as_deref()),
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
        let (sampled, cached) = sample_all(ctx, &sampler, input.hash, &self.sampling, ctx.seed, self.logprobs, &items, self.batch_size)?;
        let tokens: usize = sampled.iter().map(|s| s.tokens).sum();
        let n = sampled.len();
        let mut out: Vec<Row> = Vec::with_capacity(if self.collect { prompts.len() } else { n });
        for ((i, variant, _), group) in prompts.iter().zip(sampled.chunks(self.samples)) {
            let mut base = rows[*i].clone();
            if let Some(v) = variant {
                base.insert(field::VARIANT.into(), (*v).into());
            }
            if self.collect {
                base.insert(self.field.clone(), group.iter().map(|s| s.response.clone()).collect::<Vec<_>>().into());
                if self.logprobs.is_some() {
                    base.insert(field::LOGPROBS.into(), group.iter().map(logprobs_value).collect::<Vec<_>>().into());
                }
                out.push(base);
                continue;
            }
            for (k, s) in group.iter().enumerate() {
                let mut row = base.clone();
                row.insert(self.field.clone(), s.response.clone().into());
                row.insert(field::SAMPLE_INDEX.into(), k.into());
                row.insert(field::SEED.into(), s.seed.into());
                if self.logprobs.is_some() {
                    row.insert(field::LOGPROBS.into(), logprobs_value(s));
                }
                out.push(row);
            }
        }
        ctx.write_rows("out", &out)?;
        ctx.log(format!("{cached} of {n} samples came from the item cache"));
        Ok(Metrics::from([
            ("rows".to_string(), out.len().into()),
            ("samples".to_string(), n.into()),
            ("mean_tokens".to_string(), round4(tokens as f64 / n.max(1) as f64).into()),
        ]))
    }
}
