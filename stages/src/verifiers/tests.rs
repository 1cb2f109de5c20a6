//! Fixture tables of awkward answers, one per verifier, plus the YAML forms.

use serde_json::{json, Value};

use super::*;

fn row(v: Value) -> Row {
    v.as_object().expect("fixture rows are objects").clone()
}

/// Run `verifier` over `(response, expected answer, extracted, correct)`
/// fixtures against rows `{answer_field: expected}` merged into `base`.
fn table(verifier: &Verifier, base: Value, cases: &[(&str, Value, Option<&str>, bool)]) {
    for (response, expected, answer, correct) in cases {
        let mut r = row(base.clone());
        r.insert("answer".into(), expected.clone());
        let v = verifier
            .verify(response, &r)
            .unwrap_or_else(|e| panic!("{response:?} vs {expected}: {e}"));
        assert_eq!(
            (v.answer.as_deref(), v.correct),
            (*answer, *correct),
            "{} on {response:?} against {expected}",
            verifier.name()
        );
    }
}

#[test]
fn numeric_fixtures() {
    let v = Verifier::Numeric(NumericSpec::default());
    table(
        &v,
        json!({}),
        &[
            ("<answer>1,234</answer>", json!("1234"), Some("1,234"), true),
            ("<answer>1,234</answer>", json!(1234), Some("1,234"), true),
            (
                "The total is 1,234,567 dollars.",
                json!("1234567"),
                Some("1,234,567"),
                true,
            ),
            ("so x = 42.", json!("42"), Some("42"), true),
            ("<answer>42.</answer>", json!("42"), Some("42."), true),
            ("<answer>3.</answer>", json!(3), Some("3."), true),
            ("<answer>+5</answer>", json!("5"), Some("+5"), true),
            (
                "The temperature fell to \u{2212}3 degrees",
                json!("-3"),
                Some("-3"),
                true,
            ),
            (
                "<answer>\u{2212}3</answer>",
                json!(-3),
                Some("\u{2212}3"),
                true,
            ),
            ("<answer>-3</answer>", json!("3"), Some("-3"), false),
            (
                "\\boxed{\\frac{1}{2}}",
                json!("0.5"),
                Some("\\frac{1}{2}"),
                true,
            ),
            (
                "\\boxed{\\dfrac{1}{2}}",
                json!("1/2"),
                Some("\\dfrac{1}{2}"),
                true,
            ),
            (
                "first \\boxed{3}, then corrected: \\boxed{4}",
                json!("4"),
                Some("4"),
                true,
            ),
            (
                "first \\boxed{3}, then corrected: \\boxed{4}",
                json!("3"),
                Some("4"),
                false,
            ),
            (
                "I think <answer>The answer is 17</answer> and that's it, 99",
                json!(17),
                Some("17"),
                true,
            ),
            (
                "<answer>7</answer> wait, <answer>8</answer>",
                json!(8),
                Some("8"),
                true,
            ),
            ("<answer>\\boxed{12}</answer>", json!(12), Some("12"), true),
            ("\\boxed{12 \\text{ cm}}", json!(12), Some("12"), true),
            ("It rose by 50%.", json!("50"), Some("50"), true),
            ("<answer>50%</answer>", json!("50%"), Some("50%"), true),
            (
                "<answer>0.3333333</answer>",
                json!("1/3"),
                Some("0.3333333"),
                true,
            ),
            ("<answer>0.333</answer>", json!("1/3"), Some("0.333"), false),
            (
                "<answer>$1,000$</answer>",
                json!("1000"),
                Some("$1,000$"),
                true,
            ),
            ("5 - 3 = 2", json!(2), Some("2"), true),
            ("", json!(1), None, false),
            ("no number at all", json!(1), None, false),
            ("<answer>seven</answer>", json!(7), None, false),
            ("<answer></answer> 7", json!(7), None, false),
        ],
    );
    // The tolerance is a parameter: 0.333 is 1/3 within 1e-3.
    let loose = Verifier::Numeric(NumericSpec {
        tolerance: 1e-3,
        ..NumericSpec::default()
    });
    table(
        &loose,
        json!({}),
        &[("<answer>0.333</answer>", json!("1/3"), Some("0.333"), true)],
    );
}

#[test]
fn exact_fixtures() {
    let v = Verifier::Exact(ExactSpec::default());
    table(
        &v,
        json!({}),
        &[
            ("Paris", json!("Paris"), Some("Paris"), true),
            ("  paris.  ", json!("Paris"), Some("paris."), true),
            (
                "<answer>\"Paris\".</answer>",
                json!("paris"),
                Some("\"Paris\"."),
                true,
            ),
            (
                "<answer>\u{201C}New   York\u{201D}</answer>",
                json!("new york"),
                Some("\u{201C}New   York\u{201D}"),
                true,
            ),
            ("<answer>$x^2$</answer>", json!("x^2"), Some("$x^2$"), true),
            (
                "\\boxed{\\text{Paris}}",
                json!("Paris"),
                Some("\\text{Paris}"),
                true,
            ),
            (
                "<answer>**Blue**</answer>",
                json!("blue"),
                Some("**Blue**"),
                true,
            ),
            ("<answer>U.S.</answer>", json!("US"), Some("U.S."), false),
            ("<answer>42</answer>", json!(42), Some("42"), true),
            (
                "The answer is Paris.",
                json!("Paris"),
                Some("The answer is Paris."),
                false,
            ),
            ("", json!("Paris"), None, false),
            ("<answer>  </answer>", json!("Paris"), None, false),
        ],
    );
}

