//! Replays of the fuzz seeds and of every crash the fuzzer found, the seed
//! writer (`write_fuzz_seeds`, ignored), and bounded proptest runs.

use std::path::{Path, PathBuf};

use proptest::prelude::*;

use super::*;
use crate::gguf::{write_gguf, MetaValue, RawTensor};
use crate::quant::GgmlType;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Files of the checked-in seed corpus (`fuzz/seeds/<target>`) and of the
/// minimized crash inputs (`lm/tests/fixtures/fuzz/<target>`).
fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dirs = [repo().join("fuzz/seeds").join(target), repo().join("lm/tests/fixtures/fuzz").join(target)];
    let mut out = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_file() {
                let bytes = std::fs::read(&p).unwrap();
                out.push((p, bytes));
            }
        }
    }
    out.sort();
    out
}

fn replay(target: &str, harness: fn(&[u8])) {
    let files = inputs(target);
    assert!(files.len() >= 2, "fuzz/seeds/{target} has {} files: run `write_fuzz_seeds`", files.len());
    for (path, bytes) in files {
        // A panic here names the file that brought it back.
        eprintln!("replaying {}", path.display());
        harness(&bytes);
    }
}

#[test]
fn replays_gguf_seeds_and_crashes() {
    replay("gguf", fuzz_gguf);
}

#[test]
fn replays_tokenizer_seeds_and_crashes() {
    replay("tokenizer", fuzz_tokenizer);
}

#[test]
fn tokenizer_input_round_trips() {
    let input = small_vocab_input();
    assert_eq!(decode_tokenizer_input(&encode_tokenizer_input(&input)), input);
}

/// A byte-level vocabulary: the letters and space as GPT-2 chars, a few
/// merges, a control token and a user-defined one.
fn small_vocab_input() -> TokenizerInput {
    let tokens: Vec<String> = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "Ġ", "Ċ", "h", "e", "l", "o", "w", "r", "d", "1", "2", "he", "ll", "hell", "hello", "Ġw", "<tool>"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut token_types = vec![1; tokens.len()];
    token_types[..3].fill(3);
    token_types[19] = 4;
    TokenizerInput {
        vocab: GgufVocab {
            model: "gpt2".into(),
            merges: ["h e", "l l", "he ll", "hell o", "Ġ w"].iter().map(|s| s.to_string()).collect(),
            tokens,
            token_types,
            bos: Some(1),
            eos: Some(2),
            unk: None,
            pad: Some(0),
            add_bos: true,
            add_eos: false,
            pre: "smollm".into(),
            chat_template: Some(crate::chat::CHATML_TEMPLATE.to_string()),
            source: None,
        },
        texts: vec!["hello world 12".into(), "<|im_start|>hell<tool>".into()],
        ids: vec![0, 5, 17, 19, 20, 255],
    }
}

/// Tiny llama metadata that [`LlamaConfig::from_gguf`] accepts.
fn llama_metadata() -> Vec<(&'static str, MetaValue)> {
    vec![
        ("general.architecture", MetaValue::String("llama".into())),
        ("general.alignment", MetaValue::U32(32)),
        ("llama.attention.head_count", MetaValue::U32(2)),
        ("llama.attention.head_count_kv", MetaValue::U32(1)),
        ("llama.embedding_length", MetaValue::U32(8)),
        ("llama.feed_forward_length", MetaValue::U32(16)),
        ("llama.block_count", MetaValue::U32(1)),
        ("llama.context_length", MetaValue::U32(64)),
        ("llama.rope.freq_base", MetaValue::F32(10000.0)),
        ("llama.attention.layer_norm_rms_epsilon", MetaValue::F32(1e-5)),
    ]
}

fn tokenizer_metadata(v: &GgufVocab) -> Vec<(&'static str, MetaValue)> {
    let strings = |s: &[String]| MetaValue::Array(s.iter().map(|t| MetaValue::String(t.clone())).collect());
    let mut md = vec![
        ("tokenizer.ggml.model", MetaValue::String(v.model.clone())),
        ("tokenizer.ggml.pre", MetaValue::String(v.pre.clone())),
        ("tokenizer.ggml.tokens", strings(&v.tokens)),
        ("tokenizer.ggml.merges", strings(&v.merges)),
        ("tokenizer.ggml.token_type", MetaValue::Array(v.token_types.iter().map(|&t| MetaValue::I32(t)).collect())),
        ("tokenizer.ggml.add_bos_token", MetaValue::Bool(v.add_bos)),
    ];
    for (key, id) in [("tokenizer.ggml.bos_token_id", v.bos), ("tokenizer.ggml.eos_token_id", v.eos), ("tokenizer.ggml.padding_token_id", v.pad)] {
        if let Some(id) = id {
            md.push((key, MetaValue::U32(id)));
        }
    }
    if let Some(t) = &v.chat_template {
        md.push(("tokenizer.chat_template", MetaValue::String(t.clone())));
    }
    md
}

