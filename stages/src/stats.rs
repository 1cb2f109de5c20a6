//! Statistics for honest arm comparisons in `evaluate` (issue 9): 95%
//! intervals on accuracies and pass@k, the paired comparison of two models on
//! the same items, and mean ± sd across seeds.
//!
//! Why these methods:
//! - [`wilson`]: the Wilson score interval keeps its coverage near 95% at the
//!   small n and extreme accuracies (0%, 100%) that tiny evaluations produce,
//!   where the textbook `p ± 1.96·se` interval collapses to zero width.
//! - [`paired`]: two models scored on the *same* questions are correlated, so
//!   two independent intervals overstate the uncertainty of their difference.
//!   The exact McNemar test looks only at the questions where they disagree;
//!   Newcombe's method 10 gives the difference an interval that accounts for
//!   the pairing and, unlike the Wald interval, never leaves [−1, 1] or
//!   degenerates when nobody disagrees.
//! - [`bootstrap_mean`]: pass@k per question has no binomial distribution, so
//!   its interval resamples questions.
//!
//! Every function is pure and deterministic (the bootstrap is seeded with the
//! repository's own PRNG). Reference values in the tests come from
//! `scripts/stats-reference.py` (statsmodels, scipy and an independent Python
//! implementation of Newcombe's interval).

use serde::Serialize;

use retort_lm::rng::Rng;

/// The unbiased pass@k estimator. It already lives in [`crate::methods::metrics`]
/// (product form, no large binomials) and is re-exported here, not moved.
pub use crate::methods::metrics::pass_at_k;

/// The standard normal quantile for a two-sided 95% interval, Φ⁻¹(0.975), as
/// scipy's `norm.ppf(0.975)` prints it.
pub const Z95: f64 = 1.959963984540054;

/// A closed interval `[lo, hi]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Interval {
    /// Lower limit.
    pub lo: f64,
    /// Upper limit.
    pub hi: f64,
}

/// Errors from the statistics in this module.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatsError {
    /// A paired comparison was given result lists of different lengths, so the
    /// items cannot be the same.
    #[error(
        "a paired comparison needs both models scored on the same items, but one has \
         {a} results and the other {b}; evaluate both on the same data set"
    )]
    LengthMismatch {
        /// Items scored for the first model.
        a: usize,
        /// Items scored for the second model.
        b: usize,
    },
}

/// 95% Wilson score interval for `successes` out of `n`:
/// `(x + z²/2 ± z·√(x(n−x)/n + z²/4)) / (n + z²)`, which equals statsmodels'
/// `proportion_confint(x, n, method="wilson")`.
///
/// `n == 0` gives `[0, 1]`: no items, no information. `successes > n` is a
/// caller bug; it is clamped to `n` (and asserted in debug builds).
pub fn wilson(successes: u64, n: u64) -> Interval {
    debug_assert!(successes <= n, "wilson: {successes} successes out of {n}");
    if n == 0 {
        return Interval { lo: 0.0, hi: 1.0 };
    }
    let x = successes.min(n) as f64;
    let n = n as f64;
    let z2 = Z95 * Z95;
    let denom = n + z2;
    let center = (x + z2 / 2.0) / denom;
    let half = Z95 * (x * (n - x) / n + z2 / 4.0).sqrt() / denom;
    Interval {
        lo: (center - half).max(0.0),
        hi: (center + half).min(1.0),
    }
}

