use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use super::*;
use crate::methods::steps::rule_scores_countdown;
use crate::methods::verify_countdown;

/// A stub policy and diversity model over Countdown problems, with the
/// real rule scorer and verifier. `step(text, index)` is a context's
/// sample; every call is recorded.
struct Stub<F: Fn(&str, usize) -> String> {
    problems: Vec<(Vec<i64>, i64)>,
    step: F,
    explore: Vec<String>,
    asked: Vec<StepAsk>,
    explored: Vec<usize>,
}

impl<F: Fn(&str, usize) -> String> Stub<F> {
    fn new(problems: &[(&[i64], i64)], step: F) -> Self {
        Stub { problems: problems.iter().map(|(n, t)| (n.to_vec(), *t)).collect(), step, explore: vec![], asked: vec![], explored: vec![] }
    }
}

impl<F: Fn(&str, usize) -> String> Oracle for Stub<F> {
    type Error = ();
    fn steps(&mut self, asks: &[StepAsk], count: usize) -> Result<Vec<Vec<String>>, ()> {
        self.asked.extend(asks.iter().cloned());
        Ok(asks.iter().map(|a| (a.first..a.first + count).map(|j| (self.step)(&a.text, j)).collect()).collect())
    }
    fn explore(&mut self, problems: &[usize], count: usize) -> Result<Vec<Vec<String>>, ()> {
        self.explored.extend(problems);
        Ok(problems.iter().map(|_| self.explore.iter().take(count).cloned().collect()).collect())
    }
    fn scores(&mut self, asks: &[ScoreAsk]) -> Result<Vec<f64>, ()> {
        Ok(asks
            .iter()
            .map(|a| {
                let steps: Vec<&str> = a.steps.iter().map(|s| s.trim()).collect();
                *rule_scores_countdown(&steps, &self.problems[a.problem].0).last().unwrap()
            })
            .collect())
    }
    fn correct(&self, problem: usize, response: &str) -> bool {
        let (nums, target) = &self.problems[problem];
        verify_countdown(response, nums, *target, 0.0).correct
    }
}

fn spec() -> SearchSpec {
    SearchSpec {
        candidates: 3,
        max_steps: 5,
        delimiter: "\n".into(),
        error_below: 0.5,
        lambda: 0.5,
        min_margin: 0.3,
        correction: true,
        diversity: true,
        explore: 6,
    }
}

fn prompt(nums: &[i64], target: i64) -> String {
    format!("Use {} to make {target}.\n", nums.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(" "))
}

/// A noisy solver as a function of (context, index) only: a step on two
/// numbers of the prompt (right, or off by one), an answer, or nothing.
fn noisy(text: &str, j: usize) -> String {
    let mut h = DefaultHasher::new();
    (text, j).hash(&mut h);
    let r = h.finish();
    let nums: Vec<i64> = text.lines().next().unwrap().split(' ').filter_map(|w| w.parse().ok()).collect();
    let (a, b) = (nums[(r % 3) as usize], nums[((r >> 8) % 3) as usize]);
    match (r >> 16) % 6 {
        0 | 1 => format!("{a} + {b} = {}\n", a + b),
        2 => format!("{a} * {b} = {}\n", a * b + i64::from((r >> 24).is_multiple_of(2))),
        3 => format!("<answer>({} + {}) * {}</answer>", nums[0], nums[1], nums[2]),
        4 => format!("<answer>{} + {} + {}</answer>", nums[0], nums[1], nums[2]),
        _ => String::new(),
    }
}

#[test]
fn the_search_is_deterministic_and_a_problem_alone_equals_it_batched() {
    let problems: [(&[i64], i64); 4] = [(&[3, 5, 2], 16), (&[4, 6, 1], 11), (&[7, 2, 3], 27), (&[2, 9, 4], 44)];
    let prompts: Vec<String> = problems.iter().map(|(n, t)| prompt(n, *t)).collect();
    let all = search(&prompts, &spec(), &mut Stub::new(&problems, noisy)).unwrap();
    assert_eq!(all, search(&prompts, &spec(), &mut Stub::new(&problems, noisy)).unwrap());
    for (i, p) in problems.iter().enumerate() {
        let alone = search(&prompts[i..=i], &spec(), &mut Stub::new(&[*p], noisy)).unwrap();
        assert_eq!(alone[0], all[i], "problem {i}");
    }
    // The stub's noise reaches every kind of ending somewhere.
    assert!(all.iter().any(|s| s.sol_max.correct), "{all:#?}");
    assert!(all.iter().any(|s| !s.sol_min.correct), "{all:#?}");
}

