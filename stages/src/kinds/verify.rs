//! `kind: verify` — scores samples with a rule-based verifier.
//!
//! `verifier: countdown` (METHODS §0.1, exact rationals) reads rows with
//! `nums`, `target`, `response` and adds `answer`, `correct`, `reward`.
//! The others (`numeric`, `exact`, `choice`, `regex`; `stages/src/verifiers/`)
//! read `response` and the row's expected answer (`answer` unless the
//! verifier names another field) and add the same three fields.

use retort_engine::{FieldError, Fields, Hashed, InputDecl, Metrics, Row, Stage, StageCtx, StageImpl};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::common::round4;
use crate::common::rows::{each_row, field, map_rows, one_input, one_output, plus, str_field};
use crate::verifiers::Verifier;
use crate::methods;

/// Verify a dataset of samples.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyStage {
    /// The samples: `STAGE` or `STAGE.OUTPUT`.
    pub input: String,
    /// countdown (default), numeric, exact, choice or regex (see `verifiers/`).
    #[serde(default)]
    pub verifier: Verifier,
    /// Reward for an answer that exists but is wrong (TinyZero 0.1, SkillFactory 0).
    #[serde(default)]
    pub format_reward: f64,
}

impl StageImpl for VerifyStage {
    const KIND: &'static str = "verify";
    // 2: `numeric` is the general numeric verifier (also `\boxed{}` and the
    // last number, with a tolerance), and `answer` is written for it too.
    const VERSION: u32 = 2;
    const ABOUT: &'static str = "Score samples with a rule-based verifier (countdown exact, numeric, exact, choice, regex).";

    fn hashed(&self) -> Hashed {
        let VerifyStage { input: _, verifier, format_reward } = self;
        Hashed::new().field("verifier", verifier).field("format_reward", format_reward)
    }
}

impl Stage for VerifyStage {
    fn inputs(&self) -> Vec<InputDecl> {
        let mut input = one_input(&self.input).remove(0).needing(&[field::RESPONSE], "verify");
        if matches!(self.verifier, Verifier::Countdown) {
            input = input.needing(&[field::NUMS], "the countdown verifier").needing(&[field::TARGET], "the countdown verifier");
        }
        vec![input]
    }

    fn output_fields(&self, _name: &str, input: &dyn Fn(&str) -> Fields) -> Fields {
        plus(input("input"), &[field::ANSWER, field::CORRECT, field::REWARD])
    }

    fn outputs(&self) -> Vec<String> {
        one_output()
    }

    fn check(&self) -> Result<(), FieldError> {
        self.verifier.check().map_err(|m| FieldError::new("verifier", m))
    }

    fn uses_seed(&self) -> bool {
        false
    }

    fn run(&self, ctx: &mut StageCtx<'_>) -> anyhow::Result<Metrics> {
        map_rows(ctx, "samples to verify", |rows| {
            let rows = match self.verifier {
                Verifier::Countdown => methods::verify_rows(rows, self.format_reward)?,
                _ => self.general(rows)?,
            };
            let m = accuracy_metrics(&rows);
            Ok((rows, m))
        })
    }
}

impl VerifyStage {
    /// Any verifier but countdown's (which has its own reward and failure
    /// reasons): `answer`, `correct`, and `reward` 1, `format_reward` for a
    /// wrong answer that was found, or 0.
    fn general(&self, rows: Vec<Row>) -> anyhow::Result<Vec<Row>> {
        each_row(rows, |mut row| {
            let v = self.verifier.verify(str_field(&row, field::RESPONSE)?, &row)?;
            let reward = if v.correct { 1.0 } else if v.answer.is_some() { self.format_reward } else { 0.0 };
            row.insert(field::ANSWER.into(), v.answer.map_or(serde_json::Value::Null, Into::into));
            row.insert(field::CORRECT.into(), v.correct.into());
            row.insert(field::REWARD.into(), reward.into());
            Ok(row)
        })
    }
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