/// 95% percentile-bootstrap interval for the mean of `values` (for pass@k:
/// one per-question pass@k estimate per value, so questions are resampled).
///
/// Draws `resamples` samples of `values.len()` items with replacement from
/// the stream `Rng::stream(seed, "bootstrap_mean", 0)`, takes each sample's
/// mean and returns the 2.5% and 97.5% quantiles of those means, linearly
/// interpolated between order statistics (numpy's default `"linear"`
/// quantile). The same `values`, `resamples` and `seed` give the same bits.
///
/// Edge cases: no values gives `[0, 1]` (the convention of [`wilson`]; the
/// callers' values are proportions); `resamples == 0` gives
/// `[min, max]` of `values`, which bounds every bootstrap interval.
pub fn bootstrap_mean(values: &[f64], resamples: usize, seed: u64) -> Interval {
    if values.is_empty() {
        return Interval { lo: 0.0, hi: 1.0 };
    }
    if resamples == 0 {
        let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        return Interval { lo, hi };
    }
    let n = values.len();
    let mut rng = Rng::stream(seed, "bootstrap_mean", 0);
    let mut means: Vec<f64> = (0..resamples)
        .map(|_| (0..n).map(|_| values[rng.index(n)]).sum::<f64>() / n as f64)
        .collect();
    means.sort_by(f64::total_cmp);
    Interval {
        lo: quantile_sorted(&means, 0.025),
        hi: quantile_sorted(&means, 0.975),
    }
}

/// The `q` quantile of non-empty ascending `sorted`, interpolating linearly at
/// position `q·(len−1)`.
fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let i = pos.floor() as usize;
    let frac = pos - i as f64;
    match sorted.get(i + 1) {
        Some(&next) if frac > 0.0 => sorted[i] + frac * (next - sorted[i]),
        _ => sorted[i],
    }
}

/// Two models compared on the same items (a 2×2 table of agreement).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Paired {
    /// Items.
    pub n: u64,
    /// Items both models got right.
    pub both: u64,
    /// Items only model A got right.
    pub only_a: u64,
    /// Items only model B got right.
    pub only_b: u64,
    /// Items neither got right.
    pub neither: u64,
    /// Accuracy of A minus accuracy of B, `(only_a − only_b) / n`.
    pub diff: f64,
    /// 95% interval for `diff` (Newcombe's method 10; see [`paired_counts`]).
    pub interval: Interval,
    /// Two-sided exact McNemar p-value (see [`mcnemar_exact`]).
    pub p_value: f64,
}

/// Compare models A and B item by item: `a[i]` and `b[i]` say whether each got
/// item `i` right. Lists of different lengths are an error, not a guess.
///
/// With several seeds, the pooled paired test is this function over the
/// concatenation of the seeds' item lists (A's and B's concatenated in the
/// same seed order), so each item-and-seed counts as one pair.
pub fn paired(a: &[bool], b: &[bool]) -> Result<Paired, StatsError> {
    if a.len() != b.len() {
        return Err(StatsError::LengthMismatch {
            a: a.len(),
            b: b.len(),
        });
    }
    let (mut both, mut only_a, mut only_b, mut neither) = (0, 0, 0, 0);
    for (&x, &y) in a.iter().zip(b) {
        match (x, y) {
            (true, true) => both += 1,
            (true, false) => only_a += 1,
            (false, true) => only_b += 1,
            (false, false) => neither += 1,
        }
    }
    Ok(paired_counts(both, only_a, only_b, neither))
}

