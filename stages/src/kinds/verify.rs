//! `kind: verify` — scores samples with a rule-based verifier.
//!
//! `verifier: countdown` (METHODS §0.1, exact rationals) reads rows with
//! `nums`, `target`, `response` and adds `answer`, `correct`, `reward`.
//! `verifier: numeric` reads `response` and the gold `answer` and adds
//! `correct`, `reward`.

use retort_engine::{Fields, Hashed, InputDecl, Metrics, Row, Stage, StageCtx, StageImpl};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::round4;
use crate::common::rows::{field, map_rows, one_input, one_output, plus};
use crate::methods;

/// Which verifier.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verifier {
    /// Countdown expressions, checked exactly.
    #[default]
    Countdown,
    /// A numeric answer in `<answer>` tags against the row's `answer`.
    Numeric,
}

/// Verify a dataset of samples.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyStage {
    /// The samples: `STAGE` or `STAGE.OUTPUT`.
    pub input: String,
    /// countdown (default) or numeric.
    #[serde(default)]
    pub verifier: Verifier,
    /// Reward for an answer that exists but is wrong (TinyZero 0.1, SkillFactory 0).
    #[serde(default)]
    pub format_reward: f64,
}

impl StageImpl for VerifyStage {
    const KIND: &'static str = "verify";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "Score samples with a rule-based verifier (countdown exact, numeric).";

    fn hashed(&self) -> Hashed {
        let VerifyStage { input: _, verifier, format_reward } = self;
        Hashed::new().field("verifier", verifier).field("format_reward", format_reward)
    }
}

impl Stage for VerifyStage {
    fn inputs(&self) -> Vec<InputDecl> {
        let mut input = one_input(&self.input).remove(0).needing(&[field::RESPONSE], "verify");
        match self.verifier {
            Verifier::Countdown => {
                input = input.needing(&[field::NUMS], "the countdown verifier").needing(&[field::TARGET], "the countdown verifier")
            }
            Verifier::Numeric => input = input.needing(&[field::ANSWER], "the numeric verifier (the gold answer)"),
        }
        vec![input]
    }

    fn output_fields(&self, _name: &str, input: &dyn Fn(&str) -> Fields) -> Fields {
        plus(input("input"), &[field::ANSWER, field::CORRECT, field::REWARD])
    }

    fn outputs(&self) -> Vec<String> {
        one_output()
    }

    fn uses_seed(&self) -> bool {
        false
    }

    fn run(&self, ctx: &mut StageCtx<'_>) -> anyhow::Result<Metrics> {
        map_rows(ctx, |rows| {
            let rows = match self.verifier {
                Verifier::Countdown => methods::verify_rows(rows, self.format_reward)?,
                Verifier::Numeric => numeric(rows, self.format_reward)?,
            };
            let m = accuracy_metrics(&rows);
            Ok((rows, m))
        })
    }
}

fn numeric(rows: Vec<Row>, format_reward: f64) -> anyhow::Result<Vec<Row>> {
    rows.into_iter()
        .enumerate()
        .map(|(i, mut row)| {
            let get = |k: &str| row.get(k).and_then(|v| v.as_str()).map(str::to_string);
            let response = get(field::RESPONSE).ok_or_else(|| anyhow::anyhow!("row {i}: missing string field `response`"))?;
            let gold = match row.get(field::ANSWER) {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(v @ serde_json::Value::Number(_)) => v.to_string(),
                _ => anyhow::bail!("row {i}: missing field `answer` (the gold answer)"),
            };
            let correct = methods::verify_numeric(&response, &gold);
            let has_answer = methods::verify::extract_answer(&response).is_some();
            let reward = if correct { 1.0 } else if has_answer { format_reward } else { 0.0 };
            row.insert(field::CORRECT.into(), correct.into());
            row.insert(field::REWARD.into(), reward.into());
            Ok(row)
        })
        .collect()
}

/// `accuracy` (share of rows with `correct: true`), `reward_mean` and `rows`.
pub(crate) fn accuracy_metrics(rows: &[Row]) -> Metrics {
    let n = rows.len().max(1) as f64;
    let correct = rows.iter().filter(|r| r.get(field::CORRECT).and_then(|v| v.as_bool()) == Some(true)).count();
    let reward: f64 = rows.iter().filter_map(|r| r.get(field::REWARD).and_then(|v| v.as_f64())).sum();
    Metrics::from([
        ("rows".to_string(), rows.len().into()),
        ("accuracy".to_string(), round4(correct as f64 / n).into()),
        ("reward_mean".to_string(), round4(reward / n).into()),
    ])
}
