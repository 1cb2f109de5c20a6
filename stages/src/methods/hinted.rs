//! Hinted Decoding's arithmetic (METHODS §4.3, §9.3): how much of each
//! step comes from the plain stream, and the mixed distribution.
//!
//! With `p` the hinted stream (its prompt holds the reference) and `q` the
//! plain one (the question alone), each step samples from
//! `(1−λ)·log p + λ·log q` (∝ `p^{1−λ} q^λ`), `λ = f(β·H(p)/log|V|)`: where
//! the hinted stream is unsure, the model's own plain reading takes over.
//! The first token comes from `p`; once the answer delimiter is written,
//! `q` alone writes the answer.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The shape of `λ` as a function of `x = β·H(p)/log|V|`. Every shape
/// gives 0 at `x = 0` (so `β = 0` is the pure hinted rewrite) and 1 for
/// `x ≥ 1`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LambdaSchedule {
    /// `clamp(x, 0, 1)` (the reference default).
    #[default]
    Linear,
    /// A logistic step centred at 0.5 (slope 10), rescaled to 0 at 0 and 1 at 1.
    Sigmoid,
    /// 0 below 0.3, 1 above 0.7, linear between.
    Piecewise,
}

impl LambdaSchedule {
    /// `λ` for `x = β·H_norm`.
    pub fn lambda(self, x: f64) -> f64 {
        let x = x.clamp(0.0, 1.0);
        match self {
            LambdaSchedule::Linear => x,
            LambdaSchedule::Sigmoid => {
                let s = |t: f64| 1.0 / (1.0 + (-10.0 * (t - 0.5)).exp());
                ((s(x) - s(0.0)) / (s(1.0) - s(0.0))).clamp(0.0, 1.0)
            }
            LambdaSchedule::Piecewise => ((x - 0.3) / 0.4).clamp(0.0, 1.0),
        }
    }
}

/// `λ` at a step where the hinted stream's entropy is `h_hinted` over a
/// vocabulary of `vocab` tokens.
pub fn step_lambda(schedule: LambdaSchedule, beta: f64, h_hinted: f64, vocab: usize) -> f64 {
    let norm = if vocab > 1 { h_hinted / (vocab as f64).ln() } else { 0.0 };
    schedule.lambda(beta * norm)
}

/// Writes `(1−λ)·log p + λ·log q` into `out`.
pub fn mix_logprobs(lambda: f64, hinted: &[f32], plain: &[f32], out: &mut [f32]) {
    let l = lambda as f32;
    for (o, (p, q)) in out.iter_mut().zip(hinted.iter().zip(plain)) {
        // Written so that λ = 0 and λ = 1 give p and q bit for bit.
        *o = if l == 0.0 {
            *p
        } else if l == 1.0 {
            *q
        } else {
            (1.0 - l) * p + l * q
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_by_hand() {
        for s in [LambdaSchedule::Linear, LambdaSchedule::Sigmoid, LambdaSchedule::Piecewise] {
            assert_eq!(s.lambda(0.0), 0.0, "{s:?}");
            assert!((s.lambda(1.0) - 1.0).abs() < 1e-12, "{s:?}");
            assert_eq!(s.lambda(3.0), s.lambda(1.0), "{s:?} clamps above 1");
            assert_eq!(s.lambda(-1.0), 0.0, "{s:?} clamps below 0");
        }
        assert_eq!(LambdaSchedule::Linear.lambda(0.25), 0.25);
        assert!((LambdaSchedule::Sigmoid.lambda(0.5) - 0.5).abs() < 1e-12);
        assert_eq!(LambdaSchedule::Piecewise.lambda(0.2), 0.0);
        assert!((LambdaSchedule::Piecewise.lambda(0.5) - 0.5).abs() < 1e-12);
        assert_eq!(LambdaSchedule::Piecewise.lambda(0.8), 1.0);
        // β·H/log|V|: a uniform hinted stream over 8 tokens has H = ln 8.
        assert!((step_lambda(LambdaSchedule::Linear, 0.5, 8f64.ln(), 8) - 0.5).abs() < 1e-12);
        assert_eq!(step_lambda(LambdaSchedule::Linear, 0.0, 8f64.ln(), 8), 0.0);
        assert_eq!(step_lambda(LambdaSchedule::Linear, 3.0, 8f64.ln(), 8), 1.0);
    }

    #[test]
    fn the_mix_is_geometric_and_exact_at_the_ends() {
        let (p, q) = ([-0.1f32, -2.0, -3.5], [-1.5f32, -0.3, -9.0]);
        let mut out = [0f32; 3];
        mix_logprobs(0.0, &p, &q, &mut out);
        assert_eq!(out, p);
        mix_logprobs(1.0, &p, &q, &mut out);
        assert_eq!(out, q);
        mix_logprobs(0.25, &p, &q, &mut out);
        for i in 0..3 {
            assert!((out[i] - (0.75 * p[i] + 0.25 * q[i])).abs() < 1e-6);
        }
    }
}
