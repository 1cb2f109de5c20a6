//! SkillFactory silver traces (METHODS §1, stages S4–S5, selection `*C_full`),
//! after `skill_factory/sft_data_creation.py`.
//!
//! Input: verified samples (several per question). Each sample needs a reflection
//! whose verdict agrees with the checker:
//! - [`Reflect::Field`]: model-written `reflections` from the row, filtered as S4 says —
//!   the first `<verdict>…</verdict>` is read case-insensitively (tags too) and must
//!   equal the `correct` label; reflections containing "idea" or "fast" (any case)
//!   are dropped.
//! - [`Reflect::Rule`]: a reflection written here from the Countdown verifier
//!   (needs `nums` and `target`), so the stage runs without a model. It goes through
//!   the same agreement check, so a sample whose `correct` label disagrees with this
//!   verifier is dropped rather than taught with a contradicting verdict.
//!
//! Samples without a surviving reflection are dropped; a question is kept with at
//! least `min_valid` valid samples and at least one correct one. For every
//! `N = 1..=min(max_samples, valid)` one trace is emitted: a random correct sample
//! last, `N−1` other valid samples (random, random order) before it, each with a
//! random surviving reflection and a glue phrase, in METHODS' template. (The upstream
//! code's `"\n".join` puts three newlines after `</think>`; METHODS' template, used
//! here, has a blank line.) Responses and reflections are trimmed.
//!
//! Randomness: question `q` uses the stream `(seed, "compose/<q>")`, so its traces do
//! not change when other questions are added or removed. Questions keep their
//! first-appearance order. With `unique_variants`, every sample of a trace has a
//! different `variant` (a missing variant counts as one shared variant), and `N`
//! stops growing when distinct variants run out (upstream skips such questions).

use crate::common::rows::field;
use std::collections::HashMap;

use serde_json::{json, Value};

use super::error::{bad, get_bool, get_int, get_int_list, get_key, get_str};
use retort_lm::rng::Rng;
use super::verify::{digit_runs, evaluate, extract_answer, verify_countdown};
use super::{DataError, Row};

/// Where each sample's reflection comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reflect {
    /// Written from the Countdown verifier's check (rows need `nums`, `target`).
    Rule,
    /// Taken from the row's `reflections` and filtered (S4).
    Field,
}

/// Parameters of S4–S5.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComposeSpec {
    /// Source of reflections.
    pub reflect: Reflect,
    /// `N_max`: the longest trace has this many samples.
    pub max_samples: usize,
    /// `num_responses`: minimum valid samples for a question to be used.
    pub min_valid: usize,
    /// Every sample of a trace from a different prompt `variant` (`force_unique_prompting_types`).
    pub unique_variants: bool,
    /// Seed of all selections and phrase choices.
    pub seed: u64,
}

impl Default for ComposeSpec {
    fn default() -> Self {
        ComposeSpec {
            reflect: Reflect::Rule,
            max_samples: 5,
            min_valid: 1,
            unique_variants: false,
            seed: 0,
        }
    }
}

/// After sample i when it was correct / incorrect, unioned with `GENERIC_GLUE`.
pub const GENERIC_GLUE: [&str; 11] = [
    "Let me look at this once more before I commit.",
    "Before settling on anything, I want to check again.",
    "I should go over this problem a second time.",
    "Let me work through it again to be sure.",
    "Hold on, let me re-examine this.",
    "It is worth solving this once more as a check.",
    "Wait. Let me reconsider the problem.",
    "Let me take another pass at this.",
    "I'll verify this by attempting the problem again.",
    "One more attempt will tell me whether this holds up.",
    "Let me re-derive the result from scratch.",
];
/// Glue after a correct sample ("looks right, but let me re-verify").
pub const CORRECT_GLUE: [&str; 13] = [
    "That answer checks out, but I want to confirm it with another attempt.",
    "The result matches the target; let me solve it again to be certain.",
    "This looks right. I'll redo it independently to make sure.",
    "My answer appears correct, though a second attempt would raise my confidence.",
    "That seems to work. Let me confirm it by solving the problem another way.",
    "I think this is correct, but I'd like to double-check.",
    "The check passed. Still, one more attempt won't hurt.",
    "This answer holds up so far; let me verify it again.",
    "Everything adds up here, but I'll try once more to be safe.",
    "That worked out. I'll repeat the work to confirm.",
    "The previous attempt looks sound, yet I want a second confirmation.",
    "So far so good. Let me make sure by trying again.",
    "My reasoning seems valid; a fresh attempt will confirm it.",
];
/// Glue after an incorrect sample ("that was wrong, let me try again").
pub const INCORRECT_GLUE: [&str; 13] = [
    "That attempt was wrong. Let me try again.",
    "The check failed, so I need a different approach.",
    "That does not reach the target. I'll start over.",
    "I made a mistake there. Let me rework the problem.",
    "That answer is incorrect; time for another attempt.",
    "This one does not work. Let me think about it differently.",
    "My previous answer fails the check. I'll try a new combination.",
    "That was not right. Let me go back and try again.",
    "The result is off, so I will reconsider my steps.",
    "I see the error now. Let me attempt it once more.",
    "That approach did not pan out. Let me try another.",
    "The answer does not hold up. I'll give it another try.",
    "Since that failed, I'll rethink the problem and answer again.",
];
/// Phrase between `</think>` and the final `<answer>`.
pub const ENDINGS: [&str; 7] = [
    "The final answer is:",
    "So the answer is:",
    "Therefore, my final answer is:",
    "Putting it all together, the answer is:",
    "After checking, the final result is:",
    "This gives the final answer:",
    "In conclusion, the answer is:",
];

