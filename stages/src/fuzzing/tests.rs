//! Replays the pipeline seeds, the repository's pipelines and every crash
//! input the fuzzer found; a bounded proptest run of line-level edits.

use std::path::{Path, PathBuf};

use proptest::prelude::*;

use super::fuzz_pipeline;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.map(|e| e.unwrap().path()).filter(|p| p.is_file()).collect())
        .unwrap_or_default();
    out.sort();
    out
}

#[test]
fn replays_pipeline_seeds_and_crashes() {
    let mut all = files(&repo().join("fuzz/seeds/pipeline"));
    all.extend(files(&repo().join("stages/tests/fixtures/fuzz/pipeline")));
    all.extend(files(&repo().join("pipelines")).into_iter().filter(|p| p.extension().is_some_and(|e| e == "yaml")));
    assert!(all.len() >= 5, "fuzz/seeds/pipeline is missing: see FUZZING.md");
    for path in all {
        eprintln!("replaying {}", path.display());
        fuzz_pipeline(&std::fs::read(&path).unwrap());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// The quickstart with a line dropped, duplicated or overwritten by a
    /// YAML fragment: a parse error, never a panic.
    #[test]
    fn edited_quickstart_never_panics(line in any::<prop::sample::Index>(), op in 0..3u8,
                                      fragment in prop_oneof![
                                          Just("  - *a".to_string()), Just("x: &a [*a]".to_string()),
                                          Just("    kind: generate".to_string()), Just("stages: {}".to_string()),
                                          Just("    input: ${{ nope.out }}".to_string()), "[ -~]{0,30}"]) {
        let text = std::fs::read_to_string(repo().join("pipelines/quickstart.yaml")).unwrap();
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        let i = line.index(lines.len());
        match op {
            0 => { lines.remove(i); }
            1 => { let l = lines[i].clone(); lines.insert(i, l); }
            _ => lines[i] = fragment,
        }
        fuzz_pipeline(lines.join("\n").as_bytes());
    }
}
