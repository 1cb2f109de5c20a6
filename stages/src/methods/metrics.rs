//! Evaluation metrics over scored rows (METHODS §0.1 accuracy per arity,
//! pass@k; METHODS §1 "Evaluation": SkillFactory skill use).
//!
//! Rows are what `generate` (+ optionally `verify`) writes: the task row
//! (`id`, `nums`, `target`, …) plus `response`, `sample_index`. A row's
//! correctness is its boolean `correct` field when present (written by
//! `verify`), else the Countdown verifier run on `response` against
//! `nums`/`target`. Samples of one question share its `question_id`, or
//! failing that its `id`.
//!
//! Every function is pure; a malformed row is a [`DataError`] naming it.

use crate::common::rows::field;
use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::compose::parse_verdict;
use super::error::{bad, field, get_int, get_int_list, get_key, get_str};
use super::verify::verify_countdown;
use super::{DataError, Row};

/// Number count ("k-arg") of a Countdown row: the length of its `nums` array.
pub fn arity(row: &Row) -> Option<usize> {
    row.get(field::NUMS)?.as_array().map(Vec::len)
}

/// Whether row `index` is correct: its `correct` boolean if present (and not
/// null), else `verify_countdown(response, nums, target)`.
pub fn row_correct(row: &Row, index: usize) -> Result<bool, DataError> {
    match row.get(field::CORRECT) {
        Some(Value::Bool(b)) => Ok(*b),
        None | Some(Value::Null) => {
            let nums = get_int_list(row, index, field::NUMS)?;
            let target = get_int(row, index, field::TARGET)?;
            Ok(verify_countdown(get_str(row, index, field::RESPONSE)?, &nums, target, 0.0).correct)
        }
        Some(_) => Err(bad(index, row, "correct", "must be a boolean")),
    }
}

/// The value row `index` is grouped under for `key`: `"arity"` is
/// [`arity`] (the `nums` length; an explicit `arity` field only when the row
/// has no `nums`); any other key is that field, strings as they are and
/// numbers/booleans rendered as JSON. A missing or null field is an error.
pub fn group_key(row: &Row, index: usize, key: &str) -> Result<String, DataError> {
    if key == "arity" {
        if let Some(k) = arity(row) {
            return Ok(k.to_string());
        }
    }
    match field(row, index, key)? {
        Value::String(s) => Ok(s.clone()),
        v @ (Value::Number(_) | Value::Bool(_)) => Ok(v.to_string()),
        _ => Err(bad(
            index,
            row,
            key,
            "must be a string, number or boolean to group by",
        )),
    }
}

/// `(correct, total)` over all rows.
pub fn accuracy(rows: &[Row]) -> Result<(usize, usize), DataError> {
    let mut correct = 0;
    for (i, row) in rows.iter().enumerate() {
        correct += usize::from(row_correct(row, i)?);
    }
    Ok((correct, rows.len()))
}

/// `(correct, total)` per value of `key` (see [`group_key`]; e.g. `"arity"`).
/// Keys sort as strings (`"10"` before `"3"`).
pub fn accuracy_by(rows: &[Row], key: &str) -> Result<BTreeMap<String, (usize, usize)>, DataError> {
    let mut out: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (i, row) in rows.iter().enumerate() {
        let ok = row_correct(row, i)?;
        let e = out.entry(group_key(row, i, key)?).or_default();
        e.0 += usize::from(ok);
        e.1 += 1;
    }
    Ok(out)
}

/// The unbiased pass@k estimator of Chen et al. (2021) for a question with
/// `n` samples of which `c` are correct: `1 − C(n−c, k) / C(n, k)`, computed
/// as `1 − Π_{i=n−c+1}^{n} (1 − k/i)` (no large binomials). 1 when
/// `n − c < k`.
///
/// # Panics
/// If `k == 0`, `k > n` or `c > n`.
pub fn pass_at_k(n: usize, c: usize, k: usize) -> f64 {
    assert!(
        k >= 1 && k <= n,
        "pass@k needs 1 <= k <= n (k = {k}, n = {n})"
    );
    assert!(c <= n, "more correct samples ({c}) than samples ({n})");
    if n - c < k {
        return 1.0;
    }
    1.0 - (n - c + 1..=n)
        .map(|i| 1.0 - k as f64 / i as f64)
        .product::<f64>()
}

