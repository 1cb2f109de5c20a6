//! SPHERE's PRM-guided search (METHODS §9.1, which supersedes §2's beam):
//! the pure half of `kind: step_search`.
//!
//! Per problem:
//! 1. **Self-generation.** At each step the policy samples `E` candidate
//!    next steps; a process reward scores each; the max-scored and the
//!    min-scored are kept, and each is followed to an answer or the depth
//!    limit. Following means the same thing at every later step: the max
//!    branch keeps taking the max-scored of `E` fresh candidates, the min
//!    branch the min-scored (our reading of "only S_max and S_min are kept,
//!    and each is followed"; the write-up gives no other continuation). The
//!    two branches share the first step's `E` candidates. Ties: the max
//!    branch takes the first candidate with the top score, the min branch
//!    the last with the bottom score, so with `E ≥ 2` they differ.
//!    Result: Sol_max and Sol_min.
//! 2. **Self-correction**, only where both are wrong: the search runs again
//!    (max branch) from Sol_max's steps before its first step scoring below
//!    `error_below` (no such step: before its wrong answer; no answer either:
//!    from the start), with fresh samples (the next `E` sample indices of
//!    the same contexts, so the item cache never hands back the first
//!    attempt's candidates). A corrected solution that is right is chosen
//!    over Sol_max: the same prefix, a step-local contrast (§2 P2).
//! 3. **Diversity**, only where both are right: a second (smaller) model
//!    writes `2E` whole solutions; the wrong one with the highest value (the
//!    most plausible error: valid-looking steps, wrong outcome) is rejected
//!    against the better of Sol_max and Sol_min.
//! 4. **Generation pair**: where exactly one of Sol_max and Sol_min is
//!    right, or both are and their values differ by at least `min_margin`,
//!    the right (higher-valued) one over the other.
//!
//! A trajectory's value is §2's `λ·min(step scores) + (1−λ)·outcome`
//! ([`trajectory_value`]); the `<answer>` step is the outcome, not a step
//! score (as in `prm_filter`), but the search scores an answer candidate
//! by whether it is right, so the max branch prefers right answers and the
//! min branch wrong ones.
//!
//! Candidates: a sample holding `<answer>` ends its branch (cut after
//! `</answer>`); an empty sample is a dead end (the branch ends unanswered,
//! scored 0); anything else is a step (the delimiter appended when the
//! sample stopped without it) and the scorer judges it; a malformed step
//! simply scores what the scorer gives it (0 under `rule`).
//!
//! Every model call goes through [`Oracle`], which the stage backs with the
//! item cache: a context's candidates are keyed by its exact text and
//! sample index, so a problem's result never depends on which other
//! problems are searched beside it, and identical contexts (the two
//! branches' shared first step) are asked once.

use std::collections::HashMap;

use super::steps::{first_error, split_steps, trajectory_value, Aggregate};

/// The search's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct SearchSpec {
    /// `E`: candidate next steps sampled per step.
    pub candidates: usize,
    /// Most steps (the answer included) per branch.
    pub max_steps: usize,
    /// What ends a step.
    pub delimiter: String,
    /// A step scoring below this is an error (where correction restarts).
    pub error_below: f64,
    /// λ in the value.
    pub lambda: f64,
    /// Two right solutions make a pair only when their values differ by this much.
    pub min_margin: f64,
    /// Run self-correction where both solutions are wrong.
    pub correction: bool,
    /// Run diversity where both are right.
    pub diversity: bool,
    /// Whole solutions the diversity model writes per problem (`2E`).
    pub explore: usize,
}

/// `count` candidate next steps of `text` for `problem`, sample indices
/// `first..first + count`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StepAsk {
    /// The problem's index.
    pub problem: usize,
    /// Prompt plus the steps so far.
    pub text: String,
    /// The first sample index.
    pub first: usize,
}

/// A step to score: `steps` so far, the last one being scored.
#[derive(Clone, Debug, PartialEq)]
pub struct ScoreAsk {
    /// The problem's index.
    pub problem: usize,
    /// Steps as written (delimiters included), the scored one last.
    pub steps: Vec<String>,
}

