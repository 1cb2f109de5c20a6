//! Pairwise judging with position swapping (AlpacaEval's setting, the
//! in-domain metric of Montessori-Instruct, METHODS §5): a judge model sees
//! one instruction and two answers, says which is better, and sees them
//! again in the other order. A pair's score for A is the mean of its two
//! verdicts (1 for A, 0 for B, ½ for a reply that names neither), so a judge
//! that always picks the first position scores every pair ½.

use crate::stats::{bootstrap_mean, mcnemar_exact, Interval};

/// Which position a judge's reply names: the first word that is `1` or `2`
/// ("Response 2 is better" → 2; "1." → 1), or `None` when it names neither.
pub fn parse_verdict(reply: &str) -> Option<u8> {
    reply.split(|c: char| !c.is_ascii_alphanumeric()).find_map(|w| match w {
        "1" => Some(1),
        "2" => Some(2),
        _ => None,
    })
}

/// A's score from the two judgments of one pair: `ab` with A shown first,
/// `ba` with B shown first.
pub fn pair_score(ab: Option<u8>, ba: Option<u8>) -> f64 {
    let a_first = match ab {
        Some(1) => 1.0,
        Some(_) => 0.0,
        None => 0.5,
    };
    let a_second = match ba {
        Some(2) => 1.0,
        Some(_) => 0.0,
        None => 0.5,
    };
    (a_first + a_second) / 2.0
}

/// What the judgments of every pair add up to.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    pub pairs: usize,
    /// Mean of the pairs' scores: A's win rate, ties counting half.
    pub win_rate: f64,
    /// 95% percentile-bootstrap interval of `win_rate` over pairs.
    pub interval: Interval,
    /// Pairs A won in both orders, B won in both orders; the rest are ties.
    pub a_wins: usize,
    pub b_wins: usize,
    pub ties: usize,
    /// Exact two-sided sign test of `a_wins` against `b_wins` (ties left out).
    pub p_value: f64,
    /// Pairs whose two verdicts name the same answer, over pairs with both parsed.
    pub consistency: f64,
    /// Verdicts naming the first position, over parsed verdicts (½ for an
    /// unbiased judge on a balanced design).
    pub first_position: f64,
    /// Judgments that named neither position.
    pub unparsed: usize,
}

/// Summarizes `(ab, ba)` verdicts of each pair; the bootstrap draws from `seed`.
pub fn summarize(verdicts: &[(Option<u8>, Option<u8>)], seed: u64) -> Summary {
    let scores: Vec<f64> = verdicts.iter().map(|&(ab, ba)| pair_score(ab, ba)).collect();
    let n = scores.len();
    let a_wins = scores.iter().filter(|&&s| s == 1.0).count();
    let b_wins = scores.iter().filter(|&&s| s == 0.0).count();
    let both: Vec<(u8, u8)> = verdicts.iter().filter_map(|&(ab, ba)| Some((ab?, ba?))).collect();
    // The same answer in both orders: "1" then "2", or "2" then "1".
    let consistent = both.iter().filter(|&&(ab, ba)| ab != ba).count();
    let parsed: Vec<u8> = verdicts.iter().flat_map(|&(ab, ba)| [ab, ba]).flatten().collect();
    let ratio = |k: usize, of: usize| if of == 0 { 0.0 } else { k as f64 / of as f64 };
    Summary {
        pairs: n,
        win_rate: if n == 0 { 0.0 } else { scores.iter().sum::<f64>() / n as f64 },
        interval: bootstrap_mean(&scores, 1000, seed),
        a_wins,
        b_wins,
        ties: n - a_wins - b_wins,
        p_value: mcnemar_exact(a_wins as u64, b_wins as u64),
        consistency: ratio(consistent, both.len()),
        first_position: ratio(parsed.iter().filter(|&&v| v == 1).count(), parsed.len()),
        unparsed: 2 * n - parsed.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verdict_is_the_first_word_naming_a_position() {
        assert_eq!(parse_verdict("1"), Some(1));
        assert_eq!(parse_verdict(" 2.\nBecause response 1 is short"), Some(2));
        assert_eq!(parse_verdict("Response 2 is better than response 1."), Some(2));
        assert_eq!(parse_verdict("(1)"), Some(1));
        // Numbers that are not 1 or 2 name nothing; neither do words.
        assert_eq!(parse_verdict("12 or 21, 3"), None);
        assert_eq!(parse_verdict("the first one"), None);
        assert_eq!(parse_verdict(""), None);
    }

    #[test]
    fn swapped_orders_score_by_hand() {
        // A first and chosen, then A second and chosen: a win.
        assert_eq!(pair_score(Some(1), Some(2)), 1.0);
        assert_eq!(pair_score(Some(2), Some(1)), 0.0);
        // Always the first position: a tie, whatever the answers.
        assert_eq!(pair_score(Some(1), Some(1)), 0.5);
        assert_eq!(pair_score(Some(2), Some(2)), 0.5);
        // An unreadable reply counts half.
        assert_eq!(pair_score(None, Some(2)), 0.75);
        assert_eq!(pair_score(None, None), 0.5);
    }

    #[test]
    fn a_summary_counts_wins_ties_bias_and_consistency() {
        let v = [(Some(1), Some(2)), (Some(1), Some(2)), (Some(2), Some(1)), (Some(1), Some(1)), (None, Some(2))];
        let s = summarize(&v, 7);
        assert_eq!((s.pairs, s.a_wins, s.b_wins, s.ties, s.unparsed), (5, 2, 1, 2, 1));
        assert!((s.win_rate - (1.0 + 1.0 + 0.0 + 0.5 + 0.75) / 5.0).abs() < 1e-12);
        // 3 of the 4 fully parsed pairs name the same answer twice.
        assert_eq!(s.consistency, 0.75);
        // Parsed verdicts: 1,2,1,2,2,1,1,1,2 → five of nine name position 1.
        assert!((s.first_position - 5.0 / 9.0).abs() < 1e-12);
        assert_eq!(s.p_value, mcnemar_exact(2, 1));
        assert!(s.interval.lo <= s.win_rate && s.win_rate <= s.interval.hi);
        assert_eq!(summarize(&v, 7), s, "the bootstrap is seeded");
    }

    #[test]
    fn a_judge_that_always_picks_the_first_position_scores_one_half() {
        let s = summarize(&[(Some(1), Some(1)); 20], 1);
        assert_eq!((s.win_rate, s.a_wins, s.b_wins, s.ties, s.first_position, s.consistency), (0.5, 0, 0, 20, 1.0, 0.0));
        assert_eq!(s.p_value, 1.0);
    }
}
