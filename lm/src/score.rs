//! Scoring given tokens under a model: each token's log-prob and the
//! entropy of the distribution it was drawn from.
//!
//! The pair gives the centred log-likelihood of METHODS §4.1,
//! `φ_t = log p_t(y_t) + H(p_t)`: about 0 on average for tokens the model
//! would write itself, far below 0 for tokens foreign to it. Computed on
//! the host in `f64` from the logits of one forward pass.

use rayon::prelude::*;

use crate::model::Llama;

/// One token under one context: `log p(y)` and `H(p)` of the distribution
/// `p` it was drawn from (natural logs, temperature 1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenStat {
    /// `log p(y)`.
    pub logprob: f32,
    /// `H(p) = −Σ_v p(v) log p(v)`.
    pub entropy: f32,
}

impl TokenStat {
    /// The centred log-likelihood `φ = log p(y) + H(p)`.
    pub fn phi(&self) -> f32 {
        self.logprob + self.entropy
    }
}

/// `log Σ exp(logits)`, in `f64` after subtracting the maximum.
pub fn log_sum_exp(logits: &[f32]) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&l| ((l - max) as f64).exp()).sum();
    max as f64 + sum.ln()
}

/// `log_softmax(logits)` into `out`; returns the distribution's entropy.
pub fn log_softmax(logits: &[f32], out: &mut Vec<f32>) -> f32 {
    let lse = log_sum_exp(logits);
    out.clear();
    out.extend(logits.iter().map(|&l| (l as f64 - lse) as f32));
    let h: f64 = out.iter().map(|&lp| if lp > -80.0 { -(lp as f64).exp() * lp as f64 } else { 0.0 }).sum();
    h as f32
}

/// Token `y`'s stat under the distribution with these logits.
pub fn stat_of(logits: &[f32], y: u32, scratch: &mut Vec<f32>) -> TokenStat {
    let entropy = log_softmax(logits, scratch);
    TokenStat { logprob: scratch[y as usize], entropy }
}

/// The stats of `tokens[start..]`, each given everything before it (one
/// unpadded sequence, one forward pass).
///
/// # Panics
/// If `start` is 0 or past the end.
pub fn token_stats(model: &Llama, tokens: &[u32], start: usize) -> Vec<TokenStat> {
    let vocab = model.config().vocab_size;
    let logits = crate::generate::scored_logits(model, tokens, start);
    let mut scratch = Vec::with_capacity(vocab);
    logits.chunks(vocab).zip(&tokens[start..]).map(|(row, &y)| stat_of(row, y, &mut scratch)).collect()
}

/// [`token_stats`] of several sequences `(tokens, start)`, side by side on
/// rayon's threads (each sequence alone, so the result does not depend on
/// which others are scored with it).
pub fn token_stats_many(model: &Llama, seqs: &[(Vec<u32>, usize)]) -> Vec<Vec<TokenStat>> {
    if crate::generate::split_parts(model, seqs.len()) <= 1 {
        return seqs.iter().map(|(t, s)| token_stats(model, t, *s)).collect();
    }
    seqs.par_iter().map(|(t, s)| token_stats(model, t, *s)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phi_by_hand() {
        // p = softmax([0, ln 3]) = (1/4, 3/4); H = −(¼ ln ¼ + ¾ ln ¾) = 0.5623.
        let mut s = Vec::new();
        let lo = stat_of(&[0.0, 3f32.ln()], 0, &mut s);
        let hi = stat_of(&[0.0, 3f32.ln()], 1, &mut s);
        let h = -(0.25f32 * 0.25f32.ln() + 0.75 * 0.75f32.ln());
        assert!((lo.entropy - h).abs() < 1e-6 && (hi.entropy - h).abs() < 1e-6);
        assert!((lo.phi() - (0.25f32.ln() + h)).abs() < 1e-6);
        assert!((hi.phi() - (0.75f32.ln() + h)).abs() < 1e-6);
        // φ's mean under p itself is 0 (METHODS §4.1).
        assert!((0.25 * lo.phi() + 0.75 * hi.phi()).abs() < 1e-6);
        // A uniform distribution: every token has φ = 0.
        let u = stat_of(&[2.0; 8], 5, &mut s);
        assert!(u.phi().abs() < 1e-6 && (u.entropy - 8f32.ln()).abs() < 1e-5);
    }
}