/// One small tensor of each type the reader dequantizes, with bytes that
/// are a pattern rather than zeros (so scales are not all 0).
fn tensors() -> Vec<RawTensor> {
    let pattern = |n: usize| (0..n).map(|i| (i * 37 % 251) as u8).collect::<Vec<u8>>();
    let mut out = Vec::new();
    for (name, dtype, dims) in [
        ("token_embd.weight", GgmlType::F32, vec![8, 20]),
        ("blk.0.attn_norm.weight", GgmlType::F16, vec![8]),
        ("blk.0.attn_q.weight", GgmlType::Q4_0, vec![32, 2]),
        ("blk.0.attn_k.weight", GgmlType::Q8_0, vec![32, 1]),
        ("blk.0.ffn_up.weight", GgmlType::Q4_K, vec![256, 1]),
        ("blk.0.ffn_down.weight", GgmlType::Q6_K, vec![256, 1]),
        ("blk.0.attn_v.weight", GgmlType::Q4_1, vec![32, 1]),
        ("blk.0.ffn_gate.weight", GgmlType::BF16, vec![4, 2]),
    ] {
        let n: u64 = dims.iter().product();
        let size = dtype.byte_size(n).unwrap() as usize;
        out.push(RawTensor { name: name.into(), dims, dtype, data: pattern(size) });
    }
    out
}

fn gguf_bytes(md: &[(&str, MetaValue)], tensors: &[RawTensor]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seed.gguf");
    write_gguf(&path, md, tensors).unwrap();
    std::fs::read(&path).unwrap()
}

/// A vocabulary cut down to `keep` tokens of a real one, with the merges
/// among them, so the tokenizer stays fast to build.
fn cut_vocab(v: &GgufVocab, keep: usize) -> GgufVocab {
    let tokens: Vec<String> = v.tokens.iter().take(keep).cloned().collect();
    let set: std::collections::HashSet<&str> = tokens.iter().map(String::as_str).collect();
    let merges = v
        .merges
        .iter()
        .filter(|m| match m.split_once(' ') {
            Some((a, b)) => set.contains(a) && set.contains(b) && set.contains(format!("{a}{b}").as_str()),
            None => false,
        })
        .cloned()
        .collect();
    let types = v.token_types.iter().take(keep).copied().collect();
    let id = |x: Option<u32>| x.filter(|&i| (i as usize) < keep);
    GgufVocab { tokens, merges, token_types: types, bos: id(v.bos), eos: id(v.eos), pad: id(v.pad), unk: id(v.unk), ..v.clone() }
}

