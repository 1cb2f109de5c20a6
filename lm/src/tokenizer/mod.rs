//! Tokenizers: byte-level BPE from GGUF metadata (llama.cpp's ids),
//! `tokenizer.json` files, and character vocabularies trained for
//! from-scratch models. All of them are the HF `tokenizers` crate underneath.
//!
//! ```no_run
//! # fn main() -> Result<(), retort_lm::tokenizer::TokenizerError> {
//! use retort_lm::tokenizer::Tokenizer;
//! let tok = Tokenizer::from_file("ckpt/tokenizer.json")?;
//! let ids = tok.encode("<|im_start|>user\nhi<|im_end|>", false)?;
//! assert_eq!(tok.decode(&ids), "<|im_start|>user\nhi<|im_end|>");
//! # Ok(()) }
//! ```
//!
//! Special tokens written in the text (`<|im_start|>`) always encode as the
//! special token, like llama.cpp's `tokenize(..., special=True)`; use
//! [`Tokenizer::encode_with`] to treat them as plain text instead.

mod bytes;
mod char_level;
mod gguf_meta;
mod gguf_vocab;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::Value;
use tokenizers::DecoderWrapper;

pub use bytes::Utf8Stream;
pub use char_level::{DEFAULT_SPECIALS, UNK};
pub use gguf_vocab::{pre_tokenizer_regexes, token_type, GgufVocab};

/// What went wrong loading, building, saving or running a tokenizer.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not a valid tokenizer file: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("{}: cannot write: {message}", path.display())]
    Write { path: PathBuf, message: String },
    /// The GGUF tokenizer metadata is missing, inconsistent or unsupported.
    #[error("{origin}: {message}")]
    Vocab { origin: String, message: String },
    /// Building a tokenizer from training texts failed.
    #[error("training tokenizer: {0}")]
    Train(String),
    #[error("tokenizer: {0}")]
    Encode(String),
    #[error("chat template: {0}")]
    Chat(#[from] crate::chat::ChatError),
}

pub type Result<T, E = TokenizerError> = std::result::Result<T, E>;

/// Special ids and add-BOS/EOS flags kept beside the `tokenizers` object
/// (a `tokenizer.json` has no place for them; `tokenizer_config.json` does).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SpecialIds {
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub pad: Option<u32>,
    pub unk: Option<u32>,
    pub add_bos: bool,
    pub add_eos: bool,
}

/// How ids turn back into bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DecodeKind {
    /// GPT-2 byte-level alphabet (gpt2 GGUF vocabularies, Llama 3, Qwen2, SmolLM).
    ByteLevel,
    /// Tokens are their own text, concatenated (our character vocabularies).
    Concat,
    /// Anything else: the `tokenizers` decoder, one call per request.
    Other,
}

/// Options for [`Tokenizer::encode_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodeOptions {
    /// Add BOS/EOS as the tokenizer's post-processor says (SmolLM2: none).
    pub add_special: bool,
    /// Special tokens written in the text encode as themselves (llama.cpp's
    /// `special=True`). When false they are tokenized as plain text.
    pub parse_special: bool,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        Self {
            add_special: false,
            parse_special: true,
        }
    }
}

/// A tokenizer: encoding, decoding, special ids and the chat template.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// A copy that reads special tokens in the text as plain text, made on first use.
    plain: OnceLock<tokenizers::Tokenizer>,
    ids: SpecialIds,
    chat_template: Option<String>,
    decode_kind: DecodeKind,
    /// Bytes of each id (model and added tokens), for decoding and streaming.
    token_bytes: Vec<Vec<u8>>,
    /// Ids of special added tokens (skipped by [`Tokenizer::decode_skip_special`]).
    is_special: Vec<bool>,
}

impl fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("bos", &self.ids.bos)
            .field("eos", &self.ids.eos)
            .field("pad", &self.ids.pad)
            .field("decode", &self.decode_kind)
            .field("chat_template", &self.chat_template.is_some())
            .finish()
    }
}

impl Clone for Tokenizer {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            plain: OnceLock::new(),
            ids: self.ids,
            chat_template: self.chat_template.clone(),
            decode_kind: self.decode_kind,
            token_bytes: self.token_bytes.clone(),
            is_special: self.is_special.clone(),
        }
    }
}

