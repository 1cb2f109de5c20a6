//! Math-Shepherd's Monte-Carlo step scores (SPHERE's `mc` scorer, METHODS
//! §2; issue 10): a step's score is the share of K rollouts, each continuing
//! the solution from just after that step, that reach a verified answer.
//!
//! Pure: the rollouts come from the caller (`prm_filter` samples a model
//! through the item cache; the tests use a stub with known success rates),
//! and so does the verifier. Solutions that share a context (the same
//! prompt and the same steps so far, as samples of one problem often do)
//! are rolled out once and the result shared: the rollouts of a context are
//! the same items whichever row asks for them.

use std::collections::HashMap;

/// One solution to score.
#[derive(Clone, Debug)]
pub struct Solution<'a> {
    /// The text the model was prompted with.
    pub prompt: &'a str,
    /// The response through step 1, 2, … (see
    /// [`step_prefixes`](crate::methods::steps::step_prefixes)).
    pub prefixes: Vec<&'a str>,
}

/// A text to roll out: `prompt + prefix`, and the first solution that
/// asked for it (for errors).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Context {
    /// What the model continues.
    pub text: String,
    /// The index of the first solution with this context.
    pub solution: usize,
}

/// What [`mc_scores`] found.
#[derive(Clone, Debug, PartialEq)]
pub struct McScores {
    /// Per solution, per step: the share of its rollouts that verified.
    pub scores: Vec<Vec<f64>>,
    /// Distinct contexts rolled out (each `rollouts` times).
    pub contexts: usize,
}

