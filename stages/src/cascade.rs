//! `kind: cascade_split` — CasCoD's two training examples per teacher chain
//! of thought (METHODS §3 C1–C2): q -> rationale, and (q, rationale) -> answer.

use retort_engine::{InputDecl, Metrics, Source, Stage, StageCtx, StageImpl};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::data::{self, CascadeSpec};

/// Split teacher chains of thought.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CascadeSplitStage {
    /// Teacher samples with `prompt` and `response`: `STAGE` or `STAGE.OUTPUT`.
    pub input: String,
    /// The phrase that ends the rationale.
    #[serde(default = "default_marker")]
    pub marker: String,
    /// Row field holding a task description, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_field: Option<String>,
}

fn default_marker() -> String {
    CascadeSpec::default().marker
}

impl StageImpl for CascadeSplitStage {
    const KIND: &'static str = "cascade_split";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "CasCoD: split each teacher chain into q->rationale and q,rationale->answer examples.";
}

impl Stage for CascadeSplitStage {
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
        let rows = ctx.read_rows_nonempty("input", "samples to split")?;
        let spec = CascadeSpec { marker: self.marker.clone(), task_field: self.task_field.clone() };
        let (out, stats) = data::cascade_split(&rows, &spec)?;
        ctx.write_rows("out", &out)?;
        Ok(Metrics::from([
            ("kept".to_string(), stats.kept.into()),
            ("dropped_no_marker".to_string(), stats.no_marker.into()),
            ("dropped_empty".to_string(), stats.empty.into()),
        ]))
    }
}
