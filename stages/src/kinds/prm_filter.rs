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
//! ```
//!
//! Each output row is its input row plus `step_scores`, `steps`, `outcome`
//! (1 if the final `<answer>` is right, else 0), `value` and `first_error`
//! (the 0-based index of the first step scoring below `error_below`, or
//! null). The metrics say how valid the steps are, how deep the first error
//! is, and how many rows are right.
//!
//! The scorers are one interface: `rule` is the first; Math-Shepherd's
//! Monte-Carlo rollouts and a trained PRM are issue 10's next pieces.

use anyhow::Context;
use retort_engine::{FieldError, Fields, Hashed, InputDecl, Metrics, Stage, StageCtx, StageImpl};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::common::round4;
use crate::common::rows::{field, int_field, ints_field, plus, str_field};
use crate::methods::steps::{first_error, rule_scores_countdown, split_steps, trajectory_value, Aggregate};
use crate::methods::verify_countdown;

/// What scores a step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Scorer {
    /// Countdown's rules: available numbers, exact arithmetic (see `methods::steps`).
    #[default]
    Rule,
}

/// Score solution steps and keep the rows whose trajectory value is high enough.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PrmFilterStage {
    /// Rows with `response`, `nums` and `target`: `STAGE` or `STAGE.OUTPUT`.
    pub input: String,
    /// rule (Countdown).
    #[serde(default)]
    pub scorer: Scorer,
    /// Where one step ends and the next begins.
    #[serde(default = "newline")]
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
}

fn newline() -> String {
    "\n".into()
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
    const ABOUT: &'static str = "Score each solution's steps (rule scorer for Countdown), its trajectory value, and keep the good ones (METHODS §2).";

    fn hashed(&self) -> Hashed {
        let PrmFilterStage { input: _, scorer, delimiter, aggregate, lambda, error_below, min_value } = self;
        Hashed::new()
            .field("scorer", scorer)
            .field("delimiter", delimiter)
            .field("aggregate", aggregate)
            .field("lambda", lambda)
            .field("error_below", error_below)
            .opt("min_value", min_value)
    }
}

const ADDED: [&str; 5] = ["steps", "step_scores", "outcome", "value", "first_error"];

impl Stage for PrmFilterStage {
    fn inputs(&self) -> Vec<InputDecl> {
        let why = "prm_filter's rule scorer (Countdown)";
        vec![InputDecl::rows("input", &self.input, "input")
            .needing(&[field::RESPONSE], why)
            .needing(&[field::NUMS], why)
            .needing(&[field::TARGET], why)]
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
        Ok(())
    }

    fn run(&self, ctx: &mut StageCtx<'_>) -> anyhow::Result<Metrics> {
        let rows = ctx.read_rows_nonempty("input", "solutions to score")?;
        let (mut steps_all, mut valid, mut right, mut with_error, mut depth_sum) = (0usize, 0f64, 0usize, 0usize, 0usize);
        let mut out = Vec::new();
        let n = rows.len();
        for (i, mut row) in rows.into_iter().enumerate() {
            let (response, nums, target) = (|| -> anyhow::Result<_> {
                Ok((str_field(&row, field::RESPONSE)?.to_string(), ints_field(&row, field::NUMS)?, int_field(&row, field::TARGET)?))
            })()
            .with_context(|| format!("input row {i}"))?;
            let steps = split_steps(&response, &self.delimiter);
            let scores = match self.scorer {
                Scorer::Rule => rule_scores_countdown(&steps, &nums),
            };
            let outcome = if verify_countdown(&response, &nums, target, 0.0).correct { 1.0 } else { 0.0 };
            let value = trajectory_value(&scores, outcome, self.lambda, self.aggregate);
            let first = first_error(&scores, self.error_below);
            steps_all += scores.len();
            valid += scores.iter().sum::<f64>();
            right += usize::from(outcome == 1.0);
            if let Some(d) = first {
                with_error += 1;
                depth_sum += d;
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
        let share = |x: f64, of: usize| round4(if of == 0 { 0.0 } else { x / of as f64 });
        Ok(Metrics::from([
            ("rows_in".to_string(), n.into()),
            ("rows".to_string(), out.len().into()),
            ("steps_per_row".to_string(), share(steps_all as f64, n).into()),
            ("step_validity".to_string(), share(valid, steps_all).into()),
            ("outcome_share".to_string(), share(right as f64, n).into()),
            ("rows_with_error".to_string(), with_error.into()),
            ("first_error_depth".to_string(), share(depth_sum as f64, with_error).into()),
        ]))
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
        assert!(serde_yaml::from_str::<PrmFilterStage>("{input: s, scorer: mc}").is_err(), "only the rule scorer exists yet");
        let s: PrmFilterStage = serde_yaml::from_str("{input: s}").unwrap();
        assert_eq!((s.aggregate, s.lambda, s.delimiter.as_str()), (Aggregate::Min, 0.5, "\n"));
    }
}
