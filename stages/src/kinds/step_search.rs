//! `kind: step_search` — SPHERE's PRM-guided self-generation,
//! self-correction and diversity (METHODS §9.1), as preference pairs.
//!
//! ```yaml
//! search:
//!   kind: step_search
//!   model: policy           # samples the steps (a `models:` entry or a stage's model)
//!   problems: train_tasks   # rows with `prompt`, `nums`, `target` (Countdown)
//!   small: small            # the diversity model (needed unless `diversity: false`)
//!   candidates: 5           # E: next steps sampled per step
//!   max_steps: 8            # per branch, the answer line included
//!   sampling: {temperature: 0.8, max_tokens: 48}   # per step (the delimiter and `</answer>` stop it)
//!   scorer: rule            # or mc (Math-Shepherd rollouts with `model`), or model (the PRM in `prm`)
//!   error_below: 0.5        # a step below this is where correction restarts
//!   correction: true        # where Sol_max and Sol_min are both wrong
//!   diversity: true         # where both are right: `small` writes `explore` (2E) solutions
//!   explore_sampling: {temperature: 1.0, max_tokens: 96}
//! ```
//!
//! What the search does, step by step, is in [`crate::methods::search`].
//! Each output row is a (chosen, rejected) pair in the preference format
//! `train`'s `dpo` and `export` read: the problem's row, plus `chosen`,
//! `rejected`, `chosen_score` / `rejected_score` (trajectory values),
//! `chosen_step_scores` / `rejected_step_scores` and `source`
//! (`generation`, `correction` or `diversity`). The metrics count the pairs
//! per source and how the problems fell (both right, both wrong, mixed).
//!
//! Every model call (step candidates, diversity solutions, `mc` rollouts)
//! goes through the item cache, keyed by the model, the sampling settings,
//! the pipeline's seed, the exact context text and the sample index: a
//! killed run resumes with what it had sampled, a changed threshold
//! re-samples only contexts it has not seen, and added problems search only
//! themselves. A problem's pairs do not depend on the problems beside it.

use anyhow::{bail, Context as _};
use retort_cache::Hash;
use retort_engine::{Artifact, FieldError, Fields, Hashed, InputDecl, Metrics, Row, Stage, StageCtx, StageImpl};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use crate::common::model::{self, Sampler};
use crate::common::prm::PrmScorer;
use crate::common::round4;
use crate::common::rows::{field, int_field, ints_field, plus, str_field};
use crate::common::sampler::{sample_all, Item, Prompt};
use crate::common::sampling::Sampling;
use crate::kinds::prm_filter::Scorer;
use crate::methods::mc::{self, mc_scores, Solution};
use crate::methods::search::{search, Oracle, ScoreAsk, SearchSpec, Searched, StepAsk, Trajectory};
use crate::methods::steps::rule_scores_countdown;
use crate::methods::verify_countdown;

