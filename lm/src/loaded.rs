//! A model with its tokenizer, loaded from a `.gguf` file or a checkpoint
//! directory: what the generate, score and train stages and
//! `retort sample` use.
//!
//! A checkpoint directory holds `config.json` (HF format),
//! `model.safetensors` (f32, HF tensor names) and `tokenizer.json` (plus
//! `tokenizer_config.json`); it also loads in `transformers`.

use std::path::{Path, PathBuf};

use crate::config::LlamaConfig;
use crate::device::DeviceKind;
use crate::error::LmError;
use crate::generate::{generate, last_logits, Decode, GenerateRequest, Generation};
use crate::gguf::GgufFile;
use crate::model::Llama;
use crate::sampling::SamplingParams;
use crate::tokenizer::Tokenizer;
use crate::weights;

/// A model, its tokenizer and where they came from.
#[derive(Debug)]
pub struct LoadedModel {
    model: Llama,
    tokenizer: Option<Tokenizer>,
    path: PathBuf,
}

fn tokenizer_error(path: &Path, e: impl std::fmt::Display) -> LmError {
    LmError::Tokenizer {
        path: path.to_path_buf(),
        what: e.to_string(),
    }
}

impl LoadedModel {
    /// Loads a `.gguf` file (weights dequantized to f32, tokenizer from its
    /// metadata) or a checkpoint directory (tokenizer from `tokenizer.json`
    /// when present) onto `device`.
    pub fn load(path: &Path, device: DeviceKind) -> Result<Self, LmError> {
        let burn_device = device.device()?;
        if path.is_dir() {
            if !path.join("config.json").exists() {
                return Err(LmError::NotAModel { path: path.to_path_buf() });
            }
            let model = weights::load_safetensors_dir(path, &burn_device)?;
            let tok_path = path.join("tokenizer.json");
            let tokenizer = if tok_path.exists() {
                Some(Tokenizer::from_dir(path).map_err(|e| tokenizer_error(&tok_path, e))?)
            } else {
                None
            };
            return Ok(Self {
                model,
                tokenizer,
                path: path.to_path_buf(),
            });
        }
        if !path.exists() {
            return Err(LmError::io(path, std::io::Error::from(std::io::ErrorKind::NotFound)));
        }
        let file = GgufFile::open(path)?;
        let model = weights::load_gguf(&file, &burn_device)?;
        let tokenizer = Tokenizer::from_gguf(&file).map_err(|e| tokenizer_error(path, e))?;
        Ok(Self {
            model,
            tokenizer: Some(tokenizer),
            path: path.to_path_buf(),
        })
    }

    /// Wraps a model built in memory (e.g. by training).
    pub fn from_parts(model: Llama, tokenizer: Option<Tokenizer>, path: PathBuf) -> Self {
        Self { model, tokenizer, path }
    }

    /// The model.
    pub fn model(&self) -> &Llama {
        &self.model
    }

    /// The model, mutably (e.g. to train it); drops the packed decoding
    /// weights, which would go stale.
    pub fn model_mut(&mut self) -> &mut Llama {
        self.model.set_packed(None);
        &mut self.model
    }

    /// Decodes on 8-bit activations, as llama.cpp does
    /// ([`Llama::set_q8_activations`]); false without packed weights.
    pub fn set_q8_activations(&mut self, on: bool) -> bool {
        self.model.set_q8_activations(on)
    }

    /// The model alone (e.g. to train it), without packed decoding weights.
    pub fn into_model(mut self) -> Llama {
        self.model.set_packed(None);
        self.model
    }

    /// Its config.
    pub fn config(&self) -> &LlamaConfig {
        self.model.config()
    }

    /// Its tokenizer, if it has one.
    pub fn tokenizer(&self) -> Option<&Tokenizer> {
        self.tokenizer.as_ref()
    }

    /// Its tokenizer, or an error naming the model's path: stages that
    /// read or write text need one.
    pub fn text_tokenizer(&self) -> Result<&Tokenizer, LmError> {
        self.tokenizer.as_ref().ok_or_else(|| tokenizer_error(&self.path, "the model has no tokenizer"))
    }

    /// The model (without packed decoding weights, which training would
    /// leave stale) and its tokenizer.
    pub fn into_parts(mut self) -> (Llama, Option<Tokenizer>) {
        self.model.set_packed(None);
        (self.model, self.tokenizer)
    }

