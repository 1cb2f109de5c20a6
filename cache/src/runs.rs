//! The run cache (stage fingerprint -> outputs and metrics) and whole-store
//! maintenance: listing, disk usage, garbage collection.
//!
//! A run record is only a hit if every object it names is still intact, so
//! a deleted or damaged output makes the stage run again rather than fail.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::error::{io_err, CacheError};
use crate::fsutil;
use crate::hash::Hash;
use crate::store::{GcStats, ObjectState, RunRecord, Store, Usage};

/// Temp entries untouched for this long belong to a process that died; gc
/// removes them. (A live pipeline holds the store lock, which gc's caller
/// holds too, so no running stage can be writing there.)
const STALE_TMP: Duration = Duration::from_secs(24 * 60 * 60);

impl Store {
    fn run_path(&self, fingerprint: &Hash) -> PathBuf {
        let hex = fingerprint.to_hex();
        self.root().join("runs").join(&hex[..2]).join(format!("{}.json", &hex[2..]))
    }

    /// The run record for `fingerprint`, if there is one whose outputs are
    /// all present and intact. Anything else is a miss (`Ok(None)`): a
    /// damaged record is deleted with a warning, as a damaged object is.
    pub fn get_run(&self, fingerprint: &Hash) -> Result<Option<RunRecord>, CacheError> {
        let path = self.run_path(fingerprint);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("read", &path)(e)),
        };
        let Ok(rec) = serde_json::from_slice::<RunRecord>(&bytes) else {
            eprintln!(
                "warning: run record {} is corrupt; removed, will recompute",
                fingerprint.short()
            );
            let _ = fs::remove_file(&path);
            return Ok(None);
        };
        let all_valid = rec
            .outputs
            .values()
            .all(|o| self.state(&o.hash) == ObjectState::Valid);
        Ok(all_valid.then_some(rec))
    }

    /// Records what the run with `fingerprint` produced (atomically
    /// replacing any earlier record).
    pub fn put_run(&self, fingerprint: &Hash, rec: &RunRecord) -> Result<(), CacheError> {
        let path = self.run_path(fingerprint);
        let bytes = serde_json::to_vec(rec).map_err(|source| CacheError::Encode {
            path: path.clone(),
            source,
        })?;
        fsutil::write_atomic(&self.tmp_root(), &path, &bytes, 0o444)
    }

    /// Every readable run record, newest first (for `cache ls`). Unreadable
    /// records are skipped: they are misses, and gc removes them.
    pub fn runs(&self) -> Result<Vec<(Hash, RunRecord)>, CacheError> {
        let mut out = Vec::new();
        for (hash, path) in self.entries("runs", ".json")? {
            let Ok(bytes) = fs::read(&path) else { continue };
            if let Ok(rec) = serde_json::from_slice::<RunRecord>(&bytes) {
                out.push((hash, rec));
            }
        }
        out.sort_by(|a, b| {
            b.1.created_unix_ms
                .cmp(&a.1.created_unix_ms)
                .then_with(|| a.0.cmp(&b.0))
        });
        Ok(out)
    }

    /// How many objects and run records the store holds, and how big the
    /// objects are.
    pub fn du(&self) -> Result<Usage, CacheError> {
        let mut usage = Usage::default();
        for (_, path) in self.entries("objects", "")? {
            usage.objects += 1;
            usage.object_bytes += fsutil::tree_bytes(&path).map_err(io_err("measure", &path))?;
        }
        usage.runs = self.entries("runs", ".json")?.len() as u64;
        Ok(usage)
    }

    /// Deletes every run record not in `keep_runs`, every object neither in
    /// `keep_objects` nor an output of a kept run, and stale temp entries.
    /// The caller must hold [`Store::lock`], so no pipeline is mid-write.
    pub fn gc(
        &self,
        keep_objects: &BTreeSet<Hash>,
        keep_runs: &BTreeSet<Hash>,
    ) -> Result<GcStats, CacheError> {
        let mut stats = GcStats::default();
        let mut keep = keep_objects.clone();
        for (fp, path) in self.entries("runs", ".json")? {
            let kept = keep_runs.contains(&fp).then(|| read_record(&path)).flatten();
            match kept {
                Some(rec) => keep.extend(rec.outputs.values().map(|o| o.hash)),
                None => {
                    fs::remove_file(&path).map_err(io_err("remove", &path))?;
                    stats.removed_runs += 1;
                }
            }
        }
        for (hash, path) in self.entries("objects", "")? {
            if keep.contains(&hash) {
                continue;
            }
            stats.removed_bytes += fsutil::tree_bytes(&path).unwrap_or(0);
            fsutil::remove_tree(&path).map_err(io_err("remove", &path))?;
            self.forget(&path);
            stats.removed_objects += 1;
        }
        self.remove_stale_tmp()?;
        Ok(stats)
    }

    fn remove_stale_tmp(&self) -> Result<(), CacheError> {
        let tmp = self.tmp_root();
        let cutoff = SystemTime::now() - STALE_TMP;
        for entry in fs::read_dir(&tmp).map_err(io_err("list", &tmp))? {
            let path = entry.map_err(io_err("list", &tmp))?.path();
            if fsutil::modified(&path).is_some_and(|m| m < cutoff) {
                fsutil::remove_tree(&path).map_err(io_err("remove", &path))?;
            }
        }
        Ok(())
    }

    /// The `<2 hex>/<62 hex><suffix>` entries under `root/<area>`, with the
    /// hash each one names. Names that are not ours are ignored, never
    /// deleted: they may be something the user put there.
    pub(crate) fn entries(&self, area: &str, suffix: &str) -> Result<Vec<(Hash, PathBuf)>, CacheError> {
        let dir = self.root().join(area);
        let mut out = Vec::new();
        for prefix in read_dir_sorted(&dir)? {
            let Some(p) = name_of(&prefix).filter(|n| n.len() == 2) else { continue };
            if !prefix.is_dir() {
                continue;
            }
            for path in read_dir_sorted(&prefix)? {
                let hex = name_of(&path)
                    .and_then(|n| n.strip_suffix(suffix).map(|n| format!("{p}{n}")));
                // Exact round trip: only names this store could have written.
                let hash = hex.and_then(|hex| hex.parse::<Hash>().ok().filter(|h| h.to_hex() == hex));
                if let Some(hash) = hash {
                    out.push((hash, path));
                }
            }
        }
        Ok(out)
    }
}

fn read_record(path: &Path) -> Option<RunRecord> {
    serde_json::from_slice(&fs::read(path).ok()?).ok()
}

fn name_of(path: &Path) -> Option<String> {
    path.file_name()?.to_str().map(str::to_owned)
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>, CacheError> {
    let mut paths = fs::read_dir(dir)
        .and_then(|rd| rd.map(|e| e.map(|e| e.path())).collect::<io::Result<Vec<_>>>())
        .map_err(io_err("list", dir))?;
    paths.sort();
    Ok(paths)
}