/// SPHERE's search: pairs from a policy's own step-by-step solutions.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepSearchStage {
    /// The policy: a `models:` entry or a stage that outputs a model.
    pub model: String,
    /// Countdown problems: rows with `prompt`, `nums` and `target`.
    pub problems: String,
    /// The smaller diversity model (needed unless `diversity: false`).
    #[serde(default)]
    pub small: Option<String>,
    /// E: candidate next steps per step (§9.1: 5).
    #[serde(default = "five")]
    pub candidates: usize,
    /// Most steps per branch, the answer line included.
    #[serde(default = "eight")]
    pub max_steps: usize,
    /// Where one step ends.
    #[serde(default = "crate::methods::steps::default_delimiter")]
    pub delimiter: String,
    /// How a step is sampled (T = 0.8 by default, §9.1); the delimiter and
    /// `</answer>` are added to `stop`.
    #[serde(default = "step_sampling")]
    pub sampling: Sampling,
    /// What scores a step: rule (Countdown), mc (rollouts with `model`) or
    /// model (the PRM in `prm`).
    #[serde(default)]
    pub scorer: Scorer,
    /// model: the process reward model (a `train` stage with `objective: prm`).
    #[serde(default)]
    pub prm: Option<String>,
    /// mc: rollouts per step (K).
    #[serde(default)]
    pub rollouts: Option<usize>,
    /// mc: how rollouts are sampled.
    #[serde(default)]
    pub rollout_sampling: Option<Sampling>,
    /// A step scoring below this is an error: correction restarts before it.
    #[serde(default = "half")]
    pub error_below: f64,
    /// λ: the step scores' weight in a trajectory's value, against the outcome's.
    #[serde(default = "half")]
    pub lambda: f64,
    /// Two right solutions pair only when their values differ by this much.
    #[serde(default = "margin")]
    pub min_margin: f64,
    /// Self-correction where both solutions are wrong.
    #[serde(default = "yes")]
    pub correction: bool,
    /// Diversity where both are right.
    #[serde(default = "yes")]
    pub diversity: bool,
    /// Solutions the diversity model writes per problem (default 2E).
    #[serde(default)]
    pub explore: Option<usize>,
    /// How the diversity model samples (T = 1 by default; `</answer>` stops it).
    #[serde(default = "explore_sampling")]
    pub explore_sampling: Sampling,
    /// Sequences per forward pass (a sample does not depend on it).
    #[serde(default = "sixty_four")]
    pub batch_size: usize,
}

fn five() -> usize {
    5
}
fn eight() -> usize {
    8
}
fn half() -> f64 {
    0.5
}
fn margin() -> f64 {
    0.3
}
fn yes() -> bool {
    true
}
fn sixty_four() -> usize {
    64
}
fn step_sampling() -> Sampling {
    // 48: an answer line `<answer>((a + b) - c) * d</answer>` is ~35 characters.
    Sampling { temperature: 0.8, max_tokens: 48, ..Sampling::default() }
}
fn explore_sampling() -> Sampling {
    Sampling { temperature: 1.0, max_tokens: 128, ..Sampling::default() }
}

/// Math-Shepherd's rollouts per step.
const DEFAULT_ROLLOUTS: usize = 8;

impl StepSearchStage {
    fn explore(&self) -> usize {
        self.explore.unwrap_or(2 * self.candidates)
    }

    fn spec(&self) -> SearchSpec {
        SearchSpec {
            candidates: self.candidates,
            max_steps: self.max_steps,
            delimiter: self.delimiter.clone(),
            error_below: self.error_below,
            lambda: self.lambda,
            min_margin: self.min_margin,
            correction: self.correction,
            diversity: self.diversity,
            explore: self.explore(),
        }
    }

    /// The step sampling as run: stopped at the delimiter and `</answer>`.
    fn step_sampling(&self) -> Sampling {
        let mut s = self.sampling.clone();
        for stop in [self.delimiter.as_str(), "</answer>"] {
            if !s.stop.iter().any(|x| x == stop) {
                s.stop.push(stop.to_string());
            }
        }
        s
    }

    fn explore_sampling(&self) -> Sampling {
        let mut s = self.explore_sampling.clone();
        if !s.stop.iter().any(|x| x == "</answer>") {
            s.stop.push("</answer>".into());
        }
        s
    }

    fn rollout_sampling(&self) -> Sampling {
        let mut s = self.rollout_sampling.clone().unwrap_or_else(|| Sampling { temperature: 0.7, max_tokens: 64, ..Sampling::default() });
        if !s.stop.iter().any(|x| x == "</answer>") {
            s.stop.push("</answer>".into());
        }
        s
    }
}

impl StageImpl for StepSearchStage {
    const KIND: &'static str = "step_search";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "SPHERE's search: E sampled next steps scored by a PRM, max and min branches, self-correction, diversity from a smaller model; (chosen, rejected) pairs (METHODS §9.1).";

