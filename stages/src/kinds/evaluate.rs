//! `kind: evaluate` — accuracy with 95% intervals, pass@k, paired
//! comparisons and seed spreads of one or more models on task sets, and
//! SkillFactory skill use, as Markdown tables.
//!
//! Every model answers every task row (greedy by default; `samples: k` with
//! a temperature for pass@k), the `verifier:` scores the answers, and the
//! metrics are reported per model and per number count (arity, for tasks
//! with `nums`). Outputs: `out` (one row per sample) and `table` (Markdown,
//! for the README).
//!
//! Uncertainty, so that arms are compared honestly:
//! - every accuracy has a 95% Wilson interval (`MODEL/acc_lo`, `_hi`);
//!   pass@k a percentile bootstrap over questions;
//! - models from a `matrix:` over `seed` form an *arm* (`sft@seed=1`,
//!   `sft@seed=2` -> `sft`): the table adds mean ± sd across seeds;
//! - `compare: [[a, b], ...]` pairs two arms (or models) on the same items:
//!   the accuracy difference, its 95% interval (Newcombe) and the exact
//!   McNemar p-value. With seeds, items of the same seed are paired and the
//!   seeds pooled.
//!
//! CasCoD (METHODS §3): `cascade: {marker: ...}` reads each task's question
//! with CasCoD's prompt forms, in two steps or one pass
//! (`evaluate_cascade`), and reports rationale–answer consistency
//! (`MODEL/consistency`) where the verifier can read an answer from a
//! rationale. `cue_field: F` reports how often the answer equals the row's
//! `F`, the answer a spurious cue points to (`MODEL/cue_follow`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::{anyhow, bail};
use retort_engine::{
    Artifact, Ask, FieldError, Fields, Hashed, InputDecl, Metrics, Row, Stage, StageCtx, StageImpl,
};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use crate::common::model;
use crate::common::round4;
use crate::common::rows::{field, fields};
use crate::common::sampler::{sample_all, Item};
use crate::common::sampling::Sampling;
use crate::kinds::evaluate_cascade::{CascadeEval, CascadeSample};
use crate::methods::{self, metrics};
use crate::stats::{self, Interval};
use crate::verifiers::Verifier;

/// Evaluate models on task sets.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EvaluateStage {
    /// Models to evaluate: `models:` entries or stages that output a model
    /// (a `matrix:` family stands for all its variants).
    pub models: Vec<String>,
    /// Task datasets (rows with `prompt` and what the verifier reads): `STAGE` or `STAGE.OUTPUT`.
    pub tasks: Vec<String>,
    /// Samples per task (1 = accuracy; k > 1 also reports pass@k).
    #[serde(default = "one")]
    pub samples: usize,
    /// Sampling settings (greedy by default).
    #[serde(default = "Sampling::greedy")]
    pub sampling: Sampling,
    /// Apply the tokenizer's chat template.
    #[serde(default)]
    pub chat: bool,
    /// countdown (default), numeric, exact, choice or regex.
    #[serde(default)]
    pub verifier: Verifier,
    /// Pairs of arms to compare on the same items, e.g. `[[sf_grpo, rl_only]]`:
    /// an arm is a model, or a `matrix:` family over `seed` (its seeds pooled).
    #[serde(default)]
    pub compare: Vec<[String; 2]>,
    /// Sequences per forward pass.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// CasCoD's inference: prompts built from each row's question (`prompt`),
    /// e.g. `{marker: "Therefore, the answer is"}` (two steps) or
    /// `{mode: one_pass}`.
    #[serde(default)]
    pub cascade: Option<CascadeEval>,
    /// Row field holding the answer a spurious cue points to: reports how
    /// often each model's answer equals it (rows without it are skipped).
    #[serde(default)]
    pub cue_field: Option<String>,
}

fn one() -> usize {
    1
}
fn default_batch() -> usize {
    16
}

/// Bootstrap resamples for pass@k intervals.
const RESAMPLES: usize = 2000;

impl StageImpl for EvaluateStage {
    const KIND: &'static str = "evaluate";
    // 2: the runtime's inference numerics changed (fused RMSNorm/SwiGLU on
    // burn's path, gemm prefill attention on the packed path), so sampled
    // tokens from version 1 may differ from a fresh run's.
    // 3: intervals, arms and comparisons in the metrics and table; `out`
    // rows keep every task field (the verifier's expected answer).
    // (`cascade` and `cue_field` are hashed only when set, so stages
    // without them keep their fingerprints and outputs.)
    const VERSION: u32 = 3;
    const ABOUT: &'static str = "Accuracy with 95% intervals by number count, pass@k, paired comparisons and seed spreads of models on task sets.";

