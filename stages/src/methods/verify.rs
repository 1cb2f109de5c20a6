//! Countdown verifier and reward (METHODS §0.1, after TinyZero's
//! `verl/utils/reward_score/countdown.py`), in exact rational arithmetic.
//!
//! Pipeline for one response, each step naming the `reason` it fails with:
//! 1. extract the LAST `<answer>…</answer>` anywhere in the text (non-greedy, spans
//!    newlines; TinyZero only looks at the last line — METHODS picks "last match
//!    anywhere"), trimmed — else `no_answer`;
//! 2. the charset must be `^[\d+\-*/().\s]+$` (ASCII digits/whitespace) — else `bad_chars`;
//! 3. the multiset of `\d+` runs must equal `nums` (each used once, all used) —
//!    else `wrong_numbers`;
//! 4. recursive-descent parse with Python precedence (binary `+ - * /`, unary `+ -`,
//!    parentheses, decimal literals such as `1.5` / `.5` / `2.`) — else `parse_error`;
//!    evaluate exactly in reduced `i128` fractions — `div_by_zero`, or `overflow`
//!    if any intermediate leaves `i128` (TinyZero would use floats; exactness means
//!    `8 / (3 - 8/3)` is exactly 24 instead of within 1e-5);
//! 5. correct iff the value equals `target` exactly — else `wrong_value`.
//!
//! Deliberate differences from Python `eval`: `**` and `//` are rejected (the task
//! allows only `+ - * /`; Python would accept them), and a newline inside the
//! expression is ordinary whitespace (Python rejects one outside parentheses).
//! Like Python, an integer literal with a leading zero (`05`) is a parse error.

use crate::common::rows::field;
use super::error::{get_int, get_int_list, get_str};
use super::{DataError, Row};
use serde_json::Value;

pub use super::ratio::{EvalError, Ratio};

/// Result of checking one response.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// Trimmed content of the last `<answer>` tag, if any.
    pub answer: Option<String>,
    /// True iff the answer evaluates exactly to the target with the right numbers.
    pub correct: bool,
    /// 1.0 correct; `format_reward` if an answer exists but is wrong; 0.0 if none.
    pub reward: f64,
    /// "correct" | "no_answer" | "bad_chars" | "wrong_numbers" | "parse_error" |
    /// "div_by_zero" | "overflow" | "wrong_value".
    pub reason: &'static str,
}

/// Trimmed content of the last non-overlapping `<answer>(.*?)</answer>` match,
/// scanning left to right exactly like Python's `re.finditer` with DOTALL.
pub fn extract_answer(response: &str) -> Option<&str> {
    const OPEN: &str = "<answer>";
    const CLOSE: &str = "</answer>";
    let mut pos = 0;
    let mut last = None;
    while let Some(o) = response[pos..].find(OPEN) {
        let start = pos + o + OPEN.len();
        let Some(c) = response[start..].find(CLOSE) else {
            break;
        };
        last = Some(response[start..start + c].trim());
        pos = start + c + CLOSE.len();
    }
    last
}

/// `^[\d+\-*/().\s]+$` over ASCII digits and ASCII whitespace.
pub fn allowed_chars(expr: &str) -> bool {
    !expr.is_empty()
        && expr
            .bytes()
            .all(|b| b.is_ascii_digit() || b"+-*/(). \t\n\r\x0b\x0c".contains(&b))
}

/// The `\d+` runs of `expr`, in order (TinyZero's `re.findall(r"\d+", expr)`).
pub fn digit_runs(expr: &str) -> Vec<&str> {
    expr.split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .collect()
}

/// True iff the integer literals of `expr` are exactly the multiset `nums`.
pub fn uses_each_once(expr: &str, nums: &[i64]) -> bool {
    let mut found = Vec::new();
    for run in digit_runs(expr) {
        // A run too long for i64 cannot equal any listed number.
        match run.parse::<i64>() {
            Ok(v) => found.push(v),
            Err(_) => return false,
        }
    }
    let mut want = nums.to_vec();
    found.sort_unstable();
    want.sort_unstable();
    found == want
}

/// Parse and evaluate `expr` exactly. Nesting deeper than Python's limit of 200
/// parentheses is a parse error, so hostile input cannot exhaust the stack.
pub fn evaluate(expr: &str) -> Result<Ratio, EvalError> {
    let toks = tokenize(expr)?;
    let mut p = Parser {
        toks: &toks,
        pos: 0,
        depth: 0,
    };
    let v = p.expr()?;
    if p.pos != toks.len() {
        return Err(EvalError::Parse);
    }
    Ok(v)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Tok {
    Num(Ratio),
    Op(u8),
    Open,
    Close,
}

fn tokenize(expr: &str) -> Result<Vec<Tok>, EvalError> {
    let b = expr.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'0'..=b'9' | b'.' => {
                let start = i;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
                let int_part = &expr[start..i];
                let mut frac = "";
                let has_dot = i < b.len() && b[i] == b'.';
                if has_dot {
                    i += 1;
                    let fs = i;
                    while i < b.len() && b[i].is_ascii_digit() {
                        i += 1;
                    }
                    frac = &expr[fs..i];
                }
                if int_part.is_empty() && frac.is_empty() {
                    return Err(EvalError::Parse); // a lone "."
                }
                if !has_dot
                    && int_part.len() > 1
                    && int_part.starts_with('0')
                    && int_part.bytes().any(|d| d != b'0')
                {
                    return Err(EvalError::Parse); // Python 3: "05" is a SyntaxError
                }
                out.push(Tok::Num(decimal(int_part, frac)?));
            }
            b'+' | b'-' | b'*' | b'/' => {
                out.push(Tok::Op(c));
                i += 1;
            }
            b'(' => {
                out.push(Tok::Open);
                i += 1;
            }
            b')' => {
                out.push(Tok::Close);
                i += 1;
            }
            c if c.is_ascii_whitespace() || c == 0x0b => i += 1,
            _ => return Err(EvalError::Parse),
        }
    }
    Ok(out)
}