    fn hashed(&self) -> Hashed {
        // The models and problems enter by content hash; batch_size does
        // not change a sample.
        let StepSearchStage {
            model: _,
            problems: _,
            small: _,
            candidates,
            max_steps,
            delimiter,
            sampling: _,
            scorer,
            prm: _,
            rollouts: _,
            rollout_sampling: _,
            error_below,
            lambda,
            min_margin,
            correction,
            diversity,
            explore: _,
            explore_sampling: _,
            batch_size: _,
        } = self;
        let h = Hashed::new()
            .field("candidates", candidates)
            .field("max_steps", max_steps)
            .field("delimiter", delimiter)
            .field("sampling", self.step_sampling().hashed().into_value())
            .field("scorer", scorer)
            .field("error_below", error_below)
            .field("lambda", lambda)
            .field("min_margin", min_margin)
            .field("correction", correction)
            .field("diversity", diversity);
        let h = if *diversity { h.field("explore", self.explore()).field("explore_sampling", self.explore_sampling().hashed().into_value()) } else { h };
        match scorer {
            Scorer::Rule | Scorer::Model => h,
            Scorer::Mc => h
                .field("rollouts", self.rollouts.unwrap_or(DEFAULT_ROLLOUTS))
                .field("rollout_sampling", self.rollout_sampling().hashed().into_value()),
        }
    }
}

/// Fields each pair row adds to its problem's row.
const ADDED: [&str; 7] = ["chosen", "rejected", "chosen_score", "rejected_score", "chosen_step_scores", "rejected_step_scores", "source"];

impl Stage for StepSearchStage {
    fn inputs(&self) -> Vec<InputDecl> {
        let why = "step_search (Countdown problems)";
        let mut v = vec![
            InputDecl::sampler("model", &self.model, "model"),
            InputDecl::rows("problems", &self.problems, "problems")
                .needing(&[field::PROMPT], why)
                .needing(&[field::NUMS], why)
                .needing(&[field::TARGET], why),
        ];
        if let (true, Some(small)) = (self.diversity, &self.small) {
            v.push(InputDecl::sampler("small", small, "small"));
        }
        if let (Scorer::Model, Some(prm)) = (self.scorer, &self.prm) {
            v.push(InputDecl { expects: Artifact::Prm, ..InputDecl::model("prm", prm, "prm", true) });
        }
        v
    }

    fn outputs(&self) -> Vec<String> {
        vec!["out".into()]
    }

    fn output_fields(&self, _name: &str, input: &dyn Fn(&str) -> Fields) -> Fields {
        plus(input("problems"), &ADDED)
    }

    fn check(&self) -> Result<(), FieldError> {
        if self.candidates < 2 {
            return Err(FieldError::new("candidates", format!("`candidates` is {}: set it to at least 2 (a max and a min step are kept; §9.1 uses 5)", self.candidates)));
        }
        if self.max_steps == 0 {
            return Err(FieldError::new("max_steps", "`max_steps` is 0: set it to at least 1 (the answer line counts as a step)"));
        }
        if self.delimiter.is_empty() {
            return Err(FieldError::new("delimiter", "must not be empty (steps end at it; `\\n` by default)"));
        }
        for (name, v) in [("error_below", self.error_below), ("lambda", self.lambda), ("min_margin", self.min_margin)] {
            if !(0.0..=1.0).contains(&v) {
                return Err(FieldError::new(name, format!("`{name}` is {v}: set it between 0 and 1")));
            }
        }
        if self.batch_size == 0 {
            return Err(FieldError::new("batch_size", "`batch_size` is 0: set it to at least 1"));
        }
        if self.diversity && self.small.is_none() {
            return Err(FieldError::new("small", "diversity needs a smaller model: name it in `small`, or set `diversity: false`"));
        }
        if self.diversity && self.explore == Some(0) {
            return Err(FieldError::new("explore", "`explore` is 0: set it to at least 1 (§9.1 uses 2E), or set `diversity: false`"));
        }
        if self.scorer == Scorer::Model && self.prm.is_none() {
            return Err(FieldError::new("scorer", "`scorer: model` scores steps with a trained PRM: name it in `prm` (a `train` stage with `objective: prm`)"));
        }
        if self.scorer != Scorer::Model && self.prm.is_some() {
            return Err(FieldError::new("prm", "`prm` applies only to `scorer: model`"));
        }
        match self.scorer {
            Scorer::Model if self.rollouts.is_some() || self.rollout_sampling.is_some() => {
                let name = if self.rollouts.is_some() { "rollouts" } else { "rollout_sampling" };
                Err(FieldError::new(name, format!("`{name}` applies only to `scorer: mc`")))
            }
            Scorer::Mc if self.rollouts == Some(0) => Err(FieldError::new("rollouts", "`rollouts` is 0: set it to at least 1 (Math-Shepherd used 8)")),
            Scorer::Rule if self.rollouts.is_some() || self.rollout_sampling.is_some() => {
                let name = if self.rollouts.is_some() { "rollouts" } else { "rollout_sampling" };
                Err(FieldError::new(name, format!("`{name}` applies only to `scorer: mc`")))
            }
            _ => Ok(()),
        }
    }