    fn hashed(&self) -> Hashed {
        // The models' names are in the metrics, so they are hashed; the
        // models and task sets themselves enter by content hash.
        let EvaluateStage {
            models,
            tasks: _,
            samples,
            sampling,
            chat,
            verifier,
            compare,
            batch_size: _,
            cascade,
            cue_field,
        } = self;
        Hashed::new()
            .opt("cascade", &cascade.as_ref().map(CascadeEval::hashed))
            .opt("cue_field", cue_field)
            .field("models", models)
            .field("samples", samples)
            .field("sampling", sampling.hashed().into_value())
            .field("chat", chat)
            .field("verifier", verifier)
            .field("compare", compare)
    }
}

impl Stage for EvaluateStage {
    fn inputs(&self) -> Vec<InputDecl> {
        let models = self
            .models
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let decl = InputDecl::sampler(format!("model:{m}"), m, format!("models[{i}]"));
                match (self.chat, &self.cascade) {
                    (true, _) => decl.asking(Ask::ChatTurns, "chat"),
                    (false, Some(_)) => decl.asking(Ask::PlainText, "cascade"),
                    (false, None) => decl,
                }
            });
        let tasks = self.tasks.iter().enumerate().map(|(i, t)| {
            let decl = InputDecl::rows(format!("tasks:{i}"), t, format!("tasks[{i}]"))
                .needing(&[field::PROMPT, field::MESSAGES], "evaluate's prompt");
            match self.verifier {
                Verifier::Countdown => decl
                    .needing(&[field::NUMS], "the countdown verifier")
                    .needing(&[field::TARGET], "the countdown verifier"),
                _ => decl,
            }
        });
        models.chain(tasks).collect()
    }

    fn outputs(&self) -> Vec<String> {
        vec!["out".into(), "table".into()]
    }

    fn output_fields(&self, name: &str, _input: &dyn Fn(&str) -> Fields) -> Fields {
        match name {
            "out" => {
                let mut names = vec![
                    field::MODEL,
                    field::SAMPLE_INDEX,
                    field::RESPONSE,
                    field::ANSWER,
                    field::CORRECT,
                    field::REWARD,
                ];
                if self.cascade.is_some() {
                    names.extend([RATIONALE, CONSISTENT]);
                }
                // Rows keep their task's fields; the countdown verifier's are
                // sure to be there (a `prm_filter` reads them downstream).
                if matches!(self.verifier, Verifier::Countdown) {
                    names.extend([field::NUMS, field::TARGET]);
                }
                if self.cue_field.is_some() {
                    names.push(FOLLOWS_CUE);
                }
                fields(&names)
            }
            _ => None,
        }
    }

    fn output_type(&self, name: &str) -> Artifact {
        if name == "table" {
            Artifact::Text
        } else {
            Artifact::Rows
        }
    }

    fn check(&self) -> Result<(), FieldError> {
        if self.models.is_empty() {
            return Err(FieldError::new("models", "list at least one model"));
        }
        if self.tasks.is_empty() {
            return Err(FieldError::new("tasks", "list at least one task dataset"));
        }
        if self.samples == 0 {
            return Err(FieldError::new("samples", "must be at least 1"));
        }
        self.verifier
            .check()
            .map_err(|m| FieldError::new("verifier", m))?;
        if let Some(c) = &self.cascade {
            c.check()
                .map_err(|m| FieldError::new("cascade.marker", m))?;
            if self.chat {
                return Err(FieldError::new(
                    "chat",
                    "`cascade` builds plain prompts; leave out `chat: true`",
                ));
            }
        }
        if self.cue_field.is_some() && self.verifier.answer_field().is_none() {
            return Err(FieldError::new(
                "cue_field",
                "needs a verifier that reads an answer field (numeric, exact, choice, regex)",
            ));
        }
        let arms = arms(&self.models);
        for (i, pair) in self.compare.iter().enumerate() {
            for (j, name) in pair.iter().enumerate() {
                if !arms.contains_key(name.as_str()) && !self.models.contains(name) {
                    let known: Vec<String> = arms.keys().map(|k| format!("`{k}`")).collect();
                    return Err(FieldError::new(
                        format!("compare[{i}][{j}]"),
                        format!(
                            "`{name}` is not one of the evaluated models or arms ({})",
                            known.join(", ")
                        ),
                    ));
                }
            }
            if pair[0] == pair[1] {
                return Err(FieldError::new(
                    format!("compare[{i}]"),
                    "compare two different arms",
                ));
            }
        }
        Ok(())
    }

    fn run(&self, ctx: &mut StageCtx<'_>) -> anyhow::Result<Metrics> {
        let mut tasks: Vec<Row> = Vec::new();
        for i in 0..self.tasks.len() {
            tasks.extend(ctx.read_rows_nonempty(&format!("tasks:{i}"), "tasks to evaluate on")?);
        }
        let mut rows_out = Vec::new();
        let mut per_model: BTreeMap<String, Vec<Row>> = BTreeMap::new();
        for name in &self.models {
            let input = ctx.input(&format!("model:{name}"))?.clone();
            let sampler = model::sampler(&input, name, ctx)?;
            ctx.log(format!("evaluating `{name}` on {} tasks", tasks.len()));
            let sampled: Vec<CascadeSample> = match &self.cascade {
                Some(c) => c.sample(
                    ctx,
                    &sampler,
                    input.hash,
                    &self.sampling,
                    ctx.seed,
                    &tasks,
                    self.samples,
                    self.batch_size,
                )?,
                None => {
                    let mut items = Vec::new();
                    for (row, task) in tasks.iter().enumerate() {
                        let text = sampler.prompt(task, self.chat, None)?;
                        for s in 0..self.samples {
                            items.push(Item {
                                prompt: text.clone(),
                                sample_index: s,
                                row,
                            });
                        }
                    }
                    let (sampled, _) = sample_all(
                        ctx,
                        &sampler,
                        input.hash,
                        &self.sampling,
                        ctx.seed,
                        None,
                        &items,
                        self.batch_size,
                    )?;
                    sampled
                        .into_iter()
                        .map(|s| CascadeSample {
                            response: s.response,
                            rationale: String::new(),
                            answer: String::new(),
                        })
                        .collect()
                }
            };
            let mut rows = Vec::with_capacity(sampled.len());
            let mut parts = Vec::with_capacity(sampled.len());
            for (k, s) in sampled.into_iter().enumerate() {
                // The task's own fields (the verifier's expected answer among
                // them), without the prompt, which the task set already holds.
                let mut row: Row = tasks[k / self.samples].clone();
                row.remove(field::PROMPT);
                row.remove(field::MESSAGES);
                row.insert(field::MODEL.into(), name.clone().into());
                row.insert(field::SAMPLE_INDEX.into(), (k % self.samples).into());
                row.insert(field::RESPONSE.into(), s.response.into());
                if self.cascade.is_some() {
                    row.insert(RATIONALE.into(), s.rationale.clone().into());
                }
                rows.push(row);
                parts.push((s.rationale, s.answer));
            }
            let mut rows = self.score(rows)?;
            self.mark_consistency_and_cue(&mut rows, &parts)?;
            rows_out.extend(rows.iter().cloned());
            per_model.insert(name.clone(), rows);
        }
        ctx.write_rows("out", &rows_out)?;
        let (metrics, table) = self.summarize(&per_model, ctx.seed)?;
        std::fs::write(ctx.output_path("table"), &table)?;
        for line in table.lines() {
            ctx.log(line);
        }
        Ok(metrics)
    }
}

