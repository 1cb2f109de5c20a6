//! `kind: verify` — scores samples with a rule-based verifier.
//!
//! `verifier: countdown` (METHODS §0.1, exact rationals) reads rows with
//! `nums`, `target`, `response` and adds `answer`, `correct`, `reward`.
//! `verifier: numeric` reads `response` and the gold `answer` and adds
//! `correct`, `reward`.

use retort_engine::{InputDecl, Metrics, Row, Source, Stage, StageCtx, StageImpl};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
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
}

impl Stage for VerifyStage {
    fn inputs(&self) -> Vec<InputDecl> {
        vec![InputDecl::new("input", Source::stage_ref(&self.input), "input")]
    }

    fn outputs(&self) -> Vec<String> {
        vec!["out".into()]
    }

    fn uses_seed(&self) -> bool {
        false
    }

    fn run(&self, ctx: &mut StageCtx<'_>) -> anyhow::Result<Metrics> {
        let rows = ctx.read_rows("input")?;
        let rows = match self.verifier {
            Verifier::Countdown => methods::verify_rows(rows, self.format_reward)?,
            Verifier::Numeric => numeric(rows, self.format_reward)?,
        };
        ctx.write_rows("out", &rows)?;
        Ok(accuracy_metrics(&rows))
    }
}

fn numeric(rows: Vec<Row>, format_reward: f64) -> anyhow::Result<Vec<Row>> {
    rows.into_iter()
        .enumerate()
        .map(|(i, mut row)| {
            let field = |k: &str| row.get(k).and_then(|v| v.as_str()).map(str::to_string);
            let response = field("response").ok_or_else(|| anyhow::anyhow!("row {i}: missing string field `response`"))?;
            let gold = match row.get("answer") {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(v @ serde_json::Value::Number(_)) => v.to_string(),
                _ => anyhow::bail!("row {i}: missing field `answer` (the gold answer)"),
            };
            let correct = methods::verify_numeric(&response, &gold);
            let has_answer = methods::verify::extract_answer(&response).is_some();
            let reward = if correct { 1.0 } else if has_answer { format_reward } else { 0.0 };
            row.insert("correct".into(), correct.into());
            row.insert("reward".into(), reward.into());
            Ok(row)
        })
        .collect()
}

/// `accuracy` (share of rows with `correct: true`), `reward_mean` and `rows`.
pub(crate) fn accuracy_metrics(rows: &[Row]) -> Metrics {
    let n = rows.len().max(1) as f64;
    let correct = rows.iter().filter(|r| r.get("correct").and_then(|v| v.as_bool()) == Some(true)).count();
    let reward: f64 = rows.iter().filter_map(|r| r.get("reward").and_then(|v| v.as_f64())).sum();
    Metrics::from([
        ("rows".to_string(), rows.len().into()),
        ("accuracy".to_string(), round4(correct as f64 / n).into()),
        ("reward_mean".to_string(), round4(reward / n).into()),
    ])
}

/// Metrics are for people and the lock file: four decimals is plenty and
/// keeps the lock file stable across float formatting.
pub(crate) fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}
