//! Answer checkers for `verify` and `evaluate` beyond Countdown (issue 9).
//!
//! The YAML names one as `verifier:`, either by name with its defaults or as
//! a one-key map with parameters:
//!
//! ```yaml
//! verifier: numeric
//! verifier: {numeric: {tolerance: 1e-6}}
//! verifier: {choice: {answer_field: answerKey}}
//! verifier: {regex: {pattern: "Final answer: (\\w+)"}}
//! ```
//!
//! | name | answer taken from the response | compared with |
//! |---|---|---|
//! | `countdown` | last `<answer>` | the row's `nums` and `target` ([`crate::methods::verify_countdown`], exact) |
//! | `numeric` | last `<answer>`, else last `\boxed{}`, else the last number | a number, within a tolerance ([`numeric`]) |
//! | `exact` | last `<answer>`, else last `\boxed{}`, else the whole response | a normalised string ([`text::normalise`]) |
//! | `choice` | last `<answer>`, else last `\boxed{}`, else "answer is (B)" and similar | a letter ([`text::extract_choice`]) |
//! | `regex` | the first group (or the whole) of the pattern's last match | a normalised string |
//!
//! **Where the expected answer comes from.** Every verifier except
//! `countdown` reads it from one row field, `answer` unless the spec names
//! another with `answer_field` (e.g. ARC's `answerKey`). So
//! [`Verifier::verify`] takes the whole row, not just an expected value:
//! `countdown` needs two fields, and `choice` also counts the row's
//! `options`/`choices` to know which letters exist.
//!
//! Everything here is pure: no file system, no model. A row that lacks its
//! expected answer, or holds one that cannot be one (a gold "numeric" answer
//! that is not a number), is a [`VerifierError`]; the calling kind adds the
//! row's position ([`VerifierError::at_row`]). A bad regex is caught earlier,
//! by [`Verifier::check`], when the pipeline is loaded.

pub mod numeric;
pub mod text;

use std::borrow::Cow;
use std::fmt;
use std::sync::OnceLock;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::methods::{verify_countdown, DataError, Row};

/// What a verifier concluded about one response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The answer it extracted (as written in the response, trimmed), if any.
    pub answer: Option<String>,
    /// Whether that answer matches the expected one.
    pub correct: bool,
}

impl Verdict {
    fn wrong(answer: Option<String>) -> Self {
        Verdict {
            answer,
            correct: false,
        }
    }
}

/// A row cannot be checked: its expected answer is missing or unusable, or a
/// regex did not compile (when [`Verifier::check`] was not called first).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VerifierError {
    /// The row lacks a field the verifier needs (or it is null).
    #[error("missing field `{field}`")]
    MissingField {
        /// The field.
        field: String,
    },
    /// The field is there but cannot serve as the expected answer.
    #[error("field `{field}` {problem}")]
    BadField {
        /// The field.
        field: String,
        /// What is wrong, e.g. "must be a number, not \"seven\"".
        problem: String,
    },
    /// The `regex` verifier's pattern does not compile.
    #[error("{0}")]
    BadPattern(String),
}

impl VerifierError {
    /// The same error, naming row `index` of `row`'s file (and its `id`), in
    /// the form every `data::` error uses: `row 3 (id "q7"): missing field `answer``.
    pub fn at_row(self, index: usize, row: &Row) -> DataError {
        let id = match row.get("id") {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        match self {
            VerifierError::MissingField { field } => DataError::MissingField { index, id, field },
            VerifierError::BadField { field, problem } => DataError::BadField {
                index,
                id,
                field,
                problem,
            },
            VerifierError::BadPattern(msg) => DataError::InvalidSpec(msg),
        }
    }
}

fn default_answer_field() -> String {
    "answer".to_string()
}

/// Parameters of `countdown`: none (its fields are `nums` and `target`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CountdownSpec {}

/// Parameters of `numeric`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NumericSpec {
    /// Correct iff |answer − expected| ≤ tolerance · max(1, |expected|): a
    /// relative tolerance for large numbers and an absolute one below 1. 0
    /// asks for equality of the parsed `f64`s.
    #[serde(default = "default_tolerance")]
    pub tolerance: f64,
    /// Row field with the expected number (a JSON number or a string such as
    /// `"1,234"`, `"-3.5"`, `"\\frac{1}{2}"`).
    #[serde(default = "default_answer_field")]
    pub answer_field: String,
}

fn default_tolerance() -> f64 {
    1e-6
}

impl Default for NumericSpec {
    fn default() -> Self {
        NumericSpec {
            tolerance: default_tolerance(),
            answer_field: default_answer_field(),
        }
    }
}

