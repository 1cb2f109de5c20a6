//! Building a byte-level BPE tokenizer from the `tokenizer.ggml.*` metadata of
//! a GGUF file, giving llama.cpp's ids.
//!
//! llama.cpp tokenizes a gpt2-style vocabulary in three steps, each mirrored
//! here with a `tokenizers` component:
//! 1. Control and user-defined tokens (token types 3 and 4) are cut out of the
//!    text first (`tokenize(..., special=True)`): added tokens, matched on the
//!    raw text.
//! 2. The rest is split by a list of regexes chosen by `tokenizer.ggml.pre`,
//!    each applied to the pieces the previous one left, matches and the text
//!    between them both kept: one `Split(Regex, Isolated)` per regex.
//! 3. Each piece is mapped to GPT-2's byte-level alphabet and merged by BPE
//!    rank: `ByteLevel(use_regex = false)` and a `BPE` model.

use std::path::PathBuf;

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, PreTokenizerWrapper, SplitDelimiterBehavior};

use super::{SpecialIds, Tokenizer, TokenizerError};

/// GPT-2's word regex (llama.cpp's `LLAMA_VOCAB_PRE_TYPE_GPT2` pattern).
const GPT2_WORDS: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
/// Llama 3's word regex, with llama.cpp's case-insensitive contractions spelled out.
const LLAMA3_WORDS: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's word regex, likewise.
const QWEN2_WORDS: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The regexes llama.cpp splits text with for a `tokenizer.ggml.pre` value,
/// applied in order. `None` for a type we do not reproduce.
///
/// Only `smollm` is checked against llama.cpp's ids (the golden prompts and
/// `tests/data/extra_tokenization.json`); the others follow the same lists in
/// llama.cpp's `llama-vocab.cpp` and are untested.
pub fn pre_tokenizer_regexes(pre: &str) -> Option<Vec<&'static str>> {
    Some(match pre {
        // Digits one by one, then GPT-2's words.
        "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone" | "minerva-7b" => {
            vec![r"\p{N}", GPT2_WORDS]
        }
        "gpt-2" | "gpt2" | "phi-2" | "jina-es" | "jina-de" | "jina-v2-es" | "jina-v2-de"
        | "mpt" | "olmo" | "jais" => vec![GPT2_WORDS],
        "llama-bpe" | "llama3" | "llama-v3" | "dbrx" | "smaug-bpe" => vec![LLAMA3_WORDS],
        "qwen2" | "stablelm2" => vec![QWEN2_WORDS],
        _ => return None,
    })
}

/// llama.cpp's token types (`tokenizer.ggml.token_type`).
pub mod token_type {
    pub const NORMAL: i32 = 1;
    pub const UNKNOWN: i32 = 2;
    pub const CONTROL: i32 = 3;
    pub const USER_DEFINED: i32 = 4;
    pub const UNUSED: i32 = 5;
    pub const BYTE: i32 = 6;
}

/// The tokenizer half of a GGUF file's metadata, in plain types.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GgufVocab {
    /// `tokenizer.ggml.model`; only `gpt2` (byte-level BPE) is supported.
    pub model: String,
    /// `tokenizer.ggml.tokens`, indexed by id.
    pub tokens: Vec<String>,
    /// `tokenizer.ggml.merges`, `"left right"` in rank order.
    pub merges: Vec<String>,
    /// `tokenizer.ggml.token_type`, one per token (empty: all normal).
    pub token_types: Vec<i32>,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub unk: Option<u32>,
    pub pad: Option<u32>,
    /// `tokenizer.ggml.add_bos_token` (absent: false).
    pub add_bos: bool,
    /// `tokenizer.ggml.add_eos_token` (absent: false).
    pub add_eos: bool,
    /// `tokenizer.ggml.pre`, e.g. `smollm`.
    pub pre: String,
    /// `tokenizer.chat_template`.
    pub chat_template: Option<String>,
    /// The file the metadata came from, for error messages.
    pub source: Option<PathBuf>,
}