/// A row's question: `question_id` if present and not null, else `id`.
pub fn question_id(row: &Row, index: usize) -> Result<String, DataError> {
    match row.get("question_id") {
        Some(v) if !v.is_null() => get_key(row, index, "question_id"),
        _ => get_key(row, index, field::ID),
    }
}

/// Per question (see [`question_id`]): `(samples, correct)`.
pub fn question_counts(rows: &[Row]) -> Result<BTreeMap<String, (usize, usize)>, DataError> {
    let mut out: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (i, row) in rows.iter().enumerate() {
        let ok = row_correct(row, i)?;
        let e = out.entry(question_id(row, i)?).or_default();
        e.0 += 1;
        e.1 += usize::from(ok);
    }
    Ok(out)
}

/// pass@k averaged over the questions of one group.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PassAtK {
    /// The `k`.
    pub k: usize,
    /// Questions in the group.
    pub questions: usize,
    /// Samples (rows) in the group.
    pub samples: usize,
    /// Mean over questions of [`pass_at_k`]`(n_q, c_q, k)`.
    pub value: f64,
}

/// pass@k per value of `key` (see [`group_key`]; a question's group is that
/// of its first row), or of all rows under the group `"all"` when `key` is
/// `None`. A question with fewer than `k` samples is an
/// [`DataError::InvalidSpec`] error naming it.
pub fn pass_at_k_by(
    rows: &[Row],
    k: usize,
    key: Option<&str>,
) -> Result<BTreeMap<String, PassAtK>, DataError> {
    if k == 0 {
        return Err(DataError::InvalidSpec("pass@k needs k >= 1".into()));
    }
    let counts = question_counts(rows)?;
    let mut group_of: BTreeMap<String, String> = BTreeMap::new();
    for (i, row) in rows.iter().enumerate() {
        if let std::collections::btree_map::Entry::Vacant(e) = group_of.entry(question_id(row, i)?)
        {
            e.insert(match key {
                Some(key) => group_key(row, i, key)?,
                None => "all".to_string(),
            });
        }
    }
    let mut sums: BTreeMap<String, (usize, usize, f64)> = BTreeMap::new();
    for (q, &(n, c)) in &counts {
        if n < k {
            return Err(DataError::InvalidSpec(format!(
                "pass@{k}: question {q:?} has only {n} sample(s)"
            )));
        }
        let e = sums.entry(group_of[q].clone()).or_default();
        e.0 += 1;
        e.1 += n;
        e.2 += pass_at_k(n, c, k);
    }
    Ok(sums
        .into_iter()
        .map(|(g, (questions, samples, total))| {
            let value = total / questions as f64;
            (
                g,
                PassAtK {
                    k,
                    questions,
                    samples,
                    value,
                },
            )
        })
        .collect())
}

// ---------------------------------------------------------------------------
// SkillFactory skill use
// ---------------------------------------------------------------------------

const SAMPLE_OPEN: &str = "<sample>";
const SAMPLE_CLOSE: &str = "</sample>";
const REFLECT_OPEN: &str = "<reflect>";
const REFLECT_CLOSE: &str = "</reflect>";

/// Complete `<sample>…</sample>` blocks of a response, in order, each as
/// `(sample content, reflection content)`: the reflection is the first
/// complete `<reflect>…</reflect>` after the sample's `</sample>` and before
/// the next `<sample>`, if any. Tags match ASCII-case-insensitively; an
/// unclosed `<sample>` (a truncated response) is not a block.
pub fn sample_reflections(response: &str) -> Vec<(&str, Option<&str>)> {
    // ASCII lowercasing keeps byte offsets, so positions index `response` too
    let lower = response.to_ascii_lowercase();
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some(o) = lower[pos..].find(SAMPLE_OPEN) {
        let start = pos + o + SAMPLE_OPEN.len();
        let Some(c) = lower[start..].find(SAMPLE_CLOSE) else {
            break;
        };
        let end = start + c;
        pos = end + SAMPLE_CLOSE.len();
        let next_sample = lower[pos..]
            .find(SAMPLE_OPEN)
            .map_or(lower.len(), |n| pos + n);
        let reflection = lower[pos..next_sample].find(REFLECT_OPEN).and_then(|r| {
            let rs = pos + r + REFLECT_OPEN.len();
            let re = rs + lower[rs..next_sample].find(REFLECT_CLOSE)?;
            Some(&response[rs..re])
        });
        out.push((&response[start..end], reflection));
    }
    out
}

