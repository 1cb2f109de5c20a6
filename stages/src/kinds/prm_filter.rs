//! `kind: prm_filter` — score the steps of solutions and keep the good ones
//! (SPHERE's process reward, METHODS §2, §9.1).
//!
//! ```yaml
//! scored:
//!   kind: prm_filter
//!   input: samples          # rows with `response` (and `nums`, `target` for Countdown)
//!   scorer: rule            # Countdown: each `a op b = c` step uses available numbers, exact arithmetic
//!   aggregate: min          # or last
//!   lambda: 0.5             # V = λ·agg(step scores) + (1−λ)·outcome
//!   min_value: 0.7          # keep rows with V at least this (leave out: keep all)
//!   by: model               # also report the metrics per value of this field
//! ```
//!
//! `scorer: mc` (Math-Shepherd) scores step k by rolling the solution out
//! from just after it, `rollouts` times, with `model`, and taking the share
//! of rollouts whose text (the steps so far and the rollout) the Countdown
//! verifier accepts:
//!
//! ```yaml
//!   mc_scored:
//!     kind: prm_filter
//!     input: samples        # also needs `prompt`: a rollout continues `prompt + steps so far`
//!     scorer: mc
//!     model: policy         # a `models:` entry or a stage that outputs a model
//!     rollouts: 8           # K per step prefix (Math-Shepherd: 8)
//!     sampling: {temperature: 0.7, max_tokens: 64, stop: ["</answer>"]}
//! ```
//!
//! Every rollout goes through the item cache (as `generate`'s samples do,
//! seeded from the pipeline's seed and keyed by model, sampling, prompt
//! text and rollout index), so a killed run resumes, a changed threshold
//! re-runs this stage with no model call, and added rows roll out only
//! their new step prefixes. Rows that share a prompt and their first steps
//! share those rollouts. The K rollouts of a prefix are adjacent in the
//! batches, so the runtime prefills the prefix once for all K (see
//! `retort_lm::generate`, "Shared prompts").
//!
//! Each output row is its input row plus `step_scores`, `steps`, `outcome`
//! (1 if the final `<answer>` is right, else 0), `value` and `first_error`
//! (the 0-based index of the first step scoring below `error_below`, or
//! null). The metrics say how valid the steps are, how deep the first error
//! is, and how many rows are right.
//!
//! `scorer: model` scores with a trained PRM (a `train` stage with
//! `objective: prm`): each step's score is the PRM's `σ(logit[good] −
//! logit[bad])` at the step's last token (see `common::prm`). A model that
//! is not a PRM is refused at load time when it is a stage's output, and
//! when it is read otherwise (no `prm.json`), exit 2 either way.
//!
//! ```yaml
//!   prm_scored:
//!     kind: prm_filter
//!     input: samples        # also needs `prompt`
//!     scorer: model
//!     model: prm            # train: {objective: prm, data: mc_scored}
//! ```
//!
//! The scorers are one interface: each gives one score in [0, 1] per step,
//! and the value, threshold and metrics are the same for all.

use anyhow::Context;
use retort_engine::{Artifact, FieldError, Fields, Hashed, InputDecl, Metrics, Row, Stage, StageCtx, StageImpl};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::common::model;
use crate::common::prm::PrmScorer;
use crate::common::round4;
use crate::common::rows::{field, int_field, ints_field, plus, str_field};
use crate::common::sampler::{sample_all, Item, Prompt};
use crate::common::sampling::Sampling;
use crate::methods::mc::{self, mc_scores, Solution};
use crate::methods::steps::{first_error, rule_scores_countdown, split_steps, step_prefixes, trajectory_value, Aggregate};
use crate::methods::verify_countdown;

/// What scores a step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Scorer {
    /// Countdown's rules: available numbers, exact arithmetic (see `methods::steps`).
    #[default]
    Rule,
    /// Math-Shepherd: the share of `rollouts` continuations from after the
    /// step that reach a verified answer (needs `model`).
    Mc,
    /// A trained process reward model in `model` (`train` with `objective:
    /// prm`): `σ(logit[good] − logit[bad])` at each step's last token.
    Model,
}

