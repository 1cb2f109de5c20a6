//! Errors the engine reports to a user.
//!
//! Every problem with a pipeline file becomes one [`SpecError`] that names the
//! file, the line and column, what is wrong and, where we can tell, the fix.
//! The CLI maps these to exit code 2 and never touches the cache for them.

use std::fmt;
use std::path::PathBuf;

use crate::source::Pos;

/// A problem in a pipeline file (or in a `--set` override of it).
#[derive(Debug)]
pub struct SpecError {
    /// The pipeline file as the user named it.
    pub file: PathBuf,
    /// Where in the file, when known.
    pub pos: Option<Pos>,
    /// What is wrong, as a lowercase fragment.
    pub message: String,
    /// How to fix it, when we can tell.
    pub help: Option<String>,
}

impl SpecError {
    /// A new error at `pos` in `file`.
    pub fn new(file: impl Into<PathBuf>, pos: Option<Pos>, message: impl Into<String>) -> Self {
        SpecError { file: file.into(), pos, message: message.into(), help: None }
    }

    /// Adds a hint on how to fix the problem.
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(p) = self.pos {
            write!(f, ":{}:{}", p.line, p.col)?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(h) = &self.help {
            write!(f, "\n  help: {h}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SpecError {}

/// A suggestion for a misspelt name: the closest candidate, if it is close.
pub fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(name, c).max(strsim::normalized_damerau_levenshtein(name, c) + 0.15), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// serde's "unknown field `x`, expected one of `a`, `b`" carries the valid
/// names only in its message; pull them back out to suggest the closest.
pub fn unknown_field_help(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let (field, rest) = rest.split_once('`')?;
    let expected: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
    did_you_mean(field, expected.iter().copied()).map(|s| format!("did you mean `{s}`?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_the_closest_field() {
        let msg = "unknown field `colour`, expected one of `color`, `size`, `kind`";
        assert_eq!(unknown_field_help(msg).as_deref(), Some("did you mean `color`?"));
        let msg = "unknown field `zzz`, expected `color` or `size`";
        assert_eq!(unknown_field_help(msg), None);
    }

    #[test]
    fn displays_file_line_col_and_help() {
        let e = SpecError::new("p.yaml", Some(Pos { line: 7, col: 5 }), "unknown field `colour`")
            .help("did you mean `color`?");
        assert_eq!(e.to_string(), "p.yaml:7:5: unknown field `colour`\n  help: did you mean `color`?");
    }
}

/// Marks a stage's error as bad input data (a dataset file with the wrong
/// columns, say) rather than a failure of the run: the CLI exits 2 for a
/// run whose failed stages all failed on bad input, as for a bad pipeline
/// file. Stages wrap their error in it (`anyhow::Error::new(BadInput(e))`);
/// it displays as the error it wraps.
#[derive(Debug)]
pub struct BadInput(pub Box<dyn std::error::Error + Send + Sync>);

impl fmt::Display for BadInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for BadInput {}