impl EvaluateStage {
    /// With `cascade`, adds `consistent` (does the answer follow from the
    /// rationale; null where the verifier cannot tell); with `cue_field`,
    /// `follows_cue` (null on rows without the cue).
    fn mark_consistency_and_cue(
        &self,
        rows: &mut [Row],
        parts: &[(String, String)],
    ) -> anyhow::Result<()> {
        for (i, (row, (rationale, answer))) in rows.iter_mut().zip(parts).enumerate() {
            if self.cascade.is_some() {
                let c = self.verifier.agree(rationale, answer, row);
                row.insert(CONSISTENT.into(), c.map_or(Value::Null, Value::Bool));
            }
            let (Some(cue), Some(answer_field)) = (&self.cue_field, self.verifier.answer_field())
            else {
                continue;
            };
            let follows = match row.get(cue).filter(|v| !v.is_null()) {
                None => Value::Null,
                Some(v) => {
                    let mut cued = row.clone();
                    cued.insert(answer_field.to_string(), v.clone());
                    let response = row
                        .get(field::RESPONSE)
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    let verdict = self
                        .verifier
                        .verify(response, &cued)
                        .map_err(|e| anyhow!("task row {} (`{cue}`): {e}", i / self.samples))?;
                    Value::Bool(verdict.correct)
                }
            };
            row.insert(FOLLOWS_CUE.into(), follows);
        }
        Ok(())
    }