/// Score solution steps and keep the rows whose trajectory value is high enough.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PrmFilterStage {
    /// Rows with `response`, `nums` and `target`: `STAGE` or `STAGE.OUTPUT`.
    pub input: String,
    /// rule (Countdown), mc (rollouts with `model`) or model (the PRM in `model`).
    #[serde(default)]
    pub scorer: Scorer,
    /// Where one step ends and the next begins.
    #[serde(default = "crate::methods::steps::default_delimiter")]
    pub delimiter: String,
    /// min (the weakest step) or last.
    #[serde(default = "min")]
    pub aggregate: Aggregate,
    /// λ: the step scores' weight in the value, against the outcome's (1 − λ).
    #[serde(default = "half")]
    pub lambda: f64,
    /// A step scoring below this is an error (for `first_error`).
    #[serde(default = "half")]
    pub error_below: f64,
    /// Keep only rows whose value is at least this (leave out to keep all).
    #[serde(default)]
    pub min_value: Option<f64>,
    /// mc: the model that rolls out, a `models:` entry or a stage that
    /// outputs a model; model: the PRM (a `train` stage with `objective: prm`).
    #[serde(default)]
    pub model: Option<String>,
    /// mc: rollouts per step prefix (K; default 8, Math-Shepherd's).
    #[serde(default)]
    pub rollouts: Option<usize>,
    /// mc: how rollouts are sampled (max_tokens, temperature, top_k, top_p, min_p, stop).
    #[serde(default)]
    pub sampling: Option<Sampling>,
    /// mc: sequences per forward pass (a sample does not depend on it).
    #[serde(default)]
    pub batch_size: Option<usize>,
    /// Also report the metrics per value of this row field, as
    /// `VALUE/step_validity` etc. (e.g. `by: model` on `evaluate`'s rows).
    #[serde(default)]
    pub by: Option<String>,
}

/// Math-Shepherd's rollouts per step (Wang et al. 2024 used N = 8).
const DEFAULT_ROLLOUTS: usize = 8;

impl PrmFilterStage {
    fn rollouts(&self) -> usize {
        self.rollouts.unwrap_or(DEFAULT_ROLLOUTS)
    }

    fn sampling(&self) -> Sampling {
        self.sampling.clone().unwrap_or_default()
    }
}

fn min() -> Aggregate {
    Aggregate::Min
}
fn half() -> f64 {
    0.5
}

impl StageImpl for PrmFilterStage {
    const KIND: &'static str = "prm_filter";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "Score each solution's steps (Countdown rules, or Math-Shepherd rollouts with a model), its trajectory value, and keep the good ones (METHODS §2).";

    fn hashed(&self) -> Hashed {
        // The model is an input (hashed by content); batch_size does not
        // change a sample. mc's settings enter only for mc, so rule stages
        // keep their fingerprints.
        let PrmFilterStage {
            input: _,
            scorer,
            delimiter,
            aggregate,
            lambda,
            error_below,
            min_value,
            model: _,
            rollouts: _,
            sampling: _,
            batch_size: _,
            by,
        } = self;
        let h = Hashed::new()
            .field("scorer", scorer)
            .field("delimiter", delimiter)
            .field("aggregate", aggregate)
            .field("lambda", lambda)
            .field("error_below", error_below)
            .opt("min_value", min_value)
            .opt("by", by);
        match scorer {
            Scorer::Rule | Scorer::Model => h,
            Scorer::Mc => h.field("rollouts", self.rollouts()).field("sampling", self.sampling().hashed().into_value()),
        }
    }
}

const ADDED: [&str; 5] = ["steps", "step_scores", "outcome", "value", "first_error"];

impl Stage for PrmFilterStage {
    fn inputs(&self) -> Vec<InputDecl> {
        let why = "prm_filter (Countdown steps and outcome)";
        let rows = InputDecl::rows("input", &self.input, "input")
            .needing(&[field::RESPONSE], why)
            .needing(&[field::NUMS], why)
            .needing(&[field::TARGET], why);
        match (&self.scorer, &self.model) {
            (Scorer::Mc, Some(m)) => {
                vec![InputDecl::sampler("model", m, "model"), rows.needing(&[field::PROMPT], "prm_filter's mc scorer (rollouts continue the prompt)")]
            }
            (Scorer::Model, Some(m)) => {
                let prm = InputDecl { expects: Artifact::Prm, ..InputDecl::model("model", m, "model", true) };
                vec![prm, rows.needing(&[field::PROMPT], "prm_filter's model scorer (the PRM reads the prompt and steps)")]
            }
            _ => vec![rows],
        }
    }