/// `int_part.frac` as an exact fraction.
fn decimal(int_part: &str, frac: &str) -> Result<Ratio, EvalError> {
    let mut num: i128 = 0;
    let mut den: i128 = 1;
    for d in int_part.bytes().chain(frac.bytes()) {
        num = num
            .checked_mul(10)
            .and_then(|n| n.checked_add(i128::from(d - b'0')))
            .ok_or(EvalError::Overflow)?;
    }
    for _ in 0..frac.len() {
        den = den.checked_mul(10).ok_or(EvalError::Overflow)?;
    }
    Ratio::new(num, den)
}

struct Parser<'a> {
    toks: &'a [Tok],
    pos: usize,
    depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<Tok> {
        self.toks.get(self.pos).copied()
    }

    /// expr := term (('+' | '-') term)*
    fn expr(&mut self) -> Result<Ratio, EvalError> {
        let mut v = self.term()?;
        while let Some(Tok::Op(op @ (b'+' | b'-'))) = self.peek() {
            self.pos += 1;
            let r = self.term()?;
            v = if op == b'+' {
                v.add(r)?
            } else {
                v.add(r.neg()?)?
            };
        }
        Ok(v)
    }

    /// term := unary (('*' | '/') unary)*
    fn term(&mut self) -> Result<Ratio, EvalError> {
        let mut v = self.unary()?;
        while let Some(Tok::Op(op @ (b'*' | b'/'))) = self.peek() {
            self.pos += 1;
            let r = self.unary()?;
            v = if op == b'*' { v.mul(r)? } else { v.div(r)? };
        }
        Ok(v)
    }

    /// unary := ('+' | '-')* primary — a loop, so `------1` cannot recurse deeply.
    fn unary(&mut self) -> Result<Ratio, EvalError> {
        let mut negate = false;
        while let Some(Tok::Op(op @ (b'+' | b'-'))) = self.peek() {
            self.pos += 1;
            negate ^= op == b'-';
        }
        let v = self.primary()?;
        if negate {
            v.neg()
        } else {
            Ok(v)
        }
    }

    /// primary := NUMBER | '(' expr ')'
    fn primary(&mut self) -> Result<Ratio, EvalError> {
        match self.peek() {
            Some(Tok::Num(v)) => {
                self.pos += 1;
                Ok(v)
            }
            Some(Tok::Open) => {
                self.depth += 1;
                if self.depth > 200 {
                    return Err(EvalError::Parse);
                }
                self.pos += 1;
                let v = self.expr()?;
                if self.peek() != Some(Tok::Close) {
                    return Err(EvalError::Parse);
                }
                self.pos += 1;
                self.depth -= 1;
                Ok(v)
            }
            _ => Err(EvalError::Parse),
        }
    }
}

/// Check one response against a Countdown instance. Never panics.
pub fn verify_countdown(response: &str, nums: &[i64], target: i64, format_reward: f64) -> Verdict {
    let Some(answer) = extract_answer(response) else {
        return Verdict {
            answer: None,
            correct: false,
            reward: 0.0,
            reason: "no_answer",
        };
    };
    let wrong = |reason| Verdict {
        answer: Some(answer.to_string()),
        correct: false,
        reward: format_reward,
        reason,
    };
    if !allowed_chars(answer) {
        return wrong("bad_chars");
    }
    if !uses_each_once(answer, nums) {
        return wrong("wrong_numbers");
    }
    match evaluate(answer) {
        Err(e) => wrong(e.reason()),
        Ok(v) if v == Ratio::int(target) => Verdict {
            answer: Some(answer.to_string()),
            correct: true,
            reward: 1.0,
            reason: "correct",
        },
        Ok(_) => wrong("wrong_value"),
    }
}

/// Verify every row (fields `nums`, `target`, `response`) and append `answer`
/// (string or null), `correct` and `reward`. The first malformed row is an error
/// naming its index and id, so a bad upstream file is reported, not half-scored.
pub fn verify_rows(rows: Vec<Row>, format_reward: f64) -> Result<Vec<Row>, DataError> {
    rows.into_iter()
        .enumerate()
        .map(|(i, mut row)| {
            let nums = get_int_list(&row, i, field::NUMS)?;
            let target = get_int(&row, i, field::TARGET)?;
            let v = verify_countdown(get_str(&row, i, field::RESPONSE)?, &nums, target, format_reward);
            row.insert(field::ANSWER.into(), v.answer.map_or(Value::Null, Value::String));
            row.insert(field::CORRECT.into(), Value::Bool(v.correct));
            row.insert(field::REWARD.into(), Value::from(v.reward));
            Ok(row)
        })
        .collect()
}

#[cfg(test)]
#[path = "verify_tests.rs"]
mod tests;