#[test]
fn the_branches_share_the_first_step_and_keep_max_and_min() {
    let p = prompt(&[3, 5, 2], 16);
    // Depth 0: one valid step, then two invalid ones.
    let step = |text: &str, j: usize| -> String {
        match (text.lines().count(), j) {
            (1, 0) => "3 + 5 = 8".into(), // stopped without its newline
            (1, 1) => "3 + 5 = 9\n".into(),
            (1, _) => "3 + 7 = 10\n".into(),
            (2, _) if text.ends_with("= 8\n") => "8 * 2 = 16\n".into(),
            (2, _) => "<answer>3 + 5 + 2</answer> trailing".into(),
            _ => "<answer>(3 + 5) * 2</answer>".into(),
        }
    };
    let mut stub = Stub::new(&[(&[3, 5, 2], 16)], step);
    let s = search(std::slice::from_ref(&p), &spec(), &mut stub).unwrap().remove(0);
    assert_eq!(stub.asked.iter().filter(|a| a.text == p).count(), 1, "the first step's context is asked once: {:?}", stub.asked);
    assert_eq!(s.sol_max.response, "3 + 5 = 8\n8 * 2 = 16\n<answer>(3 + 5) * 2</answer>");
    assert_eq!((s.sol_max.step_scores.clone(), s.sol_max.correct), (vec![1.0, 1.0], true));
    // The last of the two bottom-scored candidates; the answer is cut after its tag.
    assert_eq!(s.sol_min.response, "3 + 7 = 10\n<answer>3 + 5 + 2</answer>");
    assert_eq!((s.sol_min.step_scores.clone(), s.sol_min.correct), (vec![0.0], false));
    assert_eq!(s.pairs.len(), 1);
    assert_eq!((s.pairs[0].source, s.pairs[0].chosen.value(0.5), s.pairs[0].rejected.value(0.5)), (Source::Generation, 1.0, 0.0));
    assert!(s.corrected.is_none() && stub.explored.is_empty(), "mixed: neither correction nor diversity");
}

#[test]
fn both_wrong_runs_correction_from_before_the_first_error_with_fresh_samples() {
    let p = prompt(&[3, 5, 2], 16);
    let e = spec().candidates;
    let step = move |text: &str, j: usize| -> String {
        let fresh = j >= e;
        match text.lines().count() {
            1 => "3 + 5 = 8\n".into(),
            2 if fresh => "8 * 2 = 16\n".into(),
            2 => "8 * 2 = 17\n".into(),
            _ if fresh => "<answer>(3 + 5) * 2</answer>".into(),
            _ => "<answer>3 + 5 + 2</answer>".into(),
        }
    };
    let mut stub = Stub::new(&[(&[3, 5, 2], 16)], step);
    let s = search(std::slice::from_ref(&p), &spec(), &mut stub).unwrap().remove(0);
    assert!(!s.sol_max.correct && !s.sol_min.correct);
    assert_eq!(s.sol_max.step_scores, [1.0, 0.0]);
    // The restart: after step 1 (the error is step 2), sample indices E..2E.
    let restart = stub.asked.iter().find(|a| a.first == e).expect("a correction ask");
    assert_eq!(restart.text, format!("{p}3 + 5 = 8\n"));
    let fixed = s.corrected.clone().unwrap();
    assert_eq!(fixed.response, "3 + 5 = 8\n8 * 2 = 16\n<answer>(3 + 5) * 2</answer>");
    assert_eq!(s.pairs.len(), 1);
    assert_eq!((s.pairs[0].source, &s.pairs[0].chosen, &s.pairs[0].rejected), (Source::Correction, &fixed, &s.sol_max));

    // Without correction: no pair, nothing asked at E.
    let mut stub = Stub::new(&[(&[3, 5, 2], 16)], step);
    let off = search(std::slice::from_ref(&p), &SearchSpec { correction: false, ..spec() }, &mut stub).unwrap().remove(0);
    assert!(off.pairs.is_empty() && off.corrected.is_none());
    assert!(stub.asked.iter().all(|a| a.first == 0));
}

#[test]
fn a_wrong_answer_after_valid_steps_restarts_at_the_answer_and_a_failed_fix_adds_no_pair() {
    let p = prompt(&[3, 5, 2], 16);
    let step = |text: &str, _j: usize| -> String {
        if text.lines().count() == 1 { "3 + 5 = 8\n".into() } else { "<answer>3 + 5 + 2</answer>".into() }
    };
    let mut stub = Stub::new(&[(&[3, 5, 2], 16)], step);
    let s = search(std::slice::from_ref(&p), &spec(), &mut stub).unwrap().remove(0);
    assert_eq!(stub.asked.iter().find(|a| a.first > 0).unwrap().text, format!("{p}3 + 5 = 8\n"));
    assert!(!s.corrected.unwrap().correct);
    assert!(s.pairs.is_empty());
}

