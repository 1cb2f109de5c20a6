//! The shape a loaded dataset must have: the well-known columns (see
//! `common::rows::field`) with the types the kinds read them as.
//!
//! A file from elsewhere (a Hub dataset, a `datasets` export) is checked
//! when it is loaded, so a wrong column fails `task: file` with the file, the
//! column and the row, instead of a stage downstream with a row number only.

use std::path::Path;

use retort_engine::Row;
use serde_json::Value;

use super::DatasetError;
use crate::common::rows::field;

/// Columns that hold text wherever they appear.
const TEXT: &[&str] = &[field::PROMPT, field::RESPONSE, "completion", field::CHOSEN, field::REJECTED];

/// Checks `rows` read from `path`. A `columnar` dataset (Parquet, Arrow:
/// data made for training elsewhere) must also have a `prompt` or
/// `messages` column; JSONL rows stay free-form as they always were
/// (retort's own intermediate rows, e.g. scored responses, have neither).
pub fn check_rows(path: &Path, rows: &[Row], columnar: bool) -> Result<(), DatasetError> {
    let err = |message: String| DatasetError::Schema { path: path.to_path_buf(), message };
    if columnar && !rows.is_empty() && !rows.iter().any(|r| r.contains_key(field::PROMPT) || r.contains_key(field::MESSAGES)) {
        let mut columns: Vec<&str> = Vec::new();
        for k in rows.iter().flat_map(|r| r.keys()) {
            if !columns.contains(&k.as_str()) {
                columns.push(k);
            }
        }
        return Err(err(format!(
            "no `prompt` column (nor `messages`), row 0 onwards; the columns are {}; rename the column that holds \
             the prompt text to `prompt` (or chat turns to `messages`)",
            columns.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", ")
        )));
    }
    for (i, row) in rows.iter().enumerate() {
        check_row(row).map_err(|m| err(format!("row {i}: {m}")))?;
    }
    Ok(())
}

fn check_row(row: &Row) -> Result<(), String> {
    for &name in TEXT {
        match row.get(name) {
            None | Some(Value::String(_)) => {}
            Some(other) => {
                return Err(format!(
                    "column `{name}` must be a string, got {}{}",
                    kind_of(other),
                    if name == field::PROMPT && other.is_array() {
                        " (chat turns go in a `messages` column of {role, content} structs)"
                    } else {
                        ""
                    }
                ))
            }
        }
    }
    if let Some(m) = row.get(field::MESSAGES) {
        let turns = m.as_array().ok_or_else(|| format!("column `messages` must be a list of {{role, content}}, got {}", kind_of(m)))?;
        for (j, turn) in turns.iter().enumerate() {
            for key in ["role", "content"] {
                match turn.get(key) {
                    Some(Value::String(_)) => {}
                    Some(other) => return Err(format!("column `messages`, turn {j}: `{key}` must be a string, got {}", kind_of(other))),
                    None => return Err(format!("column `messages`, turn {j}: no `{key}` (each turn is {{role, content}})")),
                }
            }
        }
    }
    if let Some(n) = row.get(field::NUMS) {
        let ok = n.as_array().is_some_and(|a| a.iter().all(|v| v.is_i64() || v.is_u64()));
        if !ok {
            return Err(format!("column `nums` must be a list of integers, got {}", kind_of(n)));
        }
    }
    Ok(())
}

fn kind_of(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(_) => "a boolean".into(),
        Value::Number(n) => format!("the number {n}"),
        Value::String(_) => "a string".into(),
        Value::Array(a) if a.iter().any(|x| !(x.is_i64() || x.is_u64())) => "a list with non-integers".into(),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "a struct".into(),
    }
}