    fn run(&self, ctx: &mut StageCtx<'_>) -> anyhow::Result<Metrics> {
        let rows = ctx.read_rows_nonempty("problems", "problems to search")?;
        let mut problems = Vec::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            let p = (|| -> anyhow::Result<_> { Ok((ints_field(row, field::NUMS)?, int_field(row, field::TARGET)?, str_field(row, field::PROMPT)?.to_string())) })()
                .with_context(|| format!("problems row {i}"))?;
            problems.push(p);
        }
        let policy_input = ctx.input("model")?.clone();
        let policy = model::sampler(&policy_input, &self.model, ctx)?;
        let prompts = texts(&policy, &rows, &self.model)?;
        let small = match (self.diversity, &self.small) {
            (true, Some(name)) => {
                let input = ctx.input("small")?.clone();
                let sampler = model::sampler(&input, name, ctx)?;
                let prompts = texts(&sampler, &rows, name)?;
                Some((sampler, input.hash, prompts))
            }
            _ => None,
        };
        let prm = match (self.scorer, &self.prm) {
            (Scorer::Model, Some(name)) => Some(PrmScorer::open(ctx, "prm", name, &self.delimiter)?),
            _ => None,
        };
        let mut oracle = CacheOracle {
            prm,
            ctx,
            stage: self,
            policy,
            policy_hash: policy_input.hash,
            step_sampling: self.step_sampling(),
            small,
            prompts: prompts.clone(),
            problems: problems.iter().map(|(n, t, _)| (n.clone(), *t)).collect(),
            counts: Counts::default(),
        };
        let found = search(&prompts, &self.spec(), &mut oracle)?;
        let counts = oracle.counts;
        let prm_counts = oracle.prm.as_ref().map(|p| (p.asked, p.cached));
        let mut out = Vec::new();
        let mut per_source = [0usize; 3];
        for (row, s) in rows.iter().zip(&found) {
            for pair in &s.pairs {
                per_source[pair.source as usize] += 1;
                let mut r = row.clone();
                r.insert(field::CHOSEN.into(), pair.chosen.response.clone().into());
                r.insert(field::REJECTED.into(), pair.rejected.response.clone().into());
                r.insert("chosen_score".into(), round4(pair.chosen.value(self.lambda)).into());
                r.insert("rejected_score".into(), round4(pair.rejected.value(self.lambda)).into());
                r.insert("chosen_step_scores".into(), step_scores(&pair.chosen));
                r.insert("rejected_step_scores".into(), step_scores(&pair.rejected));
                r.insert("source".into(), pair.source.name().into());
                out.push(r);
            }
        }
        let tally = Tally::of(&found);
        ctx.log(format!(
            "{} problems: {} both right, {} both wrong, {} mixed; {} pairs ({} generation, {} correction, {} diversity); {} of {} step samples from the item cache",
            rows.len(),
            tally.both_right,
            tally.both_wrong,
            tally.mixed,
            out.len(),
            per_source[0],
            per_source[1],
            per_source[2],
            counts.step_cached,
            counts.step_samples
        ));
        if out.is_empty() {
            bail!(
                "no pairs from {} problems: {} had one right and one wrong solution of equal value, {} had both wrong ({}), {} had both right ({}); \
                 the policy needs some right and some wrong solutions: search more problems, raise `candidates` or the temperature, or pre-train the policy longer",
                rows.len(),
                tally.mixed,
                tally.both_wrong,
                if self.correction { format!("correction fixed {} of them", tally.corrected) } else { "correction is off".into() },
                tally.both_right,
                if self.diversity { format!("the diversity model found {} plausible errors", tally.explored_wrong) } else { "diversity is off".into() },
            );
        }
        ctx.write_rows("out", &out)?;
        let share = |x: usize, of: usize| round4(if of == 0 { 0.0 } else { x as f64 / of as f64 });
        let n = rows.len();
        let mut m = Metrics::from([
            ("problems".to_string(), n.into()),
            ("pairs".to_string(), out.len().into()),
            ("pairs_generation".to_string(), per_source[0].into()),
            ("pairs_correction".to_string(), per_source[1].into()),
            ("pairs_diversity".to_string(), per_source[2].into()),
            ("both_right".to_string(), tally.both_right.into()),
            ("both_wrong".to_string(), tally.both_wrong.into()),
            ("mixed".to_string(), tally.mixed.into()),
            ("corrected".to_string(), tally.corrected.into()),
            ("sol_max_right".to_string(), share(tally.max_right, n).into()),
            ("sol_min_right".to_string(), share(tally.min_right, n).into()),
            ("sol_max_step_validity".to_string(), round4(tally.max_validity()).into()),
            ("step_samples".to_string(), counts.step_samples.into()),
            ("step_samples_cached".to_string(), counts.step_cached.into()),
            ("explore_samples".to_string(), counts.explore_samples.into()),
            ("explore_samples_cached".to_string(), counts.explore_cached.into()),
            ("rollouts".to_string(), counts.rollouts.into()),
            ("rollouts_cached".to_string(), counts.rollouts_cached.into()),
        ]);
        if let Some((asked, cached)) = prm_counts {
            m.insert("prm_scores".into(), asked.into());
            m.insert("prm_scores_cached".into(), cached.into());
        }
        Ok(m)
    }
}