fn decode_kind(inner: &tokenizers::Tokenizer) -> DecodeKind {
    match inner.get_decoder() {
        Some(DecoderWrapper::ByteLevel(_)) => DecodeKind::ByteLevel,
        Some(DecoderWrapper::Fuse(_)) => DecodeKind::Concat,
        Some(DecoderWrapper::Sequence(seq)) => {
            // A sequence that is only ByteLevel (some exports wrap it).
            let json = serde_json::to_value(seq).unwrap_or(Value::Null);
            let types: Vec<&str> = json["decoders"]
                .as_array()
                .map(|a| a.iter().filter_map(|d| d["type"].as_str()).collect())
                .unwrap_or_default();
            if types == ["ByteLevel"] {
                DecodeKind::ByteLevel
            } else if types == ["Fuse"] {
                DecodeKind::Concat
            } else {
                DecodeKind::Other
            }
        }
        _ => DecodeKind::Other,
    }
}

impl Tokenizer {
    pub(crate) fn from_parts(
        inner: tokenizers::Tokenizer,
        ids: SpecialIds,
        chat_template: Option<String>,
    ) -> Result<Self> {
        let decode_kind = decode_kind(&inner);
        let n = inner.get_vocab_size(true);
        let added = inner.get_added_tokens_decoder();
        let mut token_bytes = Vec::with_capacity(n);
        let mut is_special = vec![false; n];
        for id in 0..n as u32 {
            let text = added
                .get(&id)
                .map(|t| t.content.clone())
                .or_else(|| inner.id_to_token(id))
                .unwrap_or_default();
            if let Some(t) = added.get(&id) {
                is_special[id as usize] = t.special;
            }
            token_bytes.push(match decode_kind {
                DecodeKind::ByteLevel => bytes::byte_level_token_bytes(&text),
                DecodeKind::Concat => text.into_bytes(),
                DecodeKind::Other => inner
                    .decode(&[id], false)
                    .map_err(|e| TokenizerError::Encode(format!("decoding id {id}: {e}")))?
                    .into_bytes(),
            });
        }
        for (what, id) in [
            ("bos", ids.bos),
            ("eos", ids.eos),
            ("pad", ids.pad),
            ("unk", ids.unk),
        ] {
            if let Some(id) = id {
                if id as usize >= n {
                    return Err(TokenizerError::Encode(format!(
                        "{what} id {id} is outside the vocabulary of {n} tokens"
                    )));
                }
            }
        }
        Ok(Self {
            inner,
            plain: OnceLock::new(),
            ids,
            chat_template,
            decode_kind,
            token_bytes,
            is_special,
        })
    }

    /// Builds llama.cpp's tokenizer for a gpt2-style GGUF vocabulary.
    pub fn from_gguf_vocab(vocab: &GgufVocab) -> Result<Self> {
        gguf_vocab::build(vocab)
    }

    /// The GGUF metadata that rebuilds this tokenizer in llama.cpp (the
    /// inverse of [`Tokenizer::from_gguf_vocab`]); an error for tokenizers
    /// llama.cpp cannot reproduce (character vocabularies).
    pub fn to_gguf_vocab(&self) -> Result<GgufVocab> {
        gguf_vocab::to_vocab(self)
    }

    /// Reads the tokenizer of an open GGUF file.
    pub fn from_gguf(file: &crate::gguf::GgufFile) -> Result<Self> {
        Self::from_gguf_vocab(&GgufVocab::from_gguf(file)?)
    }