const VERDICT_CORRECT: &str = "<verdict>\nCorrect\n</verdict>";
const VERDICT_INCORRECT: &str = "<verdict>\nIncorrect\n</verdict>";

/// The first `<verdict>…</verdict>` (tags and content case-insensitive):
/// `Some(true)` for "correct", `Some(false)` for "incorrect", else `None`.
pub fn parse_verdict(reflection: &str) -> Option<bool> {
    let lower = reflection.to_ascii_lowercase(); // same byte offsets as the original
    let start = lower.find("<verdict>")? + "<verdict>".len();
    let end = start + lower[start..].find("</verdict>")?;
    match lower[start..end].trim() {
        "correct" => Some(true),
        "incorrect" => Some(false),
        _ => None,
    }
}

/// S4 filter for one model-written reflection.
pub fn keep_reflection(reflection: &str, correct: bool) -> bool {
    let lower = reflection.to_lowercase();
    parse_verdict(reflection) == Some(correct) && !lower.contains("idea") && !lower.contains("fast")
}

fn list(nums: &[i64]) -> String {
    let items: Vec<String> = nums.iter().map(i64::to_string).collect();
    format!("[{}]", items.join(", "))
}

/// A reflection written from the verifier's check and its verdict.
pub fn rule_reflection(response: &str, nums: &[i64], target: i64) -> (String, bool) {
    let v = verify_countdown(response, nums, target, 0.0);
    let a = v.answer.clone().unwrap_or_default();
    let value = || evaluate(&a).map(|r| r.to_string()).unwrap_or_default();
    let body = match v.reason {
        "correct" => format!(
            "Let me check: {a} = {}, which equals the target {target}, and it uses each of {} exactly once.",
            value(),
            list(nums)
        ),
        "no_answer" => "The response never gives a final answer inside <answer></answer> tags, so there is nothing to check.".to_string(),
        "bad_chars" => "The final answer is not a plain equation: it may only contain the numbers, + - * / and parentheses.".to_string(),
        "wrong_numbers" => format!(
            "Let me check: {a} uses the numbers [{}], but the puzzle gives {} and each must be used exactly once.",
            digit_runs(&a).join(", "),
            list(nums)
        ),
        "parse_error" => format!("Let me check: {a} is not a well-formed equation, so it cannot be evaluated."),
        "div_by_zero" => format!("Let me check: {a} divides by zero, so it has no value."),
        "overflow" => format!("Let me check: {a} produces numbers too large to evaluate."),
        _ => format!("Let me check: {a} = {}, which does not equal the target {target}.", value()),
    };
    let verdict = if v.correct {
        VERDICT_CORRECT
    } else {
        VERDICT_INCORRECT
    };
    (format!("{body}\n{verdict}"), v.correct)
}

/// One sample that survived S4.
struct Sample {
    response: String,
    correct: bool,
    answer: String,
    variant: String,
    reflections: Vec<String>,
}

fn parse_sample(row: &Row, i: usize, spec: &ComposeSpec) -> Result<Option<Sample>, DataError> {
    let response = get_str(row, i, field::RESPONSE)?.trim().to_string();
    let correct = get_bool(row, i, field::CORRECT)?;
    let reflections: Vec<String> = match spec.reflect {
        Reflect::Rule => {
            let (text, verdict) = rule_reflection(
                &response,
                &get_int_list(row, i, field::NUMS)?,
                get_int(row, i, field::TARGET)?,
            );
            if verdict == correct {
                vec![text]
            } else {
                vec![]
            }
        }
        Reflect::Field => {
            let raw: Vec<&str> = match row.get("reflections") {
                None | Some(Value::Null) => vec![],
                Some(Value::String(s)) => vec![s.as_str()],
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|v| {
                        v.as_str().ok_or_else(|| {
                            bad(i, row, "reflections", "must be an array of strings")
                        })
                    })
                    .collect::<Result<_, _>>()?,
                Some(_) => return Err(bad(i, row, "reflections", "must be an array of strings")),
            };
            raw.into_iter()
                .filter(|r| keep_reflection(r, correct))
                .map(|r| r.trim().to_string())
                .collect()
        }
    };
    if reflections.is_empty() {
        return Ok(None);
    }
    let answer = match row.get(field::ANSWER) {
        Some(Value::String(s)) => s.trim().to_string(),
        _ => extract_answer(&response).unwrap_or_default().to_string(),
    };
    if correct && answer.is_empty() {
        return Err(bad(
            i,
            row,
            "answer",
            "is empty on a correct sample and the response has no <answer> tag",
        ));
    }
    let variant = match row.get("variant") {
        Some(Value::String(s)) => s.clone(),
        _ => String::new(),
    };
    Ok(Some(Sample {
        response,
        correct,
        answer,
        variant,
        reflections,
    }))
}

