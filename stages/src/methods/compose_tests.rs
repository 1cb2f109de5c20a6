//! Tests for SkillFactory trace composition: structure, S4 filtering, determinism.

use super::*;

fn row(v: Value) -> Row {
    v.as_object().unwrap().clone()
}

/// Countdown samples for question `q` with nums [6, 4] → 24: `good` correct, `bad` wrong.
fn countdown_samples(q: &str, good: usize, bad: usize) -> Vec<Row> {
    let mut rows = Vec::new();
    for k in 0..good {
        let resp = format!("Attempt {k}: 6 * 4 = 24\n<answer>6 * 4</answer>\n");
        rows.push(row(
            json!({"id": q, "prompt": "make 24", "nums": [6, 4], "target": 24,
            "response": resp, "correct": true, "answer": "6 * 4", "variant": format!("v{k}")}),
        ));
    }
    for k in 0..bad {
        let resp = format!("Attempt {k}: 6 + 4 = 10\n<answer>6 + 4</answer>");
        rows.push(row(
            json!({"id": q, "prompt": "make 24", "nums": [6, 4], "target": 24,
            "response": resp, "correct": false, "answer": "6 + 4", "variant": format!("w{k}")}),
        ));
    }
    rows
}

/// (sample body, reflect body) pairs of a trace, in order.
fn blocks(trace: &str) -> Vec<(String, String)> {
    trace
        .split("<sample>\n")
        .skip(1)
        .map(|b| {
            let (sample, rest) = b.split_once("\n</sample>\n<reflect>\n").unwrap();
            let reflect = rest.split_once("\n</reflect>\n").unwrap().0;
            (sample.to_string(), reflect.to_string())
        })
        .collect()
}

#[test]
fn traces_have_n_samples_correct_last_and_matching_verdicts() {
    let rows = countdown_samples("q1", 2, 4);
    let out = compose(&rows, &ComposeSpec::default()).unwrap();
    assert_eq!(out.len(), 5);
    for (n, r) in (1..=5).zip(&out) {
        let t = r["response"].as_str().unwrap();
        assert_eq!(r["id"], format!("q1-n{n}"));
        assert_eq!(r["n_samples"], json!(n));
        assert_eq!(r["messages"][1]["content"].as_str().unwrap(), t);
        assert_eq!(
            r["messages"][0],
            json!({"role": "user", "content": "make 24"})
        );
        let b = blocks(t);
        assert_eq!(b.len(), n);
        assert_eq!(t.matches("<sample>").count(), n);
        for (i, (sample, reflect)) in b.iter().enumerate() {
            let correct = sample.contains("6 * 4");
            assert_eq!(parse_verdict(reflect), Some(correct), "{reflect}");
            if i + 1 == n {
                assert!(correct, "last sample must be correct");
            }
        }
        assert!(t.starts_with("<think>\n<sample>\n"));
        assert!(t.ends_with("\n\n<answer>\n6 * 4\n</answer>"));
        let after_think = t.split("</think>\n\n").nth(1).unwrap();
        assert!(ENDINGS
            .iter()
            .any(|e| after_think.starts_with(&format!("{e}\n\n<answer>"))));
        // exactly N-1 glue lines between </reflect> and the next <sample>
        assert_eq!(t.matches("</reflect>\n<sample>").count(), 0);
        assert_eq!(t.matches("</reflect>\n</think>").count(), 1);
    }
    let keys: Vec<&str> = out[0].keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "id",
            "question_id",
            "prompt",
            "response",
            "messages",
            "n_samples"
        ]
    );
}

#[test]
fn rule_reflections_explain_the_check() {
    let (good, v) = rule_reflection("<answer>8 / (3 - 8/3)</answer>", &[8, 3, 8, 3], 24);
    assert!(v);
    assert!(
        good.starts_with("Let me check: 8 / (3 - 8/3) = 24, which equals the target 24"),
        "{good}"
    );
    assert!(good.ends_with("<verdict>\nCorrect\n</verdict>"));
    let (wrong, v) = rule_reflection("<answer>7 / 2</answer>", &[7, 2], 3);
    assert!(
        !v && wrong.contains("7 / 2 = 7/2, which does not equal the target 3"),
        "{wrong}"
    );
    let (misuse, _) = rule_reflection("<answer>7 * 7</answer>", &[7, 2], 49);
    assert!(
        misuse.contains("uses the numbers [7, 7], but the puzzle gives [7, 2]"),
        "{misuse}"
    );
    let (none, v) = rule_reflection("no idea", &[7, 2], 9);
    assert!(
        !v && none.contains("never gives a final answer")
            && none.ends_with("Incorrect\n</verdict>")
    );
}

