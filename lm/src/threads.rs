//! Steps on a loaded machine: one thread when two are slower.
//!
//! Used for the host engine's decode steps and for training steps. A decode
//! step is some 150 parallel regions (five products and the attention per
//! layer), each ending in a join; a training step, more. When another process
//! shares a core with one of rayon's threads, that thread is preempted in
//! the middle of its task for a scheduler slice, and the other thread waits
//! at the join: measured on SmolLM2 at batch 16 with a spinning process on
//! one of two cores, 2 threads decoded 110 tokens/s and 1 thread 157
//! (BENCHMARKS.md, "Under load"). No split of the work avoids that wait,
//! since the task in flight is what is late, so [`StepThreads`] measures
//! instead: it times steps on rayon's pool and, now and then, one step on
//! a one-thread pool, and runs on whichever took less time per row.
//!
//! Which pool runs a step changes no result: every output of the host
//! engine is computed by one task whatever the thread count, and burn-flex
//! trains the same bits on one thread as on two (tests for both).

use std::sync::OnceLock;
use std::time::Instant;

use rayon::{ThreadPool, ThreadPoolBuilder};

/// Steps between two trials of the other pool after a switch; each trial
/// that confirms the choice doubles the gap, up to [`MOST_BETWEEN`], so an
/// idle machine pays for few slow steps (a trial on one thread costs about
/// one step more).
const PROBE_EVERY: u64 = 24;
const MOST_BETWEEN: u64 = 768;

/// The other pool must be this much faster per row to take over, so that
/// noise does not flip the choice back and forth.
const SWITCH_BELOW: f64 = 0.9;

/// Weight of the newest step in the running mean of a pool's time per row.
const NEWEST: f64 = 0.3;

/// A pool of one thread, or `None` when rayon's own has only one.
fn single() -> Option<&'static ThreadPool> {
    static POOL: OnceLock<Option<ThreadPool>> = OnceLock::new();
    POOL.get_or_init(|| {
        (rayon::current_num_threads() > 1)
            .then(|| ThreadPoolBuilder::new().num_threads(1).thread_name(|_| "retort-decode-1".into()).build().ok())
            .flatten()
    })
    .as_ref()
}

/// Runs `step` on a thread of rayon's pool. Called from outside it (the
/// generating thread), every parallel region of the step would otherwise be
/// handed to the pool and back, each hand-off a sleep and a wake-up: some
/// 150 per decode step, which on one thread (`RAYON_NUM_THREADS=1`) cost
/// more than half the time of a SmolLM2 decode step (38 against 84 tokens/s).
pub(crate) fn on_pool<R: Send>(step: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        step()
    } else {
        rayon::scope(|_| step())
    }
}

/// The choice between rayon's pool and one thread for one generation's
/// decode steps, and the timings it rests on.
#[derive(Debug, Clone)]
pub(crate) struct StepThreads {
    /// Whether steps run on one thread.
    single: bool,
    /// Running mean seconds per row: `[rayon's pool, one thread]`; `None`
    /// until that pool has run a step.
    per_row: [Option<f64>; 2],
    steps: u64,
    /// The step that tries the other pool, and the gap to the one after.
    next_trial: u64,
    gap: u64,
}

impl Default for StepThreads {
    fn default() -> Self {
        // The second step is the first trial: the first may still be warming caches.
        StepThreads { single: false, per_row: [None, None], steps: 0, next_trial: 2, gap: PROBE_EVERY }
    }
}

impl StepThreads {
    /// Runs `step` (a step over `rows` sequences or tokens) on the chosen pool,
    /// or on the other one when it is time to try it, and updates the
    /// choice.
    pub(crate) fn run<R: Send>(&mut self, rows: usize, step: impl FnOnce() -> R + Send) -> R {
        // Inside a one-thread pool already (or rayon has one thread): nothing to choose.
        let Some(pool) = single().filter(|_| rayon::current_num_threads() > 1) else {
            return on_pool(step);
        };
        let on_one = self.next_on_one();
        let start = Instant::now();
        let out = if on_one { pool.install(step) } else { on_pool(step) };
        self.record(on_one, start.elapsed().as_secs_f64() / rows.max(1) as f64);
        out
    }