/// Parameters of `exact`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExactSpec {
    /// Row field with the expected string (a number is compared as written in JSON).
    #[serde(default = "default_answer_field")]
    pub answer_field: String,
}

impl Default for ExactSpec {
    fn default() -> Self {
        ExactSpec {
            answer_field: default_answer_field(),
        }
    }
}

/// Parameters of `choice`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChoiceSpec {
    /// Row field with the expected option: a letter (`"B"`, `"(b)"`) or a
    /// 0-based integer index (MMLU's convention: 1 is B).
    #[serde(default = "default_answer_field")]
    pub answer_field: String,
}

impl Default for ChoiceSpec {
    fn default() -> Self {
        ChoiceSpec {
            answer_field: default_answer_field(),
        }
    }
}

/// Parameters of `regex`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegexSpec {
    /// A Rust `regex` pattern (no look-around; flags inline, e.g. `(?i)`). The
    /// answer is its first capture group in the last match (the whole match
    /// if it has no group, or the group did not take part).
    pub pattern: String,
    /// Row field with the expected string, compared after the same
    /// normalisation as `exact`.
    #[serde(default = "default_answer_field")]
    pub answer_field: String,
    /// The compiled pattern, built once on first use.
    #[serde(skip)]
    #[schemars(skip)]
    compiled: OnceLock<regex::Regex>,
}

impl RegexSpec {
    /// A spec for `pattern` reading the expected answer from `answer`.
    pub fn new(pattern: impl Into<String>) -> Self {
        RegexSpec {
            pattern: pattern.into(),
            answer_field: default_answer_field(),
            compiled: OnceLock::new(),
        }
    }

    fn regex(&self) -> Result<&regex::Regex, VerifierError> {
        if let Some(re) = self.compiled.get() {
            return Ok(re);
        }
        let re = compile(&self.pattern).map_err(VerifierError::BadPattern)?;
        Ok(self.compiled.get_or_init(|| re))
    }
}

impl PartialEq for RegexSpec {
    fn eq(&self, other: &Self) -> bool {
        self.pattern == other.pattern && self.answer_field == other.answer_field
    }
}

/// Compile a user pattern, with a message that says which verifier and how
/// to fix it. The size limit keeps a pathological pattern from eating memory.
fn compile(pattern: &str) -> Result<regex::Regex, String> {
    regex::RegexBuilder::new(pattern)
        .size_limit(1 << 22)
        .build()
        .map_err(|e| {
            format!(
                "verifier `regex`: pattern {pattern:?} does not compile: {e}\n\
                 (Rust regex syntax: no look-around or back-references; in YAML, \
                 quote the pattern and double each backslash inside double quotes)"
            )
        })
}

/// A rule-based answer checker; see the module docs for each variant.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Verifier {
    /// Countdown expressions, checked exactly (the default, as in `verify`).
    #[default]
    Countdown,
    /// A number, within a tolerance.
    Numeric(NumericSpec),
    /// A normalised string.
    Exact(ExactSpec),
    /// A multiple-choice letter.
    Choice(ChoiceSpec),
    /// A user pattern.
    Regex(RegexSpec),
}

const NAMES: &[&str] = &["countdown", "numeric", "exact", "choice", "regex"];

