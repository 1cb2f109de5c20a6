//! `matrix:` stages — one spec, one stage per combination of values (DVC's
//! `matrix` in `dvc.yaml`).
//!
//! ```yaml
//! cascod:
//!   kind: train
//!   matrix: {alpha: [0.1, 0.3], seed: [1, 2]}
//!   alpha: ${matrix.alpha}
//!   seed: ${matrix.seed}
//! ```
//!
//! expands, before anything is typed, into `cascod@alpha=0.1,seed=1`,
//! `cascod@alpha=0.1,seed=2`, ... (first key outermost). A string that is
//! exactly `${matrix.k}` becomes the value with its type (a number stays a
//! number); inside a longer string the value is spliced in as text. So a
//! variant *is* the stage written out by hand, and has its fingerprint.
//!
//! References: a list item naming the family (`models: [cascod]`, or
//! `cascod.model`) becomes every variant in order; a single reference names
//! one variant (`data: cascod@alpha=0.1`). Errors in a variant point at the
//! `matrix:` entry that made it.

use std::collections::BTreeMap;
use std::path::Path;

use serde_yaml::{Mapping, Value};

use crate::error::SpecError;
use crate::source::{join, SourceMap};

/// The families a pipeline's `matrix:` stages expanded into: family name ->
/// variant names, in expansion order.
pub type Families = BTreeMap<String, Vec<String>>;

/// Expands every `matrix:` stage of `stages` in place (variants take the
/// family's position in file order) and rewrites list references to
/// families. Positions of variants' keys are aliased to the family's.
pub fn expand(stages: Mapping, file: &Path, source: &mut SourceMap) -> Result<(Mapping, Families), SpecError> {
    let mut out = Mapping::new();
    let mut families = Families::new();
    for (key, value) in stages {
        let (Value::String(name), Some(matrix)) = (&key, value.get("matrix")) else {
            out.insert(key, value);
            continue;
        };
        let matrix = matrix.clone();
        let mut spec = value.as_mapping().cloned().unwrap_or_default();
        spec.remove("matrix");
        let at = join("stages", name);
        let axes = axes(&matrix, file, source, &at)?;
        let mut names = Vec::new();
        for combo in combinations(&axes) {
            let label: Vec<String> = combo.iter().map(|(k, _, v)| format!("{k}={}", scalar_text(v))).collect();
            let variant = format!("{name}@{}", label.join(","));
            let vat = join("stages", &variant);
            source.alias(&vat, &at);
            let mut ctx = Subst { combo: &combo, file, source, family: &at, variant: &variant };
            let spec = ctx.value(Value::Mapping(spec.clone()), &vat)?;
            out.insert(Value::String(variant.clone()), spec);
            names.push(variant);
        }
        families.insert(name.clone(), names);
    }
    if families.is_empty() {
        return Ok((out, families));
    }
    for (_, spec) in out.iter_mut() {
        // Only lists that are a stage's own fields (`models: [...]`,
        // `tasks: [...]`): nested lists such as evaluate's `compare:` pairs
        // name arms, not inputs.
        if let Value::Mapping(m) = spec {
            for (_, v) in m.iter_mut() {
                if matches!(v, Value::Sequence(_)) {
                    expand_lists(v, &families);
                }
            }
        }
    }
    Ok((out, families))
}

/// One axis: its name, and its values with their index in the list.
type Axis = (String, Vec<Value>);

