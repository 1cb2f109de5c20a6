//! The `numeric` verifier: find the model's final number and compare it with
//! the expected one within a tolerance.
//!
//! **Which number.** The content of the last `<answer>…</answer>`, else of the
//! last `\boxed{…}` (braces matched, so `\boxed{\frac{1}{2}}` works), else the
//! last number anywhere in the response. Inside a tag or box, the content is
//! first read as one number; failing that, its last number is taken
//! (`<answer>x = 3</answer>` is 3, `\boxed{12 \text{ cm}}` is 12).
//!
//! **What counts as a number** (each choice so that the ways models and data
//! sets write the same value agree):
//! - an optional sign, `+5` as well as `-3`; the Unicode minus `−` (U+2212)
//!   and the full-width `－` are read as `-`, since tokenizers and LaTeX
//!   renderers emit them;
//! - thousands separators `1,234,567` only in groups of exactly three digits,
//!   so `1,2,3` stays a list of three numbers; LaTeX's `1{,}234` and thin
//!   spaces `\,` are removed;
//! - decimals `3.5`, `.5`, and `3.` (a sentence's full stop after `3`);
//!   exponents `1.5e-3`;
//! - fractions `1/2`, `\frac{1}{2}`, `\dfrac`, `\tfrac`, as their value;
//! - `50%` is **50**: the sign is dropped, not divided out, because data sets
//!   that ask for a percentage (GSM8K and the like) store the bare number,
//!   and a gold `"50%"` is read the same way, so both sides agree;
//! - `$`, trailing full stops and surrounding whitespace are ignored.
//!
//! Anything else (words, `\sqrt{2}`, `3 + 4`) is not a number: a response
//! without one is wrong, and an expected answer without one is a data error.

use std::sync::OnceLock;

use regex::Regex;
use serde_json::Value;

use super::{bad, field, VerifierError};
use crate::methods::Row;

/// Correct iff `|x − y| ≤ tolerance · max(1, |y|)`.
pub fn within(x: f64, y: f64, tolerance: f64) -> bool {
    x == y || (x - y).abs() <= tolerance * y.abs().max(1.0)
}

/// The expected number in `row[name]`: a JSON number, or a string that
/// [`parse`] reads as one.
pub fn expected(row: &Row, name: &str) -> Result<f64, VerifierError> {
    match field(row, name)? {
        Value::Number(n) => n
            .as_f64()
            .ok_or_else(|| bad(name, "must be a finite number")),
        Value::String(s) => {
            parse(s).ok_or_else(|| bad(name, format!("must be a number, not {s:?}")))
        }
        _ => Err(bad(name, "must be a number or a string holding one")),
    }
}

/// The final number of `response` (see the module docs) as written, trimmed,
/// and its value.
pub fn extract(response: &str) -> Option<(String, f64)> {
    if let Some(inner) = crate::methods::verify::extract_answer(response) {
        return read_inside(inner);
    }
    if let Some(inner) = last_boxed(response) {
        return read_inside(inner);
    }
    last_number(response)
}

/// A tag's or box's content: one number, else a box inside it, else its last number.
fn read_inside(inner: &str) -> Option<(String, f64)> {
    let inner = inner.trim();
    if let Some(v) = parse(inner) {
        return Some((inner.to_string(), v));
    }
    if let Some(b) = last_boxed(inner) {
        if let Some(v) = parse(b) {
            return Some((b.trim().to_string(), v));
        }
    }
    last_number(inner)
}

/// The content of the last `\boxed{…}` (or `\fbox{…}`) whose braces balance.
pub fn last_boxed(text: &str) -> Option<&str> {
    let mut last = None;
    for opener in ["\\boxed{", "\\fbox{"] {
        for (start, _) in text.match_indices(opener) {
            let body = start + opener.len();
            if let Some(len) = balanced(&text[body..]) {
                if last.is_none_or(|(s, _): (usize, &str)| start > s) {
                    last = Some((start, &text[body..body + len]));
                }
            }
        }
    }
    last.map(|(_, s)| s)
}

