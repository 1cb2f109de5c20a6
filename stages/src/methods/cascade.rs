//! CasCoD stages C1–C2 (METHODS §3, after `src/datasets/bbh_dataset.py`): split
//! each teacher chain of thought at the answer marker into a rationale-step and an
//! answer-step training example.
//!
//! Choices the spec leaves open, fixed here:
//! - **Split.** `r` is the text before the first marker and `a` the text between the
//!   first and a second marker, if any (Python's `split(marker)[1]`), both trimmed.
//!   Rows without the marker, or with an empty `r` or `a`, are dropped and counted
//!   in [`CascadeStats`].
//! - **Newlines.** The released code trains with `"A:" + "Rationale:"` (no newline)
//!   but infers with `"A:" + "\nRationale:"`. We use the *training* form everywhere;
//!   [`rationale_prompt`] and [`answer_prompt`] are public so cascaded inference builds
//!   byte-identical prompts.
//! - **Whitespace.** The rationale target is `r` with no leading space, since
//!   `"Rationale:"` is followed directly by text in the teacher format. The answer
//!   target is `" " + a`, because the prompt ends with the marker ("…the answer is")
//!   and the answer continues that sentence after a space. The answer prompt joins
//!   `r` and the marker with one `"\n"`, as in the released code.
//! - **Task description.** Taken from `task_field` when set; an empty or
//!   whitespace-only value counts as absent and gives the `Q:` form.

use crate::common::rows::field;
use serde_json::Value;

use super::error::{get_key, get_str};
use super::{DataError, Row};

/// Parameters of the C1–C2 split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CascadeSpec {
    /// The phrase that ends the rationale; the answer follows it.
    pub marker: String,
    /// Row field holding the task description (BBH: `task_description`).
    pub task_field: Option<String>,
}

impl Default for CascadeSpec {
    fn default() -> Self {
        CascadeSpec {
            marker: "Therefore, the answer is".into(),
            task_field: None,
        }
    }
}

/// What `cascade_split` kept and dropped, for the stage's log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CascadeStats {
    /// Input rows that produced a pair.
    pub kept: usize,
    /// Responses without the marker.
    pub no_marker: usize,
    /// Responses whose rationale or answer is empty after trimming.
    pub empty: usize,
}

impl CascadeStats {
    /// All input rows that produced no pair.
    pub fn dropped(&self) -> usize {
        self.no_marker + self.empty
    }
}

/// `P`: the question prompt, with or without a task description.
pub fn base_prompt(question: &str, task: Option<&str>) -> String {
    match task.map(str::trim).filter(|t| !t.is_empty()) {
        Some(t) => format!("Task Description:\n{t}\nQ:{question}\n\nA:"),
        None => format!("Q:{question}\n\nA:"),
    }
}

/// Input of the rationale step: `P + "Rationale:"`.
pub fn rationale_prompt(base: &str) -> String {
    format!("{base}Rationale:")
}

/// Input of the answer step: `P + "Rationale:" + r + "\n" + marker`.
pub fn answer_prompt(base: &str, rationale: &str, marker: &str) -> String {
    format!("{base}Rationale:{rationale}\n{marker}")
}

/// `(r, a)` per C1, or `None` without the marker.
pub fn split_response<'a>(response: &'a str, marker: &str) -> Option<(&'a str, &'a str)> {
    let mut parts = response.split(marker);
    let r = parts.next()?;
    let a = parts.next()?;
    Some((r.trim(), a.trim()))
}

fn step_row(id: &str, step: &str, prompt: String, response: String) -> Row {
    let mut row = Row::new();
    row.insert(field::ID.into(), Value::String(format!("{id}-{step}")));
    row.insert("source_id".into(), Value::String(id.to_string()));
    row.insert("step".into(), Value::String(step.to_string()));
    row.insert(field::PROMPT.into(), Value::String(prompt));
    row.insert(field::RESPONSE.into(), Value::String(response));
    row
}