    fn outputs(&self) -> Vec<String> {
        vec!["out".into()]
    }

    fn output_fields(&self, _name: &str, input: &dyn Fn(&str) -> Fields) -> Fields {
        plus(input("input"), &ADDED)
    }

    fn check(&self) -> Result<(), FieldError> {
        if self.delimiter.is_empty() {
            return Err(FieldError::new("delimiter", "must not be empty (steps are split at it; `\\n` by default)"));
        }
        for (name, v) in [("lambda", self.lambda), ("error_below", self.error_below)] {
            if !(0.0..=1.0).contains(&v) {
                return Err(FieldError::new(name, format!("`{name}` is {v}: set it between 0 and 1")));
            }
        }
        match self.scorer {
            Scorer::Mc => {
                if self.model.is_none() {
                    return Err(FieldError::new("model", "`scorer: mc` rolls out with a model: name one (a `models:` entry or a stage that outputs a model)"));
                }
                if self.rollouts == Some(0) {
                    return Err(FieldError::new("rollouts", "`rollouts` is 0: set it to at least 1 (rollouts per step prefix; Math-Shepherd used 8)"));
                }
                if self.batch_size == Some(0) {
                    return Err(FieldError::new("batch_size", "`batch_size` is 0: set it to at least 1"));
                }
            }
            Scorer::Model => {
                if self.model.is_none() {
                    return Err(FieldError::new("model", "`scorer: model` scores with a trained PRM: name it (a `train` stage with `objective: prm`)"));
                }
                if let Some(name) = [("rollouts", self.rollouts.is_some()), ("sampling", self.sampling.is_some()), ("batch_size", self.batch_size.is_some())].into_iter().find(|(_, set)| *set).map(|(n, _)| n) {
                    return Err(FieldError::new(name, format!("`{name}` applies only to `scorer: mc`")));
                }
            }
            Scorer::Rule => {
                let mc_only = [
                    ("model", self.model.is_some()),
                    ("rollouts", self.rollouts.is_some()),
                    ("sampling", self.sampling.is_some()),
                    ("batch_size", self.batch_size.is_some()),
                ];
                if let Some((name, _)) = mc_only.into_iter().find(|(_, set)| *set) {
                    return Err(FieldError::new(name, format!("`{name}` applies only to `scorer: mc`{}", if name == "model" { " or `model`" } else { "" })));
                }
            }
        }
        Ok(())
    }

    fn run(&self, ctx: &mut StageCtx<'_>) -> anyhow::Result<Metrics> {
        let rows = ctx.read_rows_nonempty("input", "solutions to score")?;
        let n = rows.len();
        let mut parsed = Vec::with_capacity(n);
        for (i, row) in rows.iter().enumerate() {
            let p = (|| -> anyhow::Result<_> {
                Ok((str_field(row, field::RESPONSE)?.to_string(), ints_field(row, field::NUMS)?, int_field(row, field::TARGET)?))
            })()
            .with_context(|| format!("input row {i}"))?;
            parsed.push(p);
        }
        let mut metrics = Metrics::new();
        let all_scores: Vec<Vec<f64>> = match self.scorer {
            Scorer::Rule => parsed.iter().map(|(r, nums, _)| rule_scores_countdown(&split_steps(r, &self.delimiter), nums)).collect(),
            Scorer::Mc => self.mc(ctx, &rows, &parsed, &mut metrics)?,
            Scorer::Model => self.prm(ctx, &rows, &parsed, &mut metrics)?,
        };
        let mut all = Tally::default();
        let mut groups: std::collections::BTreeMap<String, Tally> = Default::default();
        let mut out = Vec::new();
        for (i, ((mut row, (response, nums, target)), scores)) in rows.into_iter().zip(&parsed).zip(all_scores).enumerate() {
            let outcome = if verify_countdown(response, nums, *target, 0.0).correct { 1.0 } else { 0.0 };
            let value = trajectory_value(&scores, outcome, self.lambda, self.aggregate);
            let first = first_error(&scores, self.error_below);
            all.add(&scores, outcome, first);
            if let Some(by) = &self.by {
                let g = match row.get(by) {
                    Some(Value::String(s)) => s.clone(),
                    Some(v) => v.to_string(),
                    None => anyhow::bail!("input row {i} has no field `{by}` to group by (`by: {by}`)"),
                };
                groups.entry(g).or_default().add(&scores, outcome, first);
            }
            if self.min_value.is_some_and(|m| value < m) {
                continue;
            }
            row.insert("steps".into(), scores.len().into());
            row.insert("step_scores".into(), scores.iter().map(|&s| round4(s)).collect::<Vec<_>>().into());
            row.insert("outcome".into(), outcome.into());
            row.insert("value".into(), round4(value).into());
            row.insert("first_error".into(), first.map_or(Value::Null, Value::from));
            out.push(row);
        }
        ctx.write_rows("out", &out)?;
        metrics.extend([("rows_in".to_string(), n.into()), ("rows".to_string(), out.len().into())]);
        all.report("", &mut metrics);
        for (g, t) in &groups {
            t.report(&format!("{g}/"), &mut metrics);
        }
        Ok(metrics)
    }
}

