//! `kind: select` — keep the rows whose fields have given values, from one
//! dataset or several concatenated in order.
//!
//! ```yaml
//! right:
//!   kind: select
//!   input: checked              # or a list: [own_right, rewrites_right]
//!   where: {correct: true}      # every listed field must equal its value
//! ```
//!
//! The plumbing between a verifier and a trainer: keep the correct samples,
//! send the wrong ones to a rewrite, or pool two datasets into one arm.

use std::collections::BTreeMap;

use retort_engine::{FieldError, Fields, Hashed, InputDecl, Metrics, Row, Stage, StageCtx, StageImpl};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

/// One dataset or several.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Inputs {
    /// `STAGE` or `STAGE.OUTPUT`.
    One(String),
    /// Several, concatenated in this order.
    Many(Vec<String>),
}

impl Inputs {
    fn list(&self) -> Vec<&str> {
        match self {
            Inputs::One(s) => vec![s.as_str()],
            Inputs::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

/// Keep the rows that match.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SelectStage {
    /// The dataset, or a list of datasets concatenated in order.
    pub input: Inputs,
    /// Field values every kept row has (JSON equality; a missing field never matches).
    #[serde(default, rename = "where")]
    pub filter: BTreeMap<String, Value>,
}

impl StageImpl for SelectStage {
    const KIND: &'static str = "select";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "Keep the rows whose fields have given values, from one or several datasets.";

    fn hashed(&self) -> Hashed {
        // The inputs enter by content hash; their order matters for the output.
        Hashed::new().field("inputs", self.input.list().len()).field("where", &self.filter)
    }
}

impl SelectStage {
    fn name(i: usize) -> String {
        format!("input{i}")
    }

    fn keeps(&self, row: &Row) -> bool {
        self.filter.iter().all(|(k, v)| row.get(k) == Some(v))
    }
}

impl Stage for SelectStage {
    fn inputs(&self) -> Vec<InputDecl> {
        self.input.list().iter().enumerate().map(|(i, r)| InputDecl::rows(Self::name(i), r, "input")).collect()
    }

    fn outputs(&self) -> Vec<String> {
        vec!["out".into()]
    }

    /// The fields every input has (a row of any of them may be kept).
    fn output_fields(&self, _name: &str, input: &dyn Fn(&str) -> Fields) -> Fields {
        let mut all: Option<std::collections::BTreeSet<String>> = None;
        for i in 0..self.input.list().len() {
            let f = input(&Self::name(i))?;
            all = Some(match all {
                None => f,
                Some(a) => a.intersection(&f).cloned().collect(),
            });
        }
        all
    }

    fn check(&self) -> Result<(), FieldError> {
        if self.input.list().is_empty() {
            return Err(FieldError::new("input", "name at least one dataset"));
        }
        Ok(())
    }

    fn run(&self, ctx: &mut StageCtx<'_>) -> anyhow::Result<Metrics> {
        let mut out = Vec::new();
        let mut read = 0usize;
        for i in 0..self.input.list().len() {
            let rows = ctx.read_rows(&Self::name(i))?;
            read += rows.len();
            out.extend(rows.into_iter().filter(|r| self.keeps(r)));
        }
        ctx.write_rows("out", &out)?;
        Ok(Metrics::from([("rows_in".to_string(), read.into()), ("rows".to_string(), out.len().into())]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_or_many_inputs_and_equality_filters() {
        let s: SelectStage = serde_yaml::from_str("{input: [a, b.out], where: {correct: true, k: 2}}").unwrap();
        assert_eq!(s.input.list(), ["a", "b.out"]);
        let row = |v: Value| -> Row { serde_json::from_value(v).unwrap() };
        assert!(s.keeps(&row(serde_json::json!({"correct": true, "k": 2, "x": 1}))));
        assert!(!s.keeps(&row(serde_json::json!({"correct": true, "k": 3}))));
        assert!(!s.keeps(&row(serde_json::json!({"k": 2}))));
        let one: SelectStage = serde_yaml::from_str("{input: a}").unwrap();
        assert_eq!(one.input.list(), ["a"]);
        assert!(serde_yaml::from_str::<SelectStage>("{input: a, wher: {}}").is_err());
    }
}