    /// Counts a step and says whether it runs on one thread.
    fn next_on_one(&mut self) -> bool {
        self.steps += 1;
        self.single != (self.steps == self.next_trial)
    }

    /// Takes in the step's seconds per row and updates the choice.
    fn record(&mut self, on_one: bool, per_row: f64) {
        let mean = &mut self.per_row[usize::from(on_one)];
        *mean = Some(mean.map_or(per_row, |m| (1.0 - NEWEST) * m + NEWEST * per_row));
        let mut switched = false;
        if let [Some(pool_s), Some(one_s)] = self.per_row {
            let (now, other) = if self.single { (one_s, pool_s) } else { (pool_s, one_s) };
            if other < SWITCH_BELOW * now {
                self.single = !self.single;
                switched = true;
            }
        }
        if self.steps == self.next_trial {
            self.gap = if switched { PROBE_EVERY } else { (2 * self.gap).min(MOST_BETWEEN) };
            self.next_trial = self.steps + self.gap;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Steps whose time per row is `one` on one thread and `pool` on
    /// rayon's pool (no clock: the policy alone).
    fn steps(t: &mut StepThreads, n: u64, one: f64, pool: f64) {
        for _ in 0..n {
            let on_one = t.next_on_one();
            t.record(on_one, if on_one { one } else { pool });
        }
    }

    #[test]
    fn the_faster_pool_takes_over_and_an_idle_machine_tries_rarely() {
        let mut t = StepThreads::default();
        // Slower on rayon's pool: the second step tries one thread and keeps it.
        steps(&mut t, 2, 1.0, 3.0);
        assert!(t.single, "{t:?}");
        // The load goes: the trial PROBE_EVERY steps on takes the pool back.
        steps(&mut t, PROBE_EVERY - 1, 3.0, 1.0);
        assert!(t.single, "no trial yet: {t:?}");
        steps(&mut t, 1, 3.0, 1.0);
        assert!(!t.single, "{t:?}");
        // Steady: trials that confirm the choice double the gap, up to MOST_BETWEEN.
        let trials_before = t.next_trial;
        steps(&mut t, 4 * MOST_BETWEEN, 2.0, 1.0);
        assert!(!t.single && t.gap == MOST_BETWEEN && t.next_trial > trials_before, "{t:?}");
        // A one-step blip on one thread within 10% does not switch.
        let mut u = StepThreads::default();
        steps(&mut u, 2, 0.95, 1.0);
        assert!(!u.single, "{u:?}");
    }

    #[test]
    fn the_chosen_pool_runs_the_step() {
        if single().is_none() {
            return; // one thread: nothing to choose
        }
        let mut t = StepThreads { single: true, next_trial: u64::MAX, ..StepThreads::default() };
        assert_eq!(t.run(1, rayon::current_num_threads), 1);
        t.single = false;
        assert!(t.run(1, rayon::current_num_threads) > 1);
    }

    /// What a pool computes does not depend on its thread count: the same
    /// samples (T 1, so any changed bit could change a token) on one thread
    /// as on rayon's pool, prefill and decode.
    #[test]
    fn one_thread_samples_what_the_pool_samples() {
        use crate::generate::{generate_batch, GenerateRequest};
        use crate::sampling::SamplingParams;
        let (_, packed) = crate::test_util::burn_and_packed();
        let prompts: Vec<Vec<u32>> = (0..5).map(|s| (0..3 + 4 * s).map(|i| ((i * 7 + s * 11) % 60) as u32).collect()).collect();
        let ids: Vec<u64> = (0..5).collect();
        let params = SamplingParams { temperature: 1.0, eos_token_ids: Some(vec![]), ..SamplingParams::greedy(24) };
        let req = GenerateRequest { prompts: &prompts, item_ids: &ids, params: &params, decode: None };
        let pool = generate_batch(&packed, &req);
        let one = ThreadPoolBuilder::new().num_threads(1).build().unwrap().install(|| generate_batch(&packed, &req));
        assert_eq!(pool, one);
    }
}