impl GgufVocab {
    fn err(&self, message: impl Into<String>) -> TokenizerError {
        TokenizerError::Vocab {
            origin: match &self.source {
                Some(p) => p.display().to_string(),
                None => "GGUF tokenizer metadata".to_string(),
            },
            message: message.into(),
        }
    }

    fn check_id(&self, what: &str, id: Option<u32>) -> Result<(), TokenizerError> {
        match id {
            Some(id) if id as usize >= self.tokens.len() => Err(self.err(format!(
                "{what} id {id} is outside the vocabulary of {} tokens",
                self.tokens.len()
            ))),
            _ => Ok(()),
        }
    }
}

impl GgufVocab {
    /// Reads the tokenizer metadata of an open GGUF file.
    pub fn from_gguf(file: &crate::gguf::GgufFile) -> Result<Self, TokenizerError> {
        super::gguf_meta::vocab_from_gguf(file)
    }
}

pub(super) fn build(vocab: &GgufVocab) -> Result<Tokenizer, TokenizerError> {
    if vocab.model != "gpt2" {
        return Err(vocab.err(format!(
            "tokenizer.ggml.model is {:?}; only \"gpt2\" (byte-level BPE) is supported",
            vocab.model
        )));
    }
    if vocab.tokens.is_empty() {
        return Err(vocab.err("tokenizer.ggml.tokens is empty"));
    }
    if !vocab.token_types.is_empty() && vocab.token_types.len() != vocab.tokens.len() {
        return Err(vocab.err(format!(
            "tokenizer.ggml.token_type has {} entries for {} tokens",
            vocab.token_types.len(),
            vocab.tokens.len()
        )));
    }
    for (what, id) in [
        ("bos", vocab.bos),
        ("eos", vocab.eos),
        ("unk", vocab.unk),
        ("pad", vocab.pad),
    ] {
        vocab.check_id(what, id)?;
    }
    let regexes = pre_tokenizer_regexes(&vocab.pre).ok_or_else(|| {
        vocab.err(format!(
            "tokenizer.ggml.pre {:?} is not supported (supported: smollm, starcoder, gpt2, llama-bpe, qwen2 and aliases)",
            vocab.pre
        ))
    })?;

    let mut ids = tokenizers::models::bpe::Vocab::default();
    for (id, tok) in vocab.tokens.iter().enumerate() {
        if ids.insert(tok.clone(), id as u32).is_some() {
            return Err(vocab.err(format!(
                "token {tok:?} appears twice in tokenizer.ggml.tokens"
            )));
        }
    }
    let mut merges = Vec::with_capacity(vocab.merges.len());
    for (rank, m) in vocab.merges.iter().enumerate() {
        // llama.cpp splits at the first space after the first byte (a merge's
        // left side is never empty, and may itself be a space in some vocabs);
        // no UTF-8 continuation byte is a space, so after the first char is the same.
        let first = m.chars().next().map_or(0, char::len_utf8);
        let pos = m[first..].find(' ').map(|p| p + first);
        match pos {
            Some(p) => merges.push((m[..p].to_string(), m[p + 1..].to_string())),
            None => return Err(vocab.err(format!("merge {rank} ({m:?}) is not \"left right\""))),
        }
    }
    let bpe = BPE::builder()
        .vocab_and_merges(ids, merges)
        .build()
        .map_err(|e| vocab.err(format!("building BPE: {e}")))?;

    let mut inner = tokenizers::Tokenizer::new(bpe);
    let mut steps: Vec<PreTokenizerWrapper> = Vec::with_capacity(regexes.len() + 1);
    for re in regexes {
        let split = Split::new(
            SplitPattern::Regex(re.to_string()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(|e| vocab.err(format!("compiling pre-tokenizer regex {re:?}: {e}")))?;
        steps.push(split.into());
    }
    steps.push(ByteLevel::new(false, true, false).into());
    inner.with_pre_tokenizer(Some(Sequence::new(steps)));
    inner.with_decoder(Some(ByteLevelDecoder::new(false, true, false)));

    // Control and user-defined tokens are cut out of the text before the
    // regexes: control ones as special (skippable when decoding), user-defined
    // ones as plain added tokens (llama.cpp parses those even with special=false).
    let mut added = Vec::new();
    for (id, ty) in vocab.token_types.iter().enumerate() {
        let special = match *ty {
            token_type::CONTROL => true,
            token_type::USER_DEFINED => false,
            _ => continue,
        };
        let content = &vocab.tokens[id];
        if content.is_empty() {
            continue;
        }
        added.push(AddedToken::from(content.clone(), special).normalized(false));
    }
    // These reuse the ids the tokens already have in the BPE vocabulary.
    let (specials, plain): (Vec<_>, Vec<_>) = added.into_iter().partition(|t| t.special);
    inner
        .add_special_tokens(specials)
        .map_err(|e| vocab.err(format!("adding control tokens: {e}")))?;
    inner
        .add_tokens(plain)
        .map_err(|e| vocab.err(format!("adding user-defined tokens: {e}")))?;

    let tok_text = |id: Option<u32>| id.map(|i| (vocab.tokens[i as usize].clone(), i));
    if vocab.add_bos || vocab.add_eos {
        let bos =
            if vocab.add_bos {
                Some(tok_text(vocab.bos).ok_or_else(|| {
                    vocab.err("add_bos_token is set but there is no bos_token_id")
                })?)
            } else {
                None
            };
        let eos =
            if vocab.add_eos {
                Some(tok_text(vocab.eos).ok_or_else(|| {
                    vocab.err("add_eos_token is set but there is no eos_token_id")
                })?)
            } else {
                None
            };
        let mut single = Vec::new();
        let mut pair = Vec::new();
        let mut specials = Vec::new();
        if let Some((t, id)) = &bos {
            single.push(t.clone());
            pair.push(t.clone());
            specials.push((t.clone(), *id));
        }
        single.push("$A".to_string());
        pair.push("$A".to_string());
        if let Some((t, id)) = &eos {
            single.push(t.clone());
            if !specials.iter().any(|(s, _)| s == t) {
                specials.push((t.clone(), *id));
            }
        }
        if let Some((t, _)) = &bos {
            pair.push(format!("{t}:1"));
        }
        pair.push("$B:1".to_string());
        if let Some((t, _)) = &eos {
            pair.push(format!("{t}:1"));
        }
        let post = TemplateProcessing::builder()
            .try_single(single)
            .and_then(|b| b.try_pair(pair))
            .map_err(|e| vocab.err(format!("post-processor template: {e}")))?
            .special_tokens(specials)
            .build()
            .map_err(|e| vocab.err(format!("post-processor: {e}")))?;
        inner.with_post_processor(Some(post));
    }

    let ids = SpecialIds {
        bos: vocab.bos,
        eos: vocab.eos,
        pad: vocab.pad,
        unk: vocab.unk,
        add_bos: vocab.add_bos,
        add_eos: vocab.add_eos,
    };
    Tokenizer::from_parts(inner, ids, vocab.chat_template.clone())
}

/// The GGUF metadata of a byte-level BPE tokenizer: the inverse of [`build`],
/// for writing a model as GGUF. Reads the tokenizer's own JSON (the BPE
/// vocabulary and merges, the added tokens, the pre-tokenizer's regexes),
/// and names the pre-tokenizer by the `tokenizer.ggml.pre` whose regexes
/// llama.cpp applies ([`pre_tokenizer_regexes`]); a tokenizer llama.cpp
/// cannot reproduce (a character vocabulary, other regexes) is an error.
pub(super) fn to_vocab(tok: &Tokenizer) -> Result<GgufVocab, TokenizerError> {
    let err = |m: String| TokenizerError::Vocab { origin: "tokenizer".into(), message: m };
    let json: serde_json::Value = serde_json::from_str(&tok.to_json()?).map_err(|e| err(format!("tokenizer JSON: {e}")))?;
    let model = &json["model"];
    if model["type"] != "BPE" {
        return Err(err(format!(
            "a {} tokenizer has no llama.cpp equivalent: GGUF export needs a byte-level BPE vocabulary (e.g. a model fine-tuned from SmolLM2)",
            model["type"].as_str().unwrap_or("non-BPE")
        )));
    }
    let vocab = model["vocab"].as_object().ok_or_else(|| err("BPE model without a vocabulary".into()))?;
    let n = tok.vocab_size();
    let mut tokens = vec![String::new(); n];
    let mut types = vec![token_type::NORMAL; n];
    let mut place = |id: u64, text: &str, ty: i32| -> Result<(), TokenizerError> {
        let slot = tokens.get_mut(id as usize).ok_or_else(|| err(format!("token id {id} is outside the vocabulary of {n}")))?;
        *slot = text.to_string();
        types[id as usize] = ty;
        Ok(())
    };
    for (text, id) in vocab {
        place(id.as_u64().ok_or_else(|| err(format!("token {text:?} has no id")))?, text, token_type::NORMAL)?;
    }
    for t in json["added_tokens"].as_array().into_iter().flatten() {
        let (Some(id), Some(text)) = (t["id"].as_u64(), t["content"].as_str()) else { continue };
        let ty = if t["special"].as_bool() == Some(true) { token_type::CONTROL } else { token_type::USER_DEFINED };
        place(id, text, ty)?;
    }
    if let Some(i) = tokens.iter().position(String::is_empty) {
        return Err(err(format!("token id {i} has no text")));
    }
    let merges = model["merges"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| match m {
            serde_json::Value::String(s) => Ok(s.clone()),
            serde_json::Value::Array(pair) if pair.len() == 2 => {
                Ok(format!("{} {}", pair[0].as_str().unwrap_or_default(), pair[1].as_str().unwrap_or_default()))
            }
            other => Err(err(format!("merge {other} is not \"left right\""))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let pre = pre_name(&json["pre_tokenizer"]).ok_or_else(|| {
        err(format!(
            "its pre-tokenizer ({}) matches no llama.cpp `tokenizer.ggml.pre`",
            json["pre_tokenizer"]
        ))
    })?;
    Ok(GgufVocab {
        model: "gpt2".into(),
        tokens,
        merges,
        token_types: types,
        bos: tok.bos_id(),
        eos: tok.eos_id(),
        unk: tok.unk_id(),
        pad: tok.pad_id(),
        add_bos: tok.ids.add_bos,
        add_eos: tok.ids.add_eos,
        pre: pre.to_string(),
        chat_template: tok.chat_template().map(str::to_string),
        source: None,
    })
}

/// The `tokenizer.ggml.pre` whose regexes are the `Split` regexes of a
/// pre-tokenizer `Sequence[Split..., ByteLevel(use_regex=false)]` (what
/// [`build`] makes), or `gpt2` for a plain `ByteLevel(use_regex=true)`.
fn pre_name(pre: &serde_json::Value) -> Option<&'static str> {
    if pre["type"] == "ByteLevel" {
        return (pre["use_regex"] != false).then_some("gpt2");
    }
    let steps = pre["pretokenizers"].as_array()?;
    let (last, splits) = steps.split_last()?;
    if last["type"] != "ByteLevel" || last["use_regex"] == true {
        return None;
    }
    let regexes: Vec<&str> = splits.iter().map(|s| (s["type"] == "Split").then(|| s["pattern"]["Regex"].as_str()).flatten()).collect::<Option<_>>()?;
    ["smollm", "gpt2", "llama-bpe", "qwen2"].into_iter().find(|name| pre_tokenizer_regexes(name).as_deref() == Some(&regexes[..]))
}
