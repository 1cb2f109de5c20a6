//! `kind: task` — makes or loads a problem set.
//!
//! `task: countdown` generates solvable Countdown instances (METHODS §0.1),
//! `task: arithmetic` small arithmetic questions, `task: file` loads JSONL.

use std::path::PathBuf;

use anyhow::Context;
use retort_engine::{read_jsonl, FieldError, InputDecl, Metrics, Source, Stage, StageCtx, StageImpl};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::methods::{self, CountdownSpec, Split};

/// Which problem set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskName {
    /// Countdown: reach a target with + - * / using each number once.
    Countdown,
    /// Arithmetic questions with a numeric answer.
    Arithmetic,
    /// Rows loaded from a JSONL file (`path`).
    File,
}

/// A problem set. Fields not used by the chosen `task` must be left out.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskStage {
    /// countdown | arithmetic | file.
    pub task: TaskName,
    /// Countdown: how many numbers per instance, `3`, `3..6` (inclusive) or `3..=6`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub numbers: Option<Arity>,
    /// How many instances (countdown, arithmetic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<usize>,
    /// Countdown: `train` (default), `val` (same targets, other instances),
    /// `val_target` (held-out targets) or `all`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<String>,
    /// Countdown: largest target (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_target: Option<i64>,
    /// Countdown: largest starting number (default max_target - 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_number: Option<i64>,
    /// Countdown: the prompt, with `{nums}` and `{target}` filled in (default:
    /// the TinyZero instruction). Short prompts suit small from-scratch models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Arithmetic: digits per operand (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digits: Option<usize>,
    /// Arithmetic: operators to draw from (default "+-*").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ops: Option<String>,
    /// File: a JSONL file relative to the pipeline file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
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
    const ABOUT: &'static str = "Make or load a problem set: countdown, arithmetic, or a JSONL file.";
}

impl TaskStage {
    fn unused(&self) -> Vec<&'static str> {
        let mut set = vec![];
        let c = self.task == TaskName::Countdown;
        let a = self.task == TaskName::Arithmetic;
        let checks: [(&'static str, bool, bool); 9] = [
            ("numbers", self.numbers.is_some(), c),
            ("count", self.count.is_some(), c || a),
            ("split", self.split.is_some(), c),
            ("max_target", self.max_target.is_some(), c),
            ("max_number", self.max_number.is_some(), c),
            ("digits", self.digits.is_some(), a),
            ("ops", self.ops.is_some(), a),
            ("path", self.path.is_some(), self.task == TaskName::File),
            ("template", self.template.is_some(), c),
        ];
        for (name, given, allowed) in checks {
            if given && !allowed {
                set.push(name);
            }
        }
        set
    }
}

impl Stage for TaskStage {
    fn inputs(&self) -> Vec<InputDecl> {
        match &self.path {
            Some(p) if self.task == TaskName::File => vec![InputDecl::new("file", Source::File(p.clone()), "path")],
            _ => vec![],
        }
    }

    fn outputs(&self) -> Vec<String> {
        vec!["out".into()]
    }

    fn uses_seed(&self) -> bool {
        self.task != TaskName::File
    }

    fn check(&self) -> Result<(), FieldError> {
        if let Some(field) = self.unused().first() {
            return Err(FieldError::new(*field, format!("`{field}` does not apply to `task: {}`", serde_json::to_value(self.task).unwrap().as_str().unwrap_or(""))));
        }
        match self.task {
            TaskName::Countdown => {
                self.numbers.as_ref().ok_or_else(|| FieldError::new("task", "countdown needs `numbers` (e.g. `numbers: 3..6`)"))?
                    .range().map_err(|m| FieldError::new("numbers", m))?;
                if let Some(s) = &self.split {
                    Split::parse(s).ok_or_else(|| FieldError::new("split", format!("unknown split `{s}`; use train, val, val_target or all")))?;
                }
                self.count.ok_or_else(|| FieldError::new("task", "countdown needs `count`"))?;
            }
            TaskName::Arithmetic => {
                self.count.ok_or_else(|| FieldError::new("task", "arithmetic needs `count`"))?;
            }
            TaskName::File => {
                self.path.as_ref().ok_or_else(|| FieldError::new("task", "`task: file` needs `path`"))?;
            }
        }
        Ok(())
    }

    fn run(&self, ctx: &mut StageCtx<'_>) -> anyhow::Result<Metrics> {
        let rows = match self.task {
            TaskName::Countdown => {
                let max_target = self.max_target.unwrap_or(100);
                let spec = CountdownSpec {
                    numbers: self.numbers.as_ref().expect("checked").range().map_err(anyhow::Error::msg)?,
                    count: self.count.expect("checked"),
                    max_target,
                    max_number: self.max_number.unwrap_or(max_target - 1),
                    split: self.split.as_deref().and_then(Split::parse).unwrap_or(Split::Train),
                    seed: ctx.seed,
                };
                let mut rows = methods::generate(&spec)?;
                if let Some(t) = &self.template {
                    for r in &mut rows {
                        let nums = r["nums"].to_string().replace(',', ", ");
                        let text = t.replace("{nums}", &nums).replace("{target}", &r["target"].to_string());
                        r.insert("prompt".into(), text.into());
                    }
                }
                rows
            }
            TaskName::Arithmetic => {
                let ops: Vec<char> = self.ops.as_deref().unwrap_or("+-*").chars().collect();
                methods::generate_arithmetic(self.count.expect("checked"), self.digits.unwrap_or(2), &ops, ctx.seed)?
            }
            TaskName::File => {
                let path = ctx.input_path("file")?;
                read_jsonl(path).with_context(|| format!("loading {}", path.display()))?
            }
        };
        ctx.write_rows("out", &rows)?;
        Ok(Metrics::from([("rows".to_string(), rows.len().into())]))
    }
}