    /// Adds `answer`, `correct` and `reward` with the stage's verifier.
    fn score(&self, rows: Vec<Row>) -> anyhow::Result<Vec<Row>> {
        if self.verifier == Verifier::Countdown {
            // The countdown verifier's own reward and failure reasons.
            return Ok(methods::verify_rows(rows, 0.0)?);
        }
        rows.into_iter()
            .enumerate()
            .map(|(i, mut row)| {
                let response = row
                    .get(field::RESPONSE)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let v = self
                    .verifier
                    .verify(&response, &row)
                    .map_err(|e| anyhow!("task row {}: {e}", i / self.samples))?;
                row.insert(
                    field::ANSWER.into(),
                    v.answer.map_or(Value::Null, Value::String),
                );
                row.insert(field::CORRECT.into(), v.correct.into());
                row.insert(
                    field::REWARD.into(),
                    if v.correct { 1.0 } else { 0.0 }.into(),
                );
                Ok(row)
            })
            .collect()
    }

    /// Metrics and the Markdown tables: per model `MODEL/acc@N` (+ `_lo`,
    /// `_hi`), `MODEL/acc`, `MODEL/n`, `MODEL/pass@k`, `MODEL/skill_use`,
    /// `MODEL/verdict_agreement`; per arm with seeds `ARM/acc_mean`,
    /// `ARM/acc_sd`, `ARM/seeds`; per comparison `A_vs_B/diff` (+ `_lo`,
    /// `_hi`), `A_vs_B/p_mcnemar`, `A_vs_B/n`.
    fn summarize(
        &self,
        per_model: &BTreeMap<String, Vec<Row>>,
        seed: u64,
    ) -> anyhow::Result<(Metrics, String)> {
        let mut m = Metrics::new();
        let mut arities: Vec<String> = per_model
            .values()
            .flat_map(|rows| {
                metrics::accuracy_by(rows, "arity")
                    .unwrap_or_default()
                    .into_keys()
            })
            .filter(|a| a.parse::<usize>().is_ok())
            .collect();
        arities.sort_by_key(|a| a.parse::<usize>().unwrap_or(usize::MAX));
        arities.dedup();
        let countdown = self.verifier == Verifier::Countdown;
        let mut table = String::from("| model |");
        for a in &arities {
            let _ = write!(table, " {a} numbers |");
        }
        table += " all |";
        if countdown {
            table += " skill use | verdict agreement |";
        }
        let consistency = per_model
            .values()
            .flatten()
            .any(|r| r.get(CONSISTENT).is_some_and(Value::is_boolean));
        let cue = self.cue_field.is_some();
        if consistency {
            table += " rationale–answer consistency |";
        }
        if cue {
            table += " follows the cue |";
        }
        let cols = arities.len()
            + 1
            + if countdown { 2 } else { 0 }
            + usize::from(consistency)
            + usize::from(cue);
        table += "\n|---|";
        table += &"---|".repeat(cols);
        table += "\n";
        for name in &self.models {
            let rows = &per_model[name];
            let firsts = first_samples(rows);
            // Tasks without `nums` (not Countdown) have no number count.
            let by = if arities.is_empty() {
                BTreeMap::new()
            } else {
                metrics::accuracy_by(&firsts, "arity")?
            };
            let _ = write!(table, "| {name} |");
            for a in &arities {
                let (c, n) = by.get(a).copied().unwrap_or((0, 0));
                let cell = accuracy_cell(&mut m, &format!("{name}/acc@{a}"), c, n);
                let _ = write!(table, " {cell} |");
            }
            let (c, n) = metrics::accuracy(&firsts)?;
            let cell = accuracy_cell(&mut m, &format!("{name}/acc"), c, n);
            m.insert(format!("{name}/n"), n.into());
            let _ = write!(table, " {cell} |");
            if countdown {
                let skill = metrics::skill_use(rows)?;
                m.insert(
                    format!("{name}/skill_use"),
                    round4(skill.multi_sample_share).into(),
                );
                let agree = skill.agreement.map(round4);
                m.insert(
                    format!("{name}/verdict_agreement"),
                    agree.map_or(Value::Null, Into::into),
                );
                let agree_txt = agree.map_or("–".to_string(), |a| format!("{:.1}%", 100.0 * a));
                let _ = write!(
                    table,
                    " {:.1}% | {agree_txt} |",
                    100.0 * skill.multi_sample_share
                );
            }
            for (on, key, metric) in [
                (consistency, CONSISTENT, "consistency"),
                (cue, FOLLOWS_CUE, "cue_follow"),
            ] {
                if on {
                    let (c, n) = share(&firsts, key);
                    let cell = accuracy_cell(&mut m, &format!("{name}/{metric}"), c, n);
                    let _ = write!(table, " {cell} |");
                }
            }
            table += "\n";
            if self.samples > 1 {
                let per_q = per_question_pass(rows, self.samples)?;
                let mean = per_q.iter().sum::<f64>() / per_q.len().max(1) as f64;
                let ci = stats::bootstrap_mean(&per_q, RESAMPLES, seed);
                let key = format!("{name}/pass@{}", self.samples);
                m.insert(key.clone(), round4(mean).into());
                m.insert(format!("{key}_lo"), round4(ci.lo).into());
                m.insert(format!("{key}_hi"), round4(ci.hi).into());
            }
        }
        table += "\nAccuracy of each model's first sample; [95% Wilson interval].\n";
        let arms = arms(&self.models);
        let seeded: Vec<_> = arms.iter().filter(|(_, v)| v.len() > 1).collect();
        if !seeded.is_empty() {
            table += "\n| arm | seeds | accuracy, mean ± sd across seeds |\n|---|---|---|\n";
            for (arm, members) in &seeded {
                let accs: Vec<f64> = members
                    .iter()
                    .map(|(model, _)| m[&format!("{model}/acc")].as_f64().unwrap_or(0.0))
                    .collect();
                let (mean, sd) = stats::mean_sd(&accs);
                m.insert(format!("{arm}/acc_mean"), round4(mean).into());
                m.insert(format!("{arm}/acc_sd"), round4(sd).into());
                m.insert(format!("{arm}/seeds"), members.len().into());
                let names: Vec<&str> = members.iter().filter_map(|(_, s)| s.as_deref()).collect();
                let _ = writeln!(
                    table,
                    "| {arm} | {} | {:.1}% ± {:.1} |",
                    names.join(", "),
                    100.0 * mean,
                    100.0 * sd
                );
            }
        }
        if !self.compare.is_empty() {
            table += "\n| comparison | items | difference | 95% interval | McNemar p |\n|---|---|---|---|---|\n";
            // Accuracy, and with a cue how often the answer follows it
            // (shortcut learning: lower is better), on the same items.
            let mut outcomes = vec![(Outcome::Correct, "", "")];
            if cue {
                outcomes.push((Outcome::FollowsCue, "/cue_follow", ", follows the cue"));
            }
            for [a, b] in &self.compare {
                for &(outcome, suffix, label) in &outcomes {
                    let (xa, xb, seeds) =
                        paired_items(&arm(&arms, a), &arm(&arms, b), per_model, a, b, outcome)?;
                    if xa.is_empty() {
                        continue;
                    }
                    let p = stats::paired(&xa, &xb)?;
                    let key = format!("{a}_vs_{b}{suffix}");
                    m.insert(format!("{key}/diff"), round4(p.diff).into());
                    m.insert(format!("{key}/diff_lo"), round4(p.interval.lo).into());
                    m.insert(format!("{key}/diff_hi"), round4(p.interval.hi).into());
                    m.insert(format!("{key}/p_mcnemar"), round4(p.p_value).into());
                    m.insert(format!("{key}/n"), p.n.into());
                    let pooled = if seeds.is_empty() {
                        String::new()
                    } else {
                        format!(" (seeds {} pooled)", seeds.join(", "))
                    };
                    let _ = writeln!(
                        table,
                        "| {a} − {b}{label}{pooled} | {} | {:+.1} pts | [{:+.1}, {:+.1}] | {:.3} |",
                        p.n,
                        100.0 * p.diff,
                        100.0 * p.interval.lo,
                        100.0 * p.interval.hi,
                        p.p_value
                    );
                }
            }
        }
        Ok((m, table))
    }
}

