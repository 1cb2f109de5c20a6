//! Token sampling: greedy, temperature, top-k, top-p, min-p, with one
//! seeded RNG per sequence (candle's `LogitsProcessor`, made per item).
//!
//! A sequence's RNG is derived from `(seed, item_id)` only, so what it
//! samples does not depend on which other sequences share its batch.

use crate::rng::Rng;
use serde::{Deserialize, Serialize};

/// How to pick tokens and when to stop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SamplingParams {
    /// Most tokens to generate per sequence.
    pub max_new_tokens: usize,
    /// Softmax temperature; `0` means greedy (argmax).
    pub temperature: f32,
    /// Keep only the `k` most likely tokens (`0` = off).
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches `p` (`1` = off).
    pub top_p: f32,
    /// Drop tokens less likely than `min_p` × the top token's probability (`0` = off).
    pub min_p: f32,
    /// Base seed; each sequence's RNG is seeded from `(seed, item id)`.
    pub seed: u64,
    /// Stop when the generated text contains one of these.
    pub stop: Vec<String>,
    /// Stop tokens; `None` uses the model's EOS ids.
    pub eos_token_ids: Option<Vec<u32>>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            max_new_tokens: 256,
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            seed: 0,
            stop: Vec::new(),
            eos_token_ids: None,
        }
    }
}

impl SamplingParams {
    /// Greedy decoding of up to `max_new_tokens`.
    pub fn greedy(max_new_tokens: usize) -> Self {
        Self {
            max_new_tokens,
            temperature: 0.0,
            ..Self::default()
        }
    }
}

/// Picks tokens for one sequence.
#[derive(Debug, Clone)]
pub struct Sampler {
    params: SamplingParams,
    rng: Rng,
    scratch: Vec<(u32, f32)>,
}

/// Tokens whose logit is this far below the best have probability below
/// `e^-40` relative to it; dropping them before sorting changes nothing
/// measurable and keeps top-p cheap.
const NEGLIGIBLE_LOGIT_GAP: f32 = 40.0;

impl Sampler {
    /// A sampler for item `item_id`.
    pub fn new(params: &SamplingParams, item_id: u64) -> Self {
        Self {
            params: params.clone(),
            rng: Rng::for_item(params.seed, item_id),
            scratch: Vec::new(),
        }
    }

    /// The next token given the last position's logits.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        let p = &self.params;
        if p.temperature <= 0.0 || p.top_k == 1 {
            return argmax(logits);
        }
        let inv_t = 1.0 / p.temperature;
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let floor = max - NEGLIGIBLE_LOGIT_GAP * p.temperature;
        let c = &mut self.scratch;
        c.clear();
        c.extend(
            logits
                .iter()
                .enumerate()
                .filter(|(_, &l)| l >= floor)
                .map(|(i, &l)| (i as u32, (l - max) * inv_t)),
        );
        let by_logit = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        if p.top_k > 0 && p.top_k < c.len() {
            c.select_nth_unstable_by(p.top_k - 1, by_logit);
            c.truncate(p.top_k);
        }
        c.sort_unstable_by(by_logit);
        // Probabilities relative to the top token (which has weight 1).
        let mut weights: Vec<f64> = c.iter().map(|&(_, l)| (l as f64).exp()).collect();
        if p.min_p > 0.0 {
            let keep = weights.iter().take_while(|&&w| w >= p.min_p as f64).count().max(1);
            weights.truncate(keep);
        }
        if p.top_p < 1.0 {
            let total: f64 = weights.iter().sum();
            let mut cum = 0.0;
            let mut keep = weights.len();
            for (i, w) in weights.iter().enumerate() {
                cum += w / total;
                if cum >= p.top_p as f64 {
                    keep = i + 1;
                    break;
                }
            }
            weights.truncate(keep);
        }
        let total: f64 = weights.iter().sum();
        let mut u = self.rng.next_f64() * total;
        for (i, w) in weights.iter().enumerate() {
            if u < *w {
                return c[i].0;
            }
            u -= w;
        }
        c[weights.len() - 1].0
    }
}

/// Index of the largest logit (the first one on ties).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(temperature: f32) -> SamplingParams {
        SamplingParams {
            temperature,
            seed: 42,
            ..SamplingParams::default()
        }
    }

    #[test]
    fn greedy_takes_first_max() {
        assert_eq!(argmax(&[0.0, 3.0, 3.0, -1.0]), 1);
        let mut s = Sampler::new(&params(0.0), 7);
        assert_eq!(s.sample(&[0.0, 1.0, 5.0]), 2);
    }

    #[test]
    fn same_seed_and_item_give_same_draws_others_differ() {
        let logits: Vec<f32> = (0..50).map(|i| (i % 7) as f32 * 0.3).collect();
        let draw = |item| {
            let mut s = Sampler::new(&params(1.0), item);
            (0..40).map(|_| s.sample(&logits)).collect::<Vec<_>>()
        };
        assert_eq!(draw(3), draw(3));
        assert_ne!(draw(3), draw(4));
        let mut other_seed = params(1.0);
        other_seed.seed = 43;
        let mut s = Sampler::new(&other_seed, 3);
        assert_ne!((0..40).map(|_| s.sample(&logits)).collect::<Vec<_>>(), draw(3));
    }

    #[test]
    fn filters_restrict_the_support() {
        let logits = [2.0, 1.0, 0.0, -1.0, 5.0];
        let run = |p: SamplingParams| {
            let mut s = Sampler::new(&p, 1);
            let mut seen: Vec<u32> = (0..500).map(|_| s.sample(&logits)).collect();
            seen.sort();
            seen.dedup();
            seen
        };
        assert_eq!(run(SamplingParams { top_k: 2, ..params(5.0) }), vec![0, 4]);
        assert_eq!(run(SamplingParams { top_p: 0.5, ..params(1.0) }), vec![4]);
        // min_p 0.3 at T=1: weights relative to the top are e^-3 ≈ 0.05 and below.
        assert_eq!(run(SamplingParams { min_p: 0.3, ..params(1.0) }), vec![4]);
        assert_eq!(run(params(100.0)), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn frequencies_follow_the_softmax() {
        let logits = [0.0f32, (3.0f32).ln()];
        let mut s = Sampler::new(&params(1.0), 9);
        let ones = (0..20_000).filter(|_| s.sample(&logits) == 1).count();
        assert!((ones as f64 / 20_000.0 - 0.75).abs() < 0.02, "{ones}");
    }
}