/// Step and outcome counts over some rows.
#[derive(Default)]
struct Tally {
    rows: usize,
    steps: usize,
    valid: f64,
    right: usize,
    with_error: usize,
    depth_sum: usize,
}

impl Tally {
    fn add(&mut self, scores: &[f64], outcome: f64, first: Option<usize>) {
        self.rows += 1;
        self.steps += scores.len();
        self.valid += scores.iter().sum::<f64>();
        self.right += usize::from(outcome == 1.0);
        if let Some(d) = first {
            self.with_error += 1;
            self.depth_sum += d;
        }
    }

    /// `step_validity` (mean step score), `first_error_depth` (mean 0-based
    /// index of the first error, over rows with one) and the rest, named
    /// `{prefix}KEY`.
    fn report(&self, prefix: &str, metrics: &mut Metrics) {
        let share = |x: f64, of: usize| round4(if of == 0 { 0.0 } else { x / of as f64 });
        metrics.extend([
            (format!("{prefix}steps_per_row"), share(self.steps as f64, self.rows).into()),
            (format!("{prefix}step_validity"), share(self.valid, self.steps).into()),
            (format!("{prefix}outcome_share"), share(self.right as f64, self.rows).into()),
            (format!("{prefix}rows_with_error"), self.with_error.into()),
            (format!("{prefix}first_error_depth"), share(self.depth_sum as f64, self.with_error).into()),
        ]);
        if !prefix.is_empty() {
            metrics.insert(format!("{prefix}rows"), self.rows.into());
        }
    }
}

impl PrmFilterStage {
    /// The `model` scorer's step scores: the PRM's score at each step's
    /// last token, through the item cache.
    fn prm(&self, ctx: &StageCtx<'_>, rows: &[Row], parsed: &[(String, Vec<i64>, i64)], metrics: &mut Metrics) -> anyhow::Result<Vec<Vec<f64>>> {
        let what = self.model.as_deref().expect("check() requires a model for `scorer: model`");
        let mut prm = PrmScorer::open(ctx, "model", what, &self.delimiter)?;
        let mut scores = Vec::with_capacity(rows.len());
        for (i, (row, (response, _, _))) in rows.iter().zip(parsed).enumerate() {
            scores.push((|| prm.scores(str_field(row, field::PROMPT)?, response))().with_context(|| format!("input row {i}"))?);
            ctx.progress(i as u64 + 1, Some(rows.len() as u64), "rows");
        }
        ctx.log(format!("{} of {} solutions' PRM scores came from the item cache", prm.cached, prm.asked));
        metrics.insert("prm_scores_cached".into(), prm.cached.into());
        Ok(scores)
    }