/// The models and scorer the search calls.
pub trait Oracle {
    /// What a call can fail with.
    type Error;
    /// `count` samples of each ask (one list per ask, in order).
    fn steps(&mut self, asks: &[StepAsk], count: usize) -> Result<Vec<Vec<String>>, Self::Error>;
    /// `count` whole solutions of each problem from the diversity model.
    fn explore(&mut self, problems: &[usize], count: usize) -> Result<Vec<Vec<String>>, Self::Error>;
    /// Each ask's last step's score in [0, 1].
    fn scores(&mut self, asks: &[ScoreAsk]) -> Result<Vec<f64>, Self::Error>;
    /// Whether `response` (the whole solution) is right for `problem`.
    fn correct(&self, problem: usize, response: &str) -> bool;
}

/// One finished solution.
#[derive(Clone, Debug, PartialEq)]
pub struct Trajectory {
    /// The solution's text (the steps and the answer line).
    pub response: String,
    /// Each step's score (the answer line is not a step).
    pub step_scores: Vec<f64>,
    /// Whether it ended with an `<answer>`.
    pub answered: bool,
    /// Whether that answer is right.
    pub correct: bool,
}

impl Trajectory {
    /// `λ·min(step scores) + (1−λ)·outcome`.
    pub fn value(&self, lambda: f64) -> f64 {
        trajectory_value(&self.step_scores, if self.correct { 1.0 } else { 0.0 }, lambda, Aggregate::Min)
    }
}

/// Which part of the search made a pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Sol_max against Sol_min.
    Generation = 0,
    /// A corrected solution against the flawed Sol_max.
    Correction = 1,
    /// A right solution against the diversity model's plausible error.
    Diversity = 2,
}

impl Source {
    /// Its name in rows and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Source::Generation => "generation",
            Source::Correction => "correction",
            Source::Diversity => "diversity",
        }
    }
}

/// A preference pair of one problem.
#[derive(Clone, Debug, PartialEq)]
pub struct Pair {
    /// Preferred.
    pub chosen: Trajectory,
    /// Dispreferred.
    pub rejected: Trajectory,
    /// What made it.
    pub source: Source,
}

/// What the search found for one problem.
#[derive(Clone, Debug, PartialEq)]
pub struct Searched {
    /// The max branch.
    pub sol_max: Trajectory,
    /// The min branch.
    pub sol_min: Trajectory,
    /// The correction's result, where it ran.
    pub corrected: Option<Trajectory>,
    /// The diversity model's solutions, where it ran.
    pub explored: Vec<Trajectory>,
    /// Its pairs: generation, then correction, then diversity.
    pub pairs: Vec<Pair>,
}

/// Which candidate a branch keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pick {
    Max,
    Min,
}

/// A branch being followed.
#[derive(Clone, Debug)]
struct Branch {
    problem: usize,
    pick: Pick,
    /// Which block of `E` sample indices it draws (0: generation, 1: correction).
    attempt: usize,
    steps: Vec<String>,
    scores: Vec<f64>,
    done: bool,
    answered: bool,
    correct: bool,
}

impl Branch {
    fn new(problem: usize, pick: Pick, attempt: usize, steps: Vec<String>, scores: Vec<f64>) -> Self {
        Branch { problem, pick, attempt, steps, scores, done: false, answered: false, correct: false }
    }

    fn trajectory(&self) -> Trajectory {
        let n = if self.answered { self.scores.len() - 1 } else { self.scores.len() };
        Trajectory { response: self.steps.concat(), step_scores: self.scores[..n].to_vec(), answered: self.answered, correct: self.correct }
    }
}

/// One sampled candidate, read.
enum Candidate {
    /// A step to score (delimiter ensured).
    Step(String),
    /// An answer line (cut after `</answer>`).
    Answer(String),
    /// Nothing written.
    Empty,
}

fn read_candidate(text: &str, delimiter: &str) -> Candidate {
    if let Some(at) = text.find("<answer>") {
        let end = text[at..].find("</answer>").map_or(text.len(), |c| at + c + "</answer>".len());
        return Candidate::Answer(text[..end].to_string());
    }
    if text.trim().is_empty() {
        return Candidate::Empty;
    }
    if text.ends_with(delimiter) {
        Candidate::Step(text.to_string())
    } else {
        Candidate::Step(format!("{text}{delimiter}"))
    }
}

/// The index a branch keeps among `scores` (see the module docs for ties).
fn pick(scores: &[f64], how: Pick) -> usize {
    let mut best = 0;
    for (i, &s) in scores.iter().enumerate().skip(1) {
        match how {
            Pick::Max if s > scores[best] => best = i,
            Pick::Min if s <= scores[best] => best = i,
            _ => {}
        }
    }
    best
}