impl Verifier {
    /// The YAML name.
    pub fn name(&self) -> &'static str {
        match self {
            Verifier::Countdown => "countdown",
            Verifier::Numeric(_) => "numeric",
            Verifier::Exact(_) => "exact",
            Verifier::Choice(_) => "choice",
            Verifier::Regex(_) => "regex",
        }
    }

    /// Validate the parameters, for pipeline load time: a pattern that does
    /// not compile, an empty pattern or field name, a negative or non-finite
    /// tolerance. The message names the verifier and the fix.
    pub fn check(&self) -> Result<(), String> {
        let field = |f: &str| {
            if f.is_empty() {
                Err(format!(
                    "verifier `{}`: `answer_field` must not be empty",
                    self.name()
                ))
            } else {
                Ok(())
            }
        };
        match self {
            Verifier::Countdown => Ok(()),
            Verifier::Numeric(s) => {
                if !(s.tolerance.is_finite() && s.tolerance >= 0.0) {
                    return Err(format!(
                        "verifier `numeric`: tolerance {} must be a finite number >= 0 (e.g. 1e-6)",
                        s.tolerance
                    ));
                }
                field(&s.answer_field)
            }
            Verifier::Exact(s) => field(&s.answer_field),
            Verifier::Choice(s) => field(&s.answer_field),
            Verifier::Regex(s) => {
                if s.pattern.is_empty() {
                    return Err("verifier `regex`: `pattern` must not be empty".into());
                }
                s.regex().map_err(|e| e.to_string())?;
                field(&s.answer_field)
            }
        }
    }

    /// Check `response` against the expected answer in `row` (see the module
    /// docs for which fields). Never panics; an unusable row is an error.
    pub fn verify(&self, response: &str, row: &Row) -> Result<Verdict, VerifierError> {
        match self {
            Verifier::Countdown => {
                let nums = int_list(row, "nums")?;
                let target = int(row, "target")?;
                let v = verify_countdown(response, &nums, target, 0.0);
                Ok(Verdict {
                    answer: v.answer,
                    correct: v.correct,
                })
            }
            Verifier::Numeric(s) => {
                let expected = numeric::expected(row, &s.answer_field)?;
                Ok(match numeric::extract(response) {
                    Some((answer, value)) => Verdict {
                        correct: numeric::within(value, expected, s.tolerance),
                        answer: Some(answer),
                    },
                    None => Verdict::wrong(None),
                })
            }
            Verifier::Exact(s) => {
                let expected = text::normalise(&expected_string(row, &s.answer_field)?);
                let answer = text::extract_exact(response);
                let correct = answer
                    .as_deref()
                    .is_some_and(|a| text::normalise(a) == expected);
                Ok(Verdict { answer, correct })
            }
            Verifier::Choice(s) => {
                let letters = text::option_count(row);
                let expected = text::expected_choice(row, &s.answer_field, letters)?;
                let answer = text::extract_choice(response, letters);
                Ok(Verdict {
                    correct: answer == Some(expected),
                    answer: answer.map(String::from),
                })
            }
            Verifier::Regex(s) => {
                let re = s.regex()?;
                let expected = text::normalise(&expected_string(row, &s.answer_field)?);
                let answer = re.captures_iter(response).last().map(|caps| {
                    caps.get(1)
                        .or_else(|| caps.get(0))
                        .map_or("", |m| m.as_str())
                        .trim()
                        .to_string()
                });
                let correct = answer
                    .as_deref()
                    .is_some_and(|a| text::normalise(a) == expected);
                Ok(Verdict { answer, correct })
            }
        }
    }
}

impl Verifier {
    /// The row field holding the expected answer (none for `countdown`).
    pub fn answer_field(&self) -> Option<&str> {
        match self {
            Verifier::Countdown => None,
            Verifier::Numeric(s) => Some(&s.answer_field),
            Verifier::Exact(s) => Some(&s.answer_field),
            Verifier::Choice(s) => Some(&s.answer_field),
            Verifier::Regex(s) => Some(&s.answer_field),
        }
    }

    /// Whether `rationale` and `answer` reach the same answer, for the
    /// verifiers that can read one from free text: `numeric` (the last
    /// number of each, within the tolerance) and `choice` (the letters).
    /// A side without an answer is inconsistent. `None` for the others: an
    /// `exact` or `regex` answer cannot be found in a rationale.
    pub fn agree(&self, rationale: &str, answer: &str, row: &Row) -> Option<bool> {
        match self {
            Verifier::Numeric(s) => Some(match (numeric::extract(rationale), numeric::extract(answer)) {
                (Some((_, x)), Some((_, y))) => numeric::within(x, y, s.tolerance),
                _ => false,
            }),
            Verifier::Choice(_) => {
                let n = text::option_count(row);
                Some(match (text::extract_choice(rationale, n), text::extract_choice(answer, n)) {
                    (Some(x), Some(y)) => x == y,
                    _ => false,
                })
            }
            _ => None,
        }
    }
}

/// A present, non-null field.
pub(crate) fn field<'a>(row: &'a Row, name: &str) -> Result<&'a Value, VerifierError> {
    match row.get(name) {
        None | Some(Value::Null) => Err(VerifierError::MissingField {
            field: name.to_string(),
        }),
        Some(v) => Ok(v),
    }
}

pub(crate) fn bad(name: &str, problem: impl Into<String>) -> VerifierError {
    VerifierError::BadField {
        field: name.to_string(),
        problem: problem.into(),
    }
}

/// A string field as it is, or a number/boolean as JSON writes it.
fn expected_string(row: &Row, name: &str) -> Result<String, VerifierError> {
    match field(row, name)? {
        Value::String(s) => Ok(s.clone()),
        v @ (Value::Number(_) | Value::Bool(_)) => Ok(v.to_string()),
        _ => Err(bad(name, "must be a string or a number")),
    }
}

/// An integer; `24.0` from a Python writer counts (JSON has one number type).
fn as_int(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| {
        let f = v.as_f64()?;
        (f.fract() == 0.0 && f.abs() < 9.0e15).then_some(f as i64)
    })
}

