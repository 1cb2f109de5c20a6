//! Countdown instances that are solvable by construction (METHODS §0.1, after
//! Stream-of-Search `src/countdown.py` / `countdown_generate.py`).
//!
//! Procedure, with the choices METHODS leaves open made explicit:
//! - **Target pool** `10..=max_target` (SoS: `range(10, max_target + 1)`), shuffled
//!   by the stream `(seed, "countdown/targets")`; the first `len / 10` are the held-out
//!   `val_target` targets, the rest serve `train` and `val`. `All` uses the whole pool.
//! - **Train vs val.** Both draw targets from the same 90% (as SoS does). To keep the
//!   two sets disjoint whatever their sizes, an instance (sorted nums, target) is
//!   assigned by a seeded content hash: bucket 0 of 10 is `val`, the rest `train`;
//!   each split rejects instances of the other bucket (checked before the search,
//!   so it costs no DFS). SoS instead re-draws val items whose solution is in train,
//!   which needs the whole train set in memory.
//! - **Instance i** uses its own stream `(seed, "countdown/<split>/k<k>", i)`, so a run with
//!   `count = n` is a prefix of one with `count = m > n`. Arity is round-robin over the
//!   range (`k = start + i mod len`), which spreads arities exactly evenly.
//! - **Sampling.** `target ~ Uniform(split targets)`, then `nums = k × randint(1, max_number)`
//!   is redrawn until the DFS finds a solution that uses *all* numbers with `a+b`, `a*b`,
//!   `|a−b|`, and `larger/smaller` only when exact. For k ≥ 5 the DFS memoises failed
//!   sorted multisets and stops after [`NODE_BUDGET`] nodes (a capped search counts as
//!   a rejection).
//! - **Fallback.** After [`MAX_REJECTIONS`] rejections (practically only for k ≤ 2 or
//!   tiny `max_number`), the instance is built *forward*: random nums, random pairs
//!   combined by random valid ops until one value is left, accepted when that value
//!   is one of the split's targets. This skews the target distribution for that
//!   instance only; an instance that still cannot be built is an error.

use crate::common::rows::field;
use std::collections::HashSet;
use std::ops::RangeInclusive;

use serde_json::{json, Value};

use retort_lm::rng::Rng;
use super::{DataError, Row};

/// Rejection-sampling attempts per instance before the forward fallback.
pub const MAX_REJECTIONS: usize = 2_000;
/// Forward-construction attempts per instance before giving up with an error.
pub const MAX_FORWARD: usize = 20_000;
/// DFS node cap per attempt for k ≥ 5 (k ≤ 4 searches are at most ~1,200 leaves).
pub const NODE_BUDGET: u64 = 200_000;

/// Which part of the target pool instances are drawn from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    /// Training instances: 90% of targets, `train` hash bucket.
    #[default]
    Train,
    /// In-distribution validation: same targets as train, disjoint instances.
    Val,
    /// Unseen-target validation: the 10% held-out targets.
    ValTarget,
    /// The whole target pool, no hold-out (e.g. harder-arity evaluation).
    All,
}

impl Split {
    /// The split's name in recipes and logs.
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::ValTarget => "val_target",
            Split::All => "all",
        }
    }
    /// Inverse of [`Split::name`].
    pub fn parse(s: &str) -> Option<Split> {
        [Split::Train, Split::Val, Split::ValTarget, Split::All]
            .into_iter()
            .find(|x| x.name() == s)
    }
}

/// Parameters of one generated data set.
#[derive(Debug, Clone, PartialEq)]
pub struct CountdownSpec {
    /// Arities, e.g. `3..=6`.
    pub numbers: RangeInclusive<usize>,
    /// Number of instances.
    pub count: usize,
    /// Largest target (inclusive); SoS default 100.
    pub max_target: i64,
    /// Largest starting number; SoS uses `max_target - 1`.
    pub max_number: i64,
    /// Which targets (and hash bucket) to draw from.
    pub split: Split,
    /// Seed of the target shuffle and of every instance.
    pub seed: u64,
}

impl Default for CountdownSpec {
    fn default() -> Self {
        CountdownSpec {
            numbers: 3..=4,
            count: 1000,
            max_target: 100,
            max_number: 99,
            split: Split::Train,
            seed: 0,
        }
    }
}

/// `(train/val targets, val_target targets)`, both in shuffled order.
pub fn target_pools(max_target: i64, seed: u64) -> (Vec<i64>, Vec<i64>) {
    let mut pool: Vec<i64> = (10..=max_target).collect();
    Rng::stream(seed, "countdown/targets", 0).shuffle(&mut pool);
    let held = pool.len() / 10;
    let rest = pool.split_off(held);
    (rest, pool)
}

