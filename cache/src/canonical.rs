//! Canonical JSON, the byte form every fingerprint is computed over.
//!
//! Two values that mean the same thing must hash the same: object key order
//! (YAML order, `preserve_order` maps) is normalised away by sorting keys,
//! and whitespace is dropped. Array order is kept because it is meaningful
//! (a list of prompts in another order is another dataset).
//!
//! Keys sort by their UTF-8 bytes (Rust `str` order). Numbers are written as
//! serde_json writes them (integers exactly; floats by the shortest
//! round-tripping form), so `1` and `1.0` are different values.

use serde::Serialize;
use serde_json::Value;

use crate::hash::{hash_bytes, Hash};

/// The canonical text of `v`: keys sorted at every level, no whitespace.
pub fn canonical_json(v: &Value) -> String {
    let mut out = String::with_capacity(128);
    write_value(v, &mut out);
    out
}

fn write_value(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => write_str(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_str(k, out);
                out.push(':');
                write_value(item, out);
            }
            out.push('}');
        }
    }
}

/// JSON string escaping exactly as serde_json does it.
fn write_str(s: &str, out: &mut String) {
    // Serializing a `&str` cannot fail: it is plain UTF-8 text.
    out.push_str(&serde_json::to_string(s).unwrap_or_default());
}

/// The fingerprint of any serializable value: blake3 over its canonical JSON.
///
/// # Panics
///
/// If `v` cannot be represented as JSON: a map with non-string keys (other
/// than integers and bools, which serde_json turns into strings) or a
/// `Serialize` impl that returns an error. Fingerprinted values are the
/// engine's own hash-input structs, built from strings, numbers, `Hash`es and
/// `String`-keyed maps, so this is a bug in the caller, and hashing some
/// stand-in instead would make two different values share a fingerprint (a
/// false cache hit). Use [`try_fingerprint`] to handle it instead.
///
/// Non-finite floats (NaN, ±inf) become `null`, as serde_json makes them;
/// validate them away before fingerprinting if they can occur.
pub fn fingerprint<T: Serialize + ?Sized>(v: &T) -> Hash {
    match try_fingerprint(v) {
        Ok(h) => h,
        Err(e) => panic!("value cannot be fingerprinted: {e}"),
    }
}

/// Like [`fingerprint`], returning the serde error instead of panicking.
pub fn try_fingerprint<T: Serialize + ?Sized>(v: &T) -> Result<Hash, serde_json::Error> {
    let value = serde_json::to_value(v)?;
    Ok(hash_bytes(canonical_json(&value).as_bytes()))
}

/// Rebuilds `v` with every object's keys in sorted order, so that writers
/// that keep insertion order (`preserve_order`) emit a stable layout.
pub(crate) fn sorted_value(v: &Value) -> Value {
    match v {
        Value::Array(items) => Value::Array(items.iter().map(sorted_value).collect()),
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k.clone(), sorted_value(v)))
                    .collect(),
            )
        }
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    #[test]
    fn sorts_keys_recursively_without_whitespace() {
        let v = json!({"b": 1, "a": {"y": [3, {"k": null, "j": true}], "x": "s"}});
        assert_eq!(
            canonical_json(&v),
            r#"{"a":{"x":"s","y":[3,{"j":true,"k":null}]},"b":1}"#
        );
    }

    #[test]
    fn escapes_strings_and_keeps_number_forms() {
        let v = json!({"q\"\n": "tab\there é", "n": [1, 1.0, -0.5, 1e300, u64::MAX]});
        assert_eq!(
            canonical_json(&v),
            r#"{"n":[1,1.0,-0.5,1e+300,18446744073709551615],"q\"\n":"tab\there é"}"#
        );
    }

    #[test]
    fn keys_sort_by_bytes() {
        let v = json!({"b": 0, "B": 0, "é": 0, "a": 0, "aa": 0});
        assert_eq!(canonical_json(&v), r#"{"B":0,"a":0,"aa":0,"b":0,"é":0}"#);
    }

    #[test]
    fn golden_fingerprints() {
        // Pinned: a change here silently invalidates every user's cache, so it
        // must come with a bump of the engine's cache key version.
        // The float with an exponent also pins serde_json's float formatting
        // (it changed from `1e300` to `1e+300` when serde_json moved to zmij).
        let v = json!({"kind": "generate", "version": 1, "params": {"n": 4, "temperature": 0.7, "eps": 1e-8}});
        assert_eq!(
            canonical_json(&v),
            r#"{"kind":"generate","params":{"eps":1e-8,"n":4,"temperature":0.7},"version":1}"#
        );
        assert_eq!(
            fingerprint(&v).to_hex(),
            "36f4c64db9826cee0b40c4d2437e8baaee416cc5aa8bda1fdbfeb258bf75cbe4"
        );
        assert_eq!(
            fingerprint(&json!(null)).to_hex(),
            "03f88b99c3d8073bba8948d6e762aac443b265f606cc05abd4d172f03a4def6a"
        );
    }

    #[test]
    fn list_order_matters() {
        assert_ne!(fingerprint(&json!([1, 2])), fingerprint(&json!([2, 1])));
        assert_ne!(fingerprint(&vec!["a", "b"]), fingerprint(&vec!["b", "a"]));
    }

    #[test]
    fn struct_and_map_with_same_fields_agree() {
        #[derive(Serialize)]
        struct S {
            z: u32,
            a: &'static str,
        }
        let mut m = BTreeMap::new();
        m.insert("a", json!("x"));
        m.insert("z", json!(7));
        assert_eq!(fingerprint(&S { z: 7, a: "x" }), fingerprint(&m));
    }

    #[test]
    fn non_string_keys_are_an_error_not_a_collision() {
        let mut m = BTreeMap::new();
        m.insert((1, 2), 3);
        assert!(try_fingerprint(&m).is_err());
    }

    #[test]
    fn sorted_value_orders_preserved_maps() {
        let v: Value = serde_json::from_str(r#"{"b":{"d":1,"c":2},"a":[{"f":1,"e":2}]}"#).unwrap();
        let s = serde_json::to_string(&sorted_value(&v)).unwrap();
        assert_eq!(s, r#"{"a":[{"e":2,"f":1}],"b":{"c":2,"d":1}}"#);
    }

    proptest! {
        #[test]
        fn key_order_does_not_matter(entries in proptest::collection::vec(
            ("[a-zA-Z_é]{0,6}", any::<i64>(), "[ -~]{0,8}"), 0..12)) {
            let mut fwd = serde_json::Map::new();
            for (k, n, s) in &entries {
                fwd.insert(k.clone(), json!({"n": n, "s": s}));
            }
            // Same content inserted in reverse order: `preserve_order` keeps
            // the insertion order, so only sorting makes them agree.
            let mut rev = serde_json::Map::new();
            for (k, _, _) in entries.iter().rev() {
                if !rev.contains_key(k) {
                    rev.insert(k.clone(), fwd[k].clone());
                }
            }
            let (a, b) = (Value::Object(fwd), Value::Object(rev));
            prop_assert_eq!(canonical_json(&a), canonical_json(&b));
            prop_assert_eq!(fingerprint(&a), fingerprint(&b));
            // And the canonical text is itself valid JSON meaning the same value.
            let back: Value = serde_json::from_str(&canonical_json(&a)).unwrap();
            prop_assert_eq!(back, a);
        }
    }
}
