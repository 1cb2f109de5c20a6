//! `kind: export` — writes a dataset to a path outside the cache as JSONL
//! or Parquet (by the path's extension), optionally reshaped into a TRL
//! dataset format.
//!
//! The exported file is also kept in the cache, so the stage is cached like
//! any other; a cached run whose external file was deleted or edited
//! restores it from there (see [`Stage::exports`]). For JSONL that is the
//! output `out` itself; for Parquet it is a second output `file` (the
//! Parquet bytes), while `out` stays JSONL rows, so `show` and downstream
//! stages read an export like any dataset.
//!
//! A `.gguf` path exports a *model* instead (`input` names a model: a
//! training stage or a `models:` entry): its weights as `quant` (f32, f16,
//! q8_0 or q4_0) with its tokenizer and chat template in the metadata, a
//! file that llama.cpp and Ollama run (see `retort_lm::gguf::export_gguf`).

use crate::common::rows::field;
use crate::io::{self, FileFormat};
use std::path::PathBuf;

use anyhow::{anyhow, Context};
use retort_engine::{Artifact, FieldError, Hashed, InputDecl, Metrics, Row, Stage, StageCtx, StageImpl};
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

/// Weight types of a GGUF export.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum GgufQuant {
    /// 32-bit floats: lossless.
    F32,
    /// 16-bit floats (llama.cpp's converter's default).
    #[default]
    F16,
    /// 8-bit blocks of 32 with an f16 scale.
    Q8_0,
    /// 4-bit blocks of 32 (embedding and output kept at Q8_0).
    Q4_0,
}

impl GgufQuant {
    fn ggml(self) -> retort_lm::GgmlType {
        use retort_lm::GgmlType;
        match self {
            GgufQuant::F32 => GgmlType::F32,
            GgufQuant::F16 => GgmlType::F16,
            GgufQuant::Q8_0 => GgmlType::Q8_0,
            GgufQuant::Q4_0 => GgmlType::Q4_0,
        }
    }
}

/// Export a dataset (or, to a `.gguf` path, a model).
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportStage {
    /// The dataset, `STAGE` or `STAGE.OUTPUT`; for a `.gguf` path, the
    /// model (a training stage or a `models:` entry).
    pub input: String,
    /// Destination file, relative to the pipeline file: `.parquet` writes
    /// Parquet (nested columns keep their types), anything else JSONL.
    pub path: PathBuf,
    /// rows (default), prompt_completion, messages or preference.
    #[serde(default)]
    pub format: ExportFormat,
    /// For a `.gguf` path: the weight type, f32, f16 (default), q8_0 or q4_0.
    #[serde(default)]
    pub quant: Option<GgufQuant>,
}

impl StageImpl for ExportStage {
    const KIND: &'static str = "export";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "Write a dataset outside the cache as JSONL or Parquet (optionally in a TRL format).";

    fn hashed(&self) -> Hashed {
        // The destination is hashed: exporting to another path must write it.
        let ExportStage { input: _, path, format, quant } = self;
        Hashed::new().field("path", path).field("format", format).opt("quant", quant)
    }
}

impl Stage for ExportStage {
    fn inputs(&self) -> Vec<InputDecl> {
        if self.file_format() == Target::Gguf {
            return vec![InputDecl::model("input", &self.input, "input", true)];
        }
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
        match self.file_format() {
            Target::Rows(FileFormat::Parquet) => vec!["out".into(), "file".into()],
            Target::Gguf => vec!["file".into()],
            Target::Rows(_) => vec!["out".into()],
        }
    }

    fn output_type(&self, name: &str) -> Artifact {
        match (name, self.file_format()) {
            // The GGUF file is a model other stages can sample from.
            ("file", Target::Gguf) => Artifact::Weights,
            ("file", _) => Artifact::Any,
            _ => Artifact::Rows,
        }
    }