/// Length of `s` up to the `}` that closes an already-open brace, if any.
fn balanced(s: &str) -> Option<usize> {
    let mut depth = 1usize;
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// Rewrite the spellings listed in the module docs into plain ASCII.
fn normalise(s: &str) -> String {
    s.replace(['\u{2212}', '\u{FF0D}'], "-")
        .replace("{,}", "")
        .replace("\\,", "")
        .replace("\\!", "")
        .replace("\\%", "%")
        .replace("\\dfrac", "\\frac")
        .replace("\\tfrac", "\\frac")
        .replace('$', "")
}

/// A plain decimal: sign, digits (with 3-digit comma groups), fraction, exponent.
const DECIMAL: &str = r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d*)?(?:[eE][-+]?\d+)?";

fn whole_number() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(&format!("^{DECIMAL}$")).expect("valid regex"))
}

/// `s` as exactly one number (after [`normalise`]; trailing full stops and a
/// trailing `%` dropped), or `None`.
pub fn parse(s: &str) -> Option<f64> {
    let s = normalise(s);
    let mut t = s.trim();
    loop {
        let u = t.trim_end_matches('.').trim_end();
        let u = u.strip_suffix('%').unwrap_or(u).trim_end();
        if u == t {
            break;
        }
        t = u;
    }
    if let Some(v) = parse_frac(t) {
        return Some(v);
    }
    if let Some((p, q)) = t.split_once('/') {
        let (p, q) = (parse_decimal(p.trim())?, parse_decimal(q.trim())?);
        return ratio(p, q);
    }
    parse_decimal(t)
}

/// `p/q` when it is a number (`1/0` is not).
fn ratio(p: f64, q: f64) -> Option<f64> {
    let v = p / q;
    v.is_finite().then_some(v)
}

/// `[-+]?\frac{p}{q}` with decimal `p` and `q`.
fn parse_frac(t: &str) -> Option<f64> {
    let (sign, rest) = match t.strip_prefix('-') {
        Some(r) => (-1.0, r),
        None => (1.0, t.strip_prefix('+').unwrap_or(t)),
    };
    let rest = rest.trim_start().strip_prefix("\\frac")?.trim_start();
    let rest = rest.strip_prefix('{')?;
    let p_len = balanced(rest)?;
    let (p, rest) = (&rest[..p_len], rest[p_len + 1..].trim_start());
    let rest = rest.strip_prefix('{')?;
    let q_len = balanced(rest)?;
    if !rest[q_len + 1..].trim().is_empty() {
        return None;
    }
    let (p, q) = (
        parse_decimal(p.trim())?,
        parse_decimal(rest[..q_len].trim())?,
    );
    ratio(sign * p, q)
}

/// One [`DECIMAL`] with at least one digit.
fn parse_decimal(t: &str) -> Option<f64> {
    if !whole_number().is_match(t) || !t.bytes().any(|b| b.is_ascii_digit()) {
        return None;
    }
    // A mantissa is needed before an exponent: "e5" alone is not a number.
    let mantissa = t.split(['e', 'E']).next().unwrap_or("");
    if !mantissa.bytes().any(|b| b.is_ascii_digit()) {
        return None;
    }
    let v: f64 = t.replace(',', "").parse().ok()?;
    v.is_finite().then_some(v)
}

fn any_number() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        // A number must not continue a word ("x2", "v1.5") or a longer number;
        // the leading group consumes that one boundary character. A sign is
        // part of the number only right after such a boundary, so the `-` of
        // "5-3" is subtraction, not a negative 3.
        let unsigned = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?|\.\d+";
        Regex::new(&format!(
            r"(?:^|[^\w.])(?P<num>[-+]?\\frac\{{[^{{}}]*\}}\{{[^{{}}]*\}}|[-+]?(?:{unsigned})(?:\s*/\s*(?:{unsigned}))?)"
        ))
        .expect("valid regex")
    })
}

