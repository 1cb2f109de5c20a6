//! The `train` objectives over `cascade_split` rows: CasCoD (METHODS §3
//! C3), Std-CoT and the weighted Std-CoT control (§9.2). All three read
//! the same pairs and differ only in how they cut them into sequences and
//! weigh the tokens (`retort_lm::train::parts`):
//!
//! | objective | sequences per question | loss |
//! |---|---|---|
//! | `cascod` | `P+"Rationale:"` → `r`+EOS; `P+"Rationale:"+r+"\n"+marker` → `" "+a`+EOS | `(1−α)·L_r + α·L_a`, each its own token mean |
//! | `std_cot` | `P+"Rationale:"` → `r+"\n"+marker+" "+a`+EOS | one token mean |
//! | `std_cot` with `alpha` | the same one sequence | `(1−α)/|r|` on `r+"\n"+marker`, `α/|a|` on `" "+a`+EOS |
//!
//! So Std-CoT differs from CasCoD only by the decomposition (the EOS after
//! the rationale, and no loss on the marker, which the answer step is
//! given), and the weighted control also shares CasCoD's weights.
//! (The paper's Std-CoT has no `Rationale:` prefix; keeping it here means
//! the arms differ in nothing but what is being tested.)

use anyhow::Context as _;
use retort_engine::Row;
use retort_lm::tokenizer::Tokenizer;
use retort_lm::train::{Part, PartSeq, PartsExample};

use crate::methods::{cascade_pairs, CascadePair};

/// How the pairs become sequences and weights.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum CascadeLoss {
    /// Two sequences per question, `(1−α)·L_r + α·L_a`.
    Cascod { alpha: f64 },
    /// One sequence, one token mean.
    StdCot,
    /// One sequence, CasCoD's per-part weights.
    WeightedStdCot { alpha: f64 },
}

impl CascadeLoss {
    /// The loss parts and their weights.
    pub fn parts(self) -> Vec<Part> {
        match self {
            CascadeLoss::StdCot => vec![Part::new("response", 1.0)],
            CascadeLoss::Cascod { alpha } | CascadeLoss::WeightedStdCot { alpha } => {
                vec![Part::new("rationale", 1.0 - alpha), Part::new("answer", alpha)]
            }
        }
    }

    /// One training example per question of `rows` (cascade_split's `out`).
    pub fn examples(self, rows: &[Row], tok: &Tokenizer, eos: Option<u32>) -> anyhow::Result<Vec<PartsExample>> {
        let pairs = cascade_pairs(rows).context("the data must be cascade_split's `out` rows")?;
        pairs
            .iter()
            .map(|p| self.example(p, tok, eos).with_context(|| format!("question {:?}", p.source_id)))
            .collect()
    }

    fn example(self, p: &CascadePair, tok: &Tokenizer, eos: Option<u32>) -> anyhow::Result<PartsExample> {
        let enc = |s: &str| tok.encode(s, false);
        let with_eos = |mut ids: Vec<u32>| {
            ids.extend(eos);
            ids
        };
        let seqs = match self {
            CascadeLoss::Cascod { .. } => vec![
                PartSeq::uniform(enc(&p.rationale_prompt)?, with_eos(enc(&p.rationale)?), 0),
                PartSeq::uniform(enc(&p.answer_prompt)?, with_eos(enc(&p.answer)?), 1),
            ],
            CascadeLoss::StdCot | CascadeLoss::WeightedStdCot { .. } => {
                let (chain, answer) = p.chain();
                let (r, a) = (enc(chain)?, with_eos(enc(answer)?));
                let answer_part = usize::from(self != CascadeLoss::StdCot);
                let parts = [vec![0; r.len()], vec![answer_part; a.len()]].concat();
                vec![PartSeq { prompt: enc(&p.rationale_prompt)?, response: [r, a].concat(), parts }]
            }
        };
        Ok(PartsExample { seqs })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn split_rows() -> Vec<Row> {
        let r = json!({"id": "q-rationale", "source_id": "q", "step": "rationale", "prompt": "Q:1+2?\n\nA:Rationale:", "response": "1 + 2 = 3."});
        let a = json!({"id": "q-answer", "source_id": "q", "step": "answer", "prompt": "Q:1+2?\n\nA:Rationale:1 + 2 = 3.\nTherefore, the answer is", "response": " 3"});
        vec![r.as_object().unwrap().clone(), a.as_object().unwrap().clone()]
    }

    fn tok() -> Tokenizer {
        let text: String = (32u8..127).map(char::from).chain(['\n']).collect();
        Tokenizer::train_char_level(vec![text], &retort_lm::tokenizer::DEFAULT_SPECIALS).unwrap()
    }

    #[test]
    fn the_three_objectives_cut_the_same_pair() {
        let (t, eos) = (tok(), tok().eos_id());
        let text = |ids: &[u32]| t.decode(ids);
        let cas = CascadeLoss::Cascod { alpha: 0.1 }.examples(&split_rows(), &t, eos).unwrap();
        let s = &cas[0].seqs;
        assert_eq!((text(&s[0].prompt), s[0].parts[0]), ("Q:1+2?\n\nA:Rationale:".to_string(), 0));
        assert_eq!(s[0].response.len(), "1 + 2 = 3.".len() + 1, "rationale + EOS");
        assert_eq!(s[1].response.len(), " 3".len() + 1);
        assert!(s[1].parts.iter().all(|&p| p == 1));
        let w = CascadeLoss::WeightedStdCot { alpha: 0.1 }.examples(&split_rows(), &t, eos).unwrap();
        let one = &w[0].seqs[0];
        let r_len = "1 + 2 = 3.\nTherefore, the answer is".len();
        assert_eq!(one.response.len(), r_len + " 3".len() + 1);
        assert_eq!(one.parts.iter().filter(|&&p| p == 0).count(), r_len);
        assert_eq!(one.prompt, s[0].prompt);
        let std = CascadeLoss::StdCot.examples(&split_rows(), &t, eos).unwrap();
        assert_eq!(std[0].seqs[0].response, one.response);
        assert!(std[0].seqs[0].parts.iter().all(|&p| p == 0));
        assert_eq!(CascadeLoss::StdCot.parts().len(), 1);
    }

    #[test]
    fn rows_that_are_not_a_split_name_the_row() {
        let rows = &split_rows()[1..];
        let err = CascadeLoss::StdCot.examples(rows, &tok(), None).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("row 0 (id \"q-answer\"): field `source_id` \"q\" has no rationale row"), "{msg}");
    }
}