/// Records `KEY`, `KEY_lo`, `KEY_hi` and returns the table cell
/// `33.3% [25.1, 42.6]`.
fn accuracy_cell(m: &mut Metrics, key: &str, correct: usize, n: usize) -> String {
    let acc = correct as f64 / n.max(1) as f64;
    let Interval { lo, hi } = stats::wilson(correct as u64, n as u64);
    m.insert(key.to_string(), round4(acc).into());
    m.insert(format!("{key}_lo"), round4(lo).into());
    m.insert(format!("{key}_hi"), round4(hi).into());
    format!("{:.1}% [{:.1}, {:.1}]", 100.0 * acc, 100.0 * lo, 100.0 * hi)
}

/// Row field: the rationale a cascaded or one-pass CasCoD reading produced.
const RATIONALE: &str = "rationale";
/// Row field: whether the answer follows from the rationale.
const CONSISTENT: &str = "consistent";
/// Row field: whether the answer is the one the spurious cue points to.
const FOLLOWS_CUE: &str = "follows_cue";

/// `(true, true or false)` counts of a boolean row field (nulls skipped).
fn share(rows: &[Row], key: &str) -> (usize, usize) {
    let vals: Vec<bool> = rows
        .iter()
        .filter_map(|r| r.get(key).and_then(Value::as_bool))
        .collect();
    (vals.iter().filter(|&&b| b).count(), vals.len())
}