/// [`paired`] from the four counts of the 2×2 table.
///
/// The interval is Newcombe's method 10 (R. G. Newcombe, "Improved confidence
/// intervals for the difference between binomial proportions based on paired
/// data", Statistics in Medicine 17:2635–2650, 1998), the "square-and-add"
/// hybrid score interval. With `p1 = (both + only_a)/n`,
/// `p2 = (both + only_b)/n`, `D = p1 − p2`, and `[l1, u1]`, `[l2, u2]` their
/// 95% [`wilson`] intervals:
///
/// ```text
/// L = D − √((p1 − l1)² − 2φ(p1 − l1)(u2 − p2) + (u2 − p2)²)
/// U = D + √((u1 − p1)² − 2φ(u1 − p1)(p2 − l2) + (p2 − l2)²)
/// ```
///
/// where φ estimates the correlation between the two models' outcomes: with
/// the margins `e = both + only_a`, `f = only_b + neither`,
/// `g = both + only_b`, `h = only_a + neither` and
/// `A = both·neither − only_a·only_b`, `φ = A / √(e·f·g·h)`, except that a
/// positive `A` is replaced by `max(A − n/2, 0)` (Newcombe's correction, as
/// in Fagerland, Lydersen & Laake's and Laud's implementations), and φ = 0
/// when a margin is empty. The limits are clamped to [−1, 1] against
/// rounding. It reproduces the published `−0.1186 to −0.0046` for Cavo et
/// al.'s table (59, 6, 16, 80) in Fagerland et al. (2014).
///
/// `n == 0` gives `diff` 0, the interval `[−1, 1]` and p = 1 (no items, no
/// information, as in [`wilson`]).
pub fn paired_counts(both: u64, only_a: u64, only_b: u64, neither: u64) -> Paired {
    let n = both + only_a + only_b + neither;
    let p_value = mcnemar_exact(only_a, only_b);
    if n == 0 {
        return Paired {
            n,
            both,
            only_a,
            only_b,
            neither,
            diff: 0.0,
            interval: Interval { lo: -1.0, hi: 1.0 },
            p_value,
        };
    }
    let nf = n as f64;
    let (x1, x2) = (both + only_a, both + only_b);
    let (p1, p2) = (x1 as f64 / nf, x2 as f64 / nf);
    let diff = (only_a as f64 - only_b as f64) / nf;
    let (w1, w2) = (wilson(x1, n), wilson(x2, n));
    let phi = newcombe_phi(both, only_a, only_b, neither);
    let (dl1, du1) = (p1 - w1.lo, w1.hi - p1);
    let (dl2, du2) = (p2 - w2.lo, w2.hi - p2);
    let below = (dl1 * dl1 - 2.0 * phi * dl1 * du2 + du2 * du2)
        .max(0.0)
        .sqrt();
    let above = (du1 * du1 - 2.0 * phi * du1 * dl2 + dl2 * dl2)
        .max(0.0)
        .sqrt();
    Paired {
        n,
        both,
        only_a,
        only_b,
        neither,
        diff,
        interval: Interval {
            lo: (diff - below).max(-1.0),
            hi: (diff + above).min(1.0),
        },
        p_value,
    }
}

/// Newcombe's corrected φ for [`paired_counts`]. The numerator is computed in
/// integers (doubled, so `n/2` stays exact) before the one division.
fn newcombe_phi(both: u64, only_a: u64, only_b: u64, neither: u64) -> f64 {
    let n = i128::from(both + only_a + only_b + neither);
    let margins = [
        both + only_a,
        only_b + neither,
        both + only_b,
        only_a + neither,
    ];
    if margins.contains(&0) {
        return 0.0;
    }
    let mut twice_a =
        2 * (i128::from(both) * i128::from(neither) - i128::from(only_a) * i128::from(only_b));
    if twice_a > 0 {
        twice_a = (twice_a - n).max(0);
    }
    let product: f64 = margins.iter().map(|&m| m as f64).product();
    (twice_a as f64 / 2.0) / product.sqrt()
}