fn step_scores(t: &Trajectory) -> Value {
    t.step_scores.iter().map(|&s| round4(s)).collect::<Vec<_>>().into()
}

/// Each problem's prompt text for `sampler` (the text a step continues).
fn texts(sampler: &Sampler, rows: &[Row], what: &str) -> anyhow::Result<Vec<String>> {
    rows.iter()
        .enumerate()
        .map(|(i, row)| match sampler.prompt(row, false, None).with_context(|| format!("problems row {i}"))? {
            Prompt::Text(t) => Ok(t),
            Prompt::Chat(_) => bail!("model `{what}` is a chat endpoint, but the search continues a solution's text: use a model loaded here or `endpoint: completions`"),
        })
        .collect()
}

/// How the problems fell.
#[derive(Default)]
struct Tally {
    both_right: usize,
    both_wrong: usize,
    mixed: usize,
    corrected: usize,
    explored_wrong: usize,
    max_right: usize,
    min_right: usize,
    max_steps: usize,
    max_valid: f64,
}

impl Tally {
    fn of(found: &[Searched]) -> Self {
        let mut t = Tally::default();
        for s in found {
            match (s.sol_max.correct, s.sol_min.correct) {
                (true, true) => t.both_right += 1,
                (false, false) => t.both_wrong += 1,
                _ => t.mixed += 1,
            }
            t.corrected += usize::from(s.corrected.as_ref().is_some_and(|c| c.correct));
            t.explored_wrong += s.explored.iter().filter(|e| !e.correct).count();
            t.max_right += usize::from(s.sol_max.correct);
            t.min_right += usize::from(s.sol_min.correct);
            t.max_steps += s.sol_max.step_scores.len();
            t.max_valid += s.sol_max.step_scores.iter().sum::<f64>();
        }
        t
    }

