//! ROUGE-L F1 as Google's `rouge_score` computes it with its default
//! tokenizer and no stemmer (what Self-Instruct and Montessori-Instruct use
//! to reject near-duplicate instructions above 0.7): lowercase, every run
//! of characters other than `a-z0-9` becomes a space, split on spaces; then
//! the longest common subsequence of the two token lists, precision over
//! the candidate's length, recall over the reference's, and their harmonic
//! mean.

/// `rouge_score`'s default tokens of `text`.
pub fn tokens(text: &str) -> Vec<String> {
    let lower = text.to_lowercase();
    let mut out = Vec::new();
    let mut cur = String::new();
    for c in lower.chars() {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            cur.push(c);
        } else if !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Length of the longest common subsequence (two rows of the DP table).
fn lcs<T: PartialEq>(a: &[T], b: &[T]) -> usize {
    let mut prev = vec![0usize; b.len() + 1];
    let mut cur = vec![0usize; b.len() + 1];
    for x in a {
        for (j, y) in b.iter().enumerate() {
            cur[j + 1] = if x == y { prev[j] + 1 } else { prev[j + 1].max(cur[j]) };
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// ROUGE-L F1 of two token lists (0 when either is empty).
pub fn rouge_l_tokens(reference: &[String], candidate: &[String]) -> f64 {
    if reference.is_empty() || candidate.is_empty() {
        return 0.0;
    }
    let l = lcs(reference, candidate) as f64;
    if l == 0.0 {
        return 0.0;
    }
    let (p, r) = (l / candidate.len() as f64, l / reference.len() as f64);
    2.0 * p * r / (p + r)
}

/// ROUGE-L F1 of two texts.
pub fn rouge_l(reference: &str, candidate: &str) -> f64 {
    rouge_l_tokens(&tokens(reference), &tokens(candidate))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn close(got: f64, want: f64) {
        assert!((got - want).abs() < 1e-12, "got {got}, want {want}");
    }

    #[test]
    fn agrees_with_rouge_score() {
        // Each value printed by rouge_score 0.1.2:
        // RougeScorer(["rougeL"], use_stemmer=False).score(a, b)["rougeL"].fmeasure
        close(rouge_l("the cat sat on the mat", "the cat on the mat"), 0.9090909090909091);
        close(rouge_l("Write a poem about the sea.", "Write a short poem about the ocean!"), 0.7692307692307692);
        close(rouge_l("Use 3, 5 and 7 to make 15.", "Use 3 5 7 to make 22"), 0.7999999999999999);
        close(rouge_l("abc", "xyz"), 0.0);
        close(rouge_l("", "abc"), 0.0);
        // Non-ASCII letters split words, as rouge_score's [^a-z0-9] does.
        close(rouge_l("Ünïcode café test", "unicode cafe test"), 0.28571428571428575);
        assert_eq!(tokens("Ünïcode café"), ["n", "code", "caf"]);
    }

    #[test]
    fn symmetric_and_one_on_equal_token_lists() {
        close(rouge_l("A b, c!", "a B c"), 1.0);
        let (a, b) = ("make 24 from 3 4 5 6", "from 3 4 5 6 make 24");
        close(rouge_l(a, b), rouge_l(b, a));
    }
}