/// Each task's first sample (accuracy is the greedy or first answer; the
/// others count toward pass@k).
fn first_samples(rows: &[Row]) -> Vec<Row> {
    rows.iter()
        .filter(|r| r.get(field::SAMPLE_INDEX).and_then(Value::as_u64) == Some(0))
        .cloned()
        .collect()
}

/// pass@k of every question (its `k` consecutive rows), for the bootstrap.
fn per_question_pass(rows: &[Row], k: usize) -> anyhow::Result<Vec<f64>> {
    rows.chunks(k)
        .enumerate()
        .map(|(q, group)| {
            let mut c = 0;
            for (j, r) in group.iter().enumerate() {
                c += usize::from(metrics::row_correct(r, q * k + j)?);
            }
            Ok(metrics::pass_at_k(group.len(), c, k.min(group.len())))
        })
        .collect()
}

/// Models grouped into arms: a `matrix:` variant's `seed=` entry is dropped
/// from its name (`sft@lr=0.1,seed=2` -> arm `sft@lr=0.1`, seed `2`); other
/// models are arms of their own. Arm -> [(model, seed)].
fn arms(models: &[String]) -> BTreeMap<String, Vec<(String, Option<String>)>> {
    let mut out: BTreeMap<String, Vec<(String, Option<String>)>> = BTreeMap::new();
    for m in models {
        let (arm, seed) = split_seed(m);
        out.entry(arm).or_default().push((m.clone(), seed));
    }
    out
}

/// The arm called `name`, or the single model of that name.
fn arm(
    arms: &BTreeMap<String, Vec<(String, Option<String>)>>,
    name: &str,
) -> Vec<(String, Option<String>)> {
    arms.get(name)
        .cloned()
        .unwrap_or_else(|| vec![(name.to_string(), None)])
}

/// `sft@lr=0.1,seed=2` -> (`sft@lr=0.1`, Some(`2`)); `sft@seed=2` -> (`sft`, Some(`2`)).
fn split_seed(model: &str) -> (String, Option<String>) {
    let Some((family, axes)) = model.split_once('@') else {
        return (model.to_string(), None);
    };
    let mut seed = None;
    let rest: Vec<&str> = axes
        .split(',')
        .filter(|kv| match kv.strip_prefix("seed=") {
            Some(s) => {
                seed = Some(s.to_string());
                false
            }
            None => true,
        })
        .collect();
    match (seed, rest.is_empty()) {
        (None, _) => (model.to_string(), None),
        (Some(s), true) => (family.to_string(), Some(s)),
        (Some(s), false) => (format!("{family}@{}", rest.join(",")), Some(s)),
    }
}

