//! The checked-in JSON Schema matches `retort schema`, and every pipeline in
//! `pipelines/` declares it and validates against it.

use std::path::Path;

use crate::util::TestPipeline;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn printed_schema() -> serde_json::Value {
    let t = TestPipeline::new("stages: {}\n");
    let r = t.retort(&["schema"]);
    assert_eq!(r.code, 0);
    serde_json::from_str(&r.stdout).unwrap()
}

#[test]
fn checked_in_schema_matches_retort_schema() {
    let file = root().join("schemas/pipeline.schema.json");
    let checked_in: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert!(
        checked_in == printed_schema(),
        "schemas/pipeline.schema.json is stale: run `cargo run -- schema > schemas/pipeline.schema.json`"
    );
}

#[test]
fn every_pipeline_declares_and_satisfies_the_schema() {
    let schema = printed_schema();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let mut seen = 0;
    for entry in std::fs::read_dir(root().join("pipelines")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        seen += 1;
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("# yaml-language-server: $schema=../schemas/pipeline.schema.json"),
            "{} lacks the schema header",
            path.display()
        );
        let doc: serde_json::Value = serde_yaml::from_str(&text).unwrap();
        let errors: Vec<String> = validator.iter_errors(&doc).map(|e| format!("{} at {}", e, e.instance_path)).collect();
        assert!(errors.is_empty(), "{}: {errors:#?}", path.display());
    }
    assert!(seen > 0, "no pipelines found");
}

#[test]
fn the_schema_rejects_what_the_loader_rejects() {
    let validator = jsonschema::validator_for(&printed_schema()).unwrap();
    let bad: serde_json::Value =
        serde_yaml::from_str("stages:\n  a:\n    kind: command\n    run: x\n    colour: red\n").unwrap();
    assert!(!validator.is_valid(&bad));
    let good: serde_json::Value = serde_yaml::from_str("stages:\n  a:\n    kind: command\n    run: x\n").unwrap();
    assert!(validator.is_valid(&good));
}
