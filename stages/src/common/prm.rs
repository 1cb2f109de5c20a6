//! A process reward model as the stages see it: how a solution becomes the
//! token sequence a PRM reads (the same for training and for scoring), and
//! the note a PRM checkpoint carries (`prm.json`: its two tokens and its
//! step delimiter) that tells a PRM from an ordinary language model.
//!
//! The scoring itself is `retort_lm::train::step_scores`: the model's
//! logits at each step's last token, `σ(logit[good] − logit[bad])`;
//! [`PrmScorer`] is what `prm_filter` and `step_search` call, through the
//! item cache.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
use retort_cache::{fingerprint, Hash, ItemLog};
use retort_engine::{BadInput, StageCtx};
use retort_lm::tokenizer::Tokenizer;
use retort_lm::train::PrmTokens;
use retort_lm::LoadedModel;
use serde::{Deserialize, Serialize};

use crate::common::model;
use crate::methods::steps::step_prefixes;

/// The file in a checkpoint directory that makes it a PRM.
pub const CARD_FILE: &str = "prm.json";

/// What a PRM checkpoint records about how it reads steps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrmCard {
    /// The "right step" token's text and id.
    pub good: String,
    /// The "wrong step" token's text and id.
    pub bad: String,
    /// Token ids of `good` and `bad` under the checkpoint's tokenizer.
    pub tokens: PrmTokens,
    /// Where one step ends and the next begins.
    pub delimiter: String,
}

impl PrmCard {
    /// The card for `good`/`bad` under `tok`: each must be exactly one token.
    pub fn new(tok: &Tokenizer, good: &str, bad: &str, delimiter: &str) -> anyhow::Result<Self> {
        let one = |name: &str, text: &str| -> anyhow::Result<u32> {
            match tok.encode(text, false)?.as_slice() {
                [id] => Ok(*id),
                ids => bail!(
                    "`{name}: {text:?}` is {} tokens under the model's tokenizer; a PRM reads one token's logit: pick a single-token string (e.g. \"+\" and \"-\")",
                    ids.len()
                ),
            }
        };
        let tokens = PrmTokens { good: one("good", good)?, bad: one("bad", bad)? };
        if tokens.good == tokens.bad {
            bail!("`good` and `bad` are the same token ({}): pick two different ones", tokens.good);
        }
        Ok(PrmCard { good: good.into(), bad: bad.into(), tokens, delimiter: delimiter.into() })
    }

    /// Writes `prm.json` into the checkpoint directory `dir`.
    pub fn save_dir(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::write(dir.join(CARD_FILE), serde_json::to_vec_pretty(self)?).context("writing the PRM card")
    }

    /// Reads the card of model `what` at `dir`, for a stage that splits
    /// steps at `delimiter`. A checkpoint without one is a language model,
    /// not a PRM, and a PRM trained on steps split elsewhere would read other
    /// steps: both are bad input (exit 2), naming the fix.
    pub fn load(dir: &Path, what: &str, delimiter: &str) -> anyhow::Result<Self> {
        let path = dir.join(CARD_FILE);
        if !path.is_file() {
            let e = format!(
                "model `{what}` is not a process reward model: its checkpoint ({}) has no {CARD_FILE}. \
                 Point `model` at a `train` stage with `objective: prm`, or use `scorer: rule` or `mc`",
                dir.display()
            );
            return Err(anyhow::Error::new(BadInput(e.into())));
        }
        let text = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let card: Self = serde_json::from_slice(&text).with_context(|| format!("{} is not a PRM card", path.display()))?;
        if card.delimiter != delimiter {
            let e = format!(
                "PRM `{what}` was trained on steps split at {:?}, but this stage splits at {delimiter:?}: set `delimiter: {:?}` (or train the PRM with this one)",
                card.delimiter, card.delimiter
            );
            return Err(anyhow::Error::new(BadInput(e.into())));
        }
        Ok(card)
    }
}

/// A trained PRM ready to score, each solution's scores kept in the item
/// cache (keyed by the PRM's content, the prompt, the solution and the
/// delimiter), so a killed search resumes without scoring again and a
/// changed threshold re-reads them.
pub struct PrmScorer {
    lm: LoadedModel,
    card: PrmCard,
    delimiter: String,
    log: Arc<ItemLog>,
    /// Scores asked for, and how many came from the item cache.
    pub asked: usize,
    pub cached: usize,
}

/// Bumped when the same PRM may score the same text differently.
const ITEM_CACHE_VERSION: u32 = 1;

impl PrmScorer {
    /// The PRM behind the stage's input `input` (named `what` in errors),
    /// reading steps split at `delimiter`: refused unless it is a PRM
    /// trained with that delimiter (exit 2).
    pub fn open(ctx: &StageCtx<'_>, input: &str, what: &str, delimiter: &str) -> anyhow::Result<Self> {
        let input = ctx.input(input)?.clone();
        let dir = input.path.clone().ok_or_else(|| anyhow::anyhow!("model `{what}` has no weights to score with"))?;
        let card = PrmCard::load(&dir, what, delimiter)?;
        let lm = model::load(&input, what, ctx)?;
        let log = ctx.store.items(&fingerprint(&("prm", input.hash, ITEM_CACHE_VERSION)))?;
        Ok(PrmScorer { lm, card, delimiter: delimiter.into(), log, asked: 0, cached: 0 })
    }