    /// The `mc` scorer's step scores: every distinct `prompt + steps so far`
    /// rolled out `rollouts` times through the item cache, each rollout
    /// verified with the row's numbers and target. Adds the rollout counts
    /// to `metrics`.
    fn mc(&self, ctx: &StageCtx<'_>, rows: &[Row], parsed: &[(String, Vec<i64>, i64)], metrics: &mut Metrics) -> anyhow::Result<Vec<Vec<f64>>> {
        let what = self.model.as_deref().expect("check() requires a model for mc");
        let input = ctx.input("model")?.clone();
        let sampler = model::sampler(&input, what, ctx)?;
        let mut prompts = Vec::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            match sampler.prompt(row, false, None).with_context(|| format!("input row {i}"))? {
                Prompt::Text(t) => prompts.push(t),
                Prompt::Chat(_) => anyhow::bail!(
                    "model `{what}` is a chat endpoint, but a rollout continues the solution's text: use a model loaded here or `endpoint: completions`"
                ),
            }
        }
        let solutions: Vec<Solution<'_>> = prompts
            .iter()
            .zip(parsed)
            .map(|(prompt, (response, _, _))| Solution { prompt, prefixes: step_prefixes(response, &self.delimiter) })
            .collect();
        let (k, sampling) = (self.rollouts(), self.sampling());
        let mut cached = 0;
        let complete = |contexts: &[mc::Context], k: usize| -> anyhow::Result<Vec<String>> {
            // Context-major, so the K rollouts of a prefix share a batch.
            let items: Vec<Item> = contexts
                .iter()
                .flat_map(|c| (0..k).map(|j| Item { prompt: Prompt::Text(c.text.clone()), sample_index: j, row: c.solution }))
                .collect();
            // By default the smallest multiple of K from 16 up.
            let batch = self.batch_size.unwrap_or(k * 16usize.div_ceil(k));
            let (sampled, hits) = sample_all(ctx, &sampler, input.hash, &sampling, ctx.seed, None, &items, batch)?;
            cached = hits;
            Ok(sampled.into_iter().map(|s| s.response).collect())
        };
        let verified = |i: usize, text: &str| verify_countdown(text, &parsed[i].1, parsed[i].2, 0.0).correct;
        let scored = mc_scores(&solutions, k, complete, verified)?;
        let total = scored.contexts * k;
        ctx.log(format!("{cached} of {total} rollouts ({} step prefixes × {k}) came from the item cache", scored.contexts));
        metrics.insert("rollouts".into(), total.into());
        metrics.insert("rollouts_cached".into(), cached.into());
        Ok(scored.scores)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked() {
        let bad = |y: &str| serde_yaml::from_str::<PrmFilterStage>(y).unwrap().check().unwrap_err().field;
        assert_eq!(bad("{input: s, lambda: 1.5}"), "lambda");
        assert_eq!(bad("{input: s, delimiter: ''}"), "delimiter");
        assert_eq!(bad("{input: s, scorer: mc}"), "model");
        assert_eq!(bad("{input: s, scorer: mc, model: m, rollouts: 0}"), "rollouts");
        assert_eq!(bad("{input: s, scorer: mc, model: m, batch_size: 0}"), "batch_size");
        assert_eq!(bad("{input: s, model: m}"), "model", "mc's settings with the rule scorer");
        assert_eq!(bad("{input: s, rollouts: 4}"), "rollouts");
        assert!(serde_yaml::from_str::<PrmFilterStage>("{input: s, scorer: mc, model: m}").unwrap().check().is_ok());
        assert!(serde_yaml::from_str::<PrmFilterStage>("{input: s, scorer: prm}").is_err(), "no such scorer");
        let s: PrmFilterStage = serde_yaml::from_str("{input: s}").unwrap();
        assert_eq!((s.aggregate, s.lambda, s.delimiter.as_str()), (Aggregate::Min, 0.5, "\n"));
    }

    #[test]
    fn mc_settings_enter_the_fingerprint_only_for_mc() {
        let h = |y: &str| serde_yaml::from_str::<PrmFilterStage>(y).unwrap().hashed().into_value();
        // The rule scorer's fingerprint is what it was before mc existed.
        let rule = h("{input: s}");
        let mut keys: Vec<&String> = rule.as_object().unwrap().keys().collect();
        keys.sort();
        assert_eq!(keys, ["aggregate", "delimiter", "error_below", "lambda", "scorer"]);
        // mc: the defaults are hashed as values, so writing them changes nothing;
        // batch_size does not change a sample.
        assert_eq!(h("{input: s, scorer: mc, model: m}"), h("{input: s, scorer: mc, model: m, rollouts: 8, batch_size: 3}"));
        assert_ne!(h("{input: s, scorer: mc, model: m}"), h("{input: s, scorer: mc, model: m, rollouts: 4}"));
        assert_ne!(h("{input: s, scorer: mc, model: m}"), h("{input: s, scorer: mc, model: m, sampling: {temperature: 1}}"));
    }
}
