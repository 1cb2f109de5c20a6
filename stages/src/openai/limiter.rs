//! Adaptive concurrency: additive increase, multiplicative decrease (as
//! TCP and Oumi's adaptive throughput do). Every failed attempt halves the
//! requests allowed in flight; every window of successes adds one back, up
//! to `max_concurrency`. A server that sheds load with 429s or 503s then
//! gets fewer requests instead of a retry storm, and recovers the full
//! width once it stops erring.

use std::sync::{Condvar, Mutex};

/// Requests in flight, bounded by a limit that adapts.
pub struct Limiter {
    max: usize,
    state: Mutex<State>,
    freed: Condvar,
}

struct State {
    limit: f64,
    in_flight: usize,
}

/// One request's place; dropping it frees the place.
pub struct Permit<'a>(&'a Limiter);

impl Limiter {
    /// Starts at `max` in flight.
    pub fn new(max: usize) -> Self {
        let max = max.max(1);
        Limiter { max, state: Mutex::new(State { limit: max as f64, in_flight: 0 }), freed: Condvar::new() }
    }

    /// Waits for a place.
    pub fn acquire(&self) -> Permit<'_> {
        let mut s = self.state.lock().expect("limiter lock");
        while s.in_flight >= s.limit.floor() as usize {
            s = self.freed.wait(s).expect("limiter lock");
        }
        s.in_flight += 1;
        Permit(self)
    }

    /// A request succeeded: one more place per `limit` successes.
    pub fn success(&self) {
        let mut s = self.state.lock().expect("limiter lock");
        s.limit = (s.limit + 1.0 / s.limit).min(self.max as f64);
        self.freed.notify_all();
    }

    /// A request failed and will be retried: halve the places (at least one).
    pub fn failure(&self) {
        let mut s = self.state.lock().expect("limiter lock");
        s.limit = (s.limit / 2.0).max(1.0);
    }

    /// The current limit (for tests and progress).
    pub fn limit(&self) -> usize {
        self.state.lock().expect("limiter lock").limit.floor() as usize
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let mut s = self.0.state.lock().expect("limiter lock");
        s.in_flight -= 1;
        self.0.freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_halve_the_limit_and_successes_win_it_back() {
        let l = Limiter::new(8);
        assert_eq!(l.limit(), 8);
        l.failure();
        l.failure();
        assert_eq!(l.limit(), 2);
        for _ in 0..3 {
            l.failure();
        }
        assert_eq!(l.limit(), 1, "never below one");
        for _ in 0..100 {
            l.success();
        }
        assert_eq!(l.limit(), 8, "back to the maximum, never above");
    }

    #[test]
    fn no_more_than_the_limit_are_in_flight() {
        let l = Limiter::new(2);
        let a = l.acquire();
        let _b = l.acquire();
        std::thread::scope(|s| {
            let waiter = s.spawn(|| {
                let _c = l.acquire();
            });
            std::thread::sleep(std::time::Duration::from_millis(50));
            assert!(!waiter.is_finished(), "a third request waits");
            drop(a);
            waiter.join().unwrap();
        });
    }
}
