use super::bytes::bytes_to_byte_level;
use super::*;
use crate::chat::ChatMessage;

/// A small gpt2-style vocabulary: 3 control tokens, 1 user-defined token,
/// the 256 byte tokens and a few merges.
/// A small gpt2-style vocabulary (control, user-defined, byte and merged
/// tokens); also used by the GGUF export tests.
pub(crate) fn tiny_vocab() -> GgufVocab {
    let mut tokens: Vec<String> = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<tool>"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut token_types = vec![3, 3, 3, 4];
    for b in 0..=255u8 {
        tokens.push(bytes_to_byte_level(&[b]));
        token_types.push(1);
    }
    let merges: Vec<String> = ["Ġ t", "h e", "Ġt he", "1 2", "Ġ 1", "Ġ Ġ", "l l", "e ll"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for m in &merges {
        tokens.push(m.replace(' ', ""));
        token_types.push(1);
    }
    GgufVocab {
        model: "gpt2".into(),
        tokens,
        merges,
        token_types,
        bos: Some(1),
        eos: Some(2),
        pad: Some(2),
        unk: Some(0),
        pre: "smollm".into(),
        chat_template: Some(crate::chat::CHATML_TEMPLATE.into()),
        ..Default::default()
    }
}

fn tok_ids(t: &Tokenizer, pieces: &[&str]) -> Vec<u32> {
    pieces
        .iter()
        .map(|p| t.token_to_id(p).unwrap_or_else(|| panic!("no token {p:?}")))
        .collect()
}

#[test]
fn gguf_vocab_merges_and_specials() {
    let t = Tokenizer::from_gguf_vocab(&tiny_vocab()).unwrap();
    assert_eq!(t.vocab_size(), 4 + 256 + 8);
    assert_eq!(t.bos_id(), Some(1));
    assert_eq!(t.eos_id(), Some(2));
    // "hell": "h e" outranks "l l", so "he"+"ll" ("e ll" never applies).
    // "Ġthe" merges; the space before "12" stays alone since digits are split
    // one by one first (so "Ġ1" and "12" never form).
    let ids = t.encode(" the 12", false).unwrap();
    assert_eq!(ids, tok_ids(&t, &["Ġthe", "Ġ", "1", "2"]));
    let ids = t.encode("<|im_start|>hell<|im_end|><tool>", false).unwrap();
    assert_eq!(
        ids,
        tok_ids(&t, &["<|im_start|>", "he", "ll", "<|im_end|>", "<tool>"])
    );
    assert_eq!(ids[0], 1);
    assert_eq!(t.decode(&ids), "<|im_start|>hell<|im_end|><tool>");
    assert_eq!(t.decode_skip_special(&ids), "hell<tool>");
}

#[test]
fn parse_special_off_reads_specials_as_text() {
    let t = Tokenizer::from_gguf_vocab(&tiny_vocab()).unwrap();
    let opts = EncodeOptions {
        add_special: false,
        parse_special: false,
    };
    let ids = t.encode_with("<|im_end|>", opts).unwrap();
    assert!(ids.len() > 1 && !ids.contains(&2), "{ids:?}");
    assert_eq!(t.decode(&ids), "<|im_end|>");
    // User-defined tokens are still parsed (as llama.cpp does).
    assert_eq!(t.encode_with("<tool>", opts).unwrap(), vec![3]);
}

#[test]
fn add_bos_post_processor() {
    let mut v = tiny_vocab();
    v.add_bos = true;
    let t = Tokenizer::from_gguf_vocab(&v).unwrap();
    assert_eq!(
        t.encode("he", true).unwrap(),
        vec![1, t.token_to_id("he").unwrap()]
    );
    assert_eq!(
        t.encode("he", false).unwrap(),
        vec![t.token_to_id("he").unwrap()]
    );
}

#[test]
fn whitespace_runs_follow_gpt2() {
    let t = Tokenizer::from_gguf_vocab(&tiny_vocab()).unwrap();
    // "a   b": `\s+(?!\S)` takes two spaces ("ĠĠ"), the last one goes with b.
    let ids = t.encode("a   b", false).unwrap();
    assert_eq!(ids, tok_ids(&t, &["a", "ĠĠ", "Ġ", "b"]));
    for s in ["a   b", "\n\n x", "tab\tend ", "é🙂 ü", "x  ", "  12  34"] {
        assert_eq!(t.decode(&t.encode(s, false).unwrap()), s);
    }
}

#[test]
fn bad_vocab_errors() {
    let mut v = tiny_vocab();
    v.pre = "nonesuch".into();
    let e = Tokenizer::from_gguf_vocab(&v).unwrap_err().to_string();
    assert!(e.contains("nonesuch"), "{e}");
    let mut v = tiny_vocab();
    v.model = "llama".into();
    v.source = Some("m.gguf".into());
    let e = Tokenizer::from_gguf_vocab(&v).unwrap_err().to_string();
    assert!(e.starts_with("m.gguf: ") && e.contains("gpt2"), "{e}");
    let mut v = tiny_vocab();
    v.eos = Some(100_000);
    assert!(Tokenizer::from_gguf_vocab(&v).is_err());
    let mut v = tiny_vocab();
    v.merges.push("nospace".into());
    assert!(Tokenizer::from_gguf_vocab(&v)
        .unwrap_err()
        .to_string()
        .contains("nospace"));
}

#[test]
fn json_round_trip_keeps_ids_and_config() {
    let t = Tokenizer::from_gguf_vocab(&tiny_vocab()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    t.save_dir(dir.path()).unwrap();
    let back = Tokenizer::from_dir(dir.path()).unwrap();
    for s in [
        "<|im_start|>user\nthe 12 hello<|im_end|>\n",
        "  x\t\n🙂",
        "<tool>the",
    ] {
        assert_eq!(
            back.encode(s, false).unwrap(),
            t.encode(s, false).unwrap(),
            "{s:?}"
        );
    }
    assert_eq!(back.bos_id(), Some(1));
    assert_eq!(back.eos_id(), Some(2));
    assert_eq!(back.pad_id(), Some(2));
    assert_eq!(back.chat_template(), t.chat_template());
    assert_eq!(back.to_json().unwrap(), t.to_json().unwrap());
    // tokenizer.json alone loads too, without the config's ids.
    let only = dir.path().join("only.json");
    t.save(&only).unwrap();
    let bare = Tokenizer::from_file(&only).unwrap();
    assert_eq!(
        bare.encode("the 12", false).unwrap(),
        t.encode("the 12", false).unwrap()
    );
}

#[test]
fn file_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.json");
    let e = Tokenizer::from_file(&missing).unwrap_err();
    assert!(matches!(e, TokenizerError::Read { .. }));
    assert!(e.to_string().contains("nope.json"), "{e}");
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"model\": 3}").unwrap();
    let e = Tokenizer::from_file(&bad).unwrap_err();
    assert!(matches!(e, TokenizerError::Parse { .. }), "{e:?}");
    assert!(e.to_string().contains("bad.json"), "{e}");
}

