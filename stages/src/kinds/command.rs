//! `kind: command` — a shell command as a stage, like a DVC stage.
//!
//! The command sees `RETORT_IN_<NAME>` (path of each input),
//! `RETORT_OUT_<NAME>` (where to write each output), `RETORT_PARAM_<NAME>`
//! (each parameter) and `RETORT_SEED`, names upper-cased. It runs in the
//! pipeline's directory with `sh -c`. This is how a TRL script or anything
//! else plugs in. Its stdout and stderr go to the stage's log, line by line
//! while it runs; `retort`'s own stdout keeps only the summary.

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;

use anyhow::{bail, Context};
use retort_engine::{Artifact, Hashed, InputDecl, Metrics, Source, Stage, StageCtx, StageImpl};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A shell command with declared inputs, outputs and parameters.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandStage {
    /// The shell command (`sh -c`), run in the pipeline file's directory.
    pub run: String,
    /// Inputs from other stages: `NAME: STAGE.OUTPUT` (or `NAME: STAGE` for its first output).
    #[serde(default)]
    pub inputs: BTreeMap<String, String>,
    /// Files or directories outside the cache that the command reads (hashed, like DVC `deps`).
    #[serde(default)]
    pub deps: Vec<PathBuf>,
    /// Names of the files (or directories) the command writes at `$RETORT_OUT_<NAME>`.
    #[serde(default)]
    pub outputs: Vec<String>,
    /// Parameters: hashed into the fingerprint and passed as `RETORT_PARAM_<NAME>`.
    #[serde(default)]
    pub params: BTreeMap<String, serde_json::Value>,
}

impl StageImpl for CommandStage {
    const KIND: &'static str = "command";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "Run a shell command with declared inputs, outputs and params (like a DVC stage).";

    fn hashed(&self) -> Hashed {
        // Inputs and deps enter through the fingerprint's input map (name ->
        // content hash), not as the references written here.
        let CommandStage { run, inputs: _, deps: _, outputs, params } = self;
        Hashed::new().field("run", run).field("outputs", outputs).field("params", params)
    }
}

impl Stage for CommandStage {
    fn inputs(&self) -> Vec<InputDecl> {
        let mut v: Vec<InputDecl> = self
            .inputs
            .iter()
            .map(|(name, r)| InputDecl::new(name, Source::stage_ref(r), format!("inputs.{name}")))
            .collect();
        v.extend(self.deps.iter().enumerate().map(|(i, path)| {
            InputDecl::new(format!("dep:{}", path.display()), Source::File(path.clone()), format!("deps[{i}]"))
        }));
        v
    }

    fn outputs(&self) -> Vec<String> {
        self.outputs.clone()
    }

    fn output_type(&self, _name: &str) -> Artifact {
        Artifact::Any
    }

    fn run(&self, ctx: &mut StageCtx<'_>) -> anyhow::Result<Metrics> {
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(&self.run).current_dir(ctx.pipeline_dir);
        cmd.env("RETORT_SEED", ctx.seed.to_string()).env("RETORT_STAGE", ctx.stage);
        for (name, input) in ctx.inputs() {
            if let (Some(path), false) = (&input.path, name.starts_with("dep:")) {
                cmd.env(format!("RETORT_IN_{}", env_name(name)), path);
            }
        }
        for name in &self.outputs {
            cmd.env(format!("RETORT_OUT_{}", env_name(name)), ctx.output_path(name));
        }
        for (name, value) in &self.params {
            let text = match value {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            cmd.env(format!("RETORT_PARAM_{}", env_name(name)), text);
        }
        // Both streams are piped: stdout of `retort run` holds only the
        // summary (`--format json` must parse), so the command's output goes
        // to the stage log instead, line by line as it is written.
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().with_context(|| format!("cannot start `sh -c {}`", self.run))?;
        let (out, err) = (child.stdout.take(), child.stderr.take());
        let tail = Mutex::new(VecDeque::with_capacity(TAIL_LINES));
        let ctx: &StageCtx<'_> = ctx;
        std::thread::scope(|s| {
            // One reader per pipe, each to its end, so the child never blocks
            // on a full pipe whichever stream it writes more to.
            if let Some(out) = out {
                s.spawn(|| stream_lines(out, ctx, &tail));
            }
            if let Some(err) = err {
                s.spawn(|| stream_lines(err, ctx, &tail));
            }
        });
        let status = child.wait().context("waiting for the command")?;
        if !status.success() {
            let tail = tail.into_inner().unwrap_or_else(|e| e.into_inner());
            let code = status.code().map_or("a signal".to_string(), |c| format!("code {c}"));
            let shown = if tail.is_empty() {
                String::new()
            } else {
                format!("\noutput (last {} lines):\n{}", tail.len(), Vec::from(tail).join("\n"))
            };
            bail!("command exited with {code}: `{}`{shown}", self.run);
        }
        Ok(Metrics::new())
    }
}

/// How many of the command's last output lines a failure message repeats.
const TAIL_LINES: usize = 20;

/// Sends each line of `pipe` to the stage log as soon as it is read, and
/// keeps the last [`TAIL_LINES`] (of both streams, in arrival order) for the
/// failure message. Bytes that are not UTF-8 are shown lossily.
fn stream_lines(pipe: impl Read, ctx: &StageCtx<'_>, tail: &Mutex<VecDeque<String>>) {
    let mut reader = BufReader::new(pipe);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&buf);
        let line = text.trim_end_matches(['\n', '\r']).to_string();
        ctx.log(line.clone());
        let mut tail = tail.lock().unwrap_or_else(|e| e.into_inner());
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }
}

/// `my-out.jsonl` -> `MY_OUT_JSONL`.
fn env_name(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect()
}
