//! String answers: the normalisation `exact` and `regex` compare with, and
//! the letter extraction of `choice`.

use std::sync::OnceLock;

use regex::Regex;
use serde_json::Value;

use super::numeric::last_boxed;
use super::{bad, field, VerifierError};
use crate::methods::verify::extract_answer;
use crate::methods::Row;

/// Wrappers removed when they enclose the whole answer: quotes of each kind,
/// inline math `$…$`, Markdown bold, and LaTeX text macros (a boxed answer is
/// often `\text{Paris}`).
const WRAPPERS: &[(&str, &str)] = &[
    ("\"", "\""),
    ("'", "'"),
    ("\u{201C}", "\u{201D}"),
    ("\u{2018}", "\u{2019}"),
    ("`", "`"),
    ("$", "$"),
    ("**", "**"),
    ("\\text{", "}"),
    ("\\textbf{", "}"),
    ("\\mathrm{", "}"),
];

/// The comparison form of a string answer: trimmed; trailing full stops and
/// enclosing [`WRAPPERS`] removed, repeatedly, so `"Paris."` and `"Paris".`
/// both reduce to `Paris`; lower-cased (Unicode `to_lowercase`, which is
/// case-folding for everything but a few special cases such as `ß`); runs of
/// whitespace collapsed to one space. Inner punctuation is kept: `U.S.` and
/// `US` stay different.
pub fn normalise(s: &str) -> String {
    let mut t = s.trim();
    loop {
        let before = t;
        t = t.trim_end_matches('.').trim_end();
        for (open, close) in WRAPPERS {
            if t.len() >= open.len() + close.len() {
                if let Some(inner) = t.strip_prefix(open).and_then(|r| r.strip_suffix(close)) {
                    t = inner.trim();
                }
            }
        }
        if t == before {
            break;
        }
    }
    t.split_whitespace()
        .map(str::to_lowercase)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The answer `exact` compares: the last `<answer>` content, else the last
/// `\boxed{}` content, else the whole response; `None` when that is empty.
/// (A chatty model's "The answer is Paris." is *not* `Paris`; use `regex`
/// to pick an answer out of prose.)
pub fn extract_exact(response: &str) -> Option<String> {
    let a = extract_answer(response)
        .or_else(|| last_boxed(response))
        .unwrap_or(response)
        .trim();
    (!a.is_empty()).then(|| a.to_string())
}

/// How many options a row has: the length of its `options` or `choices`
/// (an array; or an object holding a `label` or `text` array, as in ARC; or
/// any other object, one option per key), capped at 26; 5 (A–E) when it has
/// neither.
pub fn option_count(row: &Row) -> usize {
    for name in ["options", "choices"] {
        let n = match row.get(name) {
            Some(Value::Array(a)) => a.len(),
            Some(Value::Object(o)) => match o.get("label").or_else(|| o.get("text")) {
                Some(Value::Array(a)) => a.len(),
                _ => o.len(),
            },
            _ => 0,
        };
        if n > 0 {
            return n.min(26);
        }
    }
    5
}

fn letter_of(index: usize) -> char {
    char::from(b'A' + index as u8)
}

/// The expected option of `row[name]`: a letter string (`"B"`, `"(b)"`), or
/// a 0-based integer index (MMLU's convention). Out of range for `letters`
/// options is an error, as is anything else.
pub fn expected_choice(row: &Row, name: &str, letters: usize) -> Result<char, VerifierError> {
    let last = letter_of(letters - 1);
    match field(row, name)? {
        Value::Number(n) => match n.as_u64() {
            Some(i) if (i as usize) < letters => Ok(letter_of(i as usize)),
            _ => Err(bad(
                name,
                format!(
                    "index {n} is not an option: the row has {letters} (0 to {})",
                    letters - 1
                ),
            )),
        },
        Value::String(s) => match lone_letter(s) {
            Some(c) if c <= last => Ok(c),
            _ => Err(bad(
                name,
                format!("must be an option letter A to {last} (or a 0-based index), not {s:?}"),
            )),
        },
        _ => Err(bad(name, "must be an option letter or a 0-based index")),
    }
}

/// `s` is one ASCII letter, perhaps in brackets, bold or followed by a full
/// stop or colon: that letter, upper-cased.
fn lone_letter(s: &str) -> Option<char> {
    let t = s.trim_matches(|c: char| c.is_whitespace() || "()[]{}*_.:".contains(c));
    let mut chars = t.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) if c.is_ascii_alphabetic() => Some(c.to_ascii_uppercase()),
        _ => None,
    }
}

/// The chosen letter of `response` among `letters` options (A, B, …):
/// 1. the last `<answer>` content, else the last `\boxed{}` content, if the
///    response has one (then only that content is searched);
/// 2. in that text: the whole text being one letter (`B`, `(b)`, `**C**`);
/// 3. else the last "answer" cue: `The answer is (B).`, `Answer: d`,
///    `final answer: **C**`, `answer is option B`. A lower-case letter
///    counts there only when bracketed or followed by punctuation or the
///    end, so "the answer is a bit long" is not option A;
/// 4. else the last formatted upper-case letter: `(B)`, `[B]`, `**B**`, or
///    `B)` at a line start or after a space or colon.
///
/// Letters beyond the options are skipped. `None` if nothing matches.
pub fn extract_choice(response: &str, letters: usize) -> Option<char> {
    let text = extract_answer(response)
        .or_else(|| last_boxed(response))
        .unwrap_or(response);
    let last = letter_of(letters - 1);
    let ok = |c: char| ('A'..=last).contains(&c);
    if let Some(c) = lone_letter(text).filter(|&c| ok(c)) {
        return Some(c);
    }
    if let Some(c) = cue_letter(text).filter(|&c| ok(c)) {
        return Some(c);
    }
    formatted()
        .captures_iter(text)
        .filter_map(|caps| {
            let m = caps.iter().skip(1).flatten().next()?;
            m.as_str().chars().next().filter(|&c| ok(c))
        })
        .last()
}

fn cue() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(
            r"(?i)\banswer\b(?:\s+is)?\s*[:=\-]?\s*(?:(?:option|choice)\s+)?(?P<open>\*\*|__|\(|\[)?\s*(?P<letter>[a-z])(?:\s*(?P<close>\*\*|__|\)|\]))?",
        )
        .expect("valid regex")
    })
}

/// The letter of the last acceptable "answer" cue in `text` (see [`extract_choice`]).
fn cue_letter(text: &str) -> Option<char> {
    cue()
        .captures_iter(text)
        .filter_map(|caps| {
            let letter = caps.name("letter")?.as_str().chars().next()?;
            let whole = caps.get(0)?;
            let next = text[whole.end()..].chars().next();
            let delimited = caps.name("open").is_some() || caps.name("close").is_some();
            let accepted = match next {
                None => true,
                Some(n) if n.is_alphanumeric() => false,
                Some(n) => letter.is_ascii_uppercase() || delimited || ".,;:!?)\n".contains(n),
            };
            accepted.then(|| letter.to_ascii_uppercase())
        })
        .last()
}

fn formatted() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"\(([A-Z])\)|\[([A-Z])\]|\*\*([A-Z])\*\*|(?m:(?:^|[\s:])([A-Z])\))")
            .expect("valid regex")
    })
}
