//! Files a stage writes outside the cache ([`Stage::exports`]), checked on a
//! cache hit and restored from the stored output when they drifted.
//!
//! A cached stage does not run, so nothing else would notice that a user
//! deleted or edited its exported file. DVC's `checkout` restores outputs
//! from its cache; this is the same, for the files a stage declares. The
//! stored object is the truth: the file is overwritten, byte-identical,
//! without re-executing the stage.
//!
//! [`Stage::exports`]: crate::Stage::exports

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use retort_cache::{ArtifactKind, OutputRecord, RunRecord, StatCache, Store};

use crate::spec::StageNode;

/// How an exported file differs from the output it copies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Drift {
    /// Nothing at the path.
    Missing,
    /// Other bytes (or a file where a directory was, or the reverse).
    Changed,
}

impl Drift {
    fn as_str(self) -> &'static str {
        match self {
            Drift::Missing => "file was missing",
            Drift::Changed => "file was changed",
        }
    }
}

/// One exported file that no longer holds its stage's output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restore {
    /// The stage output it copies.
    pub output: String,
    /// The path as the stage declares it (relative to the pipeline file).
    pub path: PathBuf,
    /// What is wrong with it.
    pub drift: Drift,
}

impl Restore {
    /// `` `out.jsonl` (file was missing)``, for reasons and logs.
    pub fn describe(&self) -> String {
        format!("`{}` ({})", self.path.display(), self.drift.as_str())
    }
}

/// The declared exports of `node` whose file does not hash to the recorded
/// output. Hashing goes through the stat cache, so an untouched file costs a
/// `stat`, not a read.
pub fn drifted(node: &StageNode, record: &RunRecord, dir: &Path, stat: &mut StatCache) -> Vec<Restore> {
    let mut out = Vec::new();
    for (output, rel) in node.stage.exports() {
        let Some(rec) = record.outputs.get(&output) else { continue };
        let drift = match stat.hash_path(&dir.join(&rel)) {
            Ok((hash, kind)) if hash == rec.hash && kind == rec.kind => continue,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Drift::Missing,
            // Unreadable counts as changed: rewriting it is the fix, and if
            // that fails too, the error names the path.
            _ => Drift::Changed,
        };
        out.push(Restore { output, path: rel, drift });
    }
    out
}

/// Writes the stored output back to the exported path: copied next to it,
/// then renamed over it, so a reader never sees half a file. The copy is
/// writable (objects in the store are read-only) like the file the stage
/// wrote.
pub fn restore(r: &Restore, record: &RunRecord, dir: &Path, store: &Store) -> Result<(), String> {
    let rec: &OutputRecord =
        record.outputs.get(&r.output).ok_or_else(|| format!("the run recorded no output `{}`", r.output))?;
    let dest = dir.join(&r.path);
    let err = |what: &str, p: &Path, e: io::Error| format!("cannot restore {}: {what} {}: {e}", r.path.display(), p.display());
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent).map_err(|e| err("creating", parent, e))?;
    }
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".retort-restore");
    let tmp = dest.with_file_name(name);
    let src = store.object_path(&rec.hash);
    let _ = remove(&tmp);
    copy(&src, &tmp, rec.kind).map_err(|e| err("copying", &src, e))?;
    if rec.kind == ArtifactKind::Dir || dest.is_dir() {
        // `rename` does not replace a directory, nor a file with one.
        match remove(&dest) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(err("removing", &dest, e)),
            _ => {}
        }
    }
    fs::rename(&tmp, &dest).map_err(|e| {
        let _ = remove(&tmp);
        err("writing", &dest, e)
    })
}

fn copy(src: &Path, dest: &Path, kind: ArtifactKind) -> io::Result<()> {
    match kind {
        ArtifactKind::File => {
            // `fs::copy` would carry over the object's read-only mode.
            let mut from = fs::File::open(src)?;
            let mut to = fs::File::create(dest)?;
            io::copy(&mut from, &mut to)?;
            to.sync_all()
        }
        ArtifactKind::Dir => {
            fs::create_dir(dest)?;
            for entry in fs::read_dir(src)? {
                let entry = entry?;
                let kind = if entry.file_type()?.is_dir() { ArtifactKind::Dir } else { ArtifactKind::File };
                copy(&entry.path(), &dest.join(entry.file_name()), kind)?;
            }
            Ok(())
        }
    }
}

fn remove(p: &Path) -> io::Result<()> {
    if fs::symlink_metadata(p)?.is_dir() {
        fs::remove_dir_all(p)
    } else {
        fs::remove_file(p)
    }
}
