//! Fuzz harnesses: what the `fuzz/` targets run on each input, and what the
//! unit tests replay the checked-in seeds and crash inputs through, so a plain
//! `cargo test` keeps every fixed crash fixed without an instrumented build.
//!
//! A harness returns normally on any input: an `Err` from the code under test
//! is the expected answer to bad bytes; a panic, an abort from an oversized
//! allocation, or a hang is the bug the fuzzer looks for (see `FUZZING.md`).

use crate::chat::ChatMessage;
use crate::gguf::GgufFile;
use crate::tokenizer::{EncodeOptions, GgufVocab, Tokenizer};
use crate::LlamaConfig;

/// Texts every tokenizer built by a harness encodes: ASCII, digits (split one
/// by one by `smollm`), multi-byte UTF-8, whitespace runs and a special token.
const TEXTS: &[&str] = &[
    "Hello world! 12345",
    "<|im_start|>user\nhi<|im_end|>\n",
    "  \t\n\r\n  x  ",
    "héllo wörld — 日本語 🦀",
    "",
];

/// GGUF bytes → header, metadata, tensor table; every tensor dequantized;
/// the model config and the tokenizer read from the metadata.
#[doc(hidden)]
pub fn fuzz_gguf(bytes: &[u8]) {
    let Ok(file) = GgufFile::from_bytes("fuzz.gguf", bytes.to_vec()) else {
        return;
    };
    for t in file.tensors() {
        let _ = file.tensor_f32(&t.name);
    }
    for key in file.metadata().keys() {
        let _ = (file.get_str(key), file.get_u32(key), file.get_i64(key), file.get_f32(key));
        let _ = (file.get_bool(key), file.get_str_array(key), file.get_i32_array(key), file.get_f32_array(key));
    }
    let _ = LlamaConfig::from_gguf(&file);
    if let Ok(tok) = Tokenizer::from_gguf(&file) {
        exercise(&tok, TEXTS, &[]);
    }
}

/// A GGUF tokenizer vocabulary and texts in a compact byte form (see
/// [`encode_tokenizer_input`]) → [`Tokenizer::from_gguf_vocab`] → encode,
/// decode, stream and render the chat template.
#[doc(hidden)]
pub fn fuzz_tokenizer(bytes: &[u8]) {
    let input = decode_tokenizer_input(bytes);
    if let Ok(tok) = Tokenizer::from_gguf_vocab(&input.vocab) {
        let texts: Vec<&str> = input.texts.iter().map(String::as_str).collect();
        exercise(&tok, &texts, &input.ids);
    }
}

/// Everything a caller does with a tokenizer, on `texts` and on raw `ids`
/// (which may be outside the vocabulary).
fn exercise(tok: &Tokenizer, texts: &[&str], ids: &[u32]) {
    for &text in texts {
        for (add_special, parse_special) in [(false, true), (true, false)] {
            if let Ok(enc) = tok.encode_with(text, EncodeOptions { add_special, parse_special }) {
                let _ = tok.decode(&enc);
                let _ = tok.decode_skip_special(&enc);
            }
        }
    }
    let _ = tok.encode_batch(texts, true);
    let _ = tok.decode(ids);
    let _ = tok.decode_skip_special(ids);
    let mut stream = tok.decode_stream();
    for &id in ids {
        let _ = stream.push(tok.token_bytes(id));
        let _ = (tok.id_to_token(id), tok.is_special_id(id));
    }
    let messages: Vec<ChatMessage> =
        texts.iter().enumerate().map(|(i, t)| ChatMessage::new(["user", "assistant"][i % 2], *t)).collect();
    let _ = tok.apply_chat_template(&messages, true);
}

/// What [`fuzz_tokenizer`] decodes its bytes into.
#[doc(hidden)]
#[derive(Debug, Default, PartialEq)]
pub struct TokenizerInput {
    pub vocab: GgufVocab,
    pub texts: Vec<String>,
    pub ids: Vec<u32>,
}

/// `tokenizer.ggml.pre` values the byte form selects from (the last one is
/// unsupported, to reach that error).
const PRES: &[&str] = &["smollm", "gpt2", "llama-bpe", "qwen2", "default"];
const SECTION: u8 = 0;
const ITEM: u8 = 1;