#[test]
fn choice_fixtures() {
    let v = Verifier::Choice(ChoiceSpec::default());
    table(
        &v,
        json!({}),
        &[
            ("The answer is (B).", json!("B"), Some("B"), true),
            ("B)", json!("B"), Some("B"), true),
            ("**C**", json!("c"), Some("C"), true),
            ("Answer: d", json!("D"), Some("D"), true),
            (
                "So the final answer is: **E**",
                json!("(E)"),
                Some("E"),
                true,
            ),
            (
                "The answer is option B because the others fail.",
                json!("B"),
                Some("B"),
                true,
            ),
            (
                "The answer is a bit subtle; I pick (C).",
                json!("C"),
                Some("C"),
                true,
            ),
            ("<answer>A</answer>", json!(0), Some("A"), true),
            (
                "<answer>(b)</answer> but really (C)",
                json!("B"),
                Some("B"),
                true,
            ),
            ("\\boxed{D}", json!(3), Some("D"), true),
            (
                "Between (A) and (C), the answer is (A).",
                json!("A"),
                Some("A"),
                true,
            ),
            ("A) 3\nB) 4\nThe answer is B.", json!("A"), Some("B"), false),
            ("The answer is (F).", json!("A"), None, false),
            ("", json!("A"), None, false),
            ("I don't know.", json!("A"), None, false),
        ],
    );
    // Six options (from the row) make F a letter; ARC-style labels count too.
    table(
        &v,
        json!({"options": ["1", "2", "3", "4", "5", "6"]}),
        &[("The answer is (F).", json!("F"), Some("F"), true)],
    );
    table(
        &v,
        json!({"choices": {"text": ["x", "y", "z"], "label": ["A", "B", "C"]}}),
        &[("Answer: D", json!("C"), None, false)],
    );
}

#[test]
fn regex_fixtures() {
    let v = Verifier::Regex(RegexSpec::new(r"(?i)final answer:\s*(\w+)"));
    table(
        &v,
        json!({}),
        &[
            ("Final answer: Paris", json!("paris"), Some("Paris"), true),
            (
                "final answer: Rome ... Final answer: Paris.",
                json!("Paris"),
                Some("Paris"),
                true,
            ),
            ("no cue here", json!("Paris"), None, false),
            ("", json!("Paris"), None, false),
        ],
    );
    // Without a group the whole match is the answer.
    let whole = Verifier::Regex(RegexSpec::new(r"\d+"));
    table(
        &whole,
        json!({}),
        &[("3 then 14", json!("14"), Some("14"), true)],
    );
}

#[test]
fn countdown_wraps_the_exact_verifier() {
    let v = Verifier::Countdown;
    let r = row(json!({"nums": [3, 8, 8, 3], "target": 24}));
    let ok = v.verify("<answer>8 / (3 - 8/3)</answer>", &r).unwrap();
    assert_eq!(
        ok,
        Verdict {
            answer: Some("8 / (3 - 8/3)".into()),
            correct: true
        }
    );
    let wrong = v.verify("<answer>8 * 3</answer>", &r).unwrap();
    assert_eq!(
        wrong,
        Verdict {
            answer: Some("8 * 3".into()),
            correct: false
        }
    );
    assert_eq!(
        v.verify("no tag", &r).unwrap(),
        Verdict {
            answer: None,
            correct: false
        }
    );
}

#[test]
fn bad_rows_are_errors_naming_the_field() {
    let numeric = Verifier::Numeric(NumericSpec::default());
    let e = numeric
        .verify("<answer>1</answer>", &row(json!({"id": "q7"})))
        .unwrap_err();
    assert_eq!(
        e,
        VerifierError::MissingField {
            field: "answer".into()
        }
    );
    assert_eq!(
        e.at_row(3, &row(json!({"id": "q7"}))).to_string(),
        "row 3 (id \"q7\"): missing field `answer`"
    );
    let e = numeric
        .verify("1", &row(json!({"answer": "seven"})))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "field `answer` must be a number, not \"seven\""
    );
    let e = Verifier::Countdown
        .verify("x", &row(json!({"nums": [1], "target": "x"})))
        .unwrap_err();
    assert_eq!(e.to_string(), "field `target` must be an integer");
    let choice = Verifier::Choice(ChoiceSpec::default());
    let e = choice
        .verify("A", &row(json!({"answer": "G"})))
        .unwrap_err();
    assert!(e.to_string().contains("A to E"), "{e}");
    let e = choice.verify("A", &row(json!({"answer": 5}))).unwrap_err();
    assert!(e.to_string().contains("index 5 is not an option"), "{e}");
    // A different answer field is honoured.
    let arc = Verifier::Choice(ChoiceSpec {
        answer_field: "answerKey".into(),
    });
    assert!(
        arc.verify("(B)", &row(json!({"answerKey": "B"})))
            .unwrap()
            .correct
    );
}

