//! The SmolLM2 tokenizer built from GGUF metadata against llama.cpp's ids:
//! the golden prompts (`shared/golden/smollm2-135m-q4_1.json`) and the extra
//! strings in `tests/data/extra_tokenization.json` (`scripts/golden-tokenize.py`).
//!
//! Needs `models/SmolLM2-135M-Instruct.Q4_1.gguf` (`scripts/fetch-smollm2.sh`);
//! without it the tests print a notice and pass. `RETORT_SMOLLM2_GGUF` and
//! `RETORT_GOLDEN_DIR` override the paths.

use std::path::PathBuf;
use std::sync::OnceLock;

use retort_lm::chat::{self, ChatMessage};
use retort_lm::gguf::GgufFile;
use retort_lm::tokenizer::{EncodeOptions, Tokenizer};
use serde_json::Value;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn model_path() -> PathBuf {
    std::env::var_os("RETORT_SMOLLM2_GGUF")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("models/SmolLM2-135M-Instruct.Q4_1.gguf"))
}

fn golden_path() -> PathBuf {
    std::env::var_os("RETORT_GOLDEN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared/golden"))
        .join("smollm2-135m-q4_1.json")
}

/// The tokenizer and chat template from the GGUF, or None (with a notice) when
/// the model file is absent.
fn smollm2() -> Option<&'static Tokenizer> {
    static TOK: OnceLock<Option<Tokenizer>> = OnceLock::new();
    TOK.get_or_init(|| {
        let path = model_path();
        if !path.exists() {
            eprintln!(
                "SKIPPED: {} is absent; run scripts/fetch-smollm2.sh",
                path.display()
            );
            return None;
        }
        let file = GgufFile::open(&path).unwrap_or_else(|e| panic!("{e}"));
        Some(Tokenizer::from_gguf(&file).unwrap_or_else(|e| panic!("{e}")))
    })
    .as_ref()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("array of ids")
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn golden_prompts() -> Vec<Value> {
    let path = golden_path();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str::<Value>(&text)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn extra_cases() -> Vec<Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/extra_tokenization.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let v: Value = serde_json::from_str(&text).unwrap();
    v["cases"].as_array().unwrap().clone()
}

#[test]
fn golden_prompt_tokens_match_llama_cpp() {
    let Some(tok) = smollm2() else { return };
    let prompts = golden_prompts();
    assert!(!prompts.is_empty());
    for p in &prompts {
        let formatted = p["formatted"].as_str().unwrap();
        let want = ids(&p["prompt_tokens"]);
        let got = tok.encode(formatted, false).unwrap();
        assert_eq!(got, want, "prompt {:?}", p["prompt"]);
        assert_eq!(tok.decode(&got), formatted);
    }
}

#[test]
fn chat_template_gives_golden_formatted_text() {
    let Some(tok) = smollm2() else { return };
    let template = tok
        .chat_template()
        .expect("SmolLM2's GGUF has a chat template");
    for p in golden_prompts() {
        let prompt = p["prompt"].as_str().unwrap();
        let formatted = p["formatted"].as_str().unwrap();
        if p["chat"].as_bool().unwrap() {
            let msgs = [ChatMessage::user(prompt)];
            // The template adds "You are a helpful AI assistant named SmolLM,
            // trained by Hugging Face" when there is no system message.
            assert_eq!(chat::render(template, &msgs, true).unwrap(), formatted);
            assert_eq!(tok.apply_chat_template(&msgs, true).unwrap(), formatted);
        } else {
            assert_eq!(prompt, formatted);
        }
    }
}

#[test]
fn extra_strings_match_llama_cpp() {
    let Some(tok) = smollm2() else { return };
    let cases = extra_cases();
    assert!(cases.len() >= 50);
    let mut failures = Vec::new();
    for c in &cases {
        let text = c["text"].as_str().unwrap();
        let special = c["special"].as_bool().unwrap();
        let want = ids(&c["tokens"]);
        let got = tok
            .encode_with(
                text,
                EncodeOptions {
                    add_special: false,
                    parse_special: special,
                },
            )
            .unwrap();
        if got != want {
            failures.push(format!(
                "{text:?} (special={special}):\n   ours  {got:?}\n   llama {want:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn round_trips() {
    let Some(tok) = smollm2() else { return };
    let mut texts: Vec<String> = extra_cases()
        .iter()
        .map(|c| c["text"].as_str().unwrap().to_string())
        .collect();
    texts.extend(
        [
            "12345678901234567890",
            "a\u{3000}b  \u{2003} c",
            "\r\r\n\n\t \t",
            "<|im_start|><|im_start|>x<|im_end|>",
            "🙂🙃🙂🙃 💯💯",
            "ＡＢＣ ｱｲｳ",
        ]
        .map(String::from),
    );
    for s in &texts {
        let ids = tok.encode(s, false).unwrap();
        assert_eq!(&tok.decode(&ids), s);
        // Streaming decode yields the same text, whole characters only.
        let mut stream = tok.decode_stream();
        let mut out = String::new();
        for &id in &ids {
            out.push_str(&stream.push(tok.token_bytes(id)));
        }
        out.push_str(&stream.finish());
        assert_eq!(&out, s);
    }
    // Digits are split one by one.
    let ids = tok.encode("1234", false).unwrap();
    assert_eq!(ids.len(), 4);
    assert_eq!(tok.decode(&ids[..1]), "1");
    // Special ids.
    assert_eq!(tok.bos_id(), Some(1));
    assert_eq!(tok.eos_id(), Some(2));
    assert_eq!(tok.token_to_id("<|im_end|>"), Some(2));
    assert_eq!(tok.id_to_token(1).as_deref(), Some("<|im_start|>"));
    assert_eq!(tok.vocab_size(), 49152);
    assert_eq!(
        tok.decode_skip_special(&tok.encode("<|im_start|>hi<|im_end|>", false).unwrap()),
        "hi"
    );
}

#[test]
fn saved_tokenizer_json_gives_identical_ids() {
    let Some(tok) = smollm2() else { return };
    let dir = tempfile::tempdir().unwrap();
    tok.save_dir(dir.path()).unwrap();
    let back = Tokenizer::from_dir(dir.path()).unwrap();
    let mut texts: Vec<String> = golden_prompts()
        .iter()
        .map(|p| p["formatted"].as_str().unwrap().to_string())
        .collect();
    texts.extend(
        extra_cases()
            .iter()
            .map(|c| c["text"].as_str().unwrap().to_string()),
    );
    for s in &texts {
        assert_eq!(
            back.encode(s, false).unwrap(),
            tok.encode(s, false).unwrap(),
            "{s:?}"
        );
    }
    assert_eq!(back.bos_id(), tok.bos_id());
    assert_eq!(back.eos_id(), tok.eos_id());
    assert_eq!(back.pad_id(), tok.pad_id());
    assert_eq!(back.chat_template(), tok.chat_template());
    assert_eq!(back.vocab_size(), tok.vocab_size());
    assert_eq!(back.to_json().unwrap(), tok.to_json().unwrap());
}
