//! Process supervision's pure half (SPHERE, METHODS §2, §9.1): a solution
//! split into steps, each step scored, and a trajectory's value from its
//! step scores and its outcome.
//!
//! The `rule` scorer for Countdown reads steps written `a op b = c` (one
//! per line; a `Step k:` prefix, a trailing period and `x`/`×`/`÷` are
//! accepted): a step scores 1 when `a` and `b` are numbers still available
//! (the problem's numbers, plus each earlier valid step's result, each
//! usable once), `op` is one of `+ - * /`, and `c` is exactly `a op b`
//! (division only when it divides: Countdown's intermediate values are
//! integers). Anything else scores 0: a wrong sum, a number not (or no
//! longer) available, a line that is not a step. An invalid step leaves the
//! pool as it was, so the steps after it are judged on their own. The
//! `<answer>` line is the outcome, not a step.

/// Where one step ends and the next begins unless a stage says otherwise:
/// a line per step. The serde default of every stage's `delimiter`.
pub fn default_delimiter() -> String {
    "\n".into()
}

/// The steps of `text`: its non-empty lines split at `delimiter`, trimmed,
/// without the line holding `<answer>` (the outcome) or anything after it.
pub fn split_steps<'a>(text: &'a str, delimiter: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    for part in text.split(delimiter) {
        let part = part.trim();
        if part.contains("<answer>") {
            break;
        }
        if !part.is_empty() {
            out.push(part);
        }
    }
    out
}

/// What a rollout from after each step continues: `text` through the end
/// of step 1, 2, … and the delimiter after it (as written: untrimmed), one
/// per step of [`split_steps`] (same steps, same order).
pub fn step_prefixes<'a>(text: &'a str, delimiter: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut start = 0;
    loop {
        let (part, next) = match text[start..].find(delimiter) {
            Some(at) => (&text[start..start + at], Some(start + at + delimiter.len())),
            None => (&text[start..], None),
        };
        if part.contains("<answer>") {
            break;
        }
        if !part.trim().is_empty() {
            out.push(&text[..next.unwrap_or(text.len())]);
        }
        match next {
            Some(n) => start = n,
            None => break,
        }
    }
    out
}

/// `a op b = c` read from one step, or `None` when it is not one.
pub fn parse_step(step: &str) -> Option<(i64, char, i64, i64)> {
    let mut s = step.trim().trim_end_matches('.').trim();
    // `Step 3:` or `3.` prefixes.
    if let Some(rest) = s.strip_prefix("Step ").or_else(|| s.strip_prefix("step ")) {
        s = rest.split_once(':').map(|(_, r)| r.trim())?;
    }
    let (lhs, rhs) = s.split_once('=')?;
    let c: i64 = rhs.trim().parse().ok()?;
    let lhs = lhs.trim();
    // The operator is the first of + - * / x × ÷ after the first operand
    // (a leading minus belongs to the number).
    let start = usize::from(lhs.starts_with('-'));
    let (at, op) = lhs.char_indices().skip(start).find(|(_, ch)| matches!(ch, '+' | '-' | '*' | '/' | 'x' | '×' | '÷'))?;
    let a: i64 = lhs[..at].trim().parse().ok()?;
    let b: i64 = lhs[at + op.len_utf8()..].trim().parse().ok()?;
    let op = match op {
        'x' | '×' => '*',
        '÷' => '/',
        o => o,
    };
    Some((a, op, b, c))
}

/// `a op b` when it is an integer (exact division only).
fn apply(a: i64, op: char, b: i64) -> Option<i64> {
    match op {
        '+' => a.checked_add(b),
        '-' => a.checked_sub(b),
        '*' => a.checked_mul(b),
        '/' if b != 0 && a % b == 0 => Some(a / b),
        _ => None,
    }
}

/// Removes one `x` from `pool`; whether there was one.
fn take(pool: &mut Vec<i64>, x: i64) -> bool {
    match pool.iter().position(|&p| p == x) {
        Some(i) => {
            pool.swap_remove(i);
            true
        }
        None => false,
    }
}

/// Each Countdown step's rule score (1 or 0) given the problem's numbers.
pub fn rule_scores_countdown(steps: &[&str], nums: &[i64]) -> Vec<f64> {
    let mut pool = nums.to_vec();
    steps
        .iter()
        .map(|s| {
            let Some((a, op, b, c)) = parse_step(s) else { return 0.0 };
            if apply(a, op, b) != Some(c) {
                return 0.0;
            }
            let mut trial = pool.clone();
            if take(&mut trial, a) && take(&mut trial, b) {
                trial.push(c);
                pool = trial;
                1.0
            } else {
                0.0
            }
        })
        .collect()
}

/// How a trajectory's step scores become one number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Aggregate {
    /// The weakest step (a chain is as good as its worst link).
    Min,
    /// The last step's score.
    Last,
}