fn int(row: &Row, name: &str) -> Result<i64, VerifierError> {
    as_int(field(row, name)?).ok_or_else(|| bad(name, "must be an integer"))
}

fn int_list(row: &Row, name: &str) -> Result<Vec<i64>, VerifierError> {
    let err = || bad(name, "must be an array of integers");
    field(row, name)?
        .as_array()
        .ok_or_else(err)?
        .iter()
        .map(|v| as_int(v).ok_or_else(err))
        .collect()
}

// ---------------------------------------------------------------------------
// serde and schema: `name` or `{name: {params}}`
// ---------------------------------------------------------------------------

/// A verifier without parameters serializes as its bare name (so
/// `verifier: countdown` keeps the bytes, and the fingerprint, it had as a
/// plain enum); the others as `{name: {every parameter, defaults filled}}`,
/// so `numeric` and `{numeric: {tolerance: 1e-6}}` hash the same.
impl Serialize for Verifier {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        fn one<S: Serializer, T: Serialize>(s: S, name: &str, spec: &T) -> Result<S::Ok, S::Error> {
            let mut map = s.serialize_map(Some(1))?;
            map.serialize_entry(name, spec)?;
            map.end()
        }
        match self {
            Verifier::Countdown => s.serialize_str("countdown"),
            Verifier::Numeric(spec) => one(s, "numeric", spec),
            Verifier::Exact(spec) => one(s, "exact", spec),
            Verifier::Choice(spec) => one(s, "choice", spec),
            Verifier::Regex(spec) => one(s, "regex", spec),
        }
    }
}

impl<'de> Deserialize<'de> for Verifier {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(VerifierVisitor)
    }
}

struct VerifierVisitor;

impl<'de> Visitor<'de> for VerifierVisitor {
    type Value = Verifier;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(
            "a verifier name (countdown, numeric, exact, choice, regex) or a one-key map \
             such as {numeric: {tolerance: 1e-6}}",
        )
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<Verifier, E> {
        match name {
            "countdown" => Ok(Verifier::Countdown),
            "numeric" => Ok(Verifier::Numeric(NumericSpec::default())),
            "exact" => Ok(Verifier::Exact(ExactSpec::default())),
            "choice" => Ok(Verifier::Choice(ChoiceSpec::default())),
            "regex" => Err(E::custom(
                "verifier `regex` needs a pattern: write {regex: {pattern: \"...\"}}",
            )),
            other => Err(E::unknown_variant(other, NAMES)),
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Verifier, A::Error> {
        let Some(name) = map.next_key::<String>()? else {
            return Err(de::Error::invalid_length(0, &self));
        };
        // `{numeric: }` (null) means the defaults, like the bare name.
        let verifier = match name.as_str() {
            "countdown" => {
                map.next_value::<Option<CountdownSpec>>()?;
                Verifier::Countdown
            }
            "numeric" => Verifier::Numeric(map.next_value::<Option<_>>()?.unwrap_or_default()),
            "exact" => Verifier::Exact(map.next_value::<Option<_>>()?.unwrap_or_default()),
            "choice" => Verifier::Choice(map.next_value::<Option<_>>()?.unwrap_or_default()),
            "regex" => Verifier::Regex(map.next_value()?),
            other => return Err(de::Error::unknown_variant(other, NAMES)),
        };
        if let Some(extra) = map.next_key::<String>()? {
            return Err(de::Error::custom(format!(
                "a verifier is one key, but `{extra}` follows `{name}`; pick one verifier"
            )));
        }
        Ok(verifier)
    }
}

impl JsonSchema for Verifier {
    fn schema_name() -> Cow<'static, str> {
        "Verifier".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let one = |name: &str, spec: Schema, about: &str| {
            json_schema!({
                "type": "object",
                "description": about,
                "properties": { name: spec },
                "required": [name],
                "additionalProperties": false
            })
        };
        json_schema!({
            "description": "Answer checker: a name with its defaults, or a one-key map with parameters.",
            "oneOf": [
                {
                    "type": "string",
                    "enum": ["countdown", "numeric", "exact", "choice"]
                },
                one("countdown", generator.subschema_for::<Option<CountdownSpec>>(), "Countdown expressions, checked exactly."),
                one("numeric", generator.subschema_for::<Option<NumericSpec>>(), "A number, within a tolerance."),
                one("exact", generator.subschema_for::<Option<ExactSpec>>(), "A normalised string."),
                one("choice", generator.subschema_for::<Option<ChoiceSpec>>(), "A multiple-choice letter."),
                one("regex", generator.subschema_for::<RegexSpec>(), "A user pattern's first group in its last match.")
            ]
        })
    }
}

#[cfg(test)]
mod tests;
