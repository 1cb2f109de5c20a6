//! Scoring given tokens under a model: each token's log-prob and the
//! entropy of the distribution it was drawn from.
//!
//! The pair gives the centred log-likelihood of METHODS §4.1,
//! `φ_t = log p_t(y_t) + H(p_t)`: about 0 on average for tokens the model
//! would write itself, far below 0 for tokens foreign to it. Computed on
//! the host (sums in `f64`) from the logits of one forward pass.

use rayon::prelude::*;

use crate::model::Llama;
use crate::packed::PackedModel;

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
/// One `f32` exponential per logit ([`Running`]'s sums): Hinted Decoding
/// runs this twice per row and step over the whole vocabulary, and the
/// two `f64` exponentials per logit it once took were a fifth of a step.
pub fn log_softmax(logits: &[f32], out: &mut Vec<f32>) -> f32 {
    let mut r = Running::new();
    r.add(logits, 0, 0);
    let ln_z = r.z.ln();
    out.clear();
    out.extend(logits.iter().map(|&l| (f64::from(l - r.max) - ln_z) as f32));
    r.stat().entropy
}

/// Token `y`'s stat under the distribution with these logits, in one pass
/// over them (see [`Running`]).
pub fn stat_of(logits: &[f32], y: u32) -> TokenStat {
    let mut r = Running::new();
    r.add(logits, 0, y);
    r.stat()
}

/// One position's softmax sums, over its logits a tile of the vocabulary at
/// a time. With `d = l − max` and `Z = Σ e^d`: `log p(y) = d_y − ln Z` and
/// `H = ln Z − S / Z`, `S = Σ e^d·d` (one `f32` exponential per logit, sums
/// in `f64`; within 1e-6 of the two-pass [`log_softmax`]). A tile with a
/// larger maximum rescales what came before: `Z ← e^c·Z` and `S ← e^c·(S +
/// c·Z)`, `c = max_old − max_new`.
#[derive(Debug, Clone, Copy)]
struct Running {
    max: f32,
    z: f64,
    s: f64,
    y_logit: f32,
}

impl Running {
    fn new() -> Self {
        Running { max: f32::NEG_INFINITY, z: 0.0, s: 0.0, y_logit: f32::NAN }
    }

    /// Adds the logits `l` of tokens `v0..v0 + l.len()`; `y` is the scored token.
    fn add(&mut self, l: &[f32], v0: usize, y: u32) {
        self.add_with(l, v0, y, tile_sums)
    }

    /// [`Running::add`] with the tile's sums from a vectorized exponential
    /// (Cephes' `expf` polynomial, within a few ulp of libm's) summed in
    /// another order: for bf16 passes, whose products already move φ by
    /// ~0.01, where the head's one scalar `expf` per logit was 9% of the pass.
    fn add_fast(&mut self, l: &[f32], v0: usize, y: u32) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: AVX-512F is available (checked).
            return self.add_with(l, v0, y, |l, max| unsafe { tile_sums_avx512(l, max) });
        }
        self.add(l, v0, y)
    }

    /// Rescales to the tile's maximum, adds the tile's `(Σ e^d, Σ e^d·d)`
    /// from `sums(l, max)`, and notes the scored token's logit.
    fn add_with(&mut self, l: &[f32], v0: usize, y: u32, sums: impl Fn(&[f32], f32) -> (f64, f64)) {
        let tile_max = l.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        if tile_max > self.max {
            if self.z > 0.0 {
                let c = f64::from(self.max - tile_max);
                let e = c.exp();
                self.s = e * (self.s + c * self.z);
                self.z *= e;
            }
            self.max = tile_max;
        }
        let (z, s) = sums(l, self.max);
        self.z += z;
        self.s += s;
        if let Some(i) = (y as usize).checked_sub(v0).filter(|&i| i < l.len()) {
            self.y_logit = l[i];
        }
    }

    fn stat(&self) -> TokenStat {
        let ln_z = self.z.ln();
        TokenStat {
            logprob: (f64::from(self.y_logit - self.max) - ln_z) as f32,
            entropy: (ln_z - self.s / self.z) as f32,
        }
    }
}

/// `(Σ e^d, Σ e^d·d)` over `d = l − max`: one `f32` exponential per
/// logit, sums in `f64`.
fn tile_sums(l: &[f32], max: f32) -> (f64, f64) {
    let (mut z, mut s) = (0f64, 0f64);
    for &x in l {
        let d = x - max;
        let e = d.exp();
        z += f64::from(e);
        s += f64::from(e * d);
    }
    (z, s)
}