/// `V = λ·agg(step scores) + (1−λ)·outcome` (METHODS §2 P1; λ = 0.5 by
/// default there). No steps: the aggregate is 0.
pub fn trajectory_value(scores: &[f64], outcome: f64, lambda: f64, aggregate: Aggregate) -> f64 {
    let agg = match aggregate {
        Aggregate::Min => scores.iter().copied().fold(f64::INFINITY, f64::min),
        Aggregate::Last => scores.last().copied().unwrap_or(0.0),
    };
    let agg = if scores.is_empty() { 0.0 } else { agg };
    lambda * agg + (1.0 - lambda) * outcome
}

/// The 0-based index of the first step scoring below `threshold`.
pub fn first_error(scores: &[f64], threshold: f64) -> Option<usize> {
    scores.iter().position(|&s| s < threshold)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_lines_before_the_answer() {
        let text = "3 + 5 = 8\n\n  8 * 2 = 16  \n<answer>(3 + 5) * 2</answer>\nafter";
        assert_eq!(split_steps(text, "\n"), ["3 + 5 = 8", "8 * 2 = 16"]);
        assert_eq!(split_steps("a; b;<answer>x</answer>", ";"), ["a", "b"]);
        assert!(split_steps("", "\n").is_empty());
    }

    #[test]
    fn prefixes_end_after_each_step_and_its_delimiter() {
        let text = "3 + 5 = 8\n\n  8 * 2 = 16  \n<answer>(3 + 5) * 2</answer>\nafter";
        assert_eq!(step_prefixes(text, "\n"), ["3 + 5 = 8\n", "3 + 5 = 8\n\n  8 * 2 = 16  \n"]);
        assert_eq!(step_prefixes("a; b;<answer>x</answer>", ";"), ["a;", "a; b;"]);
        // The last step without a delimiter after it: the whole text.
        assert_eq!(step_prefixes("a\nb", "\n"), ["a\n", "a\nb"]);
        assert!(step_prefixes("", "\n").is_empty());
        assert!(step_prefixes("<answer>1</answer>", "\n").is_empty());
        for t in [text, "x\n\ny\nz", "\n\nStep 1: 1 + 1 = 2\n<answer>"] {
            assert_eq!(step_prefixes(t, "\n").len(), split_steps(t, "\n").len(), "{t:?}");
        }
    }

    #[test]
    fn awkward_steps_parse_or_are_refused() {
        assert_eq!(parse_step("3 + 5 = 8"), Some((3, '+', 5, 8)));
        assert_eq!(parse_step("Step 2: 8 x 2 = 16."), Some((8, '*', 2, 16)));
        assert_eq!(parse_step("12÷4=3"), Some((12, '/', 4, 3)));
        assert_eq!(parse_step("-3 - 5 = -8"), Some((-3, '-', 5, -8)));
        assert_eq!(parse_step("5 - -3 = 8"), Some((5, '-', -3, 8)));
        assert_eq!(parse_step("so 3 + 5 = 8"), None, "prose before the step");
        assert_eq!(parse_step("3 + 5"), None, "no result");
        assert_eq!(parse_step("3 + 5 = eight"), None);
        assert_eq!(parse_step("3 ^ 5 = 243"), None, "not an allowed operator");
    }

    #[test]
    fn rule_scores_by_hand() {
        let nums = [3, 5, 2, 7];
        let steps = [
            "3 + 5 = 8",  // valid: 8 joins the pool, 3 and 5 leave it
            "8 * 2 = 17", // wrong product
            "3 + 7 = 10", // 3 was used
            "8 * 2 = 16", // valid (the wrong step above took nothing)
            "16 / 7 = 2", // not an exact division
            "16 - 7 = 9", // valid
            "think more", // not a step
        ];
        assert_eq!(rule_scores_countdown(&steps, &nums), [1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0]);
        // The same number twice needs it twice.
        assert_eq!(rule_scores_countdown(&["4 + 4 = 8"], &[4, 1]), [0.0]);
        assert_eq!(rule_scores_countdown(&["4 + 4 = 8"], &[4, 4]), [1.0]);
    }

    #[test]
    fn values_and_first_errors() {
        let s = [1.0, 0.0, 1.0];
        assert_eq!(trajectory_value(&s, 1.0, 0.5, Aggregate::Min), 0.5);
        assert_eq!(trajectory_value(&s, 0.0, 0.5, Aggregate::Last), 0.5);
        assert_eq!(trajectory_value(&[0.8, 0.6], 1.0, 0.25, Aggregate::Min), 0.25 * 0.6 + 0.75);
        assert_eq!(trajectory_value(&[], 1.0, 0.5, Aggregate::Min), 0.5);
        assert_eq!(first_error(&s, 0.5), Some(1));
        assert_eq!(first_error(&[0.9, 0.7], 0.5), None);
    }
}
