//! Teacher synthesis à la Self-Instruct / Montessori-Instruct (METHODS §5
//! M1, the reference `gen_instructions.py`): which examples each few-shot
//! prompt shows, pulling the instruction out of the teacher's raw output,
//! and rejecting near-duplicates by ROUGE-L.

use crate::methods::rouge::{rouge_l_tokens, tokens};
use crate::methods::Rng;

/// The examples one few-shot prompt shows: on the first round `shots`
/// seeds; after it, `shots − from_generated` seeds and `from_generated`
/// instructions accepted so far (fewer when fewer exist, the rest seeds).
/// Drawn without replacement, seeds first, in the order drawn.
pub fn pick_shots<'a>(rng: &mut Rng, seeds: &'a [String], accepted: &'a [String], shots: usize, from_generated: usize, first_round: bool) -> Vec<&'a str> {
    let generated = if first_round { 0 } else { from_generated.min(accepted.len()) };
    let mut out = draw(rng, seeds, shots - generated);
    out.extend(draw(rng, accepted, generated));
    out
}

/// `k` of `pool` without replacement (all of it when it has fewer).
fn draw<'a>(rng: &mut Rng, pool: &'a [String], k: usize) -> Vec<&'a str> {
    let mut idx: Vec<usize> = (0..pool.len()).collect();
    let k = k.min(pool.len());
    for i in 0..k {
        let j = i + (rng.next_u64() % (pool.len() - i) as u64) as usize;
        idx.swap(i, j);
    }
    idx[..k].iter().map(|&i| pool[i].as_str()).collect()
}

/// The text of the first `<tag>…</tag>` in `raw`, trimmed; `None` when
/// there is none or it is empty.
pub fn extract(raw: &str, tag: &str) -> Option<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let start = raw.find(&open)? + open.len();
    let end = raw[start..].find(&close)? + start;
    let text = raw[start..end].trim();
    (!text.is_empty()).then(|| text.to_string())
}

/// Instructions kept so far (seeds included), tokenized once, for the
/// ROUGE-L near-duplicate test.
#[derive(Default)]
pub struct Pool {
    tokens: Vec<Vec<String>>,
    /// How many of them are seeds (the first ones).
    seeds: usize,
}

/// Why [`Pool::admit`] turned an instruction away.
#[derive(Debug, Clone, PartialEq)]
pub enum Rejected {
    /// Too close to a seed (its index and the score).
    NearSeed(usize, f64),
    /// Too close to an instruction accepted before (its index among them).
    NearAccepted(usize, f64),
}

impl Pool {
    /// A pool holding the seeds.
    pub fn new(seeds: &[String]) -> Self {
        Pool { tokens: seeds.iter().map(|s| tokens(s)).collect(), seeds: seeds.len() }
    }

    /// Adds `text` unless its ROUGE-L F1 against a kept instruction is above
    /// `threshold` (`None`: every instruction is kept).
    pub fn admit(&mut self, text: &str, threshold: Option<f64>) -> Result<(), Rejected> {
        let t = tokens(text);
        if let Some(th) = threshold {
            for (k, kept) in self.tokens.iter().enumerate() {
                let score = rouge_l_tokens(kept, &t);
                if score > th {
                    return Err(if k < self.seeds { Rejected::NearSeed(k, score) } else { Rejected::NearAccepted(k - self.seeds, score) });
                }
            }
        }
        self.tokens.push(t);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn shots_are_seeds_first_then_seeds_and_generated() {
        let seeds = strings(&["s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9"]);
        let acc = strings(&["g0", "g1", "g2"]);
        let mut rng = Rng::for_item(1, 2);
        let first = pick_shots(&mut rng, &seeds, &acc, 8, 2, true);
        assert_eq!(first.len(), 8);
        assert!(first.iter().all(|s| s.starts_with('s')));
        let mut sorted = first.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 8, "without replacement");
        let later = pick_shots(&mut rng, &seeds, &acc, 8, 2, false);
        assert_eq!(later.iter().filter(|s| s.starts_with('g')).count(), 2);
        assert_eq!(later.len(), 8);
        // Fewer accepted than asked: the rest are seeds.
        let one = strings(&["g0"]);
        let few = pick_shots(&mut rng, &seeds, &one, 8, 2, false);
        assert_eq!((few.len(), few.iter().filter(|s| s.starts_with('g')).count()), (8, 1));
        // Fewer seeds than shots: all of them.
        assert_eq!(pick_shots(&mut rng, &seeds[..3], &[], 8, 2, true).len(), 3);
    }

    #[test]
    fn extraction_takes_the_first_tagged_text() {
        assert_eq!(extract("blah <instruction> Add 3 and 4. </instruction> more", "instruction").as_deref(), Some("Add 3 and 4."));
        assert_eq!(extract("<instruction>a</instruction><instruction>b</instruction>", "instruction").as_deref(), Some("a"));
        assert_eq!(extract("<instruction>unclosed", "instruction"), None);
        assert_eq!(extract("<instruction>  </instruction>", "instruction"), None);
        assert_eq!(extract("no tags", "instruction"), None);
    }

    #[test]
    fn near_duplicates_of_seeds_and_of_accepted_ones_are_rejected() {
        let mut pool = Pool::new(&strings(&["Write a poem about the sea."]));
        // 0.769 > 0.7: too close to the seed.
        assert!(matches!(pool.admit("Write a short poem about the ocean!", Some(0.7)), Err(Rejected::NearSeed(0, s)) if s > 0.76));
        assert!(pool.admit("Sum 12 and 30.", Some(0.7)).is_ok());
        assert!(matches!(pool.admit("sum 12 and 30", Some(0.7)), Err(Rejected::NearAccepted(0, _))));
        // Without a threshold, everything is kept.
        assert!(pool.admit("sum 12 and 30", None).is_ok());
    }
}