/// The last number anywhere in `text` (see the module docs) and its value.
/// The text returned is the number with the spellings of [`normalise`]
/// rewritten (`−4` comes back as `-4`).
pub fn last_number(text: &str) -> Option<(String, f64)> {
    let norm = normalise(text);
    // The regex cannot look behind: a sign right after a closing bracket, as
    // in "(3)-4", is subtraction, so it is dropped here.
    any_number()
        .captures_iter(&norm)
        .filter_map(|c| {
            let m = c.name("num")?;
            let mut s = m.as_str();
            let before = norm[..m.start()].chars().next_back();
            if s.starts_with(['-', '+']) && before.is_some_and(|b| b == ')' || b == ']') {
                s = &s[1..];
            }
            parse(s).map(|v| (s.trim().to_string(), v))
        })
        .last()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_spellings() {
        let cases: &[(&str, Option<f64>)] = &[
            ("42", Some(42.0)),
            ("  42.  ", Some(42.0)),
            ("3.", Some(3.0)),
            (".5", Some(0.5)),
            ("+5", Some(5.0)),
            ("-3", Some(-3.0)),
            ("\u{2212}3", Some(-3.0)),
            ("\u{FF0D}3", Some(-3.0)),
            ("1,234", Some(1234.0)),
            ("1,234,567.25", Some(1_234_567.25)),
            ("1{,}234", Some(1234.0)),
            ("1\\,234", Some(1234.0)),
            ("$1,234$", Some(1234.0)),
            ("1/2", Some(0.5)),
            ("-7 / 2", Some(-3.5)),
            ("\\frac{1}{2}", Some(0.5)),
            ("\\dfrac{3}{4}", Some(0.75)),
            ("-\\frac{1}{4}", Some(-0.25)),
            ("\u{2212}\\frac{1}{4}", Some(-0.25)),
            ("50%", Some(50.0)),
            ("50\\%", Some(50.0)),
            ("1.5e-3", Some(0.0015)),
            ("1,2", None),
            ("12,34", None),
            ("1/0", None),
            ("\\frac{1}{0}", None),
            ("e5", None),
            (".", None),
            ("", None),
            ("-", None),
            ("seven", None),
            ("3 + 4", None),
            ("\\sqrt{2}", None),
            ("\\frac{1}{2}x", None),
        ];
        for &(s, want) in cases {
            assert_eq!(parse(s), want, "parse({s:?})");
        }
    }

    #[test]
    fn finds_the_last_number() {
        let cases: &[(&str, Option<(&str, f64)>)] = &[
            ("So the total is 1,234 apples.", Some(("1,234", 1234.0))),
            ("5 - 3 = 2", Some(("2", 2.0))),
            ("the change is \u{2212}4 degrees", Some(("-4", -4.0))),
            ("from 3 to -4", Some(("-4", -4.0))),
            ("(3)-4", Some(("4", 4.0))),
            ("half: 1/2", Some(("1/2", 0.5))),
            ("x2 and v1.5", None),
            ("It is 50%.", Some(("50", 50.0))),
            ("answer \\frac{3}{8} here", Some(("\\frac{3}{8}", 0.375))),
            ("no digits here", None),
            ("", None),
        ];
        for &(s, want) in cases {
            let got = last_number(s);
            assert_eq!(
                got.as_ref().map(|(a, v)| (a.as_str(), *v)),
                want,
                "last_number({s:?})"
            );
        }
    }

    #[test]
    fn boxed_braces_balance_and_the_last_box_wins() {
        assert_eq!(last_boxed("\\boxed{\\frac{1}{2}}"), Some("\\frac{1}{2}"));
        assert_eq!(last_boxed("\\boxed{1} then \\boxed{2}"), Some("2"));
        assert_eq!(last_boxed("\\fbox{3} then \\boxed{4}"), Some("4"));
        assert_eq!(last_boxed("\\boxed{4} then \\fbox{3}"), Some("3"));
        assert_eq!(last_boxed("\\boxed{1} and \\boxed{unclosed"), Some("1"));
        assert_eq!(last_boxed("no box"), None);
    }

    #[test]
    fn tolerance_is_relative_above_one_and_absolute_below() {
        assert!(within(1e6 + 0.5, 1e6, 1e-6));
        assert!(!within(1e6 + 2.0, 1e6, 1e-6));
        assert!(within(1e-7, 0.0, 1e-6));
        assert!(!within(1e-5, 0.0, 1e-6));
        assert!(!within(0.30000000000000004, 0.3, 0.0));
        assert!(within(-3.0, -3.0, 0.0));
    }
}