#[test]
fn both_right_runs_diversity_and_rejects_the_most_plausible_error() {
    let p = prompt(&[3, 5, 2], 16);
    let step = |text: &str, _j: usize| -> String {
        match text.lines().count() {
            1 => "3 + 5 = 8\n".into(),
            2 => "8 * 2 = 16\n".into(),
            _ => "<answer>(3 + 5) * 2</answer>".into(),
        }
    };
    let mut stub = Stub::new(&[(&[3, 5, 2], 16)], step);
    stub.explore = vec![
        "<answer>(3 + 5) * 2</answer>".into(),            // right: not an error
        "3 * 5 = 16\n<answer>3 * 5 + 2</answer>".into(),   // wrong, invalid step: V = 0
        "3 + 5 = 8\n8 * 2 = 16\n<answer>3 + 5 * 2</answer>".into(), // wrong, valid steps: V = 0.5
        "3 + 5 = 8\n<answer>8 + 2</answer>".into(),        // also V = 0.5, later
    ];
    let s = search(std::slice::from_ref(&p), &spec(), &mut stub).unwrap().remove(0);
    assert!(s.sol_max.correct && s.sol_min.correct);
    assert_eq!(stub.explored, [0]);
    assert_eq!(s.explored.len(), 4);
    assert_eq!(s.explored[1].step_scores, [0.0]);
    assert_eq!(s.pairs.len(), 1, "equal values: no generation pair");
    let pair = &s.pairs[0];
    assert_eq!(pair.source, Source::Diversity);
    assert_eq!(pair.rejected.response, stub.explore[2]);
    assert_eq!(pair.chosen, s.sol_max);

    let mut stub2 = Stub::new(&[(&[3, 5, 2], 16)], step);
    stub2.explore.clone_from(&stub.explore);
    let off = search(std::slice::from_ref(&p), &SearchSpec { diversity: false, ..spec() }, &mut stub2).unwrap().remove(0);
    assert!(off.pairs.is_empty() && stub2.explored.is_empty());
}

#[test]
fn two_right_solutions_pair_only_past_the_margin() {
    let right = Trajectory { response: "a".into(), step_scores: vec![1.0], answered: true, correct: true };
    let sloppy = Trajectory { response: "b".into(), step_scores: vec![0.0], answered: true, correct: true };
    let pair = generation_pair(&sloppy, &right, &spec()).unwrap();
    assert_eq!((pair.chosen.response.as_str(), pair.rejected.response.as_str()), ("a", "b"));
    assert!(generation_pair(&right, &sloppy, &SearchSpec { min_margin: 0.6, ..spec() }).is_none());
    assert!(generation_pair(&right, &right, &spec()).is_none());
    let wrong = Trajectory { correct: false, ..right.clone() };
    // Right with a bad step (0.5) against wrong with good steps (0.5): no preference.
    assert!(generation_pair(&sloppy, &wrong, &spec()).is_none());
    assert!(generation_pair(&wrong, &wrong, &spec()).is_none());
}

#[test]
fn ties_and_candidates_are_read_as_documented() {
    assert_eq!(pick(&[1.0, 0.0, 1.0, 0.0], Pick::Max), 0);
    assert_eq!(pick(&[1.0, 0.0, 1.0, 0.0], Pick::Min), 3);
    assert_eq!(pick(&[0.5, 0.5], Pick::Min), 1);
    assert!(matches!(read_candidate("  \n", "\n"), Candidate::Empty));
    assert!(matches!(read_candidate("1 + 1 = 2", "\n"), Candidate::Step(s) if s == "1 + 1 = 2\n"));
    assert!(matches!(read_candidate("x <answer>1</answer>\nmore", "\n"), Candidate::Answer(s) if s == "x <answer>1</answer>"));
    assert!(matches!(read_candidate("<answer>1 + 2", "\n"), Candidate::Answer(s) if s == "<answer>1 + 2"));
}

#[test]
fn an_empty_candidate_ends_a_branch_unanswered_and_the_depth_limit_holds() {
    let p = prompt(&[3, 5, 2], 16);
    // The only candidates are empty: both branches end at once, unanswered.
    let mut stub = Stub::new(&[(&[3, 5, 2], 16)], |_: &str, _| String::new());
    let s = search(std::slice::from_ref(&p), &SearchSpec { correction: false, ..spec() }, &mut stub).unwrap().remove(0);
    assert_eq!((s.sol_max.response.as_str(), s.sol_max.answered, s.sol_max.step_scores.len()), ("", false, 0));
    // Steps forever: cut at max_steps.
    let mut stub = Stub::new(&[(&[3, 5, 2], 16)], |_: &str, _| "1 + 1 = 2\n".to_string());
    let s = search(std::slice::from_ref(&p), &SearchSpec { correction: false, ..spec() }, &mut stub).unwrap().remove(0);
    assert_eq!(s.sol_max.step_scores, [0.0; 5]);
    assert!(!s.sol_max.answered);
}