/// The two arms' first-sample correctness on the same items, seed by seed
/// (pooled), and the seeds used.
fn paired_items(
    a: &[(String, Option<String>)],
    b: &[(String, Option<String>)],
    per_model: &BTreeMap<String, Vec<Row>>,
    an: &str,
    bn: &str,
    outcome: Outcome,
) -> anyhow::Result<(Vec<bool>, Vec<bool>, Vec<String>)> {
    let correct = |model: &str| -> anyhow::Result<Vec<Option<bool>>> {
        first_samples(&per_model[model])
            .iter()
            .enumerate()
            .map(|(i, r)| match outcome {
                Outcome::Correct => Ok(Some(metrics::row_correct(r, i)?)),
                Outcome::FollowsCue => Ok(r.get(FOLLOWS_CUE).and_then(Value::as_bool)),
            })
            .collect()
    };
    let (xa, xb, seeds) = pair_models(a, b, an, bn, correct)?;
    // An item counts where both sides have an outcome (a cue is a property
    // of the task row, so the same items drop out on both sides).
    let (xa, xb) = xa.into_iter().zip(xb).filter_map(|(x, y)| Some((x?, y?))).unzip();
    Ok((xa, xb, seeds))
}

/// What a paired comparison compares, per item.
#[derive(Clone, Copy)]
enum Outcome {
    /// The first sample is correct.
    Correct,
    /// The first sample gives the answer the spurious cue points to (items
    /// without a cue are left out).
    FollowsCue,
}

