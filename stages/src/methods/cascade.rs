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
//! - **Strict.** With `strict`, a chain without the marker or with an empty
//!   rationale or answer is an error naming the row, instead of a drop.
//!
//! The split's rows are read back as [`CascadePair`]s by the training
//! objectives (CasCoD, Std-CoT, the weighted control), so all three train on
//! the same text: Std-CoT's one sequence is the answer step's prompt and
//! target, scored from the rationale on ([`CascadePair::chain`]). Answer-SFT
//! rows ([`answer_sft_row`]) are the same prompt with an empty rationale,
//! `P + "Rationale:"` → `"\n" + marker + " " + a`, so every arm is read with
//! one prompt form, one-pass or cascaded.

use crate::common::rows::field;
use serde_json::Value;

use super::error::{bad, get_key, get_str};
use super::{DataError, Row};

/// Parameters of the C1–C2 split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CascadeSpec {
    /// The phrase that ends the rationale; the answer follows it.
    pub marker: String,
    /// Row field holding the task description (BBH: `task_description`).
    pub task_field: Option<String>,
    /// Unusable chains are errors instead of drops.
    pub strict: bool,
}

impl Default for CascadeSpec {
    fn default() -> Self {
        CascadeSpec {
            marker: "Therefore, the answer is".into(),
            task_field: None,
            strict: false,
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
            if spec.strict {
                let problem = format!("has no marker {:?}: the chain must end with it and the answer", spec.marker);
                return Err(bad(i, row, field::RESPONSE, &problem));
            }
            stats.no_marker += 1;
            continue;
        };
        if r.is_empty() || a.is_empty() {
            if spec.strict {
                let what = if r.is_empty() { "rationale" } else { "answer" };
                return Err(bad(i, row, field::RESPONSE, &format!("has an empty {what} around the marker")));
            }
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

/// One question's two steps, read back from [`cascade_split`]'s rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CascadePair {
    /// The teacher row's id.
    pub source_id: String,
    /// `P + "Rationale:"`.
    pub rationale_prompt: String,
    /// `r`.
    pub rationale: String,
    /// `P + "Rationale:" + r + "\n" + marker`.
    pub answer_prompt: String,
    /// `" " + a`.
    pub answer: String,
}

impl CascadePair {
    /// Std-CoT's target after `rationale_prompt`: `r + "\n" + marker` (the
    /// rationale part) and `" " + a` (the answer part).
    pub fn chain(&self) -> (&str, &str) {
        (&self.answer_prompt[self.rationale_prompt.len()..], &self.answer)
    }
}

/// The pairs of a split's rows, in order of their first row. Every source
/// needs one `rationale` and one `answer` row, a non-empty rationale, and an
/// answer prompt that continues the rationale prompt; otherwise the error
/// names the row.
pub fn cascade_pairs(rows: &[Row]) -> Result<Vec<CascadePair>, DataError> {
    let mut order: Vec<String> = Vec::new();
    let mut steps: std::collections::HashMap<String, [Option<usize>; 2]> = std::collections::HashMap::new();
    for (i, row) in rows.iter().enumerate() {
        let source = get_key(row, i, "source_id")?;
        let slot = match get_str(row, i, "step")? {
            "rationale" => 0,
            "answer" => 1,
            other => return Err(bad(i, row, "step", &format!("is {other:?}: must be \"rationale\" or \"answer\" (rows of cascade_split)"))),
        };
        let entry = steps.entry(source.clone()).or_insert_with(|| {
            order.push(source.clone());
            [None, None]
        });
        if entry[slot].replace(i).is_some() {
            return Err(bad(i, row, "step", &format!("repeats source {source:?}'s step: one rationale and one answer row per source")));
        }
    }
    order
        .into_iter()
        .map(|source| {
            let [r, a] = steps[&source];
            let (Some(r), Some(a)) = (r, a) else {
                let i = r.or(a).expect("a source has a row");
                let missing = if r.is_none() { "rationale" } else { "answer" };
                return Err(bad(i, &rows[i], "source_id", &format!("{source:?} has no {missing} row: cascade_split writes both")));
            };
            pair(source, r, &rows[r], a, &rows[a])
        })
        .collect()
}

fn pair(source_id: String, ri: usize, r: &Row, ai: usize, a: &Row) -> Result<CascadePair, DataError> {
    let rationale = get_str(r, ri, field::RESPONSE)?;
    if rationale.trim().is_empty() {
        return Err(bad(ri, r, field::RESPONSE, "is an empty rationale"));
    }
    let rationale_prompt = get_str(r, ri, field::PROMPT)?;
    let answer_prompt = get_str(a, ai, field::PROMPT)?;
    if !answer_prompt.starts_with(rationale_prompt) {
        return Err(bad(ai, a, field::PROMPT, "does not continue its rationale step's prompt (rows of cascade_split)"));
    }
    let answer = get_str(a, ai, field::RESPONSE)?;
    if answer.trim().is_empty() {
        return Err(bad(ai, a, field::RESPONSE, "is an empty answer"));
    }
    Ok(CascadePair {
        source_id,
        rationale_prompt: rationale_prompt.to_string(),
        rationale: rationale.to_string(),
        answer_prompt: answer_prompt.to_string(),
        answer: answer.to_string(),
    })
}

/// Answer-SFT's row (q → a) for a pair: `P + "Rationale:"` → `"\n" + marker + " " + a`.
pub fn answer_sft_row(pair: &CascadePair, marker: &str) -> Row {
    let answer = format!("\n{marker}{}", pair.answer);
    step_row(&pair.source_id, "answer_only", pair.rationale_prompt.clone(), answer)
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
            strict: false,
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
            strict: false,
        };
        assert!(matches!(
            cascade_split(&[], &empty),
            Err(DataError::InvalidSpec(_))
        ));
    }