/// The byte form: a flags byte (bit 0 add_bos, 1 add_eos, 2–5 bos/eos/unk/pad
/// present, 6 model is not `gpt2`), a `pre` selector, four id bytes
/// (bos, eos, unk, pad), then sections separated by `0x00`: tokens, merges,
/// token types (one byte each, as `i8`), texts, the chat template, and last
/// the extra ids (one byte each, to the end, so an id may be 0); items in the
/// list sections separated by `0x01`.
/// Plain bytes, so that libFuzzer's mutations of a seed stay meaningful.
#[doc(hidden)]
pub fn decode_tokenizer_input(bytes: &[u8]) -> TokenizerInput {
    let byte = |i: usize| bytes.get(i).copied().unwrap_or(0);
    let flags = byte(0);
    let id = |bit: u8, i: usize| (flags & (1 << bit) != 0).then(|| u32::from(byte(i)));
    let rest = bytes.get(6..).unwrap_or(&[]);
    let mut sections = rest.splitn(6, |&b| b == SECTION);
    let mut next = || sections.next().unwrap_or(&[]);
    let strings = |s: &[u8]| -> Vec<String> {
        if s.is_empty() {
            return Vec::new();
        }
        s.split(|&b| b == ITEM).map(|t| String::from_utf8_lossy(t).into_owned()).collect()
    };
    let tokens = strings(next());
    let merges = strings(next());
    let token_types = next().iter().map(|&b| i32::from(b as i8)).collect();
    let texts = strings(next());
    let template = next();
    let ids = next().iter().map(|&b| u32::from(b)).collect();
    TokenizerInput {
        vocab: GgufVocab {
            model: if flags & (1 << 6) == 0 { "gpt2" } else { "llama" }.to_string(),
            tokens,
            merges,
            token_types,
            bos: id(2, 2),
            eos: id(3, 3),
            unk: id(4, 4),
            pad: id(5, 5),
            add_bos: flags & 1 != 0,
            add_eos: flags & 2 != 0,
            pre: PRES[usize::from(byte(1)) % PRES.len()].to_string(),
            chat_template: (!template.is_empty()).then(|| String::from_utf8_lossy(template).into_owned()),
            source: None,
        },
        texts,
        ids,
    }
}

/// The inverse of [`decode_tokenizer_input`], for writing seeds. Ids above
/// 255 and strings holding `0x00`/`0x01` do not survive the round trip.
#[doc(hidden)]
pub fn encode_tokenizer_input(input: &TokenizerInput) -> Vec<u8> {
    let v = &input.vocab;
    let mut flags = u8::from(v.add_bos) | u8::from(v.add_eos) << 1;
    for (bit, id) in [(2, v.bos), (3, v.eos), (4, v.unk), (5, v.pad)] {
        if id.is_some() {
            flags |= 1 << bit;
        }
    }
    if v.model != "gpt2" {
        flags |= 1 << 6;
    }
    let pre = PRES.iter().position(|p| *p == v.pre).unwrap_or(PRES.len() - 1) as u8;
    let id = |x: Option<u32>| x.unwrap_or(0) as u8;
    let mut out = vec![flags, pre, id(v.bos), id(v.eos), id(v.unk), id(v.pad)];
    let list = |out: &mut Vec<u8>, items: &[String]| {
        for (i, s) in items.iter().enumerate() {
            if i > 0 {
                out.push(ITEM);
            }
            out.extend_from_slice(s.as_bytes());
        }
    };
    list(&mut out, &v.tokens);
    out.push(SECTION);
    list(&mut out, &v.merges);
    out.push(SECTION);
    out.extend(v.token_types.iter().map(|&t| t as i8 as u8));
    out.push(SECTION);
    list(&mut out, &input.texts);
    out.push(SECTION);
    out.extend_from_slice(v.chat_template.as_deref().unwrap_or("").as_bytes());
    out.push(SECTION);
    out.extend(input.ids.iter().map(|&i| i as u8));
    out
}

#[cfg(test)]
mod tests;