    /// The file or directory it was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// End-of-sequence ids: the config's and the tokenizer's.
    pub fn eos_ids(&self) -> Vec<u32> {
        let mut ids = self.config().eos_ids();
        if let Some(id) = self.tokenizer.as_ref().and_then(Tokenizer::eos_id) {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        ids
    }

    /// Generates for a batch of prompts; `item_ids[i]` seeds prompt `i`'s
    /// RNG. Stop strings are matched on the tokenizer's decoded text.
    ///
    /// # Errors
    /// As [`generate`]; stop strings without a tokenizer are an
    /// [`LmError::Request`].
    pub fn generate(&self, prompts: &[Vec<u32>], params: &SamplingParams, item_ids: &[u64]) -> Result<Vec<Generation>, LmError> {
        let mut params = params.clone();
        if params.eos_token_ids.is_none() {
            params.eos_token_ids = Some(self.eos_ids());
        }
        let decode = self.tokenizer.as_ref().map(TokenizerDecode);
        let req = GenerateRequest {
            prompts,
            item_ids,
            params: &params,
            decode: decode.as_ref().map(|d| d as &(dyn Decode + Sync)),
        };
        generate(&self.model, &req)
    }

    /// Prompt tokens for `text`: with `chat`, the tokenizer's chat template
    /// applied to one user message (plus the generation prompt), special
    /// tokens in the text parsed as specials (llama.cpp's `special=True`);
    /// BOS as the tokenizer adds it for plain text (the template writes its
    /// own for chat).
    pub fn encode_prompt(&self, text: &str, chat: bool) -> Result<Vec<u32>, LmError> {
        let tok = self.tokenizer.as_ref().ok_or_else(|| tokenizer_error(&self.path, "the model has no tokenizer"))?;
        let err = |e| tokenizer_error(&self.path, e);
        if chat {
            let messages = [crate::chat::ChatMessage::user(text)];
            let formatted = tok.apply_chat_template(&messages, true).map_err(err)?;
            tok.encode(&formatted, false).map_err(err)
        } else {
            tok.encode(text, true).map_err(err)
        }
    }

    /// Text of `tokens` (special tokens included), or an error without a tokenizer.
    pub fn decode(&self, tokens: &[u32]) -> Result<String, LmError> {
        let tok = self.tokenizer.as_ref().ok_or_else(|| tokenizer_error(&self.path, "the model has no tokenizer"))?;
        Ok(tok.decode(tokens))
    }

    /// `log p(tokens[i] | tokens[..i])` for `i >= start` (see [`crate::generate::token_logprobs`]).
    pub fn token_logprobs(&self, tokens: &[u32], start: usize) -> Vec<f32> {
        crate::generate::token_logprobs(&self.model, tokens, start)
    }

    /// Logits at the last position of `tokens`.
    pub fn logits(&self, tokens: &[u32]) -> Vec<f32> {
        last_logits(&self.model, tokens)
    }

    /// Writes a checkpoint directory: `config.json`, `model.safetensors`
    /// and, with a tokenizer, `tokenizer.json` + `tokenizer_config.json`.
    pub fn save(&self, dir: &Path) -> Result<(), LmError> {
        weights::save_safetensors_dir(&self.model, dir)?;
        if let Some(t) = &self.tokenizer {
            t.save_dir(dir).map_err(|e| tokenizer_error(dir, e))?;
        }
        Ok(())
    }
}

struct TokenizerDecode<'a>(&'a Tokenizer);

impl Decode for TokenizerDecode<'_> {
    fn decode(&self, tokens: &[u32]) -> String {
        self.0.decode(tokens)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_path_and_problem() {
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("notes.txt");
        std::fs::write(&text, "hello").unwrap();
        let e = LoadedModel::load(&text, DeviceKind::Cpu).unwrap_err();
        assert!(e.to_string().starts_with(&format!("{}: not a GGUF file", text.display())), "{e}");
        let e = LoadedModel::load(dir.path(), DeviceKind::Cpu).unwrap_err();
        assert!(e.to_string().contains("not a model"), "{e}");
        let missing = dir.path().join("nope.gguf");
        let e = LoadedModel::load(&missing, DeviceKind::Cpu).unwrap_err();
        assert!(e.to_string().starts_with(&missing.display().to_string()), "{e}");
        let e = crate::gguf::GgufFile::open(&missing).unwrap_err();
        assert!(matches!(e, LmError::Io { .. }));
    }

    #[test]
    fn checkpoint_dir_round_trip_without_tokenizer() {
        let dev = DeviceKind::Cpu.device().unwrap();
        let model = LlamaConfig::preset("micro", 40).unwrap().init_seeded(0, &dev);
        let dir = tempfile::tempdir().unwrap();
        let lm = LoadedModel::from_parts(model, None, dir.path().to_path_buf());
        lm.save(dir.path()).unwrap();
        let back = LoadedModel::load(dir.path(), DeviceKind::Cpu).unwrap();
        assert!(back.tokenizer().is_none());
        assert_eq!(back.logits(&[1, 2, 3]), lm.logits(&[1, 2, 3]));
        let e = back.encode_prompt("hi", false).unwrap_err();
        assert!(e.to_string().contains("no tokenizer"), "{e}");
    }
}