    #[test]
    fn strict_split_names_the_row_without_a_marker_or_rationale() {
        let strict = CascadeSpec { strict: true, ..CascadeSpec::default() };
        let rows = vec![row(json!({"id": "q7", "prompt": "q", "response": "no marker"}))];
        let err = cascade_split(&rows, &strict).unwrap_err().to_string();
        assert_eq!(err, "row 0 (id \"q7\"): field `response` has no marker \"Therefore, the answer is\": the chain must end with it and the answer");
        let rows = vec![row(json!({"id": "q8", "prompt": "q", "response": " Therefore, the answer is 4"}))];
        let err = cascade_split(&rows, &strict).unwrap_err().to_string();
        assert_eq!(err, "row 0 (id \"q8\"): field `response` has an empty rationale around the marker");
    }

    #[test]
    fn pairs_read_back_the_split_and_build_std_cot_and_answer_sft_text() {
        let rows = vec![row(json!({"id": "b1", "prompt": "2+3+4?", "response": "2 + 3 = 5. 5 + 4 = 9.\nTherefore, the answer is 9."}))];
        let (out, _) = cascade_split(&rows, &CascadeSpec::default()).unwrap();
        let pairs = cascade_pairs(&out).unwrap();
        assert_eq!(pairs.len(), 1);
        let p = &pairs[0];
        assert_eq!(p.rationale_prompt, "Q:2+3+4?\n\nA:Rationale:");
        assert_eq!(p.chain(), ("2 + 3 = 5. 5 + 4 = 9.\nTherefore, the answer is", " 9."));
        let a = answer_sft_row(p, "Therefore, the answer is");
        assert_eq!(a["prompt"], "Q:2+3+4?\n\nA:Rationale:");
        assert_eq!(a["response"], "\nTherefore, the answer is 9.");
        assert_eq!(a["id"], "b1-answer_only");
        // A lone step, or an empty rationale, names the row.
        let err = cascade_pairs(&out[..1]).unwrap_err().to_string();
        assert_eq!(err, "row 0 (id \"b1-rationale\"): field `source_id` \"b1\" has no answer row: cascade_split writes both");
        let mut blank = out.clone();
        blank[0].insert("response".into(), Value::String("  ".into()));
        let err = cascade_pairs(&blank).unwrap_err().to_string();
        assert_eq!(err, "row 0 (id \"b1-rationale\"): field `response` is an empty rationale");
    }
}