/// Two-sided exact McNemar p-value for `b` and `c` discordant pairs (items
/// only A got right, items only B got right): with `X ~ Bin(b + c, 1/2)`,
/// `p = min(1, 2·P(X ≤ min(b, c)))`, and 1 when `b + c = 0`. This is what
/// statsmodels' `mcnemar(table, exact=True)` returns.
///
/// Up to `m = 1000` the tail is summed upwards from `P(X = 0) = 2^−m` (exact
/// in `f64`) by `P(X = i) = P(X = i−1)·(m − i + 1)/i`, which keeps small
/// cases exact (`b = 1, c = 7` gives 18/256). Beyond, `2^−m` would underflow
/// before the answer does, so the leading term `C(m, k)/2^m` is taken in
/// logarithms and the sum runs downwards by the ratio
/// `C(m, i−1)/C(m, i) = i/(m − i + 1)` until its terms stop mattering.
pub fn mcnemar_exact(b: u64, c: u64) -> f64 {
    let m = b + c;
    let k = b.min(c);
    // P(X <= k) >= 1/2 whenever 2k + 1 >= m (by symmetry, the tail then holds
    // at least half the mass), so the doubled tail is capped at 1.
    if 2 * k + 1 >= m {
        return 1.0;
    }
    let tail = if m <= 1000 {
        let mut term = 0.5_f64.powi(m as i32);
        let mut sum = term;
        for i in 1..=k {
            term *= (m - i + 1) as f64 / i as f64;
            sum += term;
        }
        sum
    } else {
        let ln_choose: f64 = (1..=k).map(|j| ((m - k + j) as f64 / j as f64).ln()).sum();
        let ln_lead = ln_choose - m as f64 * std::f64::consts::LN_2;
        let (mut term, mut sum) = (1.0_f64, 1.0_f64);
        for i in (1..=k).rev() {
            term *= i as f64 / (m - i + 1) as f64;
            sum += term;
            if term < sum * 1e-18 {
                break;
            }
        }
        ln_lead.exp() * sum
    };
    (2.0 * tail).min(1.0)
}