/// Writes the seed corpora into `fuzz/seeds/{gguf,tokenizer}`: tiny valid
/// GGUFs (header, llama and tokenizer metadata, one tensor per quant type),
/// and, when `models/` has SmolLM2 (`scripts/fetch-smollm2.sh`), its real
/// metadata with a cut vocabulary, and the head of the real file (truncated).
#[test]
#[ignore = "writes the checked-in seeds; run by hand"]
fn write_fuzz_seeds() {
    let gguf_dir = repo().join("fuzz/seeds/gguf");
    let tok_dir = repo().join("fuzz/seeds/tokenizer");
    std::fs::create_dir_all(&gguf_dir).unwrap();
    std::fs::create_dir_all(&tok_dir).unwrap();
    let small = small_vocab_input();
    let mut md = llama_metadata();
    md.extend(tokenizer_metadata(&small.vocab));
    std::fs::write(gguf_dir.join("tiny-llama.gguf"), gguf_bytes(&md, &tensors())).unwrap();
    std::fs::write(gguf_dir.join("metadata-only.gguf"), gguf_bytes(&llama_metadata(), &[])).unwrap();
    let nested = vec![
        ("a", MetaValue::Array(vec![MetaValue::Array(vec![MetaValue::U8(1), MetaValue::U8(2)])])),
        ("b", MetaValue::I64(-1)),
        ("c", MetaValue::F64(0.5)),
        ("d", MetaValue::U16(7)),
        ("e", MetaValue::I8(-3)),
        ("f", MetaValue::I16(-300)),
        ("g", MetaValue::U64(1 << 40)),
    ];
    std::fs::write(gguf_dir.join("every-type.gguf"), gguf_bytes(&nested, &tensors()[..2])).unwrap();
    std::fs::write(tok_dir.join("small.bin"), encode_tokenizer_input(&small)).unwrap();

    let real = repo().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if let Ok(file) = GgufFile::open(&real) {
        let vocab = cut_vocab(&GgufVocab::from_gguf(&file).unwrap(), 400);
        let mut md: Vec<(&str, MetaValue)> = file
            .metadata()
            .iter()
            .filter(|(k, _)| !k.starts_with("tokenizer."))
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        // Shrink the model so `from_gguf` sees consistent small sizes.
        for (k, v) in md.iter_mut() {
            match *k {
                "llama.embedding_length" => *v = MetaValue::U32(8),
                "llama.feed_forward_length" => *v = MetaValue::U32(16),
                "llama.block_count" => *v = MetaValue::U32(1),
                "llama.attention.head_count" => *v = MetaValue::U32(2),
                "llama.attention.head_count_kv" => *v = MetaValue::U32(1),
                "llama.rope.dimension_count" => *v = MetaValue::U32(4),
                "llama.vocab_size" => *v = MetaValue::U32(20),
                _ => {}
            }
        }
        md.extend(tokenizer_metadata(&vocab));
        std::fs::write(gguf_dir.join("smollm2-cut.gguf"), gguf_bytes(&md, &tensors())).unwrap();
        let head = std::fs::read(&real).unwrap();
        std::fs::write(gguf_dir.join("smollm2-head.gguf"), &head[..8192]).unwrap();
        let input = TokenizerInput {
            vocab: cut_vocab(&vocab, 250),
            texts: vec!["What is 2 + 2? Answer: 4.\n".into(), "<|im_start|>system\nYou are nice.<|im_end|>".into()],
            ids: (0..250).step_by(7).collect(),
        };
        std::fs::write(tok_dir.join("smollm2-cut.bin"), encode_tokenizer_input(&input)).unwrap();
    } else {
        eprintln!("{} not found: only the synthetic seeds were written", real.display());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Byte flips, truncations and overwrites with extreme values anywhere in a
    /// valid GGUF: the reader answers with an error or a file, never a panic.
    #[test]
    fn mutated_gguf_never_panics(pos in any::<prop::sample::Index>(), cut in any::<prop::sample::Index>(),
                                 word in prop_oneof![Just(u64::MAX), Just(1u64 << 60), Just(1u64 << 40), Just(0), any::<u64>()]) {
        let mut md = llama_metadata();
        md.extend(tokenizer_metadata(&small_vocab_input().vocab));
        let mut bytes = gguf_bytes(&md, &tensors());
        let at = pos.index(bytes.len().saturating_sub(8));
        bytes[at..at + 8].copy_from_slice(&word.to_le_bytes());
        fuzz_gguf(&bytes);
        bytes.truncate(cut.index(bytes.len()));
        fuzz_gguf(&bytes);
    }

    /// Random edits of the small vocabulary's byte form.
    #[test]
    fn mutated_tokenizer_input_never_panics(edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let mut bytes = encode_tokenizer_input(&small_vocab_input());
        for (i, b) in edits {
            let at = i.index(bytes.len());
            bytes[at] = b;
        }
        fuzz_tokenizer(&bytes);
    }
}

/// Counts and lengths in a header are checked against the bytes left before
/// anything that size is allocated: 2^60 tensors, 2^60 metadata entries, a
/// 2^40-byte key and a 2^40-element array are errors, not allocations.
#[test]
fn huge_counts_in_a_header_are_errors_not_allocations() {
    let header = |n_tensors: u64, n_kv: u64| {
        let mut b = b"GGUF".to_vec();
        b.extend_from_slice(&3u32.to_le_bytes());
        b.extend_from_slice(&n_tensors.to_le_bytes());
        b.extend_from_slice(&n_kv.to_le_bytes());
        b
    };
    let err = |b: Vec<u8>| GgufFile::from_bytes("h.gguf", b).unwrap_err();
    assert!(matches!(err(header(1 << 60, 0)), crate::LmError::Truncated { .. }));
    assert!(matches!(err(header(0, 1 << 60)), crate::LmError::Truncated { .. }));
    let mut long_key = header(0, 1);
    long_key.extend_from_slice(&(1u64 << 40).to_le_bytes());
    assert!(matches!(err(long_key), crate::LmError::Truncated { .. }));
    let mut big_array = header(0, 1);
    big_array.extend_from_slice(&1u64.to_le_bytes());
    big_array.push(b'a');
    big_array.extend_from_slice(&9u32.to_le_bytes()); // array
    big_array.extend_from_slice(&0u32.to_le_bytes()); // of u8
    big_array.extend_from_slice(&(1u64 << 40).to_le_bytes());
    assert!(matches!(err(big_array), crate::LmError::Truncated { .. }));
}

/// The crashes the fuzzer (and a reading of the code it ran) found, each with
/// the typed error it is now.
#[test]
fn fuzz_crash_inputs_are_typed_errors() {
    let fixture = |name: &str| std::fs::read(repo().join("lm/tests/fixtures/fuzz/gguf").join(name)).unwrap();
    let e = GgufFile::from_bytes("x.gguf", fixture("tensor-size-wraps.gguf")).unwrap_err();
    assert!(matches!(e, crate::LmError::Truncated { .. }), "{e}");
    let f = GgufFile::from_bytes("x.gguf", fixture("head-count-zero.gguf")).unwrap();
    let e = LlamaConfig::from_gguf(&f).unwrap_err();
    assert!(e.to_string().contains("llama.attention.head_count is 0"), "{e}");
    let f = GgufFile::from_bytes("x.gguf", fixture("embedding-no-dims.gguf")).unwrap();
    let e = LlamaConfig::from_gguf(&f).unwrap_err();
    assert!(matches!(e, crate::LmError::MissingMetadata { .. }), "{e}");
}