fn axes(matrix: &Value, file: &Path, source: &SourceMap, at: &str) -> Result<Vec<Axis>, SpecError> {
    let mat = join(at, "matrix");
    let Value::Mapping(m) = matrix else {
        return Err(SpecError::new(file, source.value(&mat), "`matrix` must map names to lists of values, e.g. `matrix: {seed: [1, 2, 3]}`"));
    };
    if m.is_empty() {
        return Err(SpecError::new(file, source.value(&mat), "`matrix` is empty; give at least one name with a list of values"));
    }
    let mut axes = Vec::new();
    for (k, v) in m {
        let Value::String(k) = k else {
            return Err(SpecError::new(file, source.key(&mat), "`matrix` keys must be names"));
        };
        let path = join(&mat, k);
        if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(SpecError::new(file, source.key(&path), format!("matrix name `{k}` must be letters, digits and `_`")));
        }
        let Value::Sequence(values) = v else {
            return Err(SpecError::new(file, source.value(&path), format!("`matrix.{k}` must be a list of values, e.g. `[1, 2, 3]`")));
        };
        if values.is_empty() {
            return Err(SpecError::new(file, source.value(&path), format!("`matrix.{k}` has no values")));
        }
        for (i, item) in values.iter().enumerate() {
            if !matches!(item, Value::Bool(_) | Value::Number(_) | Value::String(_)) {
                return Err(SpecError::new(file, source.value(&format!("{path}[{i}]")),
                    format!("`matrix.{k}` values must be numbers, strings or booleans (they name the variants)")));
            }
            let text = scalar_text(item);
            if text.is_empty() || text.contains([',', '@', '=']) {
                return Err(SpecError::new(file, source.value(&format!("{path}[{i}]")),
                    format!("`matrix.{k}` value `{text}` cannot name a variant (no empty values, `,`, `@` or `=`)")));
            }
            if values[..i].contains(item) {
                return Err(SpecError::new(file, source.value(&format!("{path}[{i}]")), format!("`matrix.{k}` lists `{text}` twice")));
            }
        }
        axes.push((k.clone(), values.clone()));
    }
    Ok(axes)
}

/// One combination: (axis name, index into its values, the value).
type Combo = Vec<(String, usize, Value)>;

/// Every combination, the first axis outermost.
fn combinations(axes: &[Axis]) -> Vec<Combo> {
    let mut all: Vec<Combo> = vec![vec![]];
    for (name, values) in axes {
        all = all
            .into_iter()
            .flat_map(|c| {
                values.iter().enumerate().map(move |(i, v)| {
                    let mut c = c.clone();
                    c.push((name.clone(), i, v.clone()));
                    c
                })
            })
            .collect();
    }
    all
}

/// A scalar as it reads in a name or a spliced string (`0.1`, `true`, `x`).
fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => String::new(),
    }
}

/// Substitution of one combination into a stage spec.
struct Subst<'a> {
    combo: &'a Combo,
    file: &'a Path,
    source: &'a mut SourceMap,
    family: &'a str,
    variant: &'a str,
}

impl Subst<'_> {
    fn value(&mut self, v: Value, path: &str) -> Result<Value, SpecError> {
        Ok(match v {
            Value::String(s) => self.string(s, path)?,
            Value::Sequence(items) => Value::Sequence(
                items.into_iter().enumerate().map(|(i, x)| self.value(x, &format!("{path}[{i}]"))).collect::<Result<_, _>>()?,
            ),
            Value::Mapping(m) => {
                let mut out = Mapping::new();
                for (k, x) in m {
                    let child = match &k {
                        Value::String(s) => join(path, s),
                        _ => path.to_string(),
                    };
                    out.insert(k, self.value(x, &child)?);
                }
                Value::Mapping(out)
            }
            other => other,
        })
    }

    fn string(&mut self, s: String, path: &str) -> Result<Value, SpecError> {
        if !s.contains("${") {
            return Ok(Value::String(s));
        }
        let mut out = String::new();
        let mut rest = s.as_str();
        let mut whole: Option<Value> = None;
        let mut used = None;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                return Err(self.err(path, format!("unclosed `${{` in `{s}`")));
            };
            let expr = after[..end].trim();
            let Some(name) = expr.strip_prefix("matrix.") else {
                return Err(self.err(path, format!("`${{{expr}}}`: only `${{matrix.NAME}}` is substituted")));
            };
            let Some((axis, i, value)) = self.combo.iter().find(|(k, ..)| k == name) else {
                let known: Vec<String> = self.combo.iter().map(|(k, ..)| format!("`{k}`")).collect();
                return Err(self.err(path, format!("`${{matrix.{name}}}`: this stage's matrix has no `{name}` (it has {})", known.join(", "))));
            };
            used = Some(format!("{}.matrix.{axis}[{i}]", self.family));
            if start == 0 && end + 3 == rest.len() && out.is_empty() {
                whole = Some(value.clone());
            }
            out.push_str(&scalar_text(value));
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        if let Some(entry) = used {
            // A problem with this field is a problem with that matrix value.
            self.source.redirect(path, &entry);
        }
        Ok(whole.unwrap_or(Value::String(out)))
    }

    fn err(&self, path: &str, msg: String) -> SpecError {
        let at = path.replacen(&join("stages", self.variant), self.family, 1);
        SpecError::new(self.file, self.source.value(&at), format!("stage `{}`: {msg}", self.variant))
    }
}

