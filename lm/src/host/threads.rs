//! Decoding on a loaded machine: one thread when two are slower.
//!
//! A decode step is some 150 parallel regions (five products and the
//! attention per layer), each ending in a join. When another process
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
//! engine is computed by one task whatever the thread count.

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
    /// Runs `step` (a decode step of `rows` sequences) on the chosen pool,
    /// or on the other one when it is time to try it, and updates the
    /// choice.
    pub(crate) fn run<R: Send>(&mut self, rows: usize, step: impl FnOnce() -> R + Send) -> R {
        // Inside a one-thread pool already (or rayon has one thread): nothing to choose.
        let Some(pool) = single().filter(|_| rayon::current_num_threads() > 1) else {
            return step();
        };
        self.steps += 1;
        let trial = self.steps == self.next_trial;
        let on_one = self.single != trial;
        let start = Instant::now();
        let out = if on_one { pool.install(step) } else { step() };
        let per_row = start.elapsed().as_secs_f64() / rows.max(1) as f64;
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
        if trial {
            self.gap = if switched { PROBE_EVERY } else { (2 * self.gap).min(MOST_BETWEEN) };
            self.next_trial = self.steps + self.gap;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A step that sleeps `one` µs on one thread and `pool` on rayon's pool.
    fn sleepy(t: &mut StepThreads, one: u64, pool: u64) -> usize {
        t.run(1, || {
            let on_one = rayon::current_num_threads() == 1;
            std::thread::sleep(std::time::Duration::from_micros(if on_one { one } else { pool }));
            rayon::current_num_threads()
        })
    }

    #[test]
    fn a_faster_pool_takes_over_and_the_choice_runs_the_step() {
        if single().is_none() {
            return; // one thread: nothing to choose
        }
        let mut t = StepThreads::default();
        // Slow on rayon's pool, fast on one thread: the second step tries
        // one thread, and from then on steps run there.
        for _ in 0..3 {
            sleepy(&mut t, 100, 1_000);
        }
        assert!(t.single, "{t:?}");
        assert_eq!(sleepy(&mut t, 100, 1_000), 1, "the step ran on one thread");
        // The load goes: a later trial of rayon's pool takes it back, at
        // most MOST_BETWEEN steps on.
        let back = (0..2 * MOST_BETWEEN).position(|_| {
            sleepy(&mut t, 1_000, 100);
            !t.single
        });
        assert!(back.is_some(), "{t:?}");
        assert!(sleepy(&mut t, 1_000, 100) > 1, "the step ran on rayon's pool");
        // An idle machine's steady choice costs few trials: the gaps double.
        let before = t.steps;
        for _ in 0..200 {
            sleepy(&mut t, 300, 100);
        }
        assert!(!t.single && t.next_trial > before + 2 * PROBE_EVERY, "{t:?}");
    }
}
