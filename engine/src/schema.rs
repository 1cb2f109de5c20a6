//! The JSON Schema of pipeline files (`retort schema`), built from the typed
//! header and every registered kind, so editors complete and check YAML.

use serde_json::{json, Value};

use crate::spec::PipelineHeader;
use crate::stage::Registry;

/// The schema of a pipeline file for the kinds in `registry`.
pub fn pipeline_schema(registry: &Registry) -> Value {
    let mut gen = schemars::generate::SchemaSettings::draft2020_12().into_generator();
    let mut variants = Vec::new();
    let executor = serde_json::to_value(gen.subschema_for::<crate::executor::ExecutorSpec>()).expect("schema serializes");
    for kind in registry.kinds() {
        let reference = kind.schema(&mut gen);
        let def_name = reference
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.rsplit('/').next())
            .expect("a named struct gives a $ref")
            .to_string();
        let defs = gen.definitions_mut();
        let mut def = defs.remove(&def_name).expect("subschema_for registered the definition");
        let obj = def.as_object_mut().expect("a struct schema is an object");
        let props = obj.entry("properties").or_insert_with(|| json!({}));
        let props = props.as_object_mut().expect("properties is an object");
        props.insert("kind".into(), json!({"const": kind.kind(), "description": kind.about()}));
        props.insert("seed".into(), json!({"type": "integer", "minimum": 0, "description": "Seed for this stage, overriding the pipeline's."}));
        props.insert("description".into(), json!({"type": "string", "description": "Free text; not hashed."}));
        props.insert("executor".into(), executor.clone());
        close_variants(obj);
        let required = obj.entry("required").or_insert_with(|| json!([]));
        required.as_array_mut().expect("required is an array").insert(0, json!("kind"));
        obj.insert("title".into(), json!(format!("stage of kind `{}`", kind.kind())));
        let name = format!("stage_{}", kind.kind());
        defs.insert(name.clone(), def);
        variants.push(json!({"$ref": format!("#/$defs/{name}")}));
    }
    // A `matrix:` stage is typed after expansion (its values may be
    // `${matrix.k}` strings), so the schema checks only the matrix itself.
    variants.push(json!({
        "title": "a `matrix:` stage (one stage per combination; typed after expansion)",
        "type": "object",
        "required": ["kind", "matrix"],
        "properties": {
            "kind": {"type": "string"},
            "matrix": {
                "description": "Name -> list of values; `${matrix.NAME}` in the stage takes each value.",
                "type": "object",
                "minProperties": 1,
                "additionalProperties": {"type": "array", "minItems": 1, "items": {"type": ["string", "number", "boolean"]}}
            }
        }
    }));
    let mut root = serde_json::to_value(gen.into_root_schema_for::<PipelineHeader>()).expect("schema serializes");
    root["title"] = json!("retort pipeline");
    root["properties"]["stages"] = json!({
        "description": "The stages, by name. Each has a `kind` and that kind's parameters.",
        "type": "object",
        "propertyNames": {"pattern": "^[A-Za-z0-9_-]+$"},
        "additionalProperties": {"oneOf": variants},
    });
    root
}

/// A kind with a selector (`objective:`, `task:`) is a set of branches, each
/// closed to its own keys by serde's `deny_unknown_fields`. In JSON Schema a
/// branch's `additionalProperties: false` would also reject the shared keys
/// beside it (`lr`, `kind`), so the branches are opened and the stage is
/// closed once with `unevaluatedProperties: false`, which sees the keys every
/// matching subschema evaluated.
fn close_variants(obj: &mut serde_json::Map<String, Value>) {
    let mut had_branches = false;
    for comb in ["oneOf", "anyOf"] {
        if let Some(branches) = obj.get_mut(comb).and_then(Value::as_array_mut) {
            had_branches = true;
            for b in branches.iter_mut().filter_map(Value::as_object_mut) {
                if b.get("additionalProperties") == Some(&Value::Bool(false)) {
                    b.remove("additionalProperties");
                }
            }
        }
    }
    if had_branches {
        obj.remove("additionalProperties");
        obj.insert("unevaluatedProperties".into(), Value::Bool(false));
    }
}
