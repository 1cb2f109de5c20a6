//! The typed error every `data::` function returns for bad input, plus the
//! field accessors that produce it.
//!
//! A caller (the engine adapter) must be able to tell the user *which* row is bad
//! and *which* field, so errors carry the row's position in its input file and,
//! when the row has one, its `id`. Accessors live here so every module reports
//! the same way.

use serde_json::Value;

use super::Row;

/// Bad input to a data stage. Display form: `row 3 (id "q7"): missing field `nums``.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DataError {
    /// The row lacks a required field (or it is `null`).
    #[error("{}: missing field `{field}`", row_label(*index, id))]
    MissingField {
        /// Position of the row in its input (0-based).
        index: usize,
        /// The row's `id`, when it has one.
        id: Option<String>,
        /// The field that is missing.
        field: String,
    },
    /// The field exists but has the wrong JSON type or an unusable value.
    #[error("{}: field `{field}` {problem}", row_label(*index, id))]
    BadField {
        /// Position of the row in its input (0-based).
        index: usize,
        /// The row's `id`, when it has one.
        id: Option<String>,
        /// The offending field.
        field: String,
        /// What is wrong with it, e.g. "must be an integer".
        problem: String,
    },
    /// The stage's parameters cannot be satisfied (e.g. an empty arity range).
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
}

fn row_label(index: usize, id: &Option<String>) -> String {
    match id {
        Some(id) => format!("row {index} (id {id:?})"),
        None => format!("row {index}"),
    }
}

/// The row's `id` rendered as a string (numbers are accepted), for error messages.
pub(crate) fn row_id(row: &Row) -> Option<String> {
    match row.get("id") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

pub(crate) fn missing(index: usize, row: &Row, field: &str) -> DataError {
    DataError::MissingField {
        index,
        id: row_id(row),
        field: field.to_string(),
    }
}

pub(crate) fn bad(index: usize, row: &Row, field: &str, problem: &str) -> DataError {
    DataError::BadField {
        index,
        id: row_id(row),
        field: field.to_string(),
        problem: problem.to_string(),
    }
}

/// A present, non-null field.
pub(crate) fn field<'a>(row: &'a Row, index: usize, name: &str) -> Result<&'a Value, DataError> {
    match row.get(name) {
        None | Some(Value::Null) => Err(missing(index, row, name)),
        Some(v) => Ok(v),
    }
}

pub(crate) fn get_str<'a>(row: &'a Row, index: usize, name: &str) -> Result<&'a str, DataError> {
    field(row, index, name)?
        .as_str()
        .ok_or_else(|| bad(index, row, name, "must be a string"))
}

pub(crate) fn get_bool(row: &Row, index: usize, name: &str) -> Result<bool, DataError> {
    field(row, index, name)?
        .as_bool()
        .ok_or_else(|| bad(index, row, name, "must be a boolean"))
}

/// An integer; a float with no fractional part (e.g. `24.0` from a Python writer)
/// is accepted because JSON does not distinguish the two.
fn as_int(v: &Value) -> Option<i64> {
    if let Some(i) = v.as_i64() {
        return Some(i);
    }
    let f = v.as_f64()?;
    (f.fract() == 0.0 && f.abs() < 9.0e15).then_some(f as i64)
}

pub(crate) fn get_int(row: &Row, index: usize, name: &str) -> Result<i64, DataError> {
    as_int(field(row, index, name)?).ok_or_else(|| bad(index, row, name, "must be an integer"))
}

pub(crate) fn get_int_list(row: &Row, index: usize, name: &str) -> Result<Vec<i64>, DataError> {
    let arr = field(row, index, name)?
        .as_array()
        .ok_or_else(|| bad(index, row, name, "must be an array of integers"))?;
    arr.iter()
        .map(|v| as_int(v).ok_or_else(|| bad(index, row, name, "must be an array of integers")))
        .collect()
}

/// A string or a number, rendered as a string (ids are sometimes numeric).
pub(crate) fn get_key(row: &Row, index: usize, name: &str) -> Result<String, DataError> {
    match field(row, index, name)? {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        _ => Err(bad(index, row, name, "must be a string or a number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn errors_name_row_and_field() {
        let row: Row = json!({"id": "q7", "target": "x"})
            .as_object()
            .unwrap()
            .clone();
        let e = get_int_list(&row, 3, "nums").unwrap_err();
        assert_eq!(e.to_string(), "row 3 (id \"q7\"): missing field `nums`");
        let e = get_int(&row, 3, "target").unwrap_err();
        assert_eq!(
            e.to_string(),
            "row 3 (id \"q7\"): field `target` must be an integer"
        );
        let anon = Row::new();
        assert_eq!(
            get_str(&anon, 0, "prompt").unwrap_err().to_string(),
            "row 0: missing field `prompt`"
        );
        let f: Row = json!({"t": 24.0}).as_object().unwrap().clone();
        assert_eq!(get_int(&f, 0, "t").unwrap(), 24);
    }
}