    fn max_validity(&self) -> f64 {
        if self.max_steps == 0 {
            0.0
        } else {
            self.max_valid / self.max_steps as f64
        }
    }
}

/// Model calls made and answered from the item cache.
#[derive(Default)]
struct Counts {
    step_samples: usize,
    step_cached: usize,
    explore_samples: usize,
    explore_cached: usize,
    rollouts: usize,
    rollouts_cached: usize,
}

/// The search's models and scorer, every call through the item cache.
struct CacheOracle<'c, 'a> {
    ctx: &'c StageCtx<'a>,
    stage: &'c StepSearchStage,
    policy: Sampler,
    policy_hash: Hash,
    step_sampling: Sampling,
    small: Option<(Sampler, Hash, Vec<String>)>,
    prompts: Vec<String>,
    problems: Vec<(Vec<i64>, i64)>,
    prm: Option<PrmScorer>,
    counts: Counts,
}

impl Oracle for CacheOracle<'_, '_> {
    type Error = anyhow::Error;

    fn steps(&mut self, asks: &[StepAsk], count: usize) -> anyhow::Result<Vec<Vec<String>>> {
        let items: Vec<Item> = asks
            .iter()
            .flat_map(|a| (0..count).map(move |j| Item { prompt: Prompt::Text(a.text.clone()), sample_index: a.first + j, row: a.problem }))
            .collect();
        let (sampled, cached) =
            sample_all(self.ctx, &self.policy, self.policy_hash, &self.step_sampling, self.ctx.seed, None, &items, self.stage.batch_size)?;
        self.counts.step_samples += items.len();
        self.counts.step_cached += cached;
        Ok(sampled.chunks(count.max(1)).map(|c| c.iter().map(|s| s.response.clone()).collect()).collect())
    }

    fn explore(&mut self, problems: &[usize], count: usize) -> anyhow::Result<Vec<Vec<String>>> {
        let (sampler, hash, prompts) = self.small.as_ref().expect("check() requires `small` for diversity");
        let items: Vec<Item> =
            problems.iter().flat_map(|&p| (0..count).map(move |j| Item { prompt: Prompt::Text(prompts[p].clone()), sample_index: j, row: p })).collect();
        let sampling = self.stage.explore_sampling();
        let (sampled, cached) = sample_all(self.ctx, sampler, *hash, &sampling, self.ctx.seed, None, &items, self.stage.batch_size)?;
        self.counts.explore_samples += items.len();
        self.counts.explore_cached += cached;
        Ok(sampled.chunks(count.max(1)).map(|c| c.iter().map(|s| s.response.clone()).collect()).collect())
    }

    fn scores(&mut self, asks: &[ScoreAsk]) -> anyhow::Result<Vec<f64>> {
        match self.stage.scorer {
            Scorer::Rule => Ok(asks
                .iter()
                .map(|a| {
                    let steps: Vec<&str> = a.steps.iter().map(|s| s.trim()).collect();
                    rule_scores_countdown(&steps, &self.problems[a.problem].0).last().copied().unwrap_or(0.0)
                })
                .collect()),
            Scorer::Mc => self.mc(asks),
            Scorer::Model => self.prm(asks),
        }
    }

    fn correct(&self, problem: usize, response: &str) -> bool {
        let (nums, target) = &self.problems[problem];
        verify_countdown(response, nums, *target, 0.0).correct
    }
}

impl CacheOracle<'_, '_> {
    /// A trained PRM's score of each ask's last step, reading the prompt
    /// and the steps so far as `prm_filter`'s `model` scorer does.
    fn prm(&mut self, asks: &[ScoreAsk]) -> anyhow::Result<Vec<f64>> {
        let prm = self.prm.as_mut().expect("check() requires `prm` for `scorer: model`");
        asks.iter()
            .map(|a| prm.scores(&self.prompts[a.problem], &a.steps.concat())?.last().copied().context("a scored step encodes to no tokens"))
            .collect()
    }

