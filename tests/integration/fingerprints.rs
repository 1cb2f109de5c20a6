//! Fingerprints: pinned values, and independence from YAML formatting.

use proptest::prelude::*;
use retort_engine::{load, Hashable, CACHE_KEY_VERSION};

use crate::util::{chain, TestPipeline};

#[test]
fn the_fingerprint_of_a_command_stage_is_pinned() {
    // Changing this means every user's cache misses once: do it on purpose
    // (bump the kind's version or CACHE_KEY_VERSION) and update the pin.
    let t = TestPipeline::new(&chain(1));
    let r = t.run_ok(&[]);
    assert_eq!(r.stage("s0")["fingerprint"], "f9b38a33c1b055c6c41d7ad2c186c83aacc6229a50af4e81c82ef7c4fdb38deb");
}

fn fingerprint_of(yaml: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.yaml");
    std::fs::write(&path, yaml).unwrap();
    let p = load(&path, &[], &retort_stages::registry()).unwrap();
    let node = &p.stages[0];
    let inputs = Default::default();
    Hashable { cache_key: CACHE_KEY_VERSION, kind: node.kind, version: node.version, params: &node.hashed, inputs: &inputs, seed: Some(p.seed) }
        .fingerprint()
        .to_string()
}

fn yaml_value(v: &i64) -> String {
    v.to_string()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn key_order_comments_and_style_do_not_change_the_fingerprint(
        params in proptest::collection::btree_map("[a-z]{1,8}", any::<i64>(), 0..6),
        flow in any::<bool>(),
        rotate in 0usize..5,
    ) {
        let block: String = params.iter().map(|(k, v)| format!("      {k}: {}  # note\n", yaml_value(v))).collect();
        let base = format!("seed: 3\nstages:\n  a:\n    kind: command\n    run: echo\n    params:\n{block}");
        let base = if params.is_empty() { base.replace("    params:\n", "") } else { base };
        let mut items: Vec<String> = params.iter().map(|(k, v)| format!("{k}: {}", yaml_value(v))).collect();
        let n = items.len().max(1);
        items.rotate_left(rotate % n);
        let inner = if flow {
            format!("{{{}}}", items.join(", "))
        } else {
            items.iter().map(|i| format!("\n      {i}")).collect::<String>()
        };
        let other = format!("# comment\nstages:\n  renamed:\n    params: {inner}\n    run: \"echo\"\n    kind: command\nseed: 3\n");
        let other = if params.is_empty() { other.replace("    params: \n", "").replace("    params: {}\n", "") } else { other };
        prop_assert_eq!(fingerprint_of(&base), fingerprint_of(&other));
    }
}

#[test]
fn changing_a_value_changes_the_fingerprint() {
    let a = fingerprint_of("stages:\n  a:\n    kind: command\n    run: echo\n    params: {k: 1}\n");
    let b = fingerprint_of("stages:\n  a:\n    kind: command\n    run: echo\n    params: {k: 2}\n");
    let c = fingerprint_of("seed: 9\nstages:\n  a:\n    kind: command\n    run: echo\n    params: {k: 1}\n");
    assert_ne!(a, b);
    assert_ne!(a, c);
}