/// Each step's Math-Shepherd score for every solution.
///
/// `complete(contexts, k)` returns `k` completions of each context
/// (`prompt + prefix`, each distinct text once), context-major: the
/// `k` of context 0, then of context 1, … . `verified(i, text)` says
/// whether solution `i`'s `prefix + completion` reaches a right answer.
/// A step's score is `successes / k` (exact in f64 for any practical `k`).
///
/// # Errors
/// Whatever `complete` returns; a `complete` that returns the wrong number
/// of completions is a bug in the caller and panics.
pub fn mc_scores<E>(
    solutions: &[Solution<'_>],
    rollouts: usize,
    complete: impl FnOnce(&[Context], usize) -> Result<Vec<String>, E>,
    verified: impl Fn(usize, &str) -> bool,
) -> Result<McScores, E> {
    let mut contexts: Vec<Context> = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let index: Vec<Vec<usize>> = solutions
        .iter()
        .enumerate()
        .map(|(i, s)| {
            s.prefixes
                .iter()
                .map(|p| {
                    let text = format!("{}{p}", s.prompt);
                    *seen.entry(text.clone()).or_insert_with(|| {
                        contexts.push(Context { text, solution: i });
                        contexts.len() - 1
                    })
                })
                .collect()
        })
        .collect();
    let completions = if contexts.is_empty() || rollouts == 0 { Vec::new() } else { complete(&contexts, rollouts)? };
    assert_eq!(completions.len(), contexts.len() * rollouts, "one completion per context and rollout");
    let scores = solutions
        .iter()
        .zip(&index)
        .enumerate()
        .map(|(i, (s, ctx))| {
            s.prefixes
                .iter()
                .zip(ctx)
                .map(|(prefix, &c)| {
                    let group = &completions[c * rollouts..(c + 1) * rollouts];
                    let hits = group.iter().filter(|done| verified(i, &format!("{prefix}{done}"))).count();
                    share(hits, rollouts)
                })
                .collect()
        })
        .collect();
    Ok(McScores { scores, contexts: contexts.len() })
}

/// `hits / of` (0 when `of` is 0).
fn share(hits: usize, of: usize) -> f64 {
    if of == 0 {
        0.0
    } else {
        hits as f64 / of as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::methods::steps::step_prefixes;
    use crate::methods::verify_countdown;
    use std::cell::Cell;

    /// A stub model: from a context ending in step `s`, rollout `j` of `k`
    /// writes the right answer when `j < rate[s] · k` (so the success rate
    /// of step `s` is exactly `rate[s]`), else a wrong one.
    fn stub<'a>(rate: &'static [f64], calls: &'a Cell<usize>) -> impl FnOnce(&[Context], usize) -> Result<Vec<String>, ()> + 'a {
        move |contexts: &[Context], k: usize| {
            calls.set(calls.get() + contexts.len());
            Ok(contexts
                .iter()
                .flat_map(|c| {
                    let step = c.text.matches(" = ").count() - 1;
                    (0..k).map(move |j| {
                        if (j as f64) < rate[step] * k as f64 { "<answer>(3 + 5) * 2</answer>" } else { "<answer>3 + 5 + 2</answer>" }
                            .to_string()
                    })
                })
                .collect())
        }
    }

    #[test]
    fn share_of_verified_rollouts_by_hand() {
        let response = "3 + 5 = 8\n8 * 2 = 16\n<answer>(3 + 5) * 2</answer>";
        let other = "3 * 5 = 15\n15 + 2 = 17\n<answer>3 * 5 + 2</answer>";
        let solutions = [
            Solution { prompt: "Use 3 5 2 to make 16.\n", prefixes: step_prefixes(response, "\n") },
            // The same first step as solution 0 after the same prompt: one
            // context, rolled out once.
            Solution { prompt: "Use 3 5 2 to make 16.\n", prefixes: step_prefixes(response, "\n")[..1].to_vec() },
            Solution { prompt: "Use 3 5 2 to make 16.\n", prefixes: step_prefixes(other, "\n") },
            Solution { prompt: "p", prefixes: vec![] },
        ];
        let verified = |_: usize, text: &str| verify_countdown(text, &[3, 5, 2], 16, 0.0).correct;
        // Step 1 succeeds 3 times in 4, step 2 once in 4.
        let calls = Cell::new(0);
        let out = mc_scores(&solutions, 4, stub(&[0.75, 0.25], &calls), verified).unwrap();
        assert_eq!(out.scores, [vec![0.75, 0.25], vec![0.75], vec![0.75, 0.25], vec![]]);
        assert_eq!((out.contexts, calls.get()), (4, 4), "4 distinct contexts of 5 steps");
        // K = 8 at rates 5/8 and 0: 0.625 and 0.
        let out = mc_scores(&solutions[..1], 8, stub(&[0.625, 0.0], &calls), verified).unwrap();
        assert_eq!(out.scores, [vec![0.625, 0.0]]);
        // K = 3 at rate 1/3: 1/3 exactly as f64 divides it.
        let out = mc_scores(&solutions[..1], 3, stub(&[1.0 / 3.0, 1.0], &calls), verified).unwrap();
        assert_eq!(out.scores, [vec![1.0 / 3.0, 1.0]]);
    }

    #[test]
    fn the_verifier_sees_the_prefix_and_the_completion() {
        // The rollout writes only the answer; it is right only because the
        // prefix's steps are there (the verifier reads the whole text).
        let solutions = [Solution { prompt: "P\n", prefixes: vec!["3 + 5 = 8\n"] }];
        let seen = std::cell::RefCell::new(Vec::new());
        let out = mc_scores(
            &solutions,
            2,
            |c: &[Context], k| {
                assert_eq!(c, [Context { text: "P\n3 + 5 = 8\n".into(), solution: 0 }], "prompt + prefix is what the model continues");
                Ok::<_, ()>(vec!["<answer>(3 + 5) * 2</answer>".to_string(); k])
            },
            |i, text| {
                seen.borrow_mut().push((i, text.to_string()));
                true
            },
        )
        .unwrap();
        assert_eq!(out.scores, [vec![1.0]]);
        assert_eq!(seen.borrow()[0], (0, "3 + 5 = 8\n<answer>(3 + 5) * 2</answer>".to_string()));
    }

    #[test]
    fn nothing_to_roll_out_asks_nothing_and_errors_pass_through() {
        let out = mc_scores(&[Solution { prompt: "p", prefixes: vec![] }], 4, |_: &[Context], _| -> Result<Vec<String>, ()> { panic!("asked") }, |_, _| true);
        assert_eq!(out.unwrap().scores, [Vec::<f64>::new()]);
        let e = mc_scores(&[Solution { prompt: "p", prefixes: vec!["a\n"] }], 4, |_: &[Context], _| Err("model failed"), |_, _| true);
        assert_eq!(e.unwrap_err(), "model failed");
    }
}