/// Number of complete `<sample>…</sample>` blocks in a response.
pub fn sample_blocks(response: &str) -> usize {
    sample_reflections(response).len()
}

/// The skill-use reading of one response against its Countdown instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseSkill {
    /// Complete `<sample>` blocks.
    pub samples: usize,
    /// For each sample followed by a reflection: `(verifier says the sample's
    /// last <answer> is correct, the reflection's verdict)`; the verdict is
    /// `None` when no `Correct`/`Incorrect` verdict can be read.
    pub judged: Vec<(bool, Option<bool>)>,
}

/// Read one response: count its samples and pair each reflected sample's
/// verifier label (its own last `<answer>`, checked with
/// [`verify_countdown`]) with the reflection's `<verdict>` (case-insensitive,
/// as [`parse_verdict`]).
pub fn response_skill(response: &str, nums: &[i64], target: i64) -> ResponseSkill {
    let blocks = sample_reflections(response);
    let judged = blocks
        .iter()
        .filter_map(|(sample, reflection)| {
            let reflection = (*reflection)?;
            let truth = verify_countdown(sample, nums, target, 0.0).correct;
            Some((truth, parse_verdict(reflection)))
        })
        .collect();
    ResponseSkill {
        samples: blocks.len(),
        judged,
    }
}

/// Precision / recall / F1 of one verdict class against the verifier.
/// A ratio with a zero denominator is `None` (serialized `null`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassScores {
    /// Verdicts of this class that the verifier agrees with / verdicts of this class.
    pub precision: Option<f64>,
    /// Verifier labels of this class given this verdict / verifier labels of this class.
    pub recall: Option<f64>,
    /// `2TP / (2TP + FP + FN)` (the harmonic mean of the two when both exist).
    pub f1: Option<f64>,
    /// Verifier labels of this class (`TP + FN`).
    pub support: usize,
}

fn ratio(num: usize, den: usize) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

impl ClassScores {
    fn new(tp: usize, fp: usize, fneg: usize) -> Self {
        ClassScores {
            precision: ratio(tp, tp + fp),
            recall: ratio(tp, tp + fneg),
            f1: ratio(2 * tp, 2 * tp + fp + fneg),
            support: tp + fneg,
        }
    }
}

/// SkillFactory skill use over a set of responses (METHODS §1 "Evaluation").
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SkillUse {
    /// Responses read.
    pub responses: usize,
    /// Responses with two or more `<sample>` blocks.
    pub multi_sample: usize,
    /// `multi_sample / responses` (0 when there are none).
    pub multi_sample_share: f64,
    /// Mean `<sample>` blocks per response.
    pub mean_samples: f64,
    /// Samples followed by a reflection with a readable verdict.
    pub verdicts: usize,
    /// Samples followed by a reflection without a readable verdict (not scored).
    pub unreadable_verdicts: usize,
    /// Share of `verdicts` that match the verifier.
    pub agreement: Option<f64>,
    /// Scores of the verdict "Correct" against the verifier's "correct".
    pub correct: ClassScores,
    /// Scores of the verdict "Incorrect" against the verifier's "incorrect".
    pub incorrect: ClassScores,
}