/// The TinyZero-style user turn (METHODS §0.1); nums are printed like a Python list.
pub fn countdown_prompt(nums: &[i64], target: i64) -> String {
    let list: Vec<String> = nums.iter().map(i64::to_string).collect();
    format!(
        "Using the numbers [{}], create an equation that equals {target}. You can use + - * / and \
         each number can only be used once. Show your work in <think></think> tags and return the \
         final answer in <answer></answer> tags, e.g. <answer> (1 + 2) / 3 </answer>.",
        list.join(", ")
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Mul,
    Sub,
    Div,
}

/// The SoS children of a pair, larger operand first; `None` for an inexact
/// division or an `i64` overflow.
fn apply(op: Op, a: i64, b: i64) -> Option<i64> {
    let (hi, lo) = if a >= b { (a, b) } else { (b, a) };
    match op {
        Op::Add => hi.checked_add(lo),
        Op::Mul => hi.checked_mul(lo),
        Op::Sub => hi.checked_sub(lo),
        Op::Div => (lo != 0 && hi % lo == 0).then(|| hi / lo),
    }
}

const OPS: [Op; 4] = [Op::Add, Op::Mul, Op::Sub, Op::Div];

/// One combination step: indices into the current list (i < j) and the op;
/// the result is appended after removing both operands.
type Step = (usize, usize, Op);

fn combine(nums: &[i64], i: usize, j: usize, v: i64) -> Vec<i64> {
    let mut next: Vec<i64> = Vec::with_capacity(nums.len() - 1);
    next.extend(
        nums.iter()
            .enumerate()
            .filter(|&(x, _)| x != i && x != j)
            .map(|(_, &n)| n),
    );
    next.push(v);
    next
}

struct Search {
    target: i64,
    failed: Option<HashSet<Vec<i64>>>,
    nodes: u64,
    budget: u64,
}

/// Exhaustive DFS; `Err(())` when the node budget runs out.
impl Search {
    fn dfs(&mut self, nums: &[i64], path: &mut Vec<Step>) -> Result<bool, ()> {
        self.nodes += 1;
        if self.nodes > self.budget {
            return Err(());
        }
        if nums.len() == 1 {
            return Ok(nums[0] == self.target);
        }
        let key = match &self.failed {
            Some(memo) if nums.len() >= 3 => {
                let mut k = nums.to_vec();
                k.sort_unstable();
                if memo.contains(&k) {
                    return Ok(false);
                }
                Some(k)
            }
            _ => None,
        };
        for i in 0..nums.len() {
            for j in i + 1..nums.len() {
                for op in OPS {
                    let Some(v) = apply(op, nums[i], nums[j]) else {
                        continue;
                    };
                    path.push((i, j, op));
                    if self.dfs(&combine(nums, i, j, v), path)? {
                        return Ok(true);
                    }
                    path.pop();
                }
            }
        }
        if let (Some(memo), Some(k)) = (&mut self.failed, key) {
            memo.insert(k);
        }
        Ok(false)
    }
}

/// Replays `path` over `nums` into one expression; every operation is
/// parenthesised except the outermost, e.g. `(75 - 25) / 5`.
fn render(nums: &[i64], path: &[Step]) -> String {
    let mut items: Vec<(i64, String)> = nums.iter().map(|&n| (n, n.to_string())).collect();
    for &(i, j, op) in path {
        let (b, a) = (items.remove(j), items.remove(i));
        let (hi, lo) = if a.0 >= b.0 { (a, b) } else { (b, a) };
        let sym = match op {
            Op::Add => '+',
            Op::Mul => '*',
            Op::Sub => '-',
            Op::Div => '/',
        };
        let v = apply(op, hi.0, lo.0).expect("replayed step was valid during search");
        items.push((v, format!("({} {sym} {})", hi.1, lo.1)));
    }
    let expr = items.pop().map(|x| x.1).unwrap_or_default();
    if nums.len() >= 2 {
        expr[1..expr.len() - 1].to_string()
    } else {
        expr
    }
}

fn search(nums: &[i64], target: i64, budget: u64) -> Result<Option<String>, ()> {
    if nums.is_empty() {
        return Ok(None);
    }
    let memo = (nums.len() >= 5).then(HashSet::new);
    let mut s = Search {
        target,
        failed: memo,
        nodes: 0,
        budget,
    };
    let mut path = Vec::new();
    Ok(s.dfs(nums, &mut path)?.then(|| render(nums, &path)))
}

/// A solution using every number once with the SoS ops (no fractional
/// intermediates), or `None`. Exhaustive, memoised for k ≥ 5; meant for k ≤ 6.
pub fn solve(nums: &[i64], target: i64) -> Option<String> {
    search(nums, target, u64::MAX).ok().flatten()
}

/// True iff the instance belongs to the `val` bucket of the seeded content hash.
fn is_val_instance(seed: u64, nums: &[i64], target: i64) -> bool {
    let mut sorted = nums.to_vec();
    sorted.sort_unstable();
    Rng::stream(seed, &format!("{sorted:?}/{target}"), 0).below(10) == 0
}

fn accepts(split: Split, seed: u64, nums: &[i64], target: i64) -> bool {
    match split {
        Split::Train => !is_val_instance(seed, nums, target),
        Split::Val => is_val_instance(seed, nums, target),
        Split::ValTarget | Split::All => true,
    }
}

/// Forward construction: random nums combined by random valid ops; `Some` when
/// the final value is in `targets` (and the split accepts the instance).
fn forward(
    rng: &mut Rng,
    k: usize,
    spec: &CountdownSpec,
    targets: &HashSet<i64>,
) -> Option<(Vec<i64>, i64, String)> {
    let nums: Vec<i64> = (0..k).map(|_| rng.range_i64(1, spec.max_number)).collect();
    let mut cur = nums.clone();
    let mut path = Vec::new();
    while cur.len() > 1 {
        let picked = rng.sample(&(0..cur.len()).collect::<Vec<_>>(), 2);
        let (i, j) = (picked[0].min(picked[1]), picked[0].max(picked[1]));
        let valid: Vec<(Op, i64)> = OPS
            .iter()
            .filter_map(|&op| apply(op, cur[i], cur[j]).map(|v| (op, v)))
            .collect();
        let &(op, v) = rng.choose(&valid)?;
        path.push((i, j, op));
        cur = combine(&cur, i, j, v);
    }
    let target = cur[0];
    (targets.contains(&target) && accepts(spec.split, spec.seed, &nums, target))
        .then(|| (nums.clone(), target, render(&nums, &path)))
}

fn validate(spec: &CountdownSpec) -> Result<Vec<i64>, DataError> {
    let bad = |m: String| Err(DataError::InvalidSpec(m));
    if spec.numbers.is_empty() || *spec.numbers.start() == 0 {
        return bad(format!(
            "countdown arity range {:?} must be non-empty and start at 1 or more",
            spec.numbers
        ));
    }
    if spec.max_number < 1 {
        return bad(format!(
            "countdown max_number {} must be at least 1",
            spec.max_number
        ));
    }
    let (main, held) = target_pools(spec.max_target, spec.seed);
    let targets = match spec.split {
        Split::Train | Split::Val => main,
        Split::ValTarget => held,
        Split::All => main.into_iter().chain(held).collect(),
    };
    if targets.is_empty() {
        return bad(format!(
            "countdown split {} has no targets with max_target {}",
            spec.split.name(),
            spec.max_target
        ));
    }
    Ok(targets)
}

fn instance(
    i: usize,
    k: usize,
    spec: &CountdownSpec,
    targets: &[i64],
    set: &HashSet<i64>,
) -> Result<Row, DataError> {
    let tag = format!("countdown/{}/k{k}", spec.split.name());
    let mut rng = Rng::stream(spec.seed, &tag, i as u64);
    let target = *rng.choose(targets).expect("validated non-empty");
    let budget = if k >= 5 { NODE_BUDGET } else { u64::MAX };
    let mut found = None;
    for _ in 0..MAX_REJECTIONS {
        let nums: Vec<i64> = (0..k).map(|_| rng.range_i64(1, spec.max_number)).collect();
        if !accepts(spec.split, spec.seed, &nums, target) {
            continue;
        }
        if let Ok(Some(sol)) = search(&nums, target, budget) {
            found = Some((nums, target, sol));
            break;
        }
    }
    if found.is_none() {
        found = (0..MAX_FORWARD).find_map(|_| forward(&mut rng, k, spec, set));
    }
    let Some((nums, target, solution)) = found else {
        return Err(DataError::InvalidSpec(format!(
            "could not build a solvable {k}-number countdown instance ({} split, max_number {})",
            spec.split.name(),
            spec.max_number
        )));
    };
    let mut row = Row::new();
    row.insert(field::ID.into(), Value::String(format!("countdown-{k}-{i}")));
    row.insert(field::PROMPT.into(), Value::String(countdown_prompt(&nums, target)));
    row.insert(field::NUMS.into(), json!(nums));
    row.insert(field::TARGET.into(), json!(target));
    row.insert("solution".into(), Value::String(solution));
    Ok(row)
}

/// `spec.count` rows `{id, prompt, nums, target, solution}`, every one solvable.
pub fn instances(spec: &CountdownSpec) -> Result<Vec<Row>, DataError> {
    let targets = validate(spec)?;
    let set: HashSet<i64> = targets.iter().copied().collect();
    let arities: Vec<usize> = spec.numbers.clone().collect();
    (0..spec.count)
        .map(|i| instance(i, arities[i % arities.len()], spec, &targets, &set))
        .collect()
}

#[cfg(test)]
#[path = "countdown_tests.rs"]
mod tests;