    /// Loads a `tokenizer.json`. Special ids (`bos_token`, `eos_token`,
    /// `pad_token`, `unk_token`), `add_bos_token`/`add_eos_token` and
    /// `chat_template` come from a `tokenizer_config.json` in the same
    /// directory when there is one (HF layout; [`Tokenizer::save_dir`] writes
    /// it); a `chat_template.jinja` there overrides the config's template.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| TokenizerError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let inner = text
            .parse::<tokenizers::Tokenizer>()
            .map_err(|e| TokenizerError::Parse {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        let config_path = path.with_file_name("tokenizer_config.json");
        let (ids, mut template) = if config_path.is_file() {
            read_config(&config_path, &inner)?
        } else {
            (SpecialIds::default(), None)
        };
        // Newer transformers write the template to its own file; it wins.
        let jinja_path = path.with_file_name("chat_template.jinja");
        if jinja_path.is_file() {
            template = Some(std::fs::read_to_string(&jinja_path).map_err(|source| {
                TokenizerError::Read {
                    path: jinja_path,
                    source,
                }
            })?);
        }
        Self::from_parts(inner, ids, template).map_err(|e| TokenizerError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// Loads `tokenizer.json` (and `tokenizer_config.json` if present) from a directory.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self> {
        Self::from_file(dir.as_ref().join("tokenizer.json"))
    }

    /// The `tokenizer.json` text (compact; deterministic for a given tokenizer).
    pub fn to_json(&self) -> Result<String> {
        self.inner
            .to_string(false)
            .map_err(|e| TokenizerError::Encode(format!("serializing: {e}")))
    }

    /// Writes `tokenizer.json` to `path` (special ids and the chat template are
    /// not part of that format: see [`Tokenizer::save_dir`]).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let json = self.to_json().map_err(|e| TokenizerError::Write {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        write_file(path, json.as_bytes())
    }

    /// The `tokenizer_config.json` text: special tokens, add flags and chat template.
    pub fn config_json(&self) -> String {
        let tok = |id: Option<u32>| match id.and_then(|i| self.id_to_token(i)) {
            Some(t) => Value::String(t),
            None => Value::Null,
        };
        let mut config = serde_json::Map::new();
        config.insert("add_bos_token".into(), self.ids.add_bos.into());
        config.insert("add_eos_token".into(), self.ids.add_eos.into());
        config.insert("bos_token".into(), tok(self.ids.bos));
        config.insert("eos_token".into(), tok(self.ids.eos));
        config.insert("pad_token".into(), tok(self.ids.pad));
        config.insert("unk_token".into(), tok(self.ids.unk));
        config.insert(
            "chat_template".into(),
            self.chat_template
                .clone()
                .map(Value::String)
                .unwrap_or(Value::Null),
        );
        config.insert("tokenizer_class".into(), "PreTrainedTokenizerFast".into());
        serde_json::to_string_pretty(&Value::Object(config)).expect("JSON map serializes")
    }

    /// Writes `tokenizer.json` and `tokenizer_config.json` into `dir` (created
    /// if missing), the files [`Tokenizer::from_dir`] reads back.
    pub fn save_dir(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| TokenizerError::Write {
            path: dir.to_path_buf(),
            message: e.to_string(),
        })?;
        self.save(dir.join("tokenizer.json"))?;
        write_file(
            &dir.join("tokenizer_config.json"),
            self.config_json().as_bytes(),
        )
    }

    /// Encodes text, special tokens in it parsed as specials (llama.cpp's
    /// `special=True`). `add_special` adds BOS/EOS where the tokenizer is set
    /// to (SmolLM2's GGUF: neither, so it changes nothing there).
    pub fn encode(&self, text: &str, add_special: bool) -> Result<Vec<u32>> {
        self.encode_with(
            text,
            EncodeOptions {
                add_special,
                parse_special: true,
            },
        )
    }

    /// Encodes text with explicit options.
    pub fn encode_with(&self, text: &str, opts: EncodeOptions) -> Result<Vec<u32>> {
        let tok = if opts.parse_special {
            &self.inner
        } else {
            self.plain.get_or_init(|| {
                let mut t = self.inner.clone();
                t.set_encode_special_tokens(true);
                t
            })
        };
        let enc = tok.encode_fast(text, opts.add_special).map_err(|e| {
            TokenizerError::Encode(format!("encoding {} bytes of text: {e}", text.len()))
        })?;
        Ok(enc.get_ids().to_vec())
    }

    /// Encodes many texts (in parallel when the `tokenizers` crate may).
    pub fn encode_batch(&self, texts: &[&str], add_special: bool) -> Result<Vec<Vec<u32>>> {
        let encs = self
            .inner
            .encode_batch_fast(texts.to_vec(), add_special)
            .map_err(|e| TokenizerError::Encode(format!("encoding a batch: {e}")))?;
        Ok(encs.into_iter().map(|e| e.get_ids().to_vec()).collect())
    }

    /// The bytes one token stands for (an unknown id: none). For byte-level
    /// vocabularies a token can be part of a multi-byte character.
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        self.token_bytes
            .get(id as usize)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// The bytes of a sequence of ids, special tokens included as their text.
    pub fn decode_bytes(&self, ids: &[u32]) -> Vec<u8> {
        let mut out = Vec::new();
        for &id in ids {
            out.extend_from_slice(self.token_bytes(id));
        }
        out
    }