    /// The score of each step of `response` after `prompt`.
    pub fn scores(&mut self, prompt: &str, response: &str) -> anyhow::Result<Vec<f64>> {
        let key: Hash = fingerprint(&(prompt, response, &self.delimiter));
        self.asked += 1;
        if let Some(s) = self.log.get(&key).and_then(|b| serde_json::from_slice::<Vec<f64>>(&b).ok()) {
            self.cached += 1;
            return Ok(s);
        }
        let tok = self.lm.text_tokenizer()?;
        let (tokens, marks) = sequence(tok, prompt, response, &self.delimiter)?;
        let max = self.lm.config().max_position_embeddings;
        if tokens.len() > max {
            bail!("the prompt and solution are {} tokens, more than the PRM's context ({max})", tokens.len());
        }
        let s: Vec<f64> = retort_lm::train::step_scores(self.lm.model(), &tokens, &marks, self.card.tokens).into_iter().map(f64::from).collect();
        self.log.put(&key, &serde_json::to_vec(&s)?)?;
        Ok(s)
    }
}

/// The tokens a PRM reads for `prompt` then `response`, and the position of
/// each step's last token (one per step of `split_steps`, in order). Each
/// piece (the prompt, then each step with its delimiter) is tokenized on
/// its own, so a step's tokens do not depend on the step after it: the
/// search scores a partial solution exactly as training saw it inside the
/// whole one.
pub fn sequence(tok: &Tokenizer, prompt: &str, response: &str, delimiter: &str) -> anyhow::Result<(Vec<u32>, Vec<usize>)> {
    let mut tokens = tok.encode(prompt, false)?;
    let mut marks = Vec::new();
    let mut done = 0;
    for prefix in step_prefixes(response, delimiter) {
        tokens.extend(tok.encode(&prefix[done..], false)?);
        done = prefix.len();
        match tokens.len().checked_sub(1) {
            Some(last) if marks.last() != Some(&last) => marks.push(last),
            _ => bail!("a step of the solution encodes to no tokens"),
        }
    }
    Ok((tokens, marks))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chars() -> Tokenizer {
        let printable: String = (32u8..127).map(char::from).chain(['\n']).collect();
        Tokenizer::train_char_level(vec![printable], &retort_lm::tokenizer::DEFAULT_SPECIALS).unwrap()
    }

    #[test]
    fn each_step_is_marked_at_its_last_token_and_the_answer_is_not_a_step() {
        let tok = chars();
        // "P:" is 2 tokens, "1 + 2 = 3\n" 10, "3 * 2 = 6\n" 10; the answer line is not scored.
        let (tokens, marks) = sequence(&tok, "P:", "1 + 2 = 3\n3 * 2 = 6\n<answer>(1 + 2) * 2</answer>", "\n").unwrap();
        assert_eq!(marks, [11, 21]);
        assert_eq!(tok.decode(&tokens[..=11]), "P:1 + 2 = 3\n");
        assert_eq!(tokens.len(), 22, "nothing after the last step");
        // A step's tokens do not depend on what follows: the prefix reads the same.
        let (alone, first) = sequence(&tok, "P:", "1 + 2 = 3\n", "\n").unwrap();
        assert_eq!((alone.as_slice(), first.as_slice()), (&tokens[..12], &marks[..1]));
        // Blank lines are not steps; a last step without its delimiter still is one.
        let (_, marks) = sequence(&tok, "P:", "\n1 + 2 = 3\n\n3 * 2 = 6", "\n").unwrap();
        assert_eq!(marks.len(), 2);
    }

    #[test]
    fn the_card_needs_one_token_each_and_a_plain_checkpoint_is_not_a_prm() {
        let tok = chars();
        let card = PrmCard::new(&tok, "+", "-", "\n").unwrap();
        assert_ne!(card.tokens.good, card.tokens.bad);
        assert!(PrmCard::new(&tok, "ok", "-", "\n").unwrap_err().to_string().contains("`good: \"ok\"` is 2 tokens"));
        assert!(PrmCard::new(&tok, "+", "+", "\n").is_err());
        let dir = tempfile::tempdir().unwrap();
        let e = PrmCard::load(dir.path(), "lm", "\n").unwrap_err();
        assert!(e.is::<BadInput>(), "exit 2");
        assert!(e.to_string().contains("model `lm` is not a process reward model") && e.to_string().contains("objective: prm"), "{e}");
        card.save_dir(dir.path()).unwrap();
        assert_eq!(PrmCard::load(dir.path(), "lm", "\n").unwrap(), card);
        let e = PrmCard::load(dir.path(), "lm", ";").unwrap_err();
        assert!(e.is::<BadInput>() && e.to_string().contains("set `delimiter: \"\\n\"`"), "{e}");
    }
}
