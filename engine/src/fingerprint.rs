//! A stage run's fingerprint, and why it differs from the last one.
//!
//! Fingerprint = blake3 over canonical JSON of everything that can change a
//! stage's output: kind, the kind's implementation version, normalized
//! parameters, the content hashes of its inputs, and its seed (only for
//! stages that use one). Not the stage's name, not YAML formatting. Inputs
//! enter by content hash, so an upstream stage that re-runs and writes the
//! same bytes leaves its dependents cached (early cutoff).

use std::collections::BTreeMap;

use retort_cache::{fingerprint, Hash, LockEntry};
use serde::Serialize;
use serde_json::Value;

/// Bump when what goes into a fingerprint, or how, changes: every cached run
/// then misses once, instead of being reused under the wrong meaning.
///
/// 2: parameters are hashed from each kind's explicit `hashed()` (only the
/// fields that apply: an SFT stage no longer hashes GRPO settings), numbers
/// as f64 (no widened f32 noise), and the item cache keys on the stages'
/// own sampling settings instead of the runtime's struct.
pub const CACHE_KEY_VERSION: u32 = 2;

/// Everything a fingerprint covers, in one place (turborepo's `TaskHashable`).
#[derive(Clone, Debug, Serialize)]
pub struct Hashable<'a> {
    /// [`CACHE_KEY_VERSION`].
    pub cache_key: u32,
    /// The stage kind.
    pub kind: &'a str,
    /// The kind's implementation version.
    pub version: u32,
    /// What the kind hashes of its parameters (`StageImpl::hashed`).
    pub params: &'a Value,
    /// Input name -> content hash.
    pub inputs: &'a BTreeMap<String, Hash>,
    /// The effective seed, for stages that use one.
    pub seed: Option<u64>,
}

impl Hashable<'_> {
    /// The fingerprint.
    pub fn fingerprint(&self) -> Hash {
        fingerprint(self)
    }

    /// Why this run differs from the one recorded in `old`, in words:
    /// the first changed thing, with old and new values. `written` is the
    /// stage's parameters as the file has them now (the lock records them
    /// that way too).
    pub fn reason_against(&self, old: &LockEntry, written: &Value, upstream_of: &dyn Fn(&str) -> Option<String>) -> String {
        if old.kind != self.kind {
            return format!("kind changed: {} -> {}", old.kind, self.kind);
        }
        if old.version != self.version {
            return format!("implementation of `{}` changed (version {} -> {})", self.kind, old.version, self.version);
        }
        if let Some(d) = first_difference("", &old.params, written) {
            return d;
        }
        for (name, hash) in self.inputs {
            match old.inputs.get(name) {
                Some(h) if h == hash => {}
                Some(_) => {
                    return match upstream_of(name) {
                        Some(from) => format!("input `{name}` changed ({from})"),
                        None => format!("input `{name}` changed"),
                    }
                }
                None => return format!("input `{name}` added"),
            }
        }
        if let Some(name) = old.inputs.keys().find(|k| !self.inputs.contains_key(*k)) {
            return format!("input `{name}` removed");
        }
        if old.seed != self.seed {
            return format!("seed changed: {} -> {}", show_seed(old.seed), show_seed(self.seed));
        }
        if old.fingerprint != self.fingerprint() {
            return "cache key format changed".into();
        }
        "cached result missing or corrupt".into()
    }
}

fn show_seed(s: Option<u64>) -> String {
    s.map_or("none".into(), |s| s.to_string())
}

/// The first parameter that differs, depth first in key order:
/// "param `lr` changed: 0.1 -> 0.2".
pub fn first_difference(prefix: &str, old: &Value, new: &Value) -> Option<String> {
    if old == new {
        return None;
    }
    let key = |k: &str| if prefix.is_empty() { k.to_string() } else { format!("{prefix}.{k}") };
    if let (Value::Object(a), Value::Object(b)) = (old, new) {
        let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        for k in keys {
            match (a.get(k), b.get(k)) {
                (Some(x), Some(y)) => {
                    if let Some(d) = first_difference(&key(k), x, y) {
                        return Some(d);
                    }
                }
                (None, Some(y)) => return Some(format!("param `{}` added: {}", key(k), short(y))),
                (Some(x), None) => return Some(format!("param `{}` removed (was {})", key(k), short(x))),
                (None, None) => unreachable!("key comes from one of the maps"),
            }
        }
        return None;
    }
    let name = if prefix.is_empty() { "params".to_string() } else { format!("param `{prefix}`") };
    Some(format!("{name} changed: {} -> {}", short(old), short(new)))
}

/// A value for a one-line message.
fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 60 {
        format!("{}…", s.chars().take(57).collect::<String>())
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn hashable<'a>(params: &'a Value, inputs: &'a BTreeMap<String, Hash>) -> Hashable<'a> {
        Hashable { cache_key: CACHE_KEY_VERSION, kind: "command", version: 1, params, inputs, seed: Some(7) }
    }

    #[test]
    fn golden_fingerprint_is_pinned() {
        // If this changes, cached runs everywhere stop matching: bump
        // CACHE_KEY_VERSION on purpose, then update the pin.
        let params = json!({"run": "echo hi", "params": {"k": 1}});
        let inputs = BTreeMap::from([("src".to_string(), retort_cache::hash_bytes(b"data"))]);
        let pinned = hashable(&params, &inputs).fingerprint().to_string();
        assert_eq!(pinned, "01570128b6545f3453df818069193af328f65dab96eea86d29fdaa532cdb5f64");
    }

    #[test]
    fn key_order_does_not_matter() {
        let a: Value = serde_json::from_str(r#"{"a": 1, "b": {"x": [1, 2], "y": "s"}}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"b": {"y": "s", "x": [1, 2]}, "a": 1}"#).unwrap();
        let inputs = BTreeMap::new();
        assert_eq!(hashable(&a, &inputs).fingerprint(), hashable(&b, &inputs).fingerprint());
        let c: Value = serde_json::from_str(r#"{"a": 1, "b": {"x": [2, 1], "y": "s"}}"#).unwrap();
        assert_ne!(hashable(&a, &inputs).fingerprint(), hashable(&c, &inputs).fingerprint());
    }

    #[test]
    fn names_the_first_changed_parameter() {
        let old = json!({"count": 10, "params": {"lr": 0.1, "steps": 5}});
        let new = json!({"count": 10, "params": {"lr": 0.2, "steps": 5}});
        assert_eq!(first_difference("", &old, &new).unwrap(), "param `params.lr` changed: 0.1 -> 0.2");
        let new = json!({"count": 10, "params": {"lr": 0.1, "steps": 5, "x": true}});
        assert_eq!(first_difference("", &old, &new).unwrap(), "param `params.x` added: true");
    }
}