/// Follows every branch to an answer or the depth limit, one step of all
/// branches at a time (one batch of model calls per step).
fn follow<O: Oracle>(branches: &mut [Branch], prompts: &[String], spec: &SearchSpec, oracle: &mut O) -> Result<(), O::Error> {
    let e = spec.candidates;
    loop {
        for b in branches.iter_mut() {
            if b.steps.len() >= spec.max_steps {
                b.done = true;
            }
        }
        let active: Vec<usize> = (0..branches.len()).filter(|&i| !branches[i].done).collect();
        if active.is_empty() {
            return Ok(());
        }
        // Identical contexts (same text, same sample block) are asked once.
        let mut asks: Vec<StepAsk> = Vec::new();
        let mut index: HashMap<StepAsk, usize> = HashMap::new();
        let which: Vec<usize> = active
            .iter()
            .map(|&i| {
                let b = &branches[i];
                let ask = StepAsk { problem: b.problem, text: format!("{}{}", prompts[b.problem], b.steps.concat()), first: b.attempt * e };
                *index.entry(ask.clone()).or_insert_with(|| {
                    asks.push(ask);
                    asks.len() - 1
                })
            })
            .collect();
        let sampled = oracle.steps(&asks, e)?;
        // Read every candidate; steps go to the scorer in one batch.
        let mut read: Vec<Vec<Candidate>> = Vec::with_capacity(active.len());
        let mut to_score: Vec<ScoreAsk> = Vec::new();
        for (&i, &a) in active.iter().zip(&which) {
            let b = &branches[i];
            let cands: Vec<Candidate> = sampled[a].iter().map(|t| read_candidate(t, &spec.delimiter)).collect();
            for c in &cands {
                if let Candidate::Step(s) = c {
                    let mut steps = b.steps.clone();
                    steps.push(s.clone());
                    to_score.push(ScoreAsk { problem: b.problem, steps });
                }
            }
            read.push(cands);
        }
        let mut step_scores = oracle.scores(&to_score)?.into_iter();
        for (&i, cands) in active.iter().zip(read) {
            let b = &mut branches[i];
            let done_text = b.steps.concat();
            let scored: Vec<(f64, bool)> = cands
                .iter()
                .map(|c| match c {
                    Candidate::Step(_) => (step_scores.next().expect("one score per step"), false),
                    Candidate::Answer(a) => (if oracle.correct(b.problem, &format!("{done_text}{a}")) { 1.0 } else { 0.0 }, true),
                    Candidate::Empty => (0.0, false),
                })
                .collect();
            let k = pick(&scored.iter().map(|s| s.0).collect::<Vec<_>>(), b.pick);
            match &cands[k] {
                Candidate::Step(s) => b.steps.push(s.clone()),
                Candidate::Answer(a) => {
                    b.steps.push(a.clone());
                    b.answered = true;
                    b.correct = scored[k].0 == 1.0;
                    b.done = true;
                }
                Candidate::Empty => b.done = true,
            }
            if !matches!(cands[k], Candidate::Empty) {
                b.scores.push(scored[k].0);
            }
        }
    }
}

/// Scores whole solutions (the diversity model's): each step given the
/// steps before it, and the outcome.
fn score_solutions<O: Oracle>(texts: &[(usize, String)], spec: &SearchSpec, oracle: &mut O) -> Result<Vec<Trajectory>, O::Error> {
    let mut asks = Vec::new();
    let mut counts = Vec::with_capacity(texts.len());
    for (p, text) in texts {
        let steps: Vec<String> = split_steps(text, &spec.delimiter).into_iter().map(|s| format!("{s}{}", spec.delimiter)).collect();
        counts.push(steps.len());
        for k in 1..=steps.len() {
            asks.push(ScoreAsk { problem: *p, steps: steps[..k].to_vec() });
        }
    }
    let mut scores = oracle.scores(&asks)?.into_iter();
    Ok(texts
        .iter()
        .zip(counts)
        .map(|((p, text), n)| Trajectory {
            response: text.clone(),
            step_scores: scores.by_ref().take(n).collect(),
            answered: text.contains("<answer>"),
            correct: oracle.correct(*p, text),
        })
        .collect())
}