/// Indices of the samples of one trace of length `n`, the correct one last;
/// `None` when `unique_variants` cannot be satisfied.
fn select(rng: &mut Rng, samples: &[Sample], n: usize, unique: bool) -> Option<Vec<usize>> {
    let correct: Vec<usize> = (0..samples.len()).filter(|&i| samples[i].correct).collect();
    let last = *rng.choose(&correct)?;
    let mut chosen = if unique {
        let mut variants: Vec<&str> = Vec::new();
        for s in samples {
            if s.variant != samples[last].variant && !variants.contains(&s.variant.as_str()) {
                variants.push(&s.variant);
            }
        }
        if variants.len() < n - 1 {
            return None;
        }
        let picked = rng.sample(&variants, n - 1);
        let mut out = Vec::new();
        for v in picked {
            let of_v: Vec<usize> = (0..samples.len())
                .filter(|&i| samples[i].variant == v)
                .collect();
            out.push(*rng.choose(&of_v)?);
        }
        out
    } else {
        let others: Vec<usize> = (0..samples.len()).filter(|&i| i != last).collect();
        rng.sample(&others, n - 1)
    };
    chosen.push(last);
    Some(chosen)
}

fn trace(rng: &mut Rng, samples: &[Sample], picks: &[usize]) -> String {
    let mut t = String::from("<think>\n");
    for (pos, &i) in picks.iter().enumerate() {
        let s = &samples[i];
        let reflection = rng
            .choose(&s.reflections)
            .expect("valid samples have a reflection");
        t += &format!(
            "<sample>\n{}\n</sample>\n<reflect>\n{reflection}\n</reflect>\n",
            s.response
        );
        if pos + 1 < picks.len() {
            let specific: &[&str] = if s.correct {
                &CORRECT_GLUE
            } else {
                &INCORRECT_GLUE
            };
            let pool: Vec<&str> = specific
                .iter()
                .chain(GENERIC_GLUE.iter())
                .copied()
                .collect();
            t += rng.choose(&pool).expect("non-empty");
            t.push('\n');
        }
    }
    let ending = rng.choose(&ENDINGS).expect("non-empty");
    let last = &samples[*picks.last().expect("n >= 1")];
    t += &format!(
        "</think>\n\n{ending}\n\n<answer>\n{}\n</answer>",
        last.answer
    );
    t
}

/// S4 + S5: one SFT row per (question, N). See the module docs for the rules.
pub fn compose(rows: &[Row], spec: &ComposeSpec) -> Result<Vec<Row>, DataError> {
    if spec.max_samples == 0 {
        return Err(DataError::InvalidSpec(
            "compose max_samples must be at least 1".into(),
        ));
    }
    let mut order: Vec<(String, String, Vec<Sample>)> = Vec::new();
    let mut slot: HashMap<String, usize> = HashMap::new();
    for (i, row) in rows.iter().enumerate() {
        let qid = match row.get("question_id") {
            Some(v) if !v.is_null() => get_key(row, i, "question_id")?,
            _ => get_key(row, i, field::ID)?,
        };
        let prompt = get_str(row, i, field::PROMPT)?;
        let sample = parse_sample(row, i, spec)?;
        let k = *slot.entry(qid.clone()).or_insert_with(|| {
            order.push((qid.clone(), prompt.to_string(), Vec::new()));
            order.len() - 1
        });
        order[k].2.extend(sample);
    }
    let mut out = Vec::new();
    for (qid, prompt, samples) in order {
        if samples.len() < spec.min_valid || !samples.iter().any(|s| s.correct) {
            continue;
        }
        let mut rng = Rng::stream(spec.seed, &format!("compose/{qid}"), 0);
        for n in 1..=spec.max_samples.min(samples.len()) {
            let Some(picks) = select(&mut rng, &samples, n, spec.unique_variants) else {
                break;
            };
            let t = trace(&mut rng, &samples, &picks);
            let mut row = Row::new();
            row.insert(field::ID.into(), Value::String(format!("{qid}-n{n}")));
            row.insert("question_id".into(), Value::String(qid.clone()));
            row.insert(field::PROMPT.into(), Value::String(prompt.clone()));
            row.insert(field::RESPONSE.into(), Value::String(t.clone()));
            row.insert(
                "messages".into(),
                json!([{"role": "user", "content": prompt}, {"role": "assistant", "content": t}]),
            );
            row.insert("n_samples".into(), json!(n));
            out.push(row);
        }
    }
    Ok(out)
}

#[cfg(test)]
#[path = "compose_tests.rs"]
mod tests;
