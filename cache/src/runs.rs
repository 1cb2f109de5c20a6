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
        self.root()
            .join("runs")
            .join(&hex[..2])
            .join(format!("{}.json", &hex[2..]))
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
        fsutil::write_atomic_with(&self.tmp_root(), &path, &bytes, 0o444, false)
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
        (usage.items, usage.item_bytes) = self.item_usage()?;
        Ok(usage)
    }

    /// Deletes every run record not in `keep_runs`, every object neither in
    /// `keep_objects` nor an output of a kept run, item files of the earlier
    /// layout, and stale temp entries. Item logs stay.
    /// The caller must hold [`Store::lock`], so no pipeline is mid-write.
    pub fn gc(
        &self,
        keep_objects: &BTreeSet<Hash>,
        keep_runs: &BTreeSet<Hash>,
    ) -> Result<GcStats, CacheError> {
        let mut stats = GcStats::default();
        let mut keep = keep_objects.clone();
        for (fp, path) in self.entries("runs", ".json")? {
            let kept = keep_runs
                .contains(&fp)
                .then(|| read_record(&path))
                .flatten();
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
            self.stat().forget(&path);
            stats.removed_objects += 1;
        }
        let _ = self.stat().save(); // once, not per object
        // `items/ab/<62 hex>` (no suffix) is the earlier layout, no longer read.
        let legacy = if self.root().join("items").is_dir() { self.entries("items", "")? } else { Vec::new() };
        for (_, path) in legacy {
            fs::remove_file(&path).map_err(io_err("remove", &path))?;
            stats.removed_legacy_items += 1;
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
    pub(crate) fn entries(
        &self,
        area: &str,
        suffix: &str,
    ) -> Result<Vec<(Hash, PathBuf)>, CacheError> {
        let dir = self.root().join(area);
        let mut out = Vec::new();
        for prefix in read_dir_sorted(&dir)? {
            let Some(p) = name_of(&prefix).filter(|n| n.len() == 2) else {
                continue;
            };
            if !prefix.is_dir() {
                continue;
            }
            for path in read_dir_sorted(&prefix)? {
                let hex =
                    name_of(&path).and_then(|n| n.strip_suffix(suffix).map(|n| format!("{p}{n}")));
                // Exact round trip: only names this store could have written.
                let hash =
                    hex.and_then(|hex| hex.parse::<Hash>().ok().filter(|h| h.to_hex() == hex));
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
        .and_then(|rd| {
            rd.map(|e| e.map(|e| e.path()))
                .collect::<io::Result<Vec<_>>>()
        })
        .map_err(io_err("list", dir))?;
    paths.sort();
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::hash_bytes;
    use crate::store::{ArtifactKind, OutputRecord};
    use std::collections::BTreeMap;
    use std::os::unix::fs::PermissionsExt;

    fn store() -> (tempfile::TempDir, Store) {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        (d, s)
    }

    fn record(outputs: &[(&str, Hash)], created: u64) -> RunRecord {
        let outputs = outputs
            .iter()
            .map(|(name, hash)| {
                let out = OutputRecord {
                    hash: *hash,
                    kind: ArtifactKind::File,
                    bytes: 1,
                    rows: Some(1),
                };
                (name.to_string(), out)
            })
            .collect();
        let metrics = BTreeMap::from([("accuracy".to_string(), serde_json::json!(0.5))]);
        RunRecord {
            outputs,
            metrics,
            duration_ms: 1200,
            created_unix_ms: created,
            device: Some("cpu (burn flex)".into()),
            timings: BTreeMap::new(),
        }
    }

    #[test]
    fn run_round_trip() {
        let (_d, s) = store();
        let fp = hash_bytes(b"fingerprint");
        assert_eq!(s.get_run(&fp).unwrap(), None);
        let a = s.put_bytes(b"rows").unwrap();
        let rec = record(&[("data", a.hash)], 5);
        s.put_run(&fp, &rec).unwrap();
        assert_eq!(s.get_run(&fp).unwrap(), Some(rec.clone()));
        let hex = fp.to_hex();
        assert!(s
            .root()
            .join("runs")
            .join(&hex[..2])
            .join(format!("{}.json", &hex[2..]))
            .is_file());
        // Replacing a record works although the old one is read-only.
        let newer = record(&[("data", a.hash)], 6);
        s.put_run(&fp, &newer).unwrap();
        assert_eq!(s.get_run(&fp).unwrap(), Some(newer));
    }

    #[test]
    fn missing_output_is_a_miss() {
        let (_d, s) = store();
        let fp = hash_bytes(b"fp");
        s.put_run(&fp, &record(&[("data", hash_bytes(b"never stored"))], 1))
            .unwrap();
        assert_eq!(s.get_run(&fp).unwrap(), None);
    }

    #[test]
    fn corrupt_output_is_a_miss_and_is_removed() {
        let (_d, s) = store();
        let a = s.put_bytes(b"good rows").unwrap();
        let fp = hash_bytes(b"fp");
        s.put_run(&fp, &record(&[("data", a.hash)], 1)).unwrap();
        let p = s.object_path(&a.hash);
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        fs::write(&p, b"bad! rows").unwrap();
        assert_eq!(s.get_run(&fp).unwrap(), None);
        assert!(!p.exists());
    }

    #[test]
    fn unparsable_record_is_a_miss() {
        let (_d, s) = store();
        let fp = hash_bytes(b"fp");
        s.put_run(&fp, &record(&[], 1)).unwrap();
        let path = s.run_path(&fp);
        fs::remove_file(&path).unwrap();
        fs::write(&path, b"{\"outputs\": {").unwrap();
        assert_eq!(s.get_run(&fp).unwrap(), None);
        assert!(!path.exists(), "damaged record removed");
    }

    #[test]
    fn runs_newest_first_and_du() {
        let (_d, s) = store();
        let a = s.put_bytes(b"12345").unwrap();
        let t = s.temp_dir().unwrap();
        fs::create_dir(t.path().join("m")).unwrap();
        fs::write(t.path().join("m/w"), b"123").unwrap();
        s.put_path(&t.path().join("m")).unwrap();
        for (i, created) in [10u64, 30, 20].into_iter().enumerate() {
            s.put_run(&hash_bytes(&[i as u8]), &record(&[("d", a.hash)], created))
                .unwrap();
        }
        fs::write(s.root().join("runs/README"), b"not a record").unwrap();
        let order: Vec<u64> = s
            .runs()
            .unwrap()
            .iter()
            .map(|(_, r)| r.created_unix_ms)
            .collect();
        assert_eq!(order, [30, 20, 10]);
        assert_eq!(
            s.du().unwrap(),
            Usage {
                objects: 2,
                object_bytes: 8,
                runs: 3,
                items: 0,
                item_bytes: 0
            }
        );
    }

    #[test]
    fn gc_keeps_what_it_is_told() {
        let (_d, s) = store();
        let kept_obj = s.put_bytes(b"kept explicitly").unwrap().hash;
        let by_run = s.put_bytes(b"output of a kept run").unwrap().hash;
        let of_dropped = s.put_bytes(b"output of a dropped run").unwrap().hash;
        let orphan = s.put_bytes(b"orphan").unwrap().hash;
        let (run_keep, run_drop) = (hash_bytes(b"keep"), hash_bytes(b"drop"));
        s.put_run(&run_keep, &record(&[("d", by_run)], 1)).unwrap();
        s.put_run(&run_drop, &record(&[("d", of_dropped)], 2))
            .unwrap();
        // A stage directory abandoned two days ago, and one in use now.
        let stale = s.tmp_root().join("stage-dead");
        fs::create_dir(&stale).unwrap();
        fs::write(stale.join("partial"), b"x").unwrap();
        let two_days = std::time::SystemTime::now() - Duration::from_secs(2 * 86_400);
        fs::File::open(&stale)
            .unwrap()
            .set_modified(two_days)
            .unwrap();
        let fresh = s.temp_dir().unwrap();
        // An item of the earlier one-file-per-item layout, and an item log.
        let legacy = s.root().join("items").join("ab").join("c".repeat(62));
        fs::create_dir_all(legacy.parent().unwrap()).unwrap();
        fs::write(&legacy, b"old item").unwrap();
        s.items(&hash_bytes(b"ns")).unwrap().put(&hash_bytes(b"k"), b"item").unwrap();

        let _lock = s.lock().unwrap();
        let stats = s
            .gc(&BTreeSet::from([kept_obj]), &BTreeSet::from([run_keep]))
            .unwrap();
        assert_eq!(
            stats,
            GcStats {
                removed_objects: 2,
                removed_bytes: 23 + 6,
                removed_runs: 1,
                removed_legacy_items: 1
            }
        );
        assert!(!legacy.exists());
        assert_eq!(s.du().unwrap().items, 1, "item logs are kept");
        assert_eq!(s.state(&kept_obj), ObjectState::Valid);
        assert_eq!(s.state(&by_run), ObjectState::Valid);
        assert_eq!(s.state(&of_dropped), ObjectState::Missing);
        assert_eq!(s.state(&orphan), ObjectState::Missing);
        assert!(s.get_run(&run_keep).unwrap().is_some());
        assert!(s.get_run(&run_drop).unwrap().is_none());
        assert!(!stale.exists());
        assert!(fresh.path().exists());

        let again = s.gc(&BTreeSet::new(), &BTreeSet::new()).unwrap();
        assert_eq!((again.removed_objects, again.removed_runs), (2, 1));
        assert_eq!(s.du().unwrap(), Usage { items: 1, item_bytes: 76, ..Usage::default() }, "only the item log is left");
    }
}
