//! GRPO's group-relative advantages (METHODS §0.2, after verl's
//! `compute_grpo_outcome_advantage`).

/// Fixed `ε` in `A_i = (R_i − mean) / (std + ε)`.
pub const GRPO_EPS: f64 = 1e-6;

fn groups(rewards: &[f32], group_size: usize) -> std::slice::Chunks<'_, f32> {
    assert!(group_size > 0, "group_size must be at least 1");
    assert!(
        rewards.len().is_multiple_of(group_size),
        "{} rewards do not split into groups of {group_size}",
        rewards.len()
    );
    rewards.chunks(group_size)
}

/// Outcome advantages, one per response: rewards come in consecutive groups
/// of `group_size` (the samples of one prompt) and
/// `A_i = (R_i − mean_j R_j) / (std_j R_j + 1e-6)` with the unbiased (`n − 1`)
/// standard deviation, as `torch.std`. A group of one gets mean 0 / std 1 in
/// verl, i.e. `A = 0` here; a group of equal rewards gets `A = 0`.
/// Arithmetic is in `f64`.
///
/// # Panics
/// If `group_size` is 0 or does not divide `rewards.len()`.
pub fn group_advantages(rewards: &[f32], group_size: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(rewards.len());
    for g in groups(rewards, group_size) {
        if g.len() == 1 {
            out.push(0.0);
            continue;
        }
        let n = g.len() as f64;
        let mean = g.iter().map(|&r| f64::from(r)).sum::<f64>() / n;
        let var = g
            .iter()
            .map(|&r| (f64::from(r) - mean).powi(2))
            .sum::<f64>()
            / (n - 1.0);
        let std = var.sqrt();
        out.extend(
            g.iter()
                .map(|&r| ((f64::from(r) - mean) / (std + GRPO_EPS)) as f32),
        );
    }
    out
}

/// Share of groups whose rewards are all equal (their advantages are all 0,
/// so they contribute no policy gradient); a group of one counts as equal.
/// 0 for no rewards.
///
/// # Panics
/// As [`group_advantages`].
pub fn zero_advantage_fraction(rewards: &[f32], group_size: usize) -> f32 {
    let gs = groups(rewards, group_size);
    let total = gs.len();
    if total == 0 {
        return 0.0;
    }
    let flat = gs.filter(|g| g.iter().all(|&r| r == g[0])).count();
    flat as f32 / total as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn close(got: &[f32], want: &[f32]) {
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-5, "got {got:?}, want {want:?}");
        }
    }

    #[test]
    fn binary_group() {
        // [1,0,0,1]: mean 0.5, unbiased var = 4·0.25/3 = 1/3, std = 0.5773503
        // A = ±0.5 / (0.5773503 + 1e-6) = ±0.8660239
        let a = group_advantages(&[1.0, 0.0, 0.0, 1.0], 4);
        close(&a, &[0.866_023_9, -0.866_023_9, -0.866_023_9, 0.866_023_9]);
    }

    #[test]
    fn uneven_group_and_second_group_independent() {
        // [0, 0.1, 1]: mean 0.3666667; squared deviations 0.1344444 + 0.0711111 + 0.4011111
        // = 0.6066667, /2 = 0.3033333, std = 0.5507571
        // A = [−0.3666667, −0.2666667, 0.6333333] / 0.5507581 = [−0.6657491, −0.4841811, 1.1499302]
        let a = group_advantages(&[0.0, 0.1, 1.0, 5.0, 5.0, 5.0], 3);
        close(
            &a,
            &[-0.665_749_1, -0.484_181_1, 1.149_930_2, 0.0, 0.0, 0.0],
        );
    }

    #[test]
    fn all_equal_and_singleton_groups_are_zero() {
        assert_eq!(group_advantages(&[1.0, 1.0, 1.0, 1.0], 4), vec![0.0; 4]);
        assert_eq!(group_advantages(&[0.7, 0.2, 1.0], 1), vec![0.0; 3]);
        assert!(group_advantages(&[], 4).is_empty());
    }

    #[test]
    fn zero_fraction() {
        let r = [1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0];
        assert!((zero_advantage_fraction(&r, 4) - 2.0 / 3.0).abs() < 1e-6);
        assert_eq!(zero_advantage_fraction(&r, 1), 1.0);
        assert_eq!(zero_advantage_fraction(&[], 4), 0.0);
    }

    #[test]
    #[should_panic(expected = "do not split")]
    fn ragged_groups_panic() {
        group_advantages(&[1.0, 0.0, 1.0], 2);
    }
}
