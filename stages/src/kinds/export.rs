//! `kind: export` — writes a dataset to a path outside the cache as JSONL,
//! optionally reshaped into a TRL dataset format.
//!
//! The exported file is also kept as the stage's output `out` in the cache,
//! so the stage is cached like any other; a cached run whose external file
//! was deleted or edited restores it from that output (see
//! [`Stage::exports`]).

use crate::common::rows::field;
use std::path::PathBuf;

use anyhow::{anyhow, Context};
use retort_engine::{write_jsonl, Hashed, InputDecl, Metrics, Row, Stage, StageCtx, StageImpl};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Row shapes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExportFormat {
    /// Rows as they are.
    #[default]
    Rows,
    /// TRL prompt-completion: `{"prompt", "completion"}` from `prompt`/`response`.
    PromptCompletion,
    /// TRL conversational: `{"messages": [...]}` (rows' `messages`, or user `prompt` + assistant `response`).
    Messages,
    /// TRL preference: `{"prompt", "chosen", "rejected"}`.
    Preference,
}

/// Export a dataset.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportStage {
    /// The dataset: `STAGE` or `STAGE.OUTPUT`.
    pub input: String,
    /// Destination file, relative to the pipeline file.
    pub path: PathBuf,
    /// rows (default), prompt_completion, messages or preference.
    #[serde(default)]
    pub format: ExportFormat,
}

impl StageImpl for ExportStage {
    const KIND: &'static str = "export";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "Write a dataset outside the cache as JSONL (optionally in a TRL format).";

    fn hashed(&self) -> Hashed {
        // The destination is hashed: exporting to another path must write it.
        let ExportStage { input: _, path, format } = self;
        Hashed::new().field("path", path).field("format", format)
    }
}

impl Stage for ExportStage {
    fn inputs(&self) -> Vec<InputDecl> {
        let input = InputDecl::rows("input", &self.input, "input");
        let input = match self.format {
            ExportFormat::Rows | ExportFormat::Messages => input,
            ExportFormat::PromptCompletion => input.needing(&["prompt"], "format prompt_completion").needing(&["response"], "format prompt_completion"),
            ExportFormat::Preference => input
                .needing(&["prompt"], "format preference")
                .needing(&["chosen"], "format preference")
                .needing(&["rejected"], "format preference"),
        };
        vec![input]
    }

    fn outputs(&self) -> Vec<String> {
        vec!["out".into()]
    }

    fn uses_seed(&self) -> bool {
        false
    }

    fn run(&self, ctx: &mut StageCtx<'_>) -> anyhow::Result<Metrics> {
        let rows = ctx.read_rows("input")?;
        let rows: Vec<Row> =
            rows.into_iter().enumerate().map(|(i, r)| reshape(r, self.format).map_err(|m| anyhow!("row {i}: {m}"))).collect::<Result<_, _>>()?;
        ctx.write_rows("out", &rows)?;
        let dest = ctx.pipeline_dir.join(&self.path);
        if let Some(dir) = dest.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        // Write next to the destination, then rename: readers never see half a file.
        let tmp = dest.with_extension("retort-tmp");
        write_jsonl(&tmp, &rows)?;
        std::fs::rename(&tmp, &dest).with_context(|| format!("writing {}", dest.display()))?;
        ctx.log(format!("wrote {} rows to {}", rows.len(), dest.display()));
        Ok(Metrics::from([("rows".to_string(), rows.len().into())]))
    }

    fn exports(&self) -> Vec<(String, PathBuf)> {
        // `out` and the file are written from the same rows, byte for byte.
        vec![("out".into(), self.path.clone())]
    }
}

fn reshape(row: Row, format: ExportFormat) -> Result<Row, String> {
    let get = |k: &str| row.get(k).cloned().ok_or_else(|| format!("missing field `{k}`"));
    let mut out = Row::new();
    match format {
        ExportFormat::Rows => return Ok(row),
        ExportFormat::PromptCompletion => {
            out.insert("prompt".into(), get(field::PROMPT)?);
            out.insert("completion".into(), get(field::RESPONSE)?);
        }
        ExportFormat::Messages => {
            let messages = match row.get(field::MESSAGES) {
                Some(m) => m.clone(),
                None => serde_json::json!([
                    {"role": "user", "content": get(field::PROMPT)?},
                    {"role": "assistant", "content": get(field::RESPONSE)?},
                ]),
            };
            out.insert("messages".into(), messages);
        }
        ExportFormat::Preference => {
            for k in ["prompt", "chosen", "rejected"] {
                out.insert(k.into(), get(k)?);
            }
        }
    }
    if let Some(id @ Value::String(_)) = row.get(field::ID) {
        out.insert("id".into(), id.clone());
    }
    Ok(out)
}