/// Lines up the per-item outcomes of two arms (see [`paired_items`]).
fn pair_models<T>(
    a: &[(String, Option<String>)],
    b: &[(String, Option<String>)],
    an: &str,
    bn: &str,
    correct: impl Fn(&str) -> anyhow::Result<Vec<T>>,
) -> anyhow::Result<(Vec<T>, Vec<T>, Vec<String>)> {
    if a.len() == 1 && b.len() == 1 {
        return Ok((correct(&a[0].0)?, correct(&b[0].0)?, vec![]));
    }
    // The seeded side leads; its partner for a seed is the other side's
    // model of that seed, or its one unseeded model (a shared base model
    // against the seeds trained from it), which pairs with every seed.
    let a_leads = !matches!(a, [(_, None)]);
    let ((lead, ln), (follow, fname)) = if a_leads {
        ((a, an), (b, bn))
    } else {
        ((b, bn), (a, an))
    };
    let shared = match follow {
        [(only, None)] => Some(only),
        _ => None,
    };
    let (mut xa, mut xb, mut seeds) = (Vec::new(), Vec::new(), Vec::new());
    for (model, seed) in lead {
        let Some(seed) = seed else {
            bail!("`{ln}` mixes seeded and unseeded models")
        };
        let partner = shared.or_else(|| {
            follow
                .iter()
                .find(|(_, s)| s.as_deref() == Some(seed.as_str()))
                .map(|(m, _)| m)
        });
        let Some(partner) = partner else {
            bail!("compare `{ln}` with `{fname}`: `{fname}` has no model for seed {seed}; pair arms run with the same seeds");
        };
        let (x, y) = (correct(model)?, correct(partner)?);
        let (xl, xf) = if a_leads {
            (&mut xa, &mut xb)
        } else {
            (&mut xb, &mut xa)
        };
        xl.extend(x);
        xf.extend(y);
        seeds.push(seed.clone());
    }
    if shared.is_none() && follow.len() != lead.len() {
        bail!("compare `{an}` with `{bn}`: they were run with different seeds; pair arms run with the same seeds");
    }
    Ok((xa, xb, seeds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stage(yaml: &str) -> EvaluateStage {
        serde_yaml::from_str(yaml).unwrap()
    }

    /// Rows of one model: `correct[i]` for task `i`, one sample each.
    fn rows(model: &str, correct: &[bool]) -> Vec<Row> {
        correct
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let v = json!({"id": format!("t{i}"), "model": model, "sample_index": 0, "response": "", "correct": c});
                v.as_object().unwrap().clone()
            })
            .collect()
    }

    #[test]
    fn intervals_seeds_and_paired_comparisons_in_the_metrics() {
        let e = stage("{models: [base, sft@seed=1, sft@seed=2], tasks: [t], verifier: exact, compare: [[sft, base]]}");
        e.check().unwrap();
        // 10 tasks: base gets 3 right; seed 1 gets 6, seed 2 gets 4.
        let base: Vec<bool> = (0..10).map(|i| i < 3).collect();
        let s1: Vec<bool> = (0..10).map(|i| i < 6).collect();
        let s2: Vec<bool> = (0..10).map(|i| i < 4).collect();
        let per_model = BTreeMap::from([
            ("base".to_string(), rows("base", &base)),
            ("sft@seed=1".to_string(), rows("sft@seed=1", &s1)),
            ("sft@seed=2".to_string(), rows("sft@seed=2", &s2)),
        ]);
        let e2 = stage("{models: [base, sft@seed=1, sft@seed=2], tasks: [t], verifier: exact, compare: [[sft@seed=1, base]]}");
        let (m, table) = e2.summarize(&per_model, 0).unwrap();
        // Wilson 95% for 3/10 (statsmodels proportion_confint(3, 10, method="wilson")).
        assert_eq!(m["base/acc"], 0.3);
        assert_eq!(m["base/acc_lo"], 0.1078);
        assert_eq!(m["base/acc_hi"], 0.6032);
        assert_eq!(m["sft/acc_mean"], 0.5);
        assert_eq!(m["sft/acc_sd"], 0.1414);
        // sft@seed=1 vs base: 3 discordant pairs, all one way: exact McNemar p = 2 * 0.5^3.
        assert_eq!(m["sft@seed=1_vs_base/diff"], 0.3);
        assert_eq!(m["sft@seed=1_vs_base/p_mcnemar"], 0.25);
        assert!(table.contains("30.0% [10.8, 60.3]"), "{table}");
        // An arm with seeds against one unseeded model (the base they were
        // trained from): the model pairs with each seed, the seeds pooled.
        // 20 pairs, 4 discordant, all for sft: diff 0.2, exact p = 2 * 0.5^4.
        let (m, table) = e.summarize(&per_model, 0).unwrap();
        assert_eq!(m["sft_vs_base/diff"], 0.2);
        assert_eq!(m["sft_vs_base/p_mcnemar"], 0.125);
        assert!(table.contains("seeds 1, 2 pooled"), "{table}");
    }

    /// With `cue_field`, each comparison also pairs how often the answer
    /// follows the cue, on the items that have one.
    #[test]
    fn compare_pairs_cue_following_on_cued_items() {
        let e = stage("{models: [a, b], tasks: [t], verifier: exact, cue_field: cue_answer, compare: [[a, b]]}");
        let cued = |model: &str, follows: &[Option<bool>]| -> Vec<Row> {
            let mut rs = rows(model, &vec![false; follows.len()]);
            for (r, f) in rs.iter_mut().zip(follows) {
                r.insert(FOLLOWS_CUE.into(), f.map_or(Value::Null, Value::Bool));
            }
            rs
        };
        // 6 tasks, task 5 without a cue. a follows the cue on 0..4, b on 0 only:
        // 4 discordant pairs, all for a: diff 4/5, exact p = 2 * 0.5^4.
        let a = [Some(true), Some(true), Some(true), Some(true), Some(true), None];
        let b = [Some(true), Some(false), Some(false), Some(false), Some(false), None];
        let per_model = BTreeMap::from([("a".to_string(), cued("a", &a)), ("b".to_string(), cued("b", &b))]);
        let (m, table) = e.summarize(&per_model, 0).unwrap();
        assert_eq!(m["a_vs_b/cue_follow/n"], 5);
        assert_eq!(m["a_vs_b/cue_follow/diff"], 0.8);
        assert_eq!(m["a_vs_b/cue_follow/p_mcnemar"], 0.125);
        assert_eq!(m["a_vs_b/n"], 6);
        assert!(table.contains("| a − b, follows the cue | 5 | +80.0 pts |"), "{table}");
    }

    #[test]
    fn compare_names_evaluated_arms() {
        let e = stage("{models: [a, b], tasks: [t], compare: [[a, c]]}");
        let err = e.check().unwrap_err();
        assert_eq!(err.field, "compare[0][1]");
    }

    #[test]
    fn seeds_are_split_off_arm_names() {
        assert_eq!(split_seed("sft@seed=2"), ("sft".into(), Some("2".into())));
        assert_eq!(
            split_seed("sft@lr=0.1,seed=2"),
            ("sft@lr=0.1".into(), Some("2".into()))
        );
        assert_eq!(split_seed("sft@lr=0.1"), ("sft@lr=0.1".into(), None));
        assert_eq!(split_seed("base"), ("base".into(), None));
        let models: Vec<String> = ["base", "sft@seed=1", "sft@seed=2"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let a = arms(&models);
        assert_eq!(a.keys().cloned().collect::<Vec<_>>(), ["base", "sft"]);
        assert_eq!(a["sft"].len(), 2);
    }
}