/// Two rows per usable input (`<id>-rationale`, then `<id>-answer`), in input order.
/// Every row needs `id`, `prompt` (the question) and `response` (the teacher CoT),
/// plus `task_field` when the spec names one.
pub fn cascade_split(
    rows: &[Row],
    spec: &CascadeSpec,
) -> Result<(Vec<Row>, CascadeStats), DataError> {
    if spec.marker.is_empty() {
        return Err(DataError::InvalidSpec(
            "cascade marker must not be empty".into(),
        ));
    }
    let mut out = Vec::with_capacity(rows.len() * 2);
    let mut stats = CascadeStats::default();
    for (i, row) in rows.iter().enumerate() {
        let id = get_key(row, i, field::ID)?;
        let question = get_str(row, i, field::PROMPT)?;
        let response = get_str(row, i, field::RESPONSE)?;
        let task = match &spec.task_field {
            Some(f) => Some(get_str(row, i, f)?),
            None => None,
        };
        let Some((r, a)) = split_response(response, &spec.marker) else {
            stats.no_marker += 1;
            continue;
        };
        if r.is_empty() || a.is_empty() {
            stats.empty += 1;
            continue;
        }
        let base = base_prompt(question, task);
        out.push(step_row(
            &id,
            "rationale",
            rationale_prompt(&base),
            r.to_string(),
        ));
        out.push(step_row(
            &id,
            "answer",
            answer_prompt(&base, r, &spec.marker),
            format!(" {a}"),
        ));
        stats.kept += 1;
    }
    Ok((out, stats))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(v: Value) -> Row {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn splits_into_rationale_and_answer_rows() {
        let rows = vec![row(
            json!({"id": "b1", "prompt": "Is 3 > 2?\nOptions: (A) yes (B) no",
            "response": " 3 is larger than 2.\nTherefore, the answer is (A).\n", "task_description": "Compare numbers."}),
        )];
        let spec = CascadeSpec {
            task_field: Some("task_description".into()),
            ..CascadeSpec::default()
        };
        let (out, stats) = cascade_split(&rows, &spec).unwrap();
        assert_eq!(
            stats,
            CascadeStats {
                kept: 1,
                no_marker: 0,
                empty: 0
            }
        );
        let p = "Task Description:\nCompare numbers.\nQ:Is 3 > 2?\nOptions: (A) yes (B) no\n\nA:";
        assert_eq!(
            out[0],
            row(
                json!({"id": "b1-rationale", "source_id": "b1", "step": "rationale",
            "prompt": format!("{p}Rationale:"), "response": "3 is larger than 2."})
            )
        );
        assert_eq!(
            out[1],
            row(
                json!({"id": "b1-answer", "source_id": "b1", "step": "answer",
            "prompt": format!("{p}Rationale:3 is larger than 2.\nTherefore, the answer is"), "response": " (A)."})
            )
        );
        let keys: Vec<&str> = out[1].keys().map(String::as_str).collect();
        assert_eq!(keys, ["id", "source_id", "step", "prompt", "response"]);
    }

    #[test]
    fn drops_and_counts_rows_without_a_usable_split() {
        let rows = vec![
            row(json!({"id": 1, "prompt": "q", "response": "no marker here"})),
            row(json!({"id": 2, "prompt": "q", "response": "Therefore, the answer is 5"})),
            row(
                json!({"id": 3, "prompt": "q", "response": "because. Therefore, the answer is   "}),
            ),
            row(
                json!({"id": 4, "prompt": "q", "response": "x Therefore, the answer is 7. Therefore, the answer is 8."}),
            ),
        ];
        let (out, stats) = cascade_split(&rows, &CascadeSpec::default()).unwrap();
        assert_eq!(
            (stats.kept, stats.no_marker, stats.empty, stats.dropped()),
            (1, 1, 2, 3)
        );
        assert_eq!(out.len(), 2);
        assert_eq!(out[0]["prompt"], "Q:q\n\nA:Rationale:");
        assert_eq!(out[0]["source_id"], "4");
        assert_eq!(
            out[1]["response"], " 7.",
            "split(marker)[1] stops at a second marker"
        );
    }

    #[test]
    fn custom_marker_missing_fields_and_blank_task() {
        let spec = CascadeSpec {
            marker: "So the answer is".into(),
            task_field: Some("task".into()),
        };
        let rows = vec![row(
            json!({"id": "a", "prompt": "q", "response": "r. So the answer is 1", "task": "  "}),
        )];
        let (out, _) = cascade_split(&rows, &spec).unwrap();
        assert_eq!(out[1]["prompt"], "Q:q\n\nA:Rationale:r.\nSo the answer is");
        let no_task = vec![row(json!({"id": "a", "prompt": "q", "response": "r"}))];
        let err = cascade_split(&no_task, &spec).unwrap_err().to_string();
        assert_eq!(err, "row 0 (id \"a\"): missing field `task`");
        let empty = CascadeSpec {
            marker: String::new(),
            task_field: None,
        };
        assert!(matches!(
            cascade_split(&[], &empty),
            Err(DataError::InvalidSpec(_))
        ));
    }
}
