//! Reading [`GgufVocab`] out of a [`GgufFile`]'s metadata.

use crate::gguf::{GgufFile, MetaValue};

use super::{GgufVocab, TokenizerError};

pub(super) fn vocab_from_gguf(file: &GgufFile) -> Result<GgufVocab, TokenizerError> {
    let err = |message: String| TokenizerError::Vocab {
        origin: file.path().display().to_string(),
        message,
    };
    let present = |key: &str| file.metadata().contains_key(key);
    let str_array = |key: &str| -> Result<Vec<String>, TokenizerError> {
        file.get_str_array(key)
            .map(|v| v.into_iter().map(str::to_string).collect())
            .ok_or_else(|| err(format!("{key} is missing or not an array of strings")))
    };
    // Optional ids: absent is None; present but not a token id is an error.
    let id = |key: &str| -> Result<Option<u32>, TokenizerError> {
        if !present(key) {
            return Ok(None);
        }
        file.get_u32(key)
            .map(Some)
            .ok_or_else(|| err(format!("{key} is not a token id")))
    };
    let flag = |key: &str| -> Result<bool, TokenizerError> {
        match file.metadata().get(key) {
            None => Ok(false),
            Some(MetaValue::Bool(b)) => Ok(*b),
            Some(other) => Err(err(format!("{key} is not a bool: {other:?}"))),
        }
    };

    let model = file
        .get_str("tokenizer.ggml.model")
        .ok_or_else(|| {
            err("tokenizer.ggml.model is missing: the file has no tokenizer".to_string())
        })?
        .to_string();
    let tokens = str_array("tokenizer.ggml.tokens")?;
    let merges = if present("tokenizer.ggml.merges") {
        str_array("tokenizer.ggml.merges")?
    } else {
        Vec::new()
    };
    let token_types = if present("tokenizer.ggml.token_type") {
        file.get_i32_array("tokenizer.ggml.token_type")
            .ok_or_else(|| {
                err("tokenizer.ggml.token_type is not an array of integers".to_string())
            })?
    } else {
        Vec::new()
    };
    let pre = match file.metadata().get("tokenizer.ggml.pre") {
        None => "default".to_string(),
        Some(v) => v
            .as_str()
            .ok_or_else(|| err("tokenizer.ggml.pre is not a string".to_string()))?
            .to_string(),
    };
    let chat_template = match file.metadata().get("tokenizer.chat_template") {
        None => None,
        Some(v) => Some(
            v.as_str()
                .ok_or_else(|| err("tokenizer.chat_template is not a string".to_string()))?
                .to_string(),
        ),
    };
    Ok(GgufVocab {
        model,
        tokens,
        merges,
        token_types,
        bos: id("tokenizer.ggml.bos_token_id")?,
        eos: id("tokenizer.ggml.eos_token_id")?,
        unk: id("tokenizer.ggml.unknown_token_id")?,
        pad: id("tokenizer.ggml.padding_token_id")?,
        add_bos: flag("tokenizer.ggml.add_bos_token")?,
        add_eos: flag("tokenizer.ggml.add_eos_token")?,
        pre,
        chat_template,
        source: Some(file.path().to_path_buf()),
    })
}