#[test]
fn yaml_forms() {
    let parse = |s: &str| serde_yaml::from_str::<Verifier>(s);
    assert_eq!(parse("countdown").unwrap(), Verifier::Countdown);
    assert_eq!(parse("{countdown: {}}").unwrap(), Verifier::Countdown);
    assert_eq!(
        parse("numeric").unwrap(),
        Verifier::Numeric(NumericSpec::default())
    );
    assert_eq!(
        parse("{numeric: }").unwrap(),
        Verifier::Numeric(NumericSpec::default())
    );
    assert_eq!(
        parse("{numeric: {tolerance: 1e-3}}").unwrap(),
        Verifier::Numeric(NumericSpec {
            tolerance: 1e-3,
            ..NumericSpec::default()
        })
    );
    assert_eq!(
        parse("exact").unwrap(),
        Verifier::Exact(ExactSpec::default())
    );
    assert_eq!(
        parse("{choice: {answer_field: answerKey}}").unwrap(),
        Verifier::Choice(ChoiceSpec {
            answer_field: "answerKey".into()
        })
    );
    assert_eq!(
        parse(r#"{regex: {pattern: "(\\d+)"}}"#).unwrap(),
        Verifier::Regex(RegexSpec::new(r"(\d+)"))
    );
    let err = |s: &str| parse(s).unwrap_err().to_string();
    assert!(
        err("numerc").contains("unknown variant `numerc`, expected one of"),
        "{}",
        err("numerc")
    );
    assert!(err("regex").contains("needs a pattern"), "{}", err("regex"));
    assert!(err("{numeric: {tolerence: 1}}").contains("unknown field `tolerence`"));
    assert!(err("{numeric: {}, exact: {}}").contains("pick one verifier"));
    assert!(err("{regex: {}}").contains("missing field `pattern`"));
}

#[test]
fn serialization_is_canonical() {
    // The bare name and the spelled-out defaults serialize (and so hash) alike.
    let a: Verifier = serde_yaml::from_str("numeric").unwrap();
    let b: Verifier =
        serde_yaml::from_str("{numeric: {tolerance: 1e-6, answer_field: answer}}").unwrap();
    assert_eq!(
        serde_json::to_value(&a).unwrap(),
        serde_json::to_value(&b).unwrap()
    );
    assert_eq!(
        serde_json::to_value(&a).unwrap(),
        json!({"numeric": {"tolerance": 1e-6, "answer_field": "answer"}})
    );
    // Countdown keeps the bytes of the plain enum it replaces.
    assert_eq!(
        serde_json::to_value(Verifier::Countdown).unwrap(),
        json!("countdown")
    );
    for v in [
        Verifier::Countdown,
        Verifier::Exact(ExactSpec::default()),
        Verifier::Choice(ChoiceSpec::default()),
        Verifier::Regex(RegexSpec::new("a(b)")),
    ] {
        let back: Verifier = serde_json::from_value(serde_json::to_value(&v).unwrap()).unwrap();
        assert_eq!(back, v);
    }
}

#[test]
fn check_catches_bad_parameters() {
    let bad_re = Verifier::Regex(RegexSpec::new("(unclosed"));
    let msg = bad_re.check().unwrap_err();
    assert!(
        msg.starts_with("verifier `regex`: pattern \"(unclosed\" does not compile"),
        "{msg}"
    );
    // And verify() reports it too, for a caller that skipped check().
    assert!(matches!(
        bad_re.verify("x", &row(json!({"answer": "x"}))),
        Err(VerifierError::BadPattern(_))
    ));
    assert!(Verifier::Regex(RegexSpec::new("")).check().is_err());
    let negative = Verifier::Numeric(NumericSpec {
        tolerance: -1.0,
        ..NumericSpec::default()
    });
    assert!(negative.check().unwrap_err().contains("tolerance -1"));
    let nan = Verifier::Numeric(NumericSpec {
        tolerance: f64::NAN,
        ..NumericSpec::default()
    });
    assert!(nan.check().is_err());
    let empty = Verifier::Exact(ExactSpec {
        answer_field: String::new(),
    });
    assert!(empty.check().unwrap_err().contains("answer_field"));
    for ok in [
        Verifier::Countdown,
        Verifier::Numeric(NumericSpec::default()),
        Verifier::Choice(ChoiceSpec::default()),
        Verifier::Regex(RegexSpec::new(r"(?i)answer:\s*(\w+)")),
    ] {
        assert_eq!(ok.check(), Ok(()), "{ok:?}");
    }
}

#[test]
fn schema_lists_every_verifier() {
    let schema = schemars::schema_for!(Verifier);
    let text = serde_json::to_string(&schema).unwrap();
    for name in NAMES {
        assert!(
            text.contains(&format!("\"{name}\"")),
            "{name} missing from {text}"
        );
    }
    assert!(
        text.contains("tolerance") && text.contains("pattern"),
        "{text}"
    );
}
