//! The pipeline fuzz harness: YAML text → [`retort_engine::load_str`] with
//! the real registry → [`retort_engine::Graph::build`], which is everything
//! `retort run`/`plan` do with a pipeline file before any stage runs. The
//! `fuzz/` target calls it, and the unit tests replay the seeds and every
//! crash input through it (see `FUZZING.md`).

use std::path::Path;
use std::sync::OnceLock;

use retort_engine::{load_str, Graph, Registry};

/// Parses and plans one pipeline text; an error is the expected answer to a
/// bad pipeline, a panic or a hang is a bug. The first line may hold `--set`
/// overrides, as `#set KEY=VALUE KEY=VALUE`, so the fuzzer reaches those too.
#[doc(hidden)]
pub fn fuzz_pipeline(bytes: &[u8]) {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    let registry = REGISTRY.get_or_init(crate::registry);
    // `load` reads the file as UTF-8 and rejects anything else.
    let Ok(text) = std::str::from_utf8(bytes) else { return };
    let overrides: Vec<String> = match text.lines().next().and_then(|l| l.strip_prefix("#set ")) {
        Some(sets) => sets.split_whitespace().map(str::to_string).collect(),
        None => Vec::new(),
    };
    let Ok(p) = load_str(Path::new("fuzz/pipeline.yaml"), text, &overrides, registry) else { return };
    let _ = Graph::build(&p);
}

#[cfg(test)]
mod tests;