#[test]
fn decode_matches_tokenizers_decoder() {
    let t = Tokenizer::from_gguf_vocab(&tiny_vocab()).unwrap();
    let s = "<|im_start|>the 12 é🙂\n";
    let ids = t.encode(s, false).unwrap();
    assert_eq!(t.decode(&ids), t.inner().decode(&ids, false).unwrap());
    // Streaming gives the same text, never a broken character.
    let mut stream = t.decode_stream();
    let mut out = String::new();
    for &id in &ids {
        let piece = stream.push(t.token_bytes(id));
        assert!(!piece.contains('\u{FFFD}'));
        out.push_str(&piece);
    }
    out.push_str(&stream.finish());
    assert_eq!(out, s);
}

#[test]
fn char_level_vocab() {
    let texts = ["3+5=8", "10-2=8\n"];
    let specials = ["<|endoftext|>", "<pad>", "<|im_start|>", "<|im_end|>"];
    let t = Tokenizer::train_char_level(texts, &specials).unwrap();
    // specials, <unk>, then "\n+-0123558=" sorted and deduplicated.
    assert_eq!(t.token_to_id("<|endoftext|>"), Some(0));
    assert_eq!(t.token_to_id("<pad>"), Some(1));
    assert_eq!(t.token_to_id("<unk>"), Some(4));
    assert_eq!(t.token_to_id("\n"), Some(5));
    assert_eq!(t.token_to_id("+"), Some(6));
    assert_eq!(t.vocab_size(), 5 + "\n+-012358=".chars().count());
    assert_eq!(t.eos_id(), Some(0));
    assert_eq!(t.pad_id(), Some(1));
    let s = "<|im_start|>3+5=8<|im_end|>\n";
    let ids = t.encode(s, false).unwrap();
    assert_eq!(ids.len(), 1 + 5 + 1 + 1);
    assert_eq!(t.decode(&ids), s);
    // Unseen characters are <unk>, one per character.
    assert_eq!(
        t.encode("3x7", false).unwrap(),
        vec![t.token_to_id("3").unwrap(), 4, 4]
    );
    // Same inputs, same file; saved and loaded, same ids.
    let again = Tokenizer::train_char_level(["10-2=8\n", "3+5=8"], &specials).unwrap();
    assert_eq!(again.to_json().unwrap(), t.to_json().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let mut t = t;
    t.set_chat_template(Some(crate::chat::CHATML_TEMPLATE.into()));
    t.save_dir(dir.path()).unwrap();
    let back = Tokenizer::from_dir(dir.path()).unwrap();
    assert_eq!(back.encode(s, false).unwrap(), ids);
    assert_eq!(back.decode(&ids), s);
    assert_eq!(back.eos_id(), Some(0));
    let prompt = back
        .apply_chat_template(&[ChatMessage::user("3+5")], true)
        .unwrap();
    assert_eq!(
        prompt,
        "<|im_start|>user\n3+5<|im_end|>\n<|im_start|>assistant\n"
    );
}

#[test]
fn hf_style_config_files() {
    let t = Tokenizer::from_gguf_vocab(&tiny_vocab()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    t.save(dir.path().join("tokenizer.json")).unwrap();
    let config = r#"{"bos_token": {"content": "<|im_start|>", "special": true}, "eos_token": "<|im_end|>",
        "model_max_length": 1000000000000000019884624838656,
        "chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]}"#;
    std::fs::write(dir.path().join("tokenizer_config.json"), config).unwrap();
    let back = Tokenizer::from_dir(dir.path()).unwrap();
    assert_eq!(
        (back.bos_id(), back.eos_id(), back.pad_id()),
        (Some(1), Some(2), None)
    );
    assert_eq!(back.chat_template(), Some("D"));
    // transformers >= 4.50 writes the template to its own file, which wins.
    std::fs::write(
        dir.path().join("chat_template.jinja"),
        "J{{ messages[0].content }}",
    )
    .unwrap();
    let back = Tokenizer::from_dir(dir.path()).unwrap();
    assert_eq!(
        back.apply_chat_template(&[ChatMessage::user("x")], false)
            .unwrap(),
        "Jx"
    );
    // A special token the vocabulary lacks is an error naming the config file.
    std::fs::write(
        dir.path().join("tokenizer_config.json"),
        r#"{"eos_token": "</s>"}"#,
    )
    .unwrap();
    let e = Tokenizer::from_dir(dir.path()).unwrap_err().to_string();
    assert!(
        e.contains("tokenizer_config.json") && e.contains("</s>"),
        "{e}"
    );
}

#[test]
fn gguf_vocab_round_trips_through_the_tokenizer_and_its_files() {
    let v = tiny_vocab();
    let t = Tokenizer::from_gguf_vocab(&v).unwrap();
    assert_eq!(t.to_gguf_vocab().unwrap(), GgufVocab { source: None, ..v.clone() });
    // Through a checkpoint's tokenizer.json + tokenizer_config.json too.
    let dir = tempfile::tempdir().unwrap();
    t.save_dir(dir.path()).unwrap();
    let back = Tokenizer::from_dir(dir.path()).unwrap().to_gguf_vocab().unwrap();
    assert_eq!(back, GgufVocab { source: None, ..v });
}

#[test]
fn a_character_vocabulary_has_no_gguf_form() {
    let t = Tokenizer::train_char_level(["abc"], &["<|im_end|>"]).unwrap();
    let e = t.to_gguf_vocab().unwrap_err().to_string();
    assert!(e.contains("no llama.cpp equivalent") || e.contains("matches no llama.cpp"), "{e}");
}