/// [`tile_sums`] 16 logits at a time with [`exp_ps`] (the last few through
/// [`tile_sums`]).
///
/// # Safety
/// The CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn tile_sums_avx512(l: &[f32], max: f32) -> (f64, f64) {
    use std::arch::x86_64::*;
    let maxv = _mm512_set1_ps(max);
    let (mut z, mut s) = (_mm512_setzero_pd(), _mm512_setzero_pd());
    let chunks = l.chunks_exact(16);
    let (zr, sr) = tile_sums(chunks.remainder(), max);
    for c in chunks {
        let d = _mm512_sub_ps(_mm512_loadu_ps(c.as_ptr()), maxv);
        let e = exp_ps(d);
        z = _mm512_add_pd(z, widen(e));
        s = _mm512_add_pd(s, widen(_mm512_mul_ps(e, d)));
    }
    (_mm512_reduce_add_pd(z) + zr, _mm512_reduce_add_pd(s) + sr)
}

/// The two halves of `v`, widened to f64 and added.
///
/// # Safety
/// The CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn widen(v: std::arch::x86_64::__m512) -> std::arch::x86_64::__m512d {
    use std::arch::x86_64::*;
    let high = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
    _mm512_add_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(v)), _mm512_cvtps_pd(high))
}

/// `e^x` for `x ≤ 0` (Cephes' `expf`: `x = n·ln 2 + r`, a degree-5
/// polynomial in `r`, scaled by `2^n`); anything below −104 gives 0.
///
/// # Safety
/// The CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn exp_ps(x: std::arch::x86_64::__m512) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::*;
    let x = _mm512_max_ps(x, _mm512_set1_ps(-104.0));
    let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E)));
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693_359_4), x);
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.121_944_4e-4), r);
    let mut p = _mm512_set1_ps(1.987_569_1e-4);
    for c in [1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 0.166_666_65, 0.5] {
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
    }
    let p = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.0)));
    _mm512_scalef_ps(p, n)
}

/// The stats of `tokens[start..]`, each given everything before it (one
/// unpadded sequence, one forward pass).
///
/// # Panics
/// If `start` is 0 or past the end.
pub fn token_stats(model: &Llama, tokens: &[u32], start: usize) -> Vec<TokenStat> {
    assert!(start >= 1 && start <= tokens.len(), "start must be in 1..=len");
    if let Some(p) = model.packed() {
        return packed_stats(p, &[(tokens.to_vec(), start)], Precision::F32).pop().expect("one sequence");
    }
    let vocab = model.config().vocab_size;
    let logits = crate::generate::scored_logits(model, tokens, start);
    logits.chunks(vocab).zip(&tokens[start..]).map(|(row, &y)| stat_of(row, y)).collect()
}

/// [`token_stats`] of several sequences `(tokens, start)`. Each sequence's
/// stats do not depend on which others are scored with it: a packed model
/// runs them in one unpadded pass whose products give every token the same
/// bits whatever shares them ([`PackedModel::hidden_ragged`]); the burn path
/// scores each alone, side by side on rayon's threads.
pub fn token_stats_many(model: &Llama, seqs: &[(Vec<u32>, usize)]) -> Vec<Vec<TokenStat>> {
    token_stats_many_at(model, seqs, Precision::F32)
}

/// The arithmetic of a scoring pass's weight products.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// f32 operands: the model's own outputs (what the golden tests hold).
    #[default]
    F32,
    /// Both operands rounded to bf16, products summed in f32
    /// (`crate::qmatmul::bf16`): about twice as fast on CPUs with AVX-512
    /// BF16, and each φ moves by about a hundredth. Packed models only.
    Bf16,
}

/// [`token_stats_many`] with the products in `precision`.
///
/// # Panics
/// With [`Precision::Bf16`] on a model without packed weights
/// ([`Llama::packed`]).
pub fn token_stats_many_at(model: &Llama, seqs: &[(Vec<u32>, usize)], precision: Precision) -> Vec<Vec<TokenStat>> {
    for (t, start) in seqs {
        assert!(*start >= 1 && *start <= t.len(), "start must be in 1..=len");
    }
    if let Some(p) = model.packed() {
        return packed_stats(p, seqs, precision);
    }
    assert!(precision == Precision::F32, "bf16 scoring needs packed weights");
    if crate::generate::split_parts(model, seqs.len()) <= 1 {
        return seqs.iter().map(|(t, s)| token_stats(model, t, *s)).collect();
    }
    seqs.par_iter().map(|(t, s)| token_stats(model, t, *s)).collect()
}

