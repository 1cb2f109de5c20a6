//! `kind: compose` — SkillFactory silver traces (METHODS §1 S4–S5, `*C_full`).
//!
//! Reads verified samples (`prompt`, `response`, `correct`, `answer`, and
//! `nums`/`target` for rule reflections) and splices several attempts with
//! reflections and glue phrases into traces that end on a correct attempt.
//! With `reflect: rule` the reflection is written from the verifier's check,
//! so the recipe works without a model; `reflect: field` takes model-written
//! reflections from each row's `reflections` and keeps those whose verdict
//! agrees with the verifier.

use retort_engine::{Fields, Hashed, InputDecl, Metrics, Stage, StageCtx, StageImpl};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::rows::{field, fields, map_rows, one_input, one_output};
use crate::methods::{self, ComposeSpec, Reflect};

/// Where reflections come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReflectFrom {
    /// Written from the verifier's check.
    #[default]
    Rule,
    /// Model-written, from each row's `reflections` list, filtered by agreement.
    Field,
}

/// Compose silver traces.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ComposeStage {
    /// Verified samples: `STAGE` or `STAGE.OUTPUT`.
    pub input: String,
    /// rule (default) or field.
    #[serde(default)]
    pub reflect: ReflectFrom,
    /// N_max: traces with 1..=N samples are emitted per question (`*C_full`).
    #[serde(default = "default_max_samples")]
    pub max_samples: usize,
    /// Questions need at least this many samples with a kept reflection.
    #[serde(default = "one")]
    pub min_valid: usize,
    /// Every sample of a trace from a different prompt `variant`.
    #[serde(default)]
    pub unique_variants: bool,
}

fn default_max_samples() -> usize {
    5
}
fn one() -> usize {
    1
}

impl StageImpl for ComposeStage {
    const KIND: &'static str = "compose";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "SkillFactory silver traces: attempts, reflections and glue, ending on a correct attempt.";

    fn hashed(&self) -> Hashed {
        let ComposeStage { input: _, reflect, max_samples, min_valid, unique_variants } = self;
        Hashed::new()
            .field("reflect", reflect)
            .field("max_samples", max_samples)
            .field("min_valid", min_valid)
            .field("unique_variants", unique_variants)
    }
}

impl Stage for ComposeStage {
    fn inputs(&self) -> Vec<InputDecl> {
        let input = one_input(&self.input).remove(0).needing(&[field::RESPONSE], "compose").needing(&[field::CORRECT], "compose (run `verify` first)");
        vec![input]
    }

    fn output_fields(&self, _name: &str, _input: &dyn Fn(&str) -> Fields) -> Fields {
        fields(&[field::ID, "question_id", field::PROMPT, field::RESPONSE, field::MESSAGES, "n_samples"])
    }

    fn outputs(&self) -> Vec<String> {
        one_output()
    }

    fn run(&self, ctx: &mut StageCtx<'_>) -> anyhow::Result<Metrics> {
        let seed = ctx.seed;
        map_rows(ctx, "verified samples", |rows| self.compose(rows, seed))
    }
}

impl ComposeStage {
    fn compose(&self, rows: Vec<retort_engine::Row>, seed: u64) -> anyhow::Result<(Vec<retort_engine::Row>, Metrics)> {
        let spec = ComposeSpec {
            reflect: match self.reflect {
                ReflectFrom::Rule => Reflect::Rule,
                ReflectFrom::Field => Reflect::Field,
            },
            max_samples: self.max_samples,
            min_valid: self.min_valid,
            unique_variants: self.unique_variants,
            seed,
        };
        let traces = methods::compose(&rows, &spec)?;
        let questions: std::collections::BTreeSet<&str> =
            traces.iter().filter_map(|r| r.get("question_id").and_then(|v| v.as_str())).collect();
        let metrics = Metrics::from([
            ("traces".to_string(), traces.len().into()),
            ("questions".to_string(), questions.len().into()),
        ]);
        Ok((traces, metrics))
    }
}