    fn check(&self) -> Result<(), FieldError> {
        match self.file_format() {
            Target::Rows(FileFormat::Arrow) => {
                Err(FieldError::new("path", "retort does not write Arrow IPC files: export to `.parquet` (or `.jsonl`)"))
            }
            Target::Gguf if self.format != ExportFormat::Rows => {
                Err(FieldError::new("format", "a `.gguf` path exports a model; `format` is for datasets"))
            }
            Target::Rows(_) if self.quant.is_some() => {
                Err(FieldError::new("quant", "`quant` is for a model exported to a `.gguf` path"))
            }
            _ => Ok(()),
        }
    }

    fn uses_seed(&self) -> bool {
        false
    }

    fn run(&self, ctx: &mut StageCtx<'_>) -> anyhow::Result<Metrics> {
        if self.file_format() == Target::Gguf {
            return self.run_model(ctx);
        }
        let rows = ctx.read_rows("input")?;
        let rows: Vec<Row> =
            rows.into_iter().enumerate().map(|(i, r)| reshape(r, self.format).map_err(|m| anyhow!("row {i}: {m}"))).collect::<Result<_, _>>()?;
        ctx.write_rows("out", &rows)?;
        let dest = ctx.pipeline_dir.join(&self.path);
        let copy = match self.file_format() {
            Target::Rows(FileFormat::Parquet) => {
                let file = ctx.output_path("file");
                io::write_parquet(&file, &rows)?;
                file
            }
            Target::Rows(_) => ctx.output_path("out"),
            Target::Gguf => unreachable!("models take run_model"),
        };
        place(&copy, &dest)?;
        ctx.log(format!("wrote {} rows to {}", rows.len(), dest.display()));
        Ok(Metrics::from([("rows".to_string(), rows.len().into())]))
    }

    fn exports(&self) -> Vec<(String, PathBuf)> {
        // The file is a byte-for-byte copy of `file` (Parquet) or `out` (JSONL).
        match self.file_format() {
            Target::Rows(FileFormat::Parquet) | Target::Gguf => vec![("file".into(), self.path.clone())],
            Target::Rows(_) => vec![("out".into(), self.path.clone())],
        }
    }
}

/// What a path's extension asks to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    /// A dataset, in this format.
    Rows(FileFormat),
    /// A model, as GGUF.
    Gguf,
}

impl ExportStage {
    fn file_format(&self) -> Target {
        if self.path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf")) {
            Target::Gguf
        } else {
            Target::Rows(FileFormat::of(&self.path))
        }
    }

    /// Writes the model as GGUF to the output `file`, then copies it out.
    fn run_model(&self, ctx: &mut StageCtx<'_>) -> anyhow::Result<Metrics> {
        let quant = self.quant.unwrap_or_default();
        let input = ctx.input("input")?.clone();
        let lm = crate::common::model::load(&input, &self.input, ctx)?;
        let tokenizer = lm.text_tokenizer()?;
        let file = ctx.output_path("file");
        retort_lm::gguf::export_gguf(lm.model(), tokenizer, &file, quant.ggml())
            .with_context(|| format!("exporting model `{}` as GGUF", self.input))?;
        let dest = ctx.pipeline_dir.join(&self.path);
        place(&file, &dest)?;
        let bytes = std::fs::metadata(&dest).map(|m| m.len()).unwrap_or(0);
        ctx.log(format!("wrote {} ({bytes} bytes, {quant:?})", dest.display()));
        Ok(Metrics::from([("bytes".to_string(), bytes.into())]))
    }
}

/// Copies `from` to `dest` next to it first, then renames: readers never
/// see half a file.
fn place(from: &std::path::Path, dest: &std::path::Path) -> anyhow::Result<()> {
    if let Some(dir) = dest.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = dest.with_extension("retort-tmp");
    std::fs::copy(from, &tmp).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, dest).with_context(|| format!("writing {}", dest.display()))?;
    Ok(())
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