/// Skill use over rows with `response`, `nums` and `target`.
pub fn skill_use(rows: &[Row]) -> Result<SkillUse, DataError> {
    let (mut multi, mut blocks, mut unreadable) = (0, 0, 0);
    // [verifier label][verdict] with index 1 = correct
    let mut confusion = [[0usize; 2]; 2];
    for (i, row) in rows.iter().enumerate() {
        let nums = get_int_list(row, i, field::NUMS)?;
        let target = get_int(row, i, field::TARGET)?;
        let s = response_skill(get_str(row, i, field::RESPONSE)?, &nums, target);
        blocks += s.samples;
        multi += usize::from(s.samples >= 2);
        for (truth, verdict) in s.judged {
            match verdict {
                Some(v) => confusion[usize::from(truth)][usize::from(v)] += 1,
                None => unreadable += 1,
            }
        }
    }
    let n = rows.len();
    let [[ii, ic], [ci, cc]] = confusion; // e.g. ic: verifier incorrect, verdict correct
    let verdicts = ii + ic + ci + cc;
    Ok(SkillUse {
        responses: n,
        multi_sample: multi,
        multi_sample_share: ratio(multi, n).unwrap_or(0.0),
        mean_samples: ratio(blocks, n).unwrap_or(0.0),
        verdicts,
        unreadable_verdicts: unreadable,
        agreement: ratio(cc + ii, verdicts),
        correct: ClassScores::new(cc, ic, ci),
        incorrect: ClassScores::new(ii, ci, ic),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(v: Value) -> Row {
        v.as_object().unwrap().clone()
    }

    #[track_caller]
    fn close(got: f64, want: f64) {
        assert!((got - want).abs() < 1e-9, "got {got}, want {want}");
    }

    #[test]
    fn accuracy_by_arity_uses_field_or_verifier() {
        let rows = vec![
            // 3 numbers, labelled correct by `verify`
            row(
                json!({"id": "a", "nums": [2, 3, 4], "target": 14, "response": "x", "correct": true}),
            ),
            // 3 numbers, no label: verified here, 2 + 3 + 4 = 9 ≠ 14
            row(
                json!({"id": "b", "nums": [2, 3, 4], "target": 14, "response": "<answer>2 + 3 + 4</answer>"}),
            ),
            // 4 numbers, no label: 1 + 2 + 3 + 4 = 10 ✓ (null label = no label)
            row(
                json!({"id": "c", "nums": [1, 2, 3, 4], "target": 10, "response": "<answer>1+2+3+4</answer>", "correct": null}),
            ),
        ];
        assert_eq!(arity(&rows[2]), Some(4));
        assert_eq!(arity(&Row::new()), None);
        let by = accuracy_by(&rows, "arity").unwrap();
        assert_eq!(
            by.into_iter().collect::<Vec<_>>(),
            vec![("3".into(), (1, 2)), ("4".into(), (1, 1))]
        );
        assert_eq!(accuracy(&rows).unwrap(), (2, 3));
        // any other field groups by its value
        let by_id = accuracy_by(&rows, "id").unwrap();
        assert_eq!(by_id["b"], (0, 1));
        // errors name the row
        let e = accuracy_by(&rows, "model").unwrap_err();
        assert_eq!(e.to_string(), "row 0 (id \"a\"): missing field `model`");
        let mut badrow = rows[0].clone();
        badrow.insert("correct".into(), json!("yes"));
        assert!(accuracy(&[badrow])
            .unwrap_err()
            .to_string()
            .contains("`correct` must be a boolean"));
    }

    #[test]
    fn pass_at_k_values() {
        close(pass_at_k(5, 2, 1), 0.4); // c / n
                                        // 1 − C(3,2)/C(5,2) = 1 − 3/10; product form 1 − (1 − 2/4)(1 − 2/5) = 1 − 0.3
        close(pass_at_k(5, 2, 2), 0.7);
        // 1 − C(7,5)/C(10,5) = 1 − 21/252
        close(pass_at_k(10, 3, 5), 1.0 - 21.0 / 252.0);
        close(pass_at_k(5, 0, 3), 0.0);
        close(pass_at_k(5, 4, 2), 1.0); // n − c = 1 < k
        close(pass_at_k(1, 1, 1), 1.0);
        // large n stays finite (binomials would overflow)
        close(pass_at_k(2000, 1, 1), 1.0 / 2000.0);
    }

    #[test]
    #[should_panic(expected = "1 <= k <= n")]
    fn pass_at_k_rejects_k_above_n() {
        pass_at_k(2, 1, 3);
    }

    #[test]
    fn pass_at_k_grouped_by_question_and_arity() {
        let s = |q: &str, nums: Value, ok: bool| {
            row(json!({"id": q, "nums": nums, "target": 10, "response": "", "correct": ok}))
        };
        let rows = vec![
            s("q1", json!([1, 2, 3]), true),
            s("q1", json!([1, 2, 3]), false),
            s("q2", json!([1, 2, 3]), false),
            s("q2", json!([1, 2, 3]), false),
            s("q3", json!([1, 2, 3, 4]), true),
            s("q3", json!([1, 2, 3, 4]), true),
        ];
        let counts = question_counts(&rows).unwrap();
        assert_eq!(counts["q1"], (2, 1));
        // k = 1: arity 3 = mean(1/2, 0) = 0.25; arity 4 = 1
        let p1 = pass_at_k_by(&rows, 1, Some("arity")).unwrap();
        close(p1["3"].value, 0.25);
        assert_eq!((p1["3"].questions, p1["3"].samples), (2, 4));
        close(p1["4"].value, 1.0);
        // k = 2: q1 → 1 (n − c = 1 < 2), q2 → 0; arity 3 = 0.5
        let p2 = pass_at_k_by(&rows, 2, Some("arity")).unwrap();
        close(p2["3"].value, 0.5);
        // overall, k = 1: mean(0.5, 0, 1) = 0.5
        let all = pass_at_k_by(&rows, 1, None).unwrap();
        close(all["all"].value, 0.5);
        assert_eq!(all["all"].questions, 3);
        // question_id wins over id
        let mut r = rows.clone();
        for x in &mut r {
            x.insert("question_id".into(), json!("same"));
        }
        assert_eq!(question_counts(&r).unwrap()["same"], (6, 3));
        let e = pass_at_k_by(&rows, 3, None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid spec: pass@3: question \"q1\" has only 2 sample(s)"
        );
    }

    #[test]
    fn sample_blocks_counts_complete_blocks() {
        assert_eq!(sample_blocks("no blocks <answer>1</answer>"), 0);
        assert_eq!(
            sample_blocks("<sample>a</sample>\n<reflect>r</reflect>\n<SAMPLE>b</Sample>"),
            2
        );
        // a truncated trailing block does not count
        assert_eq!(sample_blocks("<sample>a</sample><sample>b"), 1);
        let r = sample_reflections("<sample>a</sample> glue <reflect>r1</reflect><sample>b</sample><sample>c</sample>x<reflect>r3</reflect>");
        assert_eq!(r, vec![("a", Some("r1")), ("b", None), ("c", Some("r3"))]);
        // an unclosed reflection is no reflection
        assert_eq!(
            sample_reflections("<sample>a</sample><reflect>r"),
            vec![("a", None)]
        );
    }

    /// nums [2, 3, 4], target 14: 2 * (3 + 4) and 4 * 3 + 2 are right;
    /// 2 + 3 + 4 = 9, 4 * 3 - 2 = 10, 2 * 3 * 4 = 24 and 3 * 4 - 2 = 10 are wrong.
    fn skill_rows() -> Vec<Row> {
        let responses = [
            // A: 2 samples; (wrong, said Incorrect) (right, said CORRECT). The
            // first sample is judged by its own answer, not the final one.
            "<think>\n<sample>\n2 + 3 + 4 = 9\n<answer>2 + 3 + 4</answer>\n</sample>\n<reflect>\n9, not 14.\n<verdict>Incorrect</verdict>\n</reflect>\nLet me try again.\n<sample>\n<answer>2 * (3 + 4)</answer>\n</sample>\n<reflect>\n<verdict>CORRECT</verdict>\n</reflect>\n</think>\n<answer>2 * (3 + 4)</answer>",
            // B: 1 sample; (wrong, said Correct)
            "<sample><answer>4 * 3 - 2</answer></sample><reflect><verdict>Correct</verdict></reflect>",
            // C: 3 samples; (right, unreadable verdict), (wrong, no reflection), (right, said Incorrect)
            "<sample><answer>4 * 3 + 2</answer></sample><reflect><verdict>maybe</verdict></reflect><sample><answer>2 * 3 * 4</answer></sample><sample><answer>(3 + 4) * 2</answer></sample><reflect><verdict>incorrect</verdict></reflect>",
            // D: no samples
            "<answer>2 * 3 * 4</answer>",
            // E: 1 sample; (wrong, said Incorrect)
            "<sample><answer>3 * 4 - 2</answer></sample><reflect><verdict>Incorrect</verdict></reflect>",
        ];
        responses
            .iter()
            .map(|r| row(json!({"nums": [2, 3, 4], "target": 14, "response": r})))
            .collect()
    }

    #[test]
    fn response_skill_pairs_samples_with_verdicts() {
        let rows = skill_rows();
        let r = |i: usize| response_skill(rows[i]["response"].as_str().unwrap(), &[2, 3, 4], 14);
        assert_eq!(
            r(0),
            ResponseSkill {
                samples: 2,
                judged: vec![(false, Some(false)), (true, Some(true))]
            }
        );
        assert_eq!(
            r(2),
            ResponseSkill {
                samples: 3,
                judged: vec![(true, None), (true, Some(false))]
            }
        );
        assert_eq!(
            r(3),
            ResponseSkill {
                samples: 0,
                judged: vec![]
            }
        );
    }

    #[test]
    fn skill_use_by_hand() {
        let s = skill_use(&skill_rows()).unwrap();
        // samples per response 2, 1, 3, 0, 1: two responses with ≥ 2, mean 7/5
        assert_eq!((s.responses, s.multi_sample), (5, 2));
        close(s.multi_sample_share, 0.4);
        close(s.mean_samples, 1.4);
        // readable verdicts (verifier, verdict): A (F,F) (T,T); B (F,T); C (T,F); E (F,F)
        //   TT = 1, FF = 2, FT = 1, TF = 1; C's "maybe" is unreadable
        assert_eq!((s.verdicts, s.unreadable_verdicts), (5, 1));
        close(s.agreement.unwrap(), 3.0 / 5.0);
        // "correct": TP = TT = 1, FP = FT = 1, FN = TF = 1 → P = R = F1 = 1/2, support 2
        assert_eq!(
            s.correct,
            ClassScores {
                precision: Some(0.5),
                recall: Some(0.5),
                f1: Some(0.5),
                support: 2
            }
        );
        // "incorrect": TP = FF = 2, FP = TF = 1, FN = FT = 1 → P = R = 2/3, F1 = 4/6, support 3
        close(s.incorrect.precision.unwrap(), 2.0 / 3.0);
        close(s.incorrect.recall.unwrap(), 2.0 / 3.0);
        close(s.incorrect.f1.unwrap(), 2.0 / 3.0);
        assert_eq!(s.incorrect.support, 3);
    }

    #[test]
    fn skill_use_edge_cases() {
        let s = skill_use(&[]).unwrap();
        assert_eq!(
            (s.responses, s.multi_sample_share, s.agreement),
            (0, 0.0, None)
        );
        assert_eq!(
            s.correct,
            ClassScores {
                precision: None,
                recall: None,
                f1: None,
                support: 0
            }
        );
        // only "Correct" verdicts on right samples: incorrect class has no support and no predictions
        let rows = vec![row(json!({"nums": [2, 3, 4], "target": 14,
            "response": "<sample><answer>2*(3+4)</answer></sample><reflect><verdict>Correct</verdict></reflect>"}))];
        let s = skill_use(&rows).unwrap();
        assert_eq!(s.correct.f1, Some(1.0));
        assert_eq!(
            s.incorrect,
            ClassScores {
                precision: None,
                recall: None,
                f1: None,
                support: 0
            }
        );
        let e = skill_use(&[row(json!({"id": "z", "response": ""}))]).unwrap_err();
        assert_eq!(e.to_string(), "row 0 (id \"z\"): missing field `nums`");
        // serializes for the metrics file (null for undefined ratios)
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["incorrect"]["f1"], Value::Null);
    }
}
