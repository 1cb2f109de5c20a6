//! Table tests and a never-panics property for the Countdown verifier.

use super::*;
use proptest::prelude::*;
use serde_json::json;

fn v(resp: &str, nums: &[i64], target: i64) -> Verdict {
    verify_countdown(resp, nums, target, 0.1)
}

#[test]
fn table() {
    let cases: &[(&str, &[i64], i64, &str)] = &[
        ("<answer> (1 + 2) / 3 </answer>", &[1, 2, 3], 1, "correct"),
        ("<answer>(1 + 2) / 3</answer>", &[3, 2, 1], 2, "wrong_value"),
        (
            "<answer>8 / (3 - 8/3)</answer>",
            &[8, 3, 8, 3],
            24,
            "correct",
        ),
        (
            "<answer>8/(3-8/3)</answer>",
            &[8, 3, 8],
            24,
            "wrong_numbers",
        ),
        ("<answer>25 + 25</answer>", &[25, 2], 50, "wrong_numbers"),
        ("<answer>25 + 2</answer>", &[25, 2, 3], 27, "wrong_numbers"),
        (
            "<answer>25 + 2 + 3 + 4</answer>",
            &[25, 2, 3],
            34,
            "wrong_numbers",
        ),
        (
            "<answer>1+2</answer> then <answer>4*5</answer>",
            &[4, 5],
            20,
            "correct",
        ),
        (
            "<answer>4*5</answer> then <answer>1+2</answer>",
            &[4, 5],
            20,
            "wrong_numbers",
        ),
        (
            "<answer>10 / (5 - 5)</answer>",
            &[10, 5, 5],
            2,
            "div_by_zero",
        ),
        ("<answer>\n  (6 *\n 4)\t</answer>", &[6, 4], 24, "correct"),
        ("the answer is 24", &[6, 4], 24, "no_answer"),
        ("<answer>6*4", &[6, 4], 24, "no_answer"),
        ("<answer>6 x 4</answer>", &[6, 4], 24, "bad_chars"),
        ("<answer></answer>", &[6, 4], 24, "bad_chars"),
        ("<answer>6 * 4 = 24</answer>", &[6, 4], 24, "bad_chars"),
        ("<answer>6 * (4</answer>", &[6, 4], 24, "parse_error"),
        ("<answer>6 4</answer>", &[6, 4], 24, "parse_error"),
        ("<answer>6 ** 4</answer>", &[6, 4], 1296, "parse_error"),
        ("<answer>6 // 4</answer>", &[6, 4], 1, "parse_error"),
        ("<answer>07 + 3</answer>", &[7, 3], 10, "parse_error"),
        ("<answer>-3 + 13</answer>", &[3, 13], 10, "correct"),
        ("<answer>13 - -3</answer>", &[13, 3], 16, "correct"),
        ("<answer>(((2)))*((5))</answer>", &[2, 5], 10, "correct"),
        ("<answer>1.5 * 4</answer>", &[1, 5, 4], 6, "correct"),
        (
            "<answer>99999999999999999999999 * 2</answer>",
            &[2, 9],
            0,
            "wrong_numbers",
        ),
        ("<answer>7 / 2</answer>", &[7, 2], 3, "wrong_value"),
        ("<ANSWER>6*4</ANSWER>", &[6, 4], 24, "no_answer"),
    ];
    for (resp, nums, target, reason) in cases {
        let got = v(resp, nums, *target);
        assert_eq!(
            got.reason, *reason,
            "{resp:?} nums={nums:?} target={target}"
        );
        assert_eq!(got.correct, *reason == "correct");
        let want_reward = match *reason {
            "correct" => 1.0,
            "no_answer" => 0.0,
            _ => 0.1,
        };
        assert_eq!(got.reward, want_reward, "{resp:?}");
    }
}

#[test]
fn overflow_is_invalid_not_a_panic() {
    let big = 4_000_000_000_000_000_000i64;
    let r = v(
        "<answer>4000000000000000000 * 4000000000000000000 * 4000000000000000000</answer>",
        &[big, big, big],
        1,
    );
    assert_eq!(r.reason, "overflow");
    assert_eq!(evaluate("1/3 - 1/3").unwrap(), Ratio::int(0));
    assert_eq!(evaluate("8 / (3 - 8/3)").unwrap(), Ratio::int(24));
    assert_eq!(evaluate("17/3").unwrap().to_string(), "17/3");
    assert_eq!(evaluate("-(2)/4").unwrap().to_string(), "-1/2");
    let deep = format!("{}1{}", "(".repeat(500), ")".repeat(500));
    assert_eq!(evaluate(&deep), Err(EvalError::Parse));
    let signs = format!("{}1", "-".repeat(100_001));
    assert_eq!(evaluate(&signs).unwrap(), Ratio::int(-1));
}

#[test]
fn extraction_is_last_non_overlapping_match() {
    assert_eq!(
        extract_answer("<answer> a </answer><answer>b</answer>"),
        Some("b")
    );
    assert_eq!(
        extract_answer("<answer>a<answer>b</answer>"),
        Some("a<answer>b")
    );
    assert_eq!(extract_answer("<answer>a</answer><answer>b"), Some("a"));
    assert_eq!(extract_answer("no tags"), None);
    assert_eq!(
        extract_answer("<answer>\n1\n+\n2\n</answer>"),
        Some("1\n+\n2")
    );
}

#[test]
fn verify_rows_adds_fields_and_reports_bad_rows() {
    let rows: Vec<Row> = vec![
        json!({"id": "a", "nums": [6, 4], "target": 24, "response": "<answer>6*4</answer>"}),
        json!({"id": "b", "nums": [6, 4], "target": 24, "response": "<answer>6+4</answer>"}),
        json!({"id": "c", "nums": [6, 4], "target": 24, "response": "none"}),
    ]
    .into_iter()
    .map(|v| v.as_object().unwrap().clone())
    .collect();
    let out = verify_rows(rows, 0.0).unwrap();
    assert_eq!(out[0]["answer"], json!("6*4"));
    assert_eq!(out[0]["correct"], json!(true));
    assert_eq!(out[0]["reward"], json!(1.0));
    assert_eq!(out[1]["correct"], json!(false));
    assert_eq!(out[1]["reward"], json!(0.0));
    assert_eq!(out[2]["answer"], Value::Null);
    let keys: Vec<&str> = out[0].keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        ["id", "nums", "target", "response", "answer", "correct", "reward"]
    );

    let bad = vec![json!({"id": "z", "nums": [1], "response": "x"})
        .as_object()
        .unwrap()
        .clone()];
    let err = verify_rows(bad, 0.1).unwrap_err();
    assert_eq!(err.to_string(), "row 0 (id \"z\"): missing field `target`");
}

proptest! {
    #[test]
    fn never_panics_on_arbitrary_text(s in ".{0,200}", nums in proptest::collection::vec(any::<i64>(), 0..5), t in any::<i64>()) {
        let r = verify_countdown(&s, &nums, t, 0.1);
        prop_assert!(r.reward == 0.0 || r.reward == 0.1 || r.reward == 1.0);
    }

    #[test]
    fn never_panics_on_expression_like_text(s in "[0-9+*/().\\- ]{0,80}", big in any::<i64>()) {
        let resp = format!("<answer>{s}</answer>");
        let _ = verify_countdown(&resp, &[big, 3, 7], big, 0.1);
        let _ = evaluate(&s);
    }
}
