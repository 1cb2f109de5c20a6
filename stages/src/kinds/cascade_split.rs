//! `kind: cascade_split` — CasCoD's two training examples per teacher chain
//! of thought (METHODS §3 C1–C2): q -> rationale, and (q, rationale) -> answer.

use retort_engine::{Fields, Hashed, InputDecl, Metrics, Stage, StageCtx, StageImpl};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::common::rows::{field, fields, one_input};
use crate::methods::{self, CascadeSpec};

/// Split teacher chains of thought.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CascadeSplitStage {
    /// Teacher samples with `prompt` and `response`: `STAGE` or `STAGE.OUTPUT`.
    pub input: String,
    /// The phrase that ends the rationale.
    #[serde(default = "default_marker")]
    pub marker: String,
    /// Row field holding a task description, if any.
    #[serde(default)]
    pub task_field: Option<String>,
    /// A chain without the marker, or with an empty rationale or answer, is
    /// an error naming the row (default: dropped and counted).
    #[serde(default)]
    pub strict: bool,
}

fn default_marker() -> String {
    CascadeSpec::default().marker
}

impl StageImpl for CascadeSplitStage {
    const KIND: &'static str = "cascade_split";
    // 2: the `answers` output (Answer-SFT rows).
    const VERSION: u32 = 2;
    const ABOUT: &'static str = "CasCoD: split each teacher chain into q->rationale and q,rationale->answer examples.";

    fn hashed(&self) -> Hashed {
        // `strict` only turns drops into errors: the rows written are the same.
        let CascadeSplitStage { input: _, marker, task_field, strict: _ } = self;
        Hashed::new().field("marker", marker).opt("task_field", task_field)
    }
}

impl Stage for CascadeSplitStage {
    fn inputs(&self) -> Vec<InputDecl> {
        vec![one_input(&self.input).remove(0).needing(&[field::PROMPT], "cascade_split").needing(&[field::RESPONSE], "cascade_split")]
    }

    fn output_fields(&self, _name: &str, _input: &dyn Fn(&str) -> Fields) -> Fields {
        fields(&[field::ID, "source_id", "step", field::PROMPT, field::RESPONSE])
    }

    fn outputs(&self) -> Vec<String> {
        vec!["out".into(), "answers".into()]
    }

    fn uses_seed(&self) -> bool {
        false
    }

    fn run(&self, ctx: &mut StageCtx<'_>) -> anyhow::Result<Metrics> {
        let spec = CascadeSpec { marker: self.marker.clone(), task_field: self.task_field.clone(), strict: self.strict };
        let rows = ctx.read_rows_nonempty("input", "samples to split")?;
        let (out, stats) = methods::cascade_split(&rows, &spec)?;
        let answers: Vec<_> =
            methods::cascade_pairs(&out)?.iter().map(|p| methods::answer_sft_row(p, &self.marker)).collect();
        ctx.write_rows("out", &out)?;
        ctx.write_rows("answers", &answers)?;
        Ok(Metrics::from([
            ("kept".to_string(), stats.kept.into()),
            ("dropped_no_marker".to_string(), stats.no_marker.into()),
            ("dropped_empty".to_string(), stats.empty.into()),
        ]))
    }
}
