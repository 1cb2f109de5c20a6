//! `kind: task` — makes or loads a problem set.
//!
//! `task: countdown` generates solvable Countdown instances (METHODS §0.1),
//! `task: arithmetic` small arithmetic questions, `task: file` loads a
//! dataset: JSONL, Parquet (a file or a folder of Hub shards) or a
//! `datasets` `save_to_disk` folder (see [`crate::io`]).

use std::path::PathBuf;

use retort_engine::{FieldError, Fields, Hashed, InputDecl, Metrics, Source, Stage, StageCtx, StageImpl};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::rows::{field, fields};
use crate::methods::{self, CountdownSpec, Split};

/// A problem set: `task:` picks the generator, and each generator takes
/// only its own keys (a key of another is an error at load time, listing
/// the valid ones).
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(tag = "task", rename_all = "snake_case")]
pub enum TaskStage {
    /// Countdown: reach a target with + - * / using each number once.
    Countdown(CountdownTask),
    /// Arithmetic questions with a numeric answer.
    Arithmetic(ArithmeticTask),
    /// Rows loaded from a dataset file or folder (`path`): JSONL, Parquet,
    /// a folder of Parquet shards, or a `datasets` `save_to_disk` folder.
    File(FileTask),
}

/// `task: countdown`.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CountdownTask {
    /// How many numbers per instance, `3`, `3..6` (inclusive) or `3..=6`.
    pub numbers: Arity,
    /// How many instances.
    pub count: usize,
    /// `train` (default), `val` (same targets, other instances),
    /// `val_target` (held-out targets) or `all`.
    #[serde(default)]
    pub split: Split,
    /// Largest target (default 100).
    #[serde(default = "default_max_target")]
    pub max_target: i64,
    /// Largest starting number (default max_target - 1).
    #[serde(default)]
    pub max_number: Option<i64>,
    /// The prompt, with `{nums}` and `{target}` filled in (default: the
    /// TinyZero instruction). Short prompts suit small from-scratch models.
    #[serde(default)]
    pub template: Option<String>,
}

fn default_max_target() -> i64 {
    100
}

/// `task: arithmetic`.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ArithmeticTask {
    /// How many questions.
    pub count: usize,
    /// Digits per operand.
    #[serde(default = "default_digits")]
    pub digits: usize,
    /// Operators to draw from.
    #[serde(default = "default_ops")]
    pub ops: String,
}

fn default_digits() -> usize {
    2
}
fn default_ops() -> String {
    "+-*".into()
}

/// `task: file`.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileTask {
    /// Relative to the pipeline file: a `.jsonl` or `.parquet` file, a
    /// folder of Parquet shards (one split, as on the HF Hub), or a folder
    /// written by `datasets`' `save_to_disk` (Arrow files + `state.json`).
    pub path: PathBuf,
}

/// A number of numbers: `3`, or an inclusive range written `3..6` or `3..=6`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Arity {
    /// Exactly this many.
    One(usize),
    /// A range, inclusive at both ends.
    Range(String),
}

impl Arity {
    fn range(&self) -> Result<std::ops::RangeInclusive<usize>, String> {
        match self {
            Arity::One(n) => Ok(*n..=*n),
            Arity::Range(s) => {
                let bad = || format!("`{s}` is not a count or range like `3..6`");
                let (a, b) = s.split_once("..").ok_or_else(bad)?;
                let b = b.strip_prefix('=').unwrap_or(b);
                let (a, b): (usize, usize) = (a.trim().parse().map_err(|_| bad())?, b.trim().parse().map_err(|_| bad())?);
                if a < 2 || b < a {
                    return Err(format!("`{s}`: need 2 <= low <= high"));
                }
                Ok(a..=b)
            }
        }
    }
}

impl StageImpl for TaskStage {
    const KIND: &'static str = "task";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "Make or load a problem set: countdown, arithmetic, or a JSONL/Parquet/`datasets` file.";

    fn hashed(&self) -> Hashed {
        match self {
            TaskStage::Countdown(t) => {
                let CountdownTask { numbers, count, split, max_target, max_number, template } = t;
                // `3..4` and `3..=4` are the same set: hash the resolved bounds,
                // and the resolved default of `max_number`.
                let range = numbers.range().map(|r| [*r.start(), *r.end()]).unwrap_or_default();
                Hashed::new()
                    .field("task", "countdown")
                    .field("numbers", range)
                    .field("count", count)
                    .field("split", split)
                    .field("max_target", max_target)
                    .field("max_number", max_number.unwrap_or(max_target - 1))
                    .opt("template", template)
            }
            TaskStage::Arithmetic(t) => {
                let ArithmeticTask { count, digits, ops } = t;
                Hashed::new().field("task", "arithmetic").field("count", count).field("digits", digits).field("ops", ops)
            }
            // The file enters by content hash.
            TaskStage::File(FileTask { path: _ }) => Hashed::new().field("task", "file"),
        }
    }
}

impl Stage for TaskStage {
    fn inputs(&self) -> Vec<InputDecl> {
        match self {
            TaskStage::File(f) => vec![InputDecl::new("file", Source::File(f.path.clone()), "path")],
            _ => vec![],
        }
    }

    fn outputs(&self) -> Vec<String> {
        vec!["out".into()]
    }

    fn output_fields(&self, _name: &str, _input: &dyn Fn(&str) -> Fields) -> Fields {
        match self {
            TaskStage::Countdown(_) => fields(&[field::ID, field::PROMPT, field::NUMS, field::TARGET, "solution"]),
            TaskStage::Arithmetic(_) => fields(&[field::ID, field::PROMPT, "question", field::ANSWER]),
            TaskStage::File(_) => None,
        }
    }

    fn uses_seed(&self) -> bool {
        !matches!(self, TaskStage::File(_))
    }

    fn check(&self) -> Result<(), FieldError> {
        if let TaskStage::Countdown(t) = self {
            t.numbers.range().map_err(|m| FieldError::new("numbers", m))?;
        }
        Ok(())
    }

    fn run(&self, ctx: &mut StageCtx<'_>) -> anyhow::Result<Metrics> {
        let rows = match self {
            TaskStage::Countdown(t) => {
                let spec = CountdownSpec {
                    numbers: t.numbers.range().map_err(anyhow::Error::msg)?,
                    count: t.count,
                    max_target: t.max_target,
                    max_number: t.max_number.unwrap_or(t.max_target - 1),
                    split: t.split,
                    seed: ctx.seed,
                };
                let mut rows = methods::instances(&spec)?;
                if let Some(tpl) = &t.template {
                    for r in &mut rows {
                        let nums = r[field::NUMS].to_string().replace(',', ", ");
                        let text = tpl.replace("{nums}", &nums).replace("{target}", &r[field::TARGET].to_string());
                        r.insert(field::PROMPT.into(), text.into());
                    }
                }
                rows
            }
            TaskStage::Arithmetic(t) => {
                let ops: Vec<char> = t.ops.chars().collect();
                methods::generate_arithmetic(t.count, t.digits, &ops, ctx.seed)?
            }
            TaskStage::File(_) => {
                let path = ctx.input_path("file")?;
                // The error names the file (a folder's shard), column and
                // row; it is bad input (exit 2), not a failed run.
                crate::io::read_dataset(path).map_err(|e| anyhow::Error::new(retort_engine::BadInput(Box::new(e))))?
            }
        };
        ctx.write_rows("out", &rows)?;
        Ok(Metrics::from([("rows".to_string(), rows.len().into())]))
    }
}
