//! The row fields that are the contract between kinds, in one place.
//!
//! Rows are open JSON objects: a kind adds its fields and keeps the rest, so
//! `generate` → `verify` → `compose` each read what the one before wrote.
//! The names kinds exchange are the constants of [`field`]; the accessors
//! turn a missing or mistyped field into an error that names it.
//!
//! Also here: the rows-in/rows-out shape that `verify`, `export`,
//! `compose` and `cascade_split` share (one dataset `input` in, one `out`).

use anyhow::{anyhow, Context};
use retort_engine::{Fields, InputDecl, Metrics, Row, StageCtx};
use serde_json::Value;

/// Field names kinds read and write.
pub mod field {
    /// The prompt text a model is given (task, generate, train).
    pub const PROMPT: &str = "prompt";
    /// Chat turns `[{role, content}]`, instead of `prompt` with `chat: true`.
    pub const MESSAGES: &str = "messages";
    /// A model's output (generate; read by verify, compose, train, export).
    pub const RESPONSE: &str = "response";
    /// The gold answer (numeric, exact... verifiers) or the extracted one (countdown).
    pub const ANSWER: &str = "answer";
    /// Whether the response is right (verify, evaluate).
    pub const CORRECT: &str = "correct";
    /// The verifier's reward (verify, evaluate).
    pub const REWARD: &str = "reward";
    /// Countdown's starting numbers.
    pub const NUMS: &str = "nums";
    /// Countdown's target.
    pub const TARGET: &str = "target";
    /// A task instance's id.
    pub const ID: &str = "id";
    /// Which sample of a prompt (generate, evaluate).
    pub const SAMPLE_INDEX: &str = "sample_index";
    /// The seed a sample was drawn with.
    pub const SEED: &str = "seed";
    /// Each generated token's log-prob (generate's `logprobs`).
    pub const LOGPROBS: &str = "logprobs";
    /// The prompt variant a sample was drawn under (generate's `variants`).
    pub const VARIANT: &str = "variant";
    /// The evaluated model's name (evaluate's `out`).
    pub const MODEL: &str = "model";
    /// Preference pairs (dpo, export `preference`).
    pub const CHOSEN: &str = "chosen";
    /// Preference pairs (dpo, export `preference`).
    pub const REJECTED: &str = "rejected";
}

/// The string field `name` of `row`.
pub fn str_field<'a>(row: &'a Row, name: &str) -> anyhow::Result<&'a str> {
    match row.get(name) {
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(anyhow!("field `{name}` must be a string, got {}", kind_of(other))),
        None => Err(anyhow!("missing string field `{name}`")),
    }
}

/// The integer field `name` of `row`.
pub fn int_field(row: &Row, name: &str) -> anyhow::Result<i64> {
    row.get(name).and_then(Value::as_i64).ok_or_else(|| anyhow!("missing integer field `{name}`"))
}

/// The list-of-integers field `name` of `row`.
pub fn ints_field(row: &Row, name: &str) -> anyhow::Result<Vec<i64>> {
    let list = row.get(name).and_then(Value::as_array).ok_or_else(|| anyhow!("missing list field `{name}`"))?;
    list.iter().map(|v| v.as_i64().ok_or_else(|| anyhow!("field `{name}` must hold integers"))).collect()
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// The one input of a rows-in/rows-out kind: the dataset named by its
/// `input:` field.
pub fn one_input(reference: &str) -> Vec<InputDecl> {
    vec![InputDecl::rows("input", reference, "input")]
}

/// The one output of a rows-in/rows-out kind.
pub fn one_output() -> Vec<String> {
    vec!["out".into()]
}

/// Reads `input` (`what` it holds, for the message when it is empty: the
/// error names the stage that wrote no rows), applies `f`, writes `out` and
/// returns `f`'s metrics.
pub fn map_rows(
    ctx: &mut StageCtx<'_>,
    what: &str,
    f: impl FnOnce(Vec<Row>) -> anyhow::Result<(Vec<Row>, Metrics)>,
) -> anyhow::Result<Metrics> {
    let rows = ctx.read_rows_nonempty("input", what)?;
    let (out, metrics) = f(rows)?;
    ctx.write_rows("out", &out).context("writing `out`")?;
    Ok(metrics)
}

/// Applies `f` to every row; an error names the row.
pub fn each_row(rows: Vec<Row>, mut f: impl FnMut(Row) -> anyhow::Result<Row>) -> anyhow::Result<Vec<Row>> {
    rows.into_iter().enumerate().map(|(i, r)| f(r).with_context(|| format!("row {i}"))).collect()
}

/// A known set of row fields.
pub fn fields(names: &[&str]) -> Fields {
    Some(names.iter().map(|s| s.to_string()).collect())
}

/// The input's fields (when known) plus `extra`: what a kind that keeps its
/// rows' fields and adds some writes.
pub fn plus(input: Fields, extra: &[&str]) -> Fields {
    input.map(|mut f| {
        f.extend(extra.iter().map(|s| s.to_string()));
        f
    })
}
