//! Per-step logs: the output a kind names in [`Stage::step_log`](crate::Stage::step_log)
//! (a trainer's `metrics`), one JSON object per step. `retort show --metrics`
//! prints them as a table and `retort report` plots them; both read them here.

use std::path::Path;

/// One step: column name to value.
pub type StepRow = serde_json::Map<String, serde_json::Value>;

/// Reads a per-step log; a nested object (a trainer's objective-specific
/// `extra` numbers) is flattened into the step, so every number is a column.
/// Errors name the file and line.
pub fn read_step_log(path: &Path) -> std::io::Result<Vec<StepRow>> {
    let text = std::fs::read_to_string(path)?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            let step: StepRow = serde_json::from_str(l).map_err(|e| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: line {}: {e}", path.display(), i + 1))
            })?;
            let mut flat = StepRow::new();
            for (k, v) in step {
                match v {
                    serde_json::Value::Object(inner) => flat.extend(inner),
                    v => {
                        flat.insert(k, v);
                    }
                }
            }
            Ok(flat)
        })
        .collect()
}