    /// Math-Shepherd scores: each ask's steps so far rolled out K times
    /// with the policy, the share that verify (`prm_filter`'s `mc`).
    fn mc(&mut self, asks: &[ScoreAsk]) -> anyhow::Result<Vec<f64>> {
        let prefixes: Vec<String> = asks.iter().map(|a| a.steps.concat()).collect();
        let solutions: Vec<Solution<'_>> =
            asks.iter().zip(&prefixes).map(|(a, p)| Solution { prompt: &self.prompts[a.problem], prefixes: vec![p.as_str()] }).collect();
        let k = self.stage.rollouts.unwrap_or(DEFAULT_ROLLOUTS);
        let sampling = self.stage.rollout_sampling();
        let (ctx, policy, hash, batch) = (self.ctx, &self.policy, self.policy_hash, self.stage.batch_size);
        let mut cached = 0;
        let complete = |contexts: &[mc::Context], k: usize| -> anyhow::Result<Vec<String>> {
            let items: Vec<Item> = contexts
                .iter()
                .flat_map(|c| (0..k).map(|j| Item { prompt: Prompt::Text(c.text.clone()), sample_index: j, row: asks[c.solution].problem }))
                .collect();
            let (sampled, hits) = sample_all(ctx, policy, hash, &sampling, ctx.seed, None, &items, batch)?;
            cached = hits;
            Ok(sampled.into_iter().map(|s| s.response).collect())
        };
        let problems = &self.problems;
        let verified = |i: usize, text: &str| {
            let (nums, target) = &problems[asks[i].problem];
            verify_countdown(text, nums, *target, 0.0).correct
        };
        let scored = mc_scores(&solutions, k, complete, verified)?;
        self.counts.rollouts += scored.contexts * k;
        self.counts.rollouts_cached += cached;
        Ok(scored.scores.into_iter().map(|s| s.first().copied().unwrap_or(0.0)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(y: &str) -> StepSearchStage {
        serde_yaml::from_str(y).unwrap()
    }

    #[test]
    fn settings_are_checked() {
        let bad = |y: &str| parse(y).check().unwrap_err().field;
        assert_eq!(bad("{model: m, problems: p, small: s, candidates: 1}"), "candidates");
        assert_eq!(bad("{model: m, problems: p, small: s, max_steps: 0}"), "max_steps");
        assert_eq!(bad("{model: m, problems: p}"), "small");
        assert_eq!(bad("{model: m, problems: p, small: s, error_below: 1.5}"), "error_below");
        assert_eq!(bad("{model: m, problems: p, small: s, explore: 0}"), "explore");
        assert_eq!(bad("{model: m, problems: p, small: s, rollouts: 4}"), "rollouts");
        assert_eq!(bad("{model: m, problems: p, small: s, scorer: mc, rollouts: 0}"), "rollouts");
        assert!(parse("{model: m, problems: p, diversity: false}").check().is_ok());
        assert!(parse("{model: m, problems: p, small: s, scorer: mc, rollouts: 2}").check().is_ok());
    }

    #[test]
    fn the_fingerprint_holds_what_changes_the_pairs() {
        let h = |y: &str| parse(y).hashed().into_value();
        let base = h("{model: m, problems: p, small: s}");
        assert_eq!(base, h("{model: m, problems: p, small: s, batch_size: 3, explore: 10}"), "batch_size never, explore's default 2E");
        assert_ne!(base, h("{model: m, problems: p, small: s, error_below: 0.4}"));
        assert_ne!(base, h("{model: m, problems: p, small: s, correction: false}"));
        assert_eq!(base["sampling"]["stop"], serde_json::json!(["\n", "</answer>"]));
        // Without diversity its settings do not matter.
        let off = h("{model: m, problems: p, diversity: false}");
        assert_eq!(off, h("{model: m, problems: p, diversity: false, explore: 3}"));
    }
}
