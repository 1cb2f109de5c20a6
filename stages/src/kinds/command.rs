//! `kind: command` — a shell command as a stage, like a DVC stage.
//!
//! The command sees `RETORT_IN_<NAME>` (path of each input),
//! `RETORT_OUT_<NAME>` (where to write each output), `RETORT_PARAM_<NAME>`
//! (each parameter) and `RETORT_SEED`, names upper-cased. It runs in the
//! pipeline's directory with `sh -c`. This is how a TRL script or anything
//! else plugs in.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};

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
        cmd.stdin(Stdio::null()).stdout(Stdio::inherit()).stderr(Stdio::piped());
        let mut child = cmd.spawn().with_context(|| format!("cannot start `sh -c {}`", self.run))?;
        let mut stderr = String::new();
        if let Some(mut err) = child.stderr.take() {
            // Read to the end so the child never blocks on a full pipe.
            let _ = err.read_to_string(&mut stderr);
        }
        let status = child.wait().context("waiting for the command")?;
        if !stderr.is_empty() {
            for line in stderr.lines() {
                ctx.log(line);
            }
        }
        if !status.success() {
            let tail: Vec<&str> = stderr.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect();
            let code = status.code().map_or("a signal".to_string(), |c| format!("code {c}"));
            bail!("command exited with {code}: `{}`{}", self.run, if tail.is_empty() { String::new() } else { format!("\nstderr:\n{}", tail.join("\n")) });
        }
        Ok(Metrics::new())
    }
}

/// `my-out.jsonl` -> `MY_OUT_JSONL`.
fn env_name(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect()
}
