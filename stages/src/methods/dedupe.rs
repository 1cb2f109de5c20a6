//! Near-duplicate texts by word n-gram Jaccard similarity (`diversify`,
//! SPHERE's diversity stage, METHODS §2 P3): lowercase, split on anything
//! that is not a letter or digit, the set of consecutive `n`-word windows
//! (a text shorter than `n` words is one window of all of them), and
//! `|A ∩ B| / |A ∪ B|`.

use std::collections::HashSet;

/// The word `n`-gram set of `text`.
pub fn ngrams(text: &str, n: usize) -> HashSet<String> {
    let lower = text.to_lowercase();
    let words: Vec<&str> = lower.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).collect();
    let n = n.max(1);
    if words.is_empty() {
        return HashSet::new();
    }
    if words.len() < n {
        return HashSet::from([words.join(" ")]);
    }
    words.windows(n).map(|w| w.join(" ")).collect()
}

/// Jaccard similarity of two sets (two empty sets: 1, they are the same text).
pub fn jaccard(a: &HashSet<String>, b: &HashSet<String>) -> f64 {
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    let inter = a.intersection(b).count();
    inter as f64 / (a.len() + b.len() - inter) as f64
}

/// Texts kept so far (per group, e.g. per prompt), as n-gram sets.
pub struct Kept {
    n: usize,
    threshold: f64,
    sets: Vec<HashSet<String>>,
}

impl Kept {
    /// Nothing kept yet; `threshold`: above it a text is a near-duplicate.
    pub fn new(n: usize, threshold: f64) -> Self {
        Kept { n, threshold, sets: Vec::new() }
    }

    /// Keeps `text` unless it is a near-duplicate of a kept one; whether it was kept.
    pub fn admit(&mut self, text: &str) -> bool {
        let g = ngrams(text, self.n);
        if self.sets.iter().any(|k| jaccard(k, &g) > self.threshold) {
            return false;
        }
        self.sets.push(g);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jaccard_by_hand() {
        let a = ngrams("the cat sat on the mat", 2); // the cat, cat sat, sat on, on the, the mat
        let b = ngrams("The cat sat on a mat!", 2); // the cat, cat sat, sat on, on a, a mat
        assert_eq!(a.len(), 5);
        assert!((jaccard(&a, &b) - 3.0 / 7.0).abs() < 1e-12);
        assert_eq!(jaccard(&a, &a), 1.0);
        assert_eq!(ngrams("two words", 3), HashSet::from(["two words".to_string()]));
        assert_eq!(jaccard(&ngrams("", 2), &ngrams("  ", 2)), 1.0);
        assert_eq!(jaccard(&ngrams("a b", 1), &ngrams("c d", 1)), 0.0);
    }

    #[test]
    fn near_duplicates_are_turned_away() {
        let mut k = Kept::new(2, 0.5);
        assert!(k.admit("3 + 5 = 8, then 8 * 2 = 16"));
        assert!(!k.admit("3 + 5 = 8, then 8 * 2 = 16."), "the same words");
        assert!(k.admit("5 * 2 = 10, then 10 + 3 = 13"));
    }
}