/// Mean and sample standard deviation (divisor n − 1) of `values`, for
/// "mean ± sd across seeds". One value has sd 0; no values give `(NaN, NaN)`
/// (there is nothing to report, and NaN serializes as JSON null).
pub fn mean_sd(values: &[f64]) -> (f64, f64) {
    match values.len() {
        0 => (f64::NAN, f64::NAN),
        1 => (values[0], 0.0),
        len => {
            let mean = values.iter().sum::<f64>() / len as f64;
            let ss: f64 = values.iter().map(|v| (v - mean) * (v - mean)).sum();
            (mean, (ss / (len - 1) as f64).sqrt())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `|x − y| ≤ 1e-9·|y|`, plus a floor for values that underflow to subnormals.
    fn close(x: f64, y: f64) -> bool {
        (x - y).abs() <= 1e-9 * y.abs() + 1e-300
    }

    fn assert_interval(got: Interval, lo: f64, hi: f64, what: &str) {
        assert!(
            close(got.lo, lo) && close(got.hi, hi),
            "{what}: got [{}, {}], want [{lo}, {hi}]",
            got.lo,
            got.hi
        );
    }

    // Reference values printed by `scripts/stats-reference.py` (scipy 1.17.1,
    // statsmodels 0.15.0; z = 1.959963984540054). Re-run it to regenerate.

    /// (successes, n, lo, hi): statsmodels `proportion_confint(method="wilson")`.
    const WILSON: &[(u64, u64, f64, f64)] = &[
        (0, 10, 0.0, 0.27753279986288926),
        (10, 10, 0.7224672001371106, 1.0),
        (1, 21, 0.008455987809826385, 0.2266936007412257),
        (8, 21, 0.2075101136856449, 0.5912134622488425),
        (4, 30, 0.05309655484054743, 0.296813266820363),
        (13, 30, 0.2737748557646652, 0.608026929991864),
        (0, 300, 0.0, 0.01264297122454604),
        (3, 300, 0.0034066184377152826, 0.028983493362339838),
        (91, 300, 0.2540711301237818, 0.3575684385578729),
        (150, 300, 0.4437795161339169, 0.5562204838660831),
        (1, 1, 0.2065493143772374, 1.0),
    ];

    /// (both, only_a, only_b, neither, exact McNemar p [statsmodels], Newcombe
    /// method 10 lo, hi [the script's own implementation]).
    const PAIRED: &[(u64, u64, u64, u64, f64, f64, f64)] = &[
        (
            1,
            1,
            7,
            12,
            0.0703125,
            -0.506920226686141,
            -0.025559124164859837,
        ),
        (
            59,
            6,
            16,
            80,
            0.052478790283203125,
            -0.11862119563870997,
            -0.004625113933050054,
        ),
        (
            10,
            15,
            5,
            20,
            0.04138946533203125,
            0.025838416549251064,
            0.35693657165919257,
        ),
        (5, 0, 0, 5, 1.0, -0.16659315708122263, 0.16659315708122263),
        (0, 0, 0, 10, 1.0, -0.27753279986288926, 0.27753279986288926),
        (10, 0, 0, 0, 1.0, -0.27753279986288937, 0.27753279986288937),
        (3, 4, 4, 9, 1.0, -0.2735741939839134, 0.2735741939839134),
        (0, 3, 0, 7, 0.25, -0.03759243457905065, 0.6032218525388546),
        (
            2,
            5,
            1,
            22,
            0.21875,
            -0.04028535278174569,
            0.3076858635724389,
        ),
        (
            120,
            40,
            22,
            118,
            0.030015864349067285,
            0.008570204915373435,
            0.11073938972064411,
        ),
        (
            30,
            25,
            10,
            235,
            0.016673847800120715,
            0.01110842033552617,
            0.09008787592412358,
        ),
        (
            150,
            0,
            12,
            138,
            0.00048828125,
            -0.06287637472175714,
            -0.016924233961788635,
        ),
    ];

    /// (b, c, p): statsmodels exact McNemar with many discordant pairs.
    const MCNEMAR_LARGE: &[(u64, u64, f64)] = &[
        (900, 1100, 8.45708953550381e-06),
        (4990, 5010, 0.849310326637318),
        (0, 1074, 1e-323),
        (30, 70, 7.85013964559367e-05),
        (3, 4, 1.0),
    ];

    /// (n, c, k, 1 − C(n−c, k)/C(n, k)) from Python's exact `math.comb`.
    const PASS_AT_K: &[(usize, usize, usize, f64)] = &[
        (10, 3, 1, 0.30000000000000004),
        (10, 3, 5, 0.9166666666666666),
        (20, 1, 10, 0.5),
        (50, 7, 8, 0.729904489589966),
        (5, 0, 2, 0.0),
        (8, 6, 3, 1.0),
    ];

    #[test]
    fn wilson_matches_statsmodels() {
        for &(x, n, lo, hi) in WILSON {
            assert_interval(wilson(x, n), lo, hi, &format!("wilson({x}, {n})"));
        }
    }

    #[test]
    fn wilson_hand_computed() {
        // x = 0: the centre and the half-width are both (z²/2)/(n + z²), so the
        // interval is exactly [0, z²/(n + z²)].
        let z2 = Z95 * Z95;
        let w = wilson(0, 10);
        assert_eq!(w.lo, 0.0);
        assert!(close(w.hi, z2 / (10.0 + z2)));
        // x = n mirrors it.
        let w = wilson(10, 10);
        assert!(close(w.lo, 10.0 / (10.0 + z2)) && w.hi == 1.0);
        // x = n/2 is symmetric about 1/2.
        let w = wilson(15, 30);
        assert!(close(w.lo + w.hi, 1.0));
        assert_eq!(wilson(0, 0), Interval { lo: 0.0, hi: 1.0 });
        // The quickstart's n = 30 claim: about ±16 points around 13/30.
        let w = wilson(13, 30);
        assert!((w.hi - w.lo) > 0.32 && (w.hi - w.lo) < 0.34, "{w:?}");
    }

    #[test]
    fn paired_matches_references() {
        for &(both, only_a, only_b, neither, p, lo, hi) in PAIRED {
            let what = format!("paired_counts({both}, {only_a}, {only_b}, {neither})");
            let r = paired_counts(both, only_a, only_b, neither);
            assert!(close(r.p_value, p), "{what}: p = {}, want {p}", r.p_value);
            assert_interval(r.interval, lo, hi, &what);
            let n = both + only_a + only_b + neither;
            assert_eq!(r.n, n);
            assert!(close(r.diff, (only_a as f64 - only_b as f64) / n as f64));
            assert!(r.interval.lo <= r.diff && r.diff <= r.interval.hi, "{what}");
        }
    }

    #[test]
    fn newcombe_reproduces_the_published_example() {
        // Fagerland, Lydersen & Laake (2014), Cavo et al.'s data: the Newcombe
        // square-and-add interval is -0.0621 (-0.1186 to -0.0046). Checked:
        // with the uncorrected φ = A/√(efgh) this assertion fails, so the
        // published number pins the correction too.
        let r = paired_counts(59, 6, 16, 80);
        let round4 = |x: f64| (x * 1e4).round() / 1e4;
        assert_eq!(
            (round4(r.diff), round4(r.interval.lo), round4(r.interval.hi)),
            (-0.0621, -0.1186, -0.0046)
        );
    }

    #[test]
    fn paired_hand_computed() {
        // b = c: no difference, p = 1, and the interval is symmetric because
        // both marginal proportions (and so their Wilson intervals) are equal.
        let r = paired_counts(3, 4, 4, 9);
        assert_eq!((r.diff, r.p_value), (0.0, 1.0));
        assert!(close(r.interval.lo, -r.interval.hi));
        // No discordant pairs at all: still p = 1 and a non-degenerate interval.
        let r = paired_counts(5, 0, 0, 5);
        assert_eq!((r.diff, r.p_value), (0.0, 1.0));
        assert!(r.interval.hi > 0.1);
        // Exact McNemar by hand: b = 1, c = 7: 2·(C(8,0) + C(8,1))/2^8 = 18/256.
        assert_eq!(mcnemar_exact(1, 7), 18.0 / 256.0);
        assert_eq!(mcnemar_exact(7, 1), 18.0 / 256.0);
        // b = 0, c = 5: 2/32.
        assert_eq!(mcnemar_exact(0, 5), 0.0625);
        assert_eq!(mcnemar_exact(0, 0), 1.0);
        assert_eq!(mcnemar_exact(0, 1), 1.0);
        // One margin empty (B never right): φ is 0, so the limits are the
        // plain square-and-add of the two Wilson half-widths.
        let r = paired_counts(0, 3, 0, 7);
        let (w1, w2) = (wilson(3, 10), wilson(0, 10));
        assert!(close(
            r.interval.lo,
            0.3 - ((0.3 - w1.lo).powi(2) + w2.hi.powi(2)).sqrt()
        ));
        assert!(close(r.interval.hi, 0.3 + (w1.hi - 0.3).powi(2).sqrt()));
        let r = paired_counts(0, 0, 0, 0);
        assert_eq!(
            (r.diff, r.interval, r.p_value),
            (0.0, Interval { lo: -1.0, hi: 1.0 }, 1.0)
        );
    }

    #[test]
    fn newcombe_phi_correction() {
        // A = 1·12 − 1·7 = 5 ≤ n/2 = 10.5: corrected to 0 (uncorrected 0.0795).
        assert_eq!(newcombe_phi(1, 1, 7, 12), 0.0);
        // A = 59·80 − 6·16 = 4624 > 80.5: (4624 − 80.5)/√(65·96·75·86).
        let want = (4624.0 - 80.5) / (65.0_f64 * 96.0 * 75.0 * 86.0).sqrt();
        assert!(close(newcombe_phi(59, 6, 16, 80), want));
        // A < 0 is not corrected: 0·0 − 5·5 over √(5·5·5·5).
        assert!(close(newcombe_phi(0, 5, 5, 0), -1.0));
        // An empty margin gives 0.
        assert_eq!(newcombe_phi(0, 3, 0, 7), 0.0);
    }

    #[test]
    fn mcnemar_large_tables() {
        for &(b, c, p) in MCNEMAR_LARGE {
            let got = mcnemar_exact(b, c);
            assert!(close(got, p), "mcnemar_exact({b}, {c}) = {got}, want {p}");
        }
        // Far beyond f64's range of 2^-m: underflows to 0, not NaN.
        assert_eq!(mcnemar_exact(0, 5000), 0.0);
    }

    #[test]
    fn paired_counts_items_and_rejects_mismatched_lengths() {
        let a = [true, true, false, false, true];
        let b = [true, false, true, false, false];
        let r = paired(&a, &b).unwrap();
        assert_eq!(
            (r.n, r.both, r.only_a, r.only_b, r.neither),
            (5, 1, 2, 1, 1)
        );
        assert_eq!(r, paired_counts(1, 2, 1, 1));
        let e = paired(&a, &b[..4]).unwrap_err();
        assert_eq!(e, StatsError::LengthMismatch { a: 5, b: 4 });
        assert!(
            e.to_string().contains("one has 5 results and the other 4"),
            "{e}"
        );
    }

    #[test]
    fn pass_at_k_matches_exact_binomials() {
        for &(n, c, k, want) in PASS_AT_K {
            let got = pass_at_k(n, c, k);
            assert!(
                (got - want).abs() < 1e-12,
                "pass_at_k({n}, {c}, {k}) = {got}, want {want}"
            );
        }
    }

    #[test]
    fn mean_sd_matches_python_statistics() {
        // Python `statistics.fmean` / `statistics.stdev` (n − 1).
        let cases: &[(&[f64], f64, f64)] = &[
            (&[0.3], 0.3, 0.0),
            (&[0.3, 0.5], 0.4, 0.1414213562373095),
            (&[0.133, 0.3, 0.2], 0.211, 0.08404165633779476),
            (&[1.0, 2.0, 4.0, 8.0], 3.75, 3.095695936834452),
        ];
        for &(v, mean, sd) in cases {
            let (m, s) = mean_sd(v);
            assert!(
                close(m, mean) && (s - sd).abs() < 1e-12,
                "{v:?}: ({m}, {s})"
            );
        }
        let (m, s) = mean_sd(&[]);
        assert!(m.is_nan() && s.is_nan());
    }

    #[test]
    fn quantiles_interpolate_like_numpy() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile_sorted(&v, 0.5), 2.5);
        assert_eq!(quantile_sorted(&v, 0.0), 1.0);
        assert_eq!(quantile_sorted(&v, 1.0), 4.0);
        // numpy.quantile([1, 2, 3, 4], 0.025) = 1.075
        assert!((quantile_sorted(&v, 0.025) - 1.075).abs() < 1e-12);
        assert_eq!(quantile_sorted(&[7.0], 0.975), 7.0);
    }

    #[test]
    fn bootstrap_is_seeded_and_sane() {
        let values: Vec<f64> = (0..300).map(|i| f64::from(u8::from(i % 10 < 3))).collect();
        let a = bootstrap_mean(&values, 2000, 1);
        assert_eq!(
            a,
            bootstrap_mean(&values, 2000, 1),
            "same seed, same interval"
        );
        assert_ne!(
            a,
            bootstrap_mean(&values, 2000, 2),
            "another seed, another draw"
        );
        // For a mean of 0/1 values it approximates the normal-theory interval
        // 0.3 ± 1.96·√(0.3·0.7/300) = [0.2481, 0.3519].
        assert!(
            (a.lo - 0.2481).abs() < 0.01 && (a.hi - 0.3519).abs() < 0.01,
            "{a:?}"
        );
        // Constant values have no spread; edge cases follow the documented conventions.
        assert_eq!(
            bootstrap_mean(&[0.5; 7], 100, 3),
            Interval { lo: 0.5, hi: 0.5 }
        );
        assert_eq!(bootstrap_mean(&[], 100, 3), Interval { lo: 0.0, hi: 1.0 });
        assert_eq!(
            bootstrap_mean(&[0.2, 0.9, 0.4], 0, 3),
            Interval { lo: 0.2, hi: 0.9 }
        );
        // Pinned draw: if this changes, every reported pass@k interval changes.
        let pin = bootstrap_mean(&[0.0, 0.5, 1.0, 1.0, 0.25], 200, 7);
        assert_eq!(
            pin,
            Interval {
                lo: 0.24875000000000003,
                hi: 0.9
            }
        );
    }
}