/// List items that name a family (`cascod`, `cascod.model`) become every
/// variant (`cascod@a=1`, `cascod@a=1.model`, ...).
fn expand_lists(v: &mut Value, families: &Families) {
    if let Value::Sequence(items) = v {
        {
            let mut out = Vec::with_capacity(items.len());
            for item in std::mem::take(items) {
                if let Value::String(s) = &item {
                    let (stage, output) = match s.split_once('.') {
                        Some((a, b)) => (a, Some(b)),
                        None => (s.as_str(), None),
                    };
                    if let Some(variants) = families.get(stage) {
                        for name in variants {
                            out.push(Value::String(match output {
                                Some(o) => format!("{name}.{o}"),
                                None => name.clone(),
                            }));
                        }
                        continue;
                    }
                }
                out.push(item);
            }
            *items = out;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(yaml: &str) -> Result<(Mapping, Families), SpecError> {
        let doc: Value = serde_yaml::from_str(yaml).unwrap();
        let mut source = SourceMap::parse(yaml);
        let stages = doc["stages"].as_mapping().unwrap().clone();
        expand(stages, Path::new("p.yaml"), &mut source)
    }

    #[test]
    fn expands_in_order_with_typed_values() {
        let (stages, fams) = run("stages:\n  t:\n    kind: x\n    matrix: {a: [0.1, 0.3], s: [1, 2]}\n    lr: ${matrix.a}\n    seed: ${matrix.s}\n    tag: run-${matrix.s}\n").unwrap();
        let names: Vec<&str> = stages.keys().map(|k| k.as_str().unwrap()).collect();
        assert_eq!(names, ["t@a=0.1,s=1", "t@a=0.1,s=2", "t@a=0.3,s=1", "t@a=0.3,s=2"]);
        let v = &stages["t@a=0.3,s=2"];
        assert_eq!(v["lr"], Value::from(0.3));
        assert_eq!(v["seed"], Value::from(2));
        assert_eq!(v["tag"], Value::from("run-2"));
        assert!(v.get("matrix").is_none());
        assert_eq!(fams["t"].len(), 4);
    }

    #[test]
    fn list_references_to_a_family_expand() {
        let (stages, _) = run("stages:\n  t:\n    kind: x\n    matrix: {s: [1, 2]}\n  e:\n    kind: y\n    models: [base, t, t.model]\n    compare: [[t, base]]\n    data: t@s=1\n").unwrap();
        let pair: Vec<&str> = stages["e"]["compare"][0].as_sequence().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        assert_eq!(pair, ["t", "base"], "nested lists name arms and stay as written");
        let models: Vec<&str> = stages["e"]["models"].as_sequence().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        assert_eq!(models, ["base", "t@s=1", "t@s=2", "t@s=1.model", "t@s=2.model"]);
        assert_eq!(stages["e"]["data"], Value::from("t@s=1"));
    }

    #[test]
    fn bad_entries_name_their_line() {
        let e = run("stages:\n  t:\n    kind: x\n    matrix: {s: []}\n").unwrap_err();
        assert_eq!(e.pos.map(|p| p.line), Some(4), "{e}");
        let e = run("stages:\n  t:\n    kind: x\n    matrix:\n      s: [1, 2]\n    lr: ${matrix.r}\n").unwrap_err();
        assert!(e.message.contains("stage `t@s=1`") && e.message.contains("no `r`"), "{e}");
        assert_eq!(e.pos.map(|p| p.line), Some(6), "{e}");
        let e = run("stages:\n  t:\n    kind: x\n    matrix:\n      s: [1, 1]\n").unwrap_err();
        assert!(e.message.contains("twice"), "{e}");
        assert_eq!(e.pos.map(|p| p.line), Some(5), "{e}");
    }
}
