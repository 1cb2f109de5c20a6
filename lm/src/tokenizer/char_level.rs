//! Character vocabularies for models trained from scratch on small-alphabet
//! task data (countdown arithmetic and the like).
//!
//! Ids: the special tokens first, in the order given (plus `<unk>` after them
//! when not given), then every character seen in the texts in code point
//! order, so the same texts and specials always give the same ids. The
//! `tokenizer.json` is a BPE model with no merges (each character is a token;
//! an unseen character is `<unk>`), no pre-tokenizer and a `Fuse` decoder, so
//! decoding is concatenation; specials are added tokens, parsed in text.

use std::collections::BTreeSet;

use tokenizers::decoders::fuse::Fuse;
use tokenizers::models::bpe::BPE;
use tokenizers::AddedToken;

use super::{Result, SpecialIds, Tokenizer, TokenizerError};

/// The unknown-character token, always in a character vocabulary.
pub const UNK: &str = "<unk>";

/// Special tokens a from-scratch chat model usually wants.
pub const DEFAULT_SPECIALS: [&str; 4] = ["<|endoftext|>", "<pad>", "<|im_start|>", "<|im_end|>"];

pub(super) fn train<I, S>(texts: I, special_tokens: &[&str]) -> Result<Tokenizer>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut specials: Vec<String> = Vec::new();
    for s in special_tokens {
        if s.is_empty() {
            return Err(TokenizerError::Train("a special token is empty".into()));
        }
        if !specials.iter().any(|x| x == s) {
            specials.push(s.to_string());
        }
    }
    if !specials.iter().any(|x| x == UNK) {
        specials.push(UNK.to_string());
    }
    let mut chars = BTreeSet::new();
    for t in texts {
        chars.extend(t.as_ref().chars());
    }

    let mut vocab = tokenizers::models::bpe::Vocab::default();
    for s in &specials {
        vocab.insert(s.clone(), vocab.len() as u32);
    }
    for c in &chars {
        let s = c.to_string();
        // A one-char special (unusual) keeps its special id.
        if !vocab.contains_key(&s) {
            vocab.insert(s, vocab.len() as u32);
        }
    }
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, Vec::new())
        .unk_token(UNK.to_string())
        .build()
        .map_err(|e| TokenizerError::Train(format!("building the character model: {e}")))?;
    let mut inner = tokenizers::Tokenizer::new(bpe);
    inner.with_decoder(Some(Fuse::new()));
    inner
        .add_special_tokens(specials.iter().map(|s| AddedToken::from(s.clone(), true)))
        .map_err(|e| TokenizerError::Train(format!("adding special tokens: {e}")))?;

    let id = |s: &str| inner.token_to_id(s);
    let ids = SpecialIds {
        bos: None,
        eos: id("<|endoftext|>").or_else(|| id("<|im_end|>")),
        pad: id("<pad>"),
        unk: id(UNK),
        add_bos: false,
        add_eos: false,
    };
    Tokenizer::from_parts(inner, ids, None)
}
