//! A tiny arithmetic task (`What is 12 + 7?`) for smoke-testing pipelines end to
//! end without Countdown's search, plus its numeric checker.
//!
//! Operands have exactly `digits` digits (0–9 for one digit). Division is kept
//! exact by drawing the divisor and a quotient and setting the dividend to their
//! product (so the dividend may have fewer digits); subtraction may go negative.
//! Instance `i` uses the stream `(seed, "arithmetic", i)`.

use crate::common::rows::field;
use serde_json::Value;

use retort_lm::rng::Rng;
use super::{DataError, Row};

/// `count` rows `{id, prompt, question, answer}`; `digits` in 1..=9, `ops` ⊆ `+-*/`.
pub fn generate_arithmetic(
    count: usize,
    digits: usize,
    ops: &[char],
    seed: u64,
) -> Result<Vec<Row>, DataError> {
    if !(1..=9).contains(&digits) {
        return Err(DataError::InvalidSpec(format!(
            "arithmetic digits {digits} must be 1..=9"
        )));
    }
    if ops.is_empty() || ops.iter().any(|c| !"+-*/".contains(*c)) {
        return Err(DataError::InvalidSpec(format!(
            "arithmetic ops {ops:?} must be a non-empty subset of + - * /"
        )));
    }
    let hi = 10i64.pow(digits as u32) - 1;
    let lo = if digits == 1 {
        0
    } else {
        10i64.pow(digits as u32 - 1)
    };
    let rows = (0..count)
        .map(|i| {
            let mut rng = Rng::stream(seed, "arithmetic", i as u64);
            let op = *rng.choose(ops).expect("validated non-empty");
            let (a, b, ans) = match op {
                '/' => {
                    let b = rng.range_i64(lo.max(1), hi);
                    let q = rng.range_i64(1, hi / b);
                    (b * q, b, q)
                }
                _ => {
                    let (a, b) = (rng.range_i64(lo, hi), rng.range_i64(lo, hi));
                    (
                        a,
                        b,
                        match op {
                            '+' => a + b,
                            '-' => a - b,
                            _ => a * b,
                        },
                    )
                }
            };
            let question = format!("{a} {op} {b}");
            let mut row = Row::new();
            row.insert(field::ID.into(), Value::String(format!("arith-{i}")));
            row.insert(
                "prompt".into(),
                Value::String(format!(
                    "What is {question}? Give the final answer in <answer></answer> tags."
                )),
            );
            row.insert("question".into(), Value::String(question));
            row.insert(field::ANSWER.into(), Value::String(ans.to_string()));
            row
        })
        .collect();
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::methods::verify::evaluate;

    #[test]
    fn generates_consistent_deterministic_rows() {
        let rows = generate_arithmetic(60, 2, &['+', '-', '*', '/'], 3).unwrap();
        assert_eq!(
            rows,
            generate_arithmetic(60, 2, &['+', '-', '*', '/'], 3).unwrap()
        );
        assert_ne!(
            rows,
            generate_arithmetic(60, 2, &['+', '-', '*', '/'], 4).unwrap()
        );
        let mut ops_seen = std::collections::HashSet::new();
        for r in &rows {
            let q = r["question"].as_str().unwrap();
            let a = r["answer"].as_str().unwrap();
            assert_eq!(evaluate(q).unwrap(), evaluate(a).unwrap(), "{q} = {a}");
            assert_eq!(
                r["prompt"],
                format!("What is {q}? Give the final answer in <answer></answer> tags.")
            );
            let v = crate::verifiers::Verifier::Numeric(Default::default())
                .verify(&format!("so <answer> {a} </answer>"), r)
                .unwrap();
            assert!(v.correct, "{q} = {a}");
            ops_seen.insert(q.split(' ').nth(1).unwrap().to_string());
        }
        assert_eq!(ops_seen.len(), 4);
        let keys: Vec<&str> = rows[0].keys().map(String::as_str).collect();
        assert_eq!(keys, ["id", "prompt", "question", "answer"]);
        assert!(generate_arithmetic(1, 0, &['+'], 0).is_err());
        assert!(generate_arithmetic(1, 2, &['^'], 0).is_err());
    }
}