/// Where correction restarts: the steps before Sol_max's first error; no
/// error, the steps before its wrong answer; no answer either, nothing.
fn restart_at(t: &Trajectory, error_below: f64) -> usize {
    match first_error(&t.step_scores, error_below) {
        Some(k) => k,
        None if t.answered => t.step_scores.len(),
        None => 0,
    }
}

/// The generation pair of Sol_max and Sol_min, if any (module docs, 4).
fn generation_pair(a: &Trajectory, b: &Trajectory, spec: &SearchSpec) -> Option<Pair> {
    let (hi, lo) = match (a.correct, b.correct) {
        (true, false) => (a, b),
        (false, true) => (b, a),
        (true, true) if a.value(spec.lambda) >= b.value(spec.lambda) => (a, b),
        (true, true) => (b, a),
        (false, false) => return None,
    };
    let margin = hi.value(spec.lambda) - lo.value(spec.lambda);
    let needed = if lo.correct { spec.min_margin } else { 0.0 };
    (margin > 0.0 && margin >= needed).then(|| Pair { chosen: hi.clone(), rejected: lo.clone(), source: Source::Generation })
}

/// SPHERE's search over `prompts` (each the exact text the policy
/// continues; problem `i` is `prompts[i]` for the oracle).
///
/// # Errors
/// Whatever the oracle returns.
pub fn search<O: Oracle>(prompts: &[String], spec: &SearchSpec, oracle: &mut O) -> Result<Vec<Searched>, O::Error> {
    // 1. Self-generation: a max and a min branch per problem.
    let mut branches: Vec<Branch> =
        (0..prompts.len()).flat_map(|p| [Branch::new(p, Pick::Max, 0, vec![], vec![]), Branch::new(p, Pick::Min, 0, vec![], vec![])]).collect();
    follow(&mut branches, prompts, spec, oracle)?;
    let mut out: Vec<Searched> = branches
        .chunks(2)
        .map(|two| Searched { sol_max: two[0].trajectory(), sol_min: two[1].trajectory(), corrected: None, explored: vec![], pairs: vec![] })
        .collect();
    for s in &mut out {
        s.pairs.extend(generation_pair(&s.sol_max, &s.sol_min, spec));
    }
    // 2. Self-correction where both are wrong.
    if spec.correction {
        let mut fixes: Vec<Branch> = Vec::new();
        for (p, s) in out.iter().enumerate() {
            if s.sol_max.correct || s.sol_min.correct {
                continue;
            }
            let from = &branches[2 * p];
            let k = restart_at(&s.sol_max, spec.error_below);
            fixes.push(Branch::new(p, Pick::Max, 1, from.steps[..k].to_vec(), from.scores[..k].to_vec()));
        }
        follow(&mut fixes, prompts, spec, oracle)?;
        for b in fixes {
            let t = b.trajectory();
            let s = &mut out[b.problem];
            if t.correct {
                s.pairs.push(Pair { chosen: t.clone(), rejected: s.sol_max.clone(), source: Source::Correction });
            }
            s.corrected = Some(t);
        }
    }
    // 3. Diversity where both are right.
    if spec.diversity && spec.explore > 0 {
        let right: Vec<usize> = (0..out.len()).filter(|&p| out[p].sol_max.correct && out[p].sol_min.correct).collect();
        if !right.is_empty() {
            let written = oracle.explore(&right, spec.explore)?;
            let texts: Vec<(usize, String)> = right.iter().zip(written).flat_map(|(&p, ts)| ts.into_iter().map(move |t| (p, t))).collect();
            let scored = score_solutions(&texts, spec, oracle)?;
            for ((p, _), t) in texts.iter().zip(scored) {
                out[*p].explored.push(t);
            }
            for &p in &right {
                let s = &mut out[p];
                let best = if s.sol_max.value(spec.lambda) >= s.sol_min.value(spec.lambda) { &s.sol_max } else { &s.sol_min };
                let mut plausible: Option<&Trajectory> = None;
                for t in s.explored.iter().filter(|t| !t.correct) {
                    if plausible.is_none_or(|q| t.value(spec.lambda) > q.value(spec.lambda)) {
                        plausible = Some(t);
                    }
                }
                if let Some(r) = plausible {
                    let pair = Pair { chosen: best.clone(), rejected: r.clone(), source: Source::Diversity };
                    s.pairs.push(pair);
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
#[path = "search_tests.rs"]
mod tests;