/// Scored positions that go through the head together: the head is
/// dequantized once per this many (a vocabulary tile of logits for all of
/// them is ~7.5 MB for SmolLM2).
const HEAD_ROWS: usize = 1024;

/// [`token_stats_many`] on the packed model: one ragged pass, then the head
/// over the scored positions only, a vocabulary tile at a time, each
/// position's softmax sums kept as they go ([`Running`]), so no `[positions,
/// vocab]` logits are ever held.
fn packed_stats(p: &PackedModel, seqs: &[(Vec<u32>, usize)], precision: Precision) -> Vec<Vec<TokenStat>> {
    // A sequence's inputs are its tokens but the last: position t predicts t + 1.
    let inputs: Vec<&[u32]> = seqs.iter().map(|(t, _)| &t[..t.len() - 1]).collect();
    if inputs.iter().all(|t| t.is_empty()) {
        return vec![Vec::new(); seqs.len()];
    }
    let hidden = p.hidden_ragged(&inputs, precision);
    let d = p.cfg.hidden_size;
    // (row of `hidden`, token it predicts) for every scored token, in order.
    let mut rows = Vec::new();
    let mut at = 0;
    for (t, start) in seqs {
        rows.extend((start - 1..t.len() - 1).map(|pos| (at + pos, t[pos + 1])));
        at += t.len() - 1;
    }
    let mut stats = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(HEAD_ROWS) {
        let h: Vec<f32> = chunk.iter().flat_map(|&(r, _)| hidden[r * d..(r + 1) * d].iter().copied()).collect();
        let mut acc = vec![Running::new(); chunk.len()];
        let add = |v0: usize, tile: &[f32]| {
            let n = tile.len() / chunk.len();
            acc.par_iter_mut()
                .zip(tile.par_chunks(n))
                .zip(chunk.par_iter())
                .for_each(|((a, l), &(_, y))| match precision {
                    Precision::F32 => a.add(l, v0, y),
                    Precision::Bf16 => a.add_fast(l, v0, y),
                });
        };
        match precision {
            Precision::F32 => p.head().matmul_tiles(&h, chunk.len(), add),
            Precision::Bf16 => p.head().matmul_tiles_bf16(&crate::qmatmul::Bf16Rows::new(&h, chunk.len(), d), add),
        }
        stats.extend(acc.iter().map(Running::stat));
    }
    let mut stats = stats.into_iter();
    seqs.iter().map(|(t, start)| stats.by_ref().take(t.len() - start).collect()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phi_by_hand() {
        // p = softmax([0, ln 3]) = (1/4, 3/4); H = −(¼ ln ¼ + ¾ ln ¾) = 0.5623.
        let lo = stat_of(&[0.0, 3f32.ln()], 0);
        let hi = stat_of(&[0.0, 3f32.ln()], 1);
        let h = -(0.25f32 * 0.25f32.ln() + 0.75 * 0.75f32.ln());
        assert!((lo.entropy - h).abs() < 1e-6 && (hi.entropy - h).abs() < 1e-6);
        assert!((lo.phi() - (0.25f32.ln() + h)).abs() < 1e-6);
        assert!((hi.phi() - (0.75f32.ln() + h)).abs() < 1e-6);
        // φ's mean under p itself is 0 (METHODS §4.1).
        assert!((0.25 * lo.phi() + 0.75 * hi.phi()).abs() < 1e-6);
        // A uniform distribution: every token has φ = 0.
        let u = stat_of(&[2.0; 8], 5);
        assert!(u.phi().abs() < 1e-6 && (u.entropy - 8f32.ln()).abs() < 1e-5);
    }

    #[test]
    fn one_pass_stats_match_a_two_pass_f64_log_softmax() {
        let mut rng = crate::rng::Rng::new(7);
        let logits: Vec<f32> = (0..5000).map(|_| (rng.next_f64() as f32 - 0.5) * 30.0).collect();
        // The reference: exponentials and sums in f64, two passes.
        let lse = log_sum_exp(&logits);
        let want_lp: Vec<f64> = logits.iter().map(|&l| l as f64 - lse).collect();
        let want_h: f64 = want_lp.iter().map(|&lp| -lp.exp() * lp).sum();
        let mut logp = Vec::new();
        let h = log_softmax(&logits, &mut logp);
        assert!((h as f64 - want_h).abs() < 1e-5, "{h} vs {want_h}");
        for y in [0u32, 17, 4999] {
            let s = stat_of(&logits, y);
            assert!((s.entropy as f64 - want_h).abs() < 1e-5, "{} vs {want_h}", s.entropy);
            assert!((s.logprob as f64 - want_lp[y as usize]).abs() < 1e-5, "{} vs {}", s.logprob, want_lp[y as usize]);
            assert!((logp[y as usize] as f64 - want_lp[y as usize]).abs() < 1e-5);
        }
    }

    #[test]
    fn fast_running_sums_match_the_exact_ones() {
        let mut rng = crate::rng::Rng::new(5);
        let logits: Vec<f32> = (0..4099).map(|i| (rng.next_f64() as f32 - 0.5) * 40.0 + i as f32 / 400.0).collect();
        for y in [0u32, 2000, 4098] {
            let (mut exact, mut fast) = (Running::new(), Running::new());
            for (k, tile) in logits.chunks(1000).enumerate() {
                exact.add(tile, k * 1000, y);
                fast.add_fast(tile, k * 1000, y);
            }
            let (e, f) = (exact.stat(), fast.stat());
            assert!((e.logprob - f.logprob).abs() < 1e-5 && (e.entropy - f.entropy).abs() < 1e-5, "{e:?} vs {f:?}");
        }
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            // The vector exponential against libm's over [−104, 0].
            let xs: Vec<f32> = (0..16 * 4096).map(|i| -104.0 * i as f32 / (16.0 * 4096.0)).collect();
            for c in xs.chunks(16) {
                let mut got = [0f32; 16];
                // SAFETY: AVX-512F is available (checked).
                unsafe { std::arch::x86_64::_mm512_storeu_ps(got.as_mut_ptr(), exp_ps(std::arch::x86_64::_mm512_loadu_ps(c.as_ptr()))) };
                for (g, x) in got.iter().zip(c) {
                    let want = x.exp();
                    assert!((g - want).abs() <= 4.0 * f32::EPSILON * want.max(f32::MIN_POSITIVE), "exp({x}) = {g}, libm {want}");
                }
            }
        }
    }

    #[test]
    fn running_sums_over_tiles_match_one_pass() {
        let mut rng = crate::rng::Rng::new(3);
        // Later tiles with larger maxima force the rescaling.
        let logits: Vec<f32> = (0..3000).map(|i| (rng.next_f64() as f32 - 0.5) * 10.0 + i as f32 / 300.0).collect();
        for y in [0u32, 1500, 2999] {
            let whole = stat_of(&logits, y);
            let mut r = Running::new();
            for (k, tile) in logits.chunks(700).enumerate() {
                r.add(tile, k * 700, y);
            }
            let tiled = r.stat();
            assert!((whole.logprob - tiled.logprob).abs() < 1e-5 && (whole.entropy - tiled.entropy).abs() < 1e-5, "{whole:?} vs {tiled:?}");
        }
    }

    /// The packed engine's one ragged pass: each sequence's stats are the
    /// same bits alone or beside others (short ones included, which alone
    /// would fit the block kernels), and they match the f32 burn model's.
    #[test]
    fn packed_scores_do_not_depend_on_the_batch_and_match_burn() {
        let (burn, packed) = crate::test_util::burn_and_packed();
        let seqs: Vec<(Vec<u32>, usize)> = vec![
            ((0..40).map(|i| (i * 7 + 3) % 63).collect(), 10),
            (vec![5, 17, 3, 8, 42], 1),
            (vec![9, 2], 2),
            ((0..25).map(|i| (i * 11 + 1) % 63).collect(), 24),
            (vec![12, 6, 33, 1], 3),
        ];
        let together = token_stats_many(&packed, &seqs);
        for ((t, start), got) in seqs.iter().zip(&together) {
            assert_eq!(got.len(), t.len() - start);
            assert_eq!(&token_stats(&packed, t, *start), got, "alone vs batched");
            assert_eq!(&token_stats_many(&packed, &[(t.clone(), *start)])[0], got);
            let want = token_stats(&burn, t, *start);
            for (g, w) in got.iter().zip(&want) {
                assert!((g.logprob - w.logprob).abs() < 1e-3 && (g.entropy - w.entropy).abs() < 1e-3, "{g:?} vs {w:?}");
            }
        }
        // Reversed order: the same stats per sequence.
        let rev: Vec<_> = seqs.iter().rev().cloned().collect();
        let back = token_stats_many(&packed, &rev);
        assert!(back.iter().rev().eq(together.iter()));
    }
}