    /// Decodes ids to text, special tokens included as their text (HF's
    /// `skip_special_tokens=False`); invalid UTF-8 becomes U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> String {
        match self.decode_kind {
            DecodeKind::Other => self
                .inner
                .decode(ids, false)
                .unwrap_or_else(|_| String::from_utf8_lossy(&self.decode_bytes(ids)).into_owned()),
            _ => String::from_utf8_lossy(&self.decode_bytes(ids)).into_owned(),
        }
    }

    /// Decodes ids to text leaving out special tokens (llama.cpp's
    /// `detokenize(special=False)`, HF's `skip_special_tokens=True`).
    pub fn decode_skip_special(&self, ids: &[u32]) -> String {
        let kept: Vec<u32> = ids
            .iter()
            .copied()
            .filter(|&id| !self.is_special_id(id))
            .collect();
        self.decode(&kept)
    }

    /// A streaming decoder: feed it ids one at a time with
    /// `stream.push(tok.token_bytes(id))`; it returns text as soon as whole
    /// characters are complete.
    pub fn decode_stream(&self) -> Utf8Stream {
        Utf8Stream::default()
    }

    /// Whether an id is a special (control) token.
    pub fn is_special_id(&self, id: u32) -> bool {
        self.is_special.get(id as usize).copied().unwrap_or(false)
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Number of ids, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.token_bytes.len()
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.ids.bos
    }

    pub fn eos_id(&self) -> Option<u32> {
        self.ids.eos
    }

    pub fn pad_id(&self) -> Option<u32> {
        self.ids.pad
    }

    pub fn unk_id(&self) -> Option<u32> {
        self.ids.unk
    }

    /// Whether [`Tokenizer::encode`] with `add_special` adds BOS.
    pub fn add_bos(&self) -> bool {
        self.ids.add_bos
    }

    /// Sets the special ids (e.g. for a trained tokenizer).
    pub fn set_special_ids(&mut self, bos: Option<u32>, eos: Option<u32>, pad: Option<u32>) {
        self.ids.bos = bos;
        self.ids.eos = eos;
        self.ids.pad = pad;
    }

    /// The jinja chat template (`tokenizer.chat_template`), if any.
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    pub fn set_chat_template(&mut self, template: Option<String>) {
        self.chat_template = template;
    }

    /// Renders the tokenizer's chat template, with `bos_token`/`eos_token` set.
    pub fn apply_chat_template(
        &self,
        messages: &[crate::chat::ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String> {
        let template = self
            .chat_template
            .as_deref()
            .ok_or(crate::chat::ChatError::NoTemplate)?;
        let opts = crate::chat::RenderOptions {
            add_generation_prompt,
            bos_token: self.ids.bos.and_then(|i| self.id_to_token(i)),
            eos_token: self.ids.eos.and_then(|i| self.id_to_token(i)),
        };
        Ok(crate::chat::render_with(template, messages, &opts)?)
    }

    /// The underlying `tokenizers` object.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// A character vocabulary for from-scratch models: the special tokens
    /// (e.g. [`DEFAULT_SPECIALS`]) take ids 0.. in the order given, then
    /// [`UNK`] unless given, then every character seen, in code point order.
    /// EOS is `<|endoftext|>` (else `<|im_end|>`), PAD `<pad>`, when present.
    pub fn train_char_level<I, S>(texts: I, special_tokens: &[&str]) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        char_level::train(texts, special_tokens)
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    // Write beside and rename, so a reader never sees half a file.
    let tmp = path.with_extension("json.tmp");
    let werr = |e: std::io::Error| TokenizerError::Write {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    std::fs::write(&tmp, bytes).map_err(werr)?;
    std::fs::rename(&tmp, path).map_err(werr)
}

/// Reads special tokens and the chat template from an HF `tokenizer_config.json`.
fn read_config(path: &Path, inner: &tokenizers::Tokenizer) -> Result<(SpecialIds, Option<String>)> {
    let perr = |message: String| TokenizerError::Parse {
        path: path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|source| TokenizerError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let v: Value = serde_json::from_str(&text).map_err(|e| perr(e.to_string()))?;
    // A token is a string or {"content": "..."}; it must be in the vocabulary.
    let token = |key: &str| -> Result<Option<u32>> {
        let content = match &v[key] {
            Value::String(s) => Some(s.as_str()),
            Value::Object(o) => o.get("content").and_then(Value::as_str),
            _ => None,
        };
        match content {
            None => Ok(None),
            Some(s) => inner
                .token_to_id(s)
                .map(Some)
                .ok_or_else(|| perr(format!("{key} {s:?} is not in tokenizer.json's vocabulary"))),
        }
    };
    let ids = SpecialIds {
        bos: token("bos_token")?,
        eos: token("eos_token")?,
        pad: token("pad_token")?,
        unk: token("unk_token")?,
        add_bos: v["add_bos_token"].as_bool().unwrap_or(false),
        add_eos: v["add_eos_token"].as_bool().unwrap_or(false),
    };
    // `chat_template` is a string, or a list of {name, template} (use "default").
    let template = match &v["chat_template"] {
        Value::String(s) => Some(s.clone()),
        Value::Array(list) => list
            .iter()
            .find(|t| t["name"] == "default")
            .or_else(|| list.first())
            .and_then(|t| t["template"].as_str())
            .map(str::to_string),
        _ => None,
    };
    Ok((ids, template))
}

#[cfg(test)]
pub(crate) mod tests;
