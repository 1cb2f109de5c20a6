//! `kind: cascade_split` — CasCoD's two training examples per teacher chain
//! of thought (METHODS §3 C1–C2): q -> rationale, and (q, rationale) -> answer.

use retort_engine::{Fields, Hashed, InputDecl, Metrics, Stage, StageCtx, StageImpl};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::common::rows::{field, fields, map_rows, one_input, one_output};
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
}

fn default_marker() -> String {
    CascadeSpec::default().marker
}

impl StageImpl for CascadeSplitStage {
    const KIND: &'static str = "cascade_split";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "CasCoD: split each teacher chain into q->rationale and q,rationale->answer examples.";

    fn hashed(&self) -> Hashed {
        let CascadeSplitStage { input: _, marker, task_field } = self;
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
        one_output()
    }

    fn uses_seed(&self) -> bool {
        false
    }

    fn run(&self, ctx: &mut StageCtx<'_>) -> anyhow::Result<Metrics> {
        let spec = CascadeSpec { marker: self.marker.clone(), task_field: self.task_field.clone() };
        map_rows(ctx, "samples to split", |rows| {
            let (out, stats) = methods::cascade_split(&rows, &spec)?;
            let metrics = Metrics::from([
                ("kept".to_string(), stats.kept.into()),
                ("dropped_no_marker".to_string(), stats.no_marker.into()),
                ("dropped_empty".to_string(), stats.empty.into()),
            ]);
            Ok((out, metrics))
        })
    }
}
