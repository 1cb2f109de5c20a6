//! GGUF reader tests on files written by [`super::write_gguf`].

use super::*;

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn sample_metadata() -> Vec<(&'static str, MetaValue)> {
    vec![
        ("general.architecture", MetaValue::String("llama".into())),
        ("u8", MetaValue::U8(7)),
        ("i8", MetaValue::I8(-7)),
        ("u16", MetaValue::U16(65535)),
        ("i16", MetaValue::I16(-300)),
        ("u32", MetaValue::U32(4_000_000_000)),
        ("i32", MetaValue::I32(-5)),
        ("f32", MetaValue::F32(1e-5)),
        ("bool", MetaValue::Bool(true)),
        ("u64", MetaValue::U64(1 << 40)),
        ("i64", MetaValue::I64(-(1 << 40))),
        ("f64", MetaValue::F64(0.25)),
        (
            "tokens",
            MetaValue::Array(vec![MetaValue::String("<s>".into()), MetaValue::String("é".into())]),
        ),
        ("types", MetaValue::Array(vec![MetaValue::I32(1), MetaValue::I32(3)])),
        (
            "nested",
            MetaValue::Array(vec![MetaValue::Array(vec![MetaValue::U8(1)])]),
        ),
    ]
}

fn sample_tensors() -> Vec<RawTensor> {
    vec![
        RawTensor {
            name: "a".into(),
            dims: vec![3, 2],
            dtype: GgmlType::F32,
            data: f32_bytes(&[1., 2., 3., 4., 5., 6.]),
        },
        RawTensor {
            name: "b".into(),
            dims: vec![1],
            dtype: GgmlType::F32,
            data: f32_bytes(&[9.]),
        },
    ]
}

#[test]
fn round_trips_every_value_type_and_tensors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.gguf");
    let md = sample_metadata();
    write_gguf(&path, &md, &sample_tensors()).unwrap();
    let f = GgufFile::open(&path).unwrap();
    assert_eq!(f.version(), 3);
    for (k, v) in &md {
        assert_eq!(f.metadata().get(*k), Some(v), "{k}");
    }
    assert_eq!(f.get_str("general.architecture"), Some("llama"));
    assert_eq!(f.get_u32("u32"), Some(4_000_000_000));
    assert_eq!(f.get_u32("i32"), None);
    assert_eq!(f.get_f32("f32"), Some(1e-5));
    assert_eq!(f.get_str_array("tokens"), Some(vec!["<s>", "é"]));
    assert_eq!(f.get_i32_array("types"), Some(vec![1, 3]));
    let (shape, data) = f.tensor_f32("a").unwrap();
    assert_eq!(shape, vec![2, 3]);
    assert_eq!(data, vec![1., 2., 3., 4., 5., 6.]);
    assert_eq!(f.tensor_f32("b").unwrap().1, vec![9.]);
    assert_eq!(f.data_offset() % 32, 0);
    assert_eq!(f.tensor_info("b").unwrap().offset, 32);
}

#[test]
fn honours_custom_alignment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.gguf");
    let md = vec![("general.alignment", MetaValue::U32(64))];
    write_gguf(&path, &md, &sample_tensors()).unwrap();
    let f = GgufFile::open(&path).unwrap();
    assert_eq!(f.alignment(), 64);
    assert_eq!(f.data_offset() % 64, 0);
    assert_eq!(f.tensor_info("b").unwrap().offset, 64);
    assert_eq!(f.tensor_f32("b").unwrap().1, vec![9.]);
}

#[test]
fn errors_name_the_file_and_problem() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.gguf");
    std::fs::write(&bad, b"PK\x03\x04 not a gguf").unwrap();
    let e = GgufFile::open(&bad).unwrap_err();
    assert!(matches!(e, LmError::NotGguf { .. }), "{e}");
    assert!(e.to_string().contains("bad.gguf: not a GGUF file"), "{e}");

    let v9 = dir.path().join("v9.gguf");
    std::fs::write(&v9, b"GGUF\x09\0\0\0").unwrap();
    let e = GgufFile::open(&v9).unwrap_err();
    assert!(e.to_string().contains("unsupported GGUF version 9"), "{e}");

    let good = dir.path().join("good.gguf");
    write_gguf(&good, &sample_metadata(), &sample_tensors()).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    for cut in [10, 40, bytes.len() - 30, bytes.len() - 1] {
        let short = dir.path().join("short.gguf");
        std::fs::write(&short, &bytes[..cut]).unwrap();
        let e = GgufFile::open(&short).unwrap_err();
        assert!(matches!(e, LmError::Truncated { .. }), "cut {cut}: {e}");
        assert!(e.to_string().contains("short.gguf: truncated file"), "{e}");
    }

    let unknown = dir.path().join("unknown.gguf");
    let mut t = sample_tensors();
    t[1].dtype = GgmlType::Unknown(77);
    write_gguf(&unknown, &[], &t).unwrap();
    let e = GgufFile::open(&unknown).unwrap_err();
    assert_eq!(e.to_string(), format!("{}: tensor `b` has unknown ggml type id 77", unknown.display()));

    let f = GgufFile::open(&good).unwrap();
    let e = f.tensor_f32("nope").unwrap_err();
    assert!(e.to_string().ends_with("missing tensor `nope`"), "{e}");
}