#[test]
fn field_reflections_are_filtered() {
    assert_eq!(parse_verdict("ok <VERDICT> correct </Verdict>"), Some(true));
    assert_eq!(
        parse_verdict("<verdict>Incorrect</verdict> <verdict>Correct</verdict>"),
        Some(false)
    );
    assert_eq!(parse_verdict("<verdict>maybe</verdict>"), None);
    assert_eq!(parse_verdict("Correct"), None);
    assert!(keep_reflection("fine\n<verdict>Correct</verdict>", true));
    assert!(!keep_reflection("fine\n<verdict>Correct</verdict>", false));
    assert!(!keep_reflection(
        "Good IDEA\n<verdict>Correct</verdict>",
        true
    ));
    assert!(!keep_reflection(
        "done fast\n<verdict>Correct</verdict>",
        true
    ));

    let spec = ComposeSpec {
        reflect: Reflect::Field,
        ..ComposeSpec::default()
    };
    let rows = vec![
        row(
            json!({"question_id": "a", "prompt": "p", "response": "r1 <answer>1</answer>", "correct": true, "answer": "1",
            "reflections": ["an idea <verdict>Correct</verdict>", "checked <verdict>correct</verdict>"]}),
        ),
        row(
            json!({"question_id": "a", "prompt": "p", "response": "r2", "correct": false, "answer": null,
            "reflections": ["<verdict>Correct</verdict>"]}),
        ),
        row(
            json!({"question_id": "a", "prompt": "p", "response": "r3", "correct": false, "answer": "2",
            "reflections": "wrong <verdict>Incorrect</verdict>"}),
        ),
        // question b: only a wrong sample survives, so it is dropped
        row(
            json!({"question_id": "b", "prompt": "p", "response": "x", "correct": false, "answer": "2",
            "reflections": ["<verdict>Incorrect</verdict>"]}),
        ),
        row(
            json!({"question_id": "b", "prompt": "p", "response": "y", "correct": true, "answer": "1",
            "reflections": ["<verdict>Incorrect</verdict>"]}),
        ),
    ];
    let out = compose(&rows, &spec).unwrap();
    assert_eq!(out.len(), 2, "a: two valid samples (r1, r3) → N = 1, 2");
    let t2 = out[1]["response"].as_str().unwrap();
    assert!(t2.contains(
        "<sample>\nr3\n</sample>\n<reflect>\nwrong <verdict>Incorrect</verdict>\n</reflect>\n"
    ));
    assert!(t2.contains("<reflect>\nchecked <verdict>correct</verdict>\n</reflect>\n</think>"));
    assert!(!t2.contains("r2") && !t2.contains("idea"));

    let strict = ComposeSpec {
        min_valid: 3,
        ..spec.clone()
    };
    assert!(compose(&rows, &strict).unwrap().is_empty());
}

#[test]
fn deterministic_grouped_in_order_and_seed_sensitive() {
    let mut rows = countdown_samples("z", 3, 3);
    rows.extend(countdown_samples("a", 1, 5));
    rows.swap(1, 8); // interleave questions; "z" still appears first
    let a = compose(&rows, &ComposeSpec::default()).unwrap();
    let b = compose(&rows, &ComposeSpec::default()).unwrap();
    assert_eq!(
        serde_json::to_string(&a).unwrap(),
        serde_json::to_string(&b).unwrap()
    );
    assert_eq!(a[0]["question_id"], "z");
    assert_eq!(a[5]["question_id"], "a");
    let c = compose(
        &rows,
        &ComposeSpec {
            seed: 1,
            ..ComposeSpec::default()
        },
    )
    .unwrap();
    assert_ne!(a, c);
    // a question's traces do not depend on the other questions
    let only_a: Vec<Row> = rows.iter().filter(|r| r["id"] == "a").cloned().collect();
    let alone = compose(&only_a, &ComposeSpec::default()).unwrap();
    assert_eq!(alone[..], a[5..]);
}

#[test]
fn no_correct_sample_drops_the_question_and_unique_variants_caps_n() {
    assert!(
        compose(&countdown_samples("q", 0, 6), &ComposeSpec::default())
            .unwrap()
            .is_empty()
    );
    let mut rows = countdown_samples("q", 1, 4);
    for r in rows.iter_mut().skip(1) {
        r.insert(
            "variant".into(),
            json!(if r["response"].as_str().unwrap().contains("Attempt 0") {
                "x"
            } else {
                "y"
            }),
        );
    }
    // variants: v0 (correct), x, y, y, y → at most 3 distinct per trace
    let spec = ComposeSpec {
        unique_variants: true,
        ..ComposeSpec::default()
    };
    let out = compose(&rows, &spec).unwrap();
    assert_eq!(out.len(), 3);
    let mut bad = rows[0].clone();
    bad.remove("correct");
    let err = compose(&[bad], &ComposeSpec::default())
        .unwrap_err()
        .to_string();
    assert_eq!(err, "row 0 (id \"q\"): missing field `correct`");
}

#[test]
fn phrase_lists_avoid_the_filtered_words() {
    assert_eq!(
        (
            GENERIC_GLUE.len(),
            CORRECT_GLUE.len(),
            INCORRECT_GLUE.len(),
            ENDINGS.len()
        ),
        (11, 13, 13, 7)
    );
    for p in GENERIC_GLUE
        .iter()
        .chain(&CORRECT_GLUE)
        .chain(&INCORRECT_GLUE)
        .chain(&ENDINGS)
    {
        let l = p.to_lowercase();
        assert!(!l.contains("idea") && !l.contains("fast"), "{p}");
    }
}
