//! `kind: evaluate` — accuracy, pass@k and SkillFactory skill use of one or
//! more models on task sets, as a table.
//!
//! Every model answers every task row (greedy by default; `samples: k` with
//! a temperature for pass@k), the verifier scores the answers, and the
//! metrics are reported per model and per number count (arity). Outputs:
//! `out` (one row per sample) and `table` (Markdown, for the README).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use retort_engine::{InputDecl, Metrics, Row, Source, Stage, StageCtx, StageImpl};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::data::{self, metrics};
use crate::generate::Sampling;
use crate::model_io::{self, prompt_text};
use crate::sampler::{sample_all, Item};
use crate::verify::round4;

/// Evaluate models on task sets.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EvaluateStage {
    /// Models to evaluate: `models:` entries or stages that output a model.
    pub models: Vec<String>,
    /// Task datasets (rows with `prompt`, `nums`, `target`): `STAGE` or `STAGE.OUTPUT`.
    pub tasks: Vec<String>,
    /// Samples per task (1 = accuracy; k > 1 also reports pass@k).
    #[serde(default = "one")]
    pub samples: usize,
    /// Sampling settings (greedy by default).
    #[serde(default = "greedy")]
    pub sampling: Sampling,
    /// Apply the tokenizer's chat template.
    #[serde(default)]
    pub chat: bool,
    /// Sequences per forward pass (not hashed).
    #[serde(default = "default_batch", skip_serializing)]
    pub batch_size: usize,
}

fn one() -> usize {
    1
}
fn greedy() -> Sampling {
    Sampling { temperature: 0.0, ..Sampling::default() }
}
fn default_batch() -> usize {
    16
}

impl StageImpl for EvaluateStage {
    const KIND: &'static str = "evaluate";
    // 2: the runtime's inference numerics changed (fused RMSNorm/SwiGLU on
    // burn's path, gemm prefill attention on the packed path), so sampled
    // tokens from version 1 may differ from a fresh run's.
    const VERSION: u32 = 2;
    const ABOUT: &'static str = "Accuracy by number count, pass@k and skill use of models on task sets.";
}

impl Stage for EvaluateStage {
    fn inputs(&self) -> Vec<InputDecl> {
        let models = self.models.iter().enumerate().map(|(i, m)| {
            InputDecl::new(format!("model:{m}"), Source::Model(m.clone()), format!("models[{i}]"))
        });
        let tasks = self
            .tasks
            .iter()
            .enumerate()
            .map(|(i, t)| InputDecl::new(format!("tasks:{i}"), Source::stage_ref(t), format!("tasks[{i}]")));
        models.chain(tasks).collect()
    }

    fn outputs(&self) -> Vec<String> {
        vec!["out".into(), "table".into()]
    }

    fn check(&self) -> Result<(), retort_engine::FieldError> {
        if self.models.is_empty() {
            return Err(retort_engine::FieldError::new("models", "list at least one model"));
        }
        if self.tasks.is_empty() {
            return Err(retort_engine::FieldError::new("tasks", "list at least one task dataset"));
        }
        Ok(())
    }

    fn run(&self, ctx: &mut StageCtx<'_>) -> anyhow::Result<Metrics> {
        let device = model_io::device(ctx.device)?;
        let mut tasks: Vec<Row> = Vec::new();
        for i in 0..self.tasks.len() {
            tasks.extend(ctx.read_rows(&format!("tasks:{i}"))?);
        }
        let mut rows_out = Vec::new();
        let mut per_model: BTreeMap<String, Vec<Row>> = BTreeMap::new();
        for name in &self.models {
            let input = ctx.input(&format!("model:{name}"))?.clone();
            let lm = model_io::load(&input, name, &device)?;
            let mut items = Vec::new();
            for (row, task) in tasks.iter().enumerate() {
                let text = prompt_text(task, &lm.tokenizer, self.chat, None)?;
                for s in 0..self.samples {
                    items.push(Item { prompt: text.clone(), sample_index: s, row });
                }
            }
            ctx.log(format!("evaluating `{name}` on {} tasks", tasks.len()));
            let (sampled, _) = sample_all(ctx, &lm, input.hash, &self.sampling.params(ctx.seed), &items, self.batch_size)?;
            let mut rows = Vec::with_capacity(sampled.len());
            for (k, s) in sampled.into_iter().enumerate() {
                let task = &tasks[k / self.samples];
                let mut row = Row::new();
                row.insert("model".into(), name.clone().into());
                for key in ["id", "nums", "target"] {
                    row.insert(key.into(), task.get(key).cloned().unwrap_or(Value::Null));
                }
                row.insert("sample_index".into(), (k % self.samples).into());
                row.insert("response".into(), s.response.into());
                rows.push(row);
            }
            let rows = data::verify_rows(rows, 0.0)?;
            rows_out.extend(rows.iter().cloned());
            per_model.insert(name.clone(), rows);
        }
        ctx.write_rows("out", &rows_out)?;
        let (metrics, table) = self.summarize(&per_model)?;
        std::fs::write(ctx.output_path("table"), &table)?;
        for line in table.lines() {
            ctx.log(line);
        }
        Ok(metrics)
    }
}

impl EvaluateStage {
    /// Metrics `MODEL/acc@N`, `MODEL/acc`, `MODEL/pass@k`, `MODEL/skill_use`,
    /// `MODEL/verdict_agreement`, and the same as a Markdown table.
    fn summarize(&self, per_model: &BTreeMap<String, Vec<Row>>) -> anyhow::Result<(Metrics, String)> {
        let mut m = Metrics::new();
        let mut arities: Vec<String> = per_model
            .values()
            .flat_map(|rows| metrics::accuracy_by(rows, "arity").unwrap_or_default().into_keys())
            .collect();
        arities.sort_by_key(|a| a.parse::<usize>().unwrap_or(usize::MAX));
        arities.dedup();
        let mut table = String::from("| model |");
        for a in &arities {
            let _ = write!(table, " {a} numbers |");
        }
        table += " all | skill use | verdict agreement |\n|---|";
        table += &"---|".repeat(arities.len() + 3);
        table += "\n";
        for name in &self.models {
            let rows = &per_model[name];
            let by = metrics::accuracy_by(rows, "arity")?;
            let (c, n) = metrics::accuracy(rows)?;
            let skill = metrics::skill_use(rows)?;
            let _ = write!(table, "| {name} |");
            for a in &arities {
                let (c, n) = by.get(a).copied().unwrap_or((0, 0));
                let acc = c as f64 / n.max(1) as f64;
                m.insert(format!("{name}/acc@{a}"), round4(acc).into());
                let _ = write!(table, " {:.1}% |", 100.0 * acc);
            }
            let acc = c as f64 / n.max(1) as f64;
            m.insert(format!("{name}/acc"), round4(acc).into());
            m.insert(format!("{name}/skill_use"), round4(skill.multi_sample_share).into());
            let agree = skill.agreement.map(round4);
            m.insert(format!("{name}/verdict_agreement"), agree.map_or(Value::Null, Into::into));
            let agree_txt = agree.map_or("–".to_string(), |a| format!("{:.1}%", 100.0 * a));
            let _ = writeln!(table, " {:.1}% | {:.1}% | {agree_txt} |", 100.0 * acc, 100.0 * skill.multi_sample_share);
            if self.samples > 1 {
                for (group, p) in metrics::pass_at_k_by(rows, self.samples, None)? {
                    let _ = group;
                    m.insert(format!("{name}/pass@{}", self.samples), round4(p.value).into());
                }
            }
        }
        Ok((m, table))
    }
}
