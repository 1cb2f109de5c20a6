//! The content-addressed object store: artifacts named by their hash.
//!
//! Layout under the root:
//!
//! ```text
//! VERSION              store format version
//! lock                 advisory lock held by a running pipeline
//! objects/ab/cdef…     one file or directory per artifact, read-only
//! runs/ab/cdef….json   run records, keyed by stage fingerprint (runs.rs)
//! items/ab/cdef….log   item logs, one per namespace of items (items.rs)
//! tmp/                 stage outputs being written; renamed into objects/
//! stat-cache           stat cache of the objects, so validity checks are cheap
//! ```
//!
//! Objects only ever appear by `rename`, so a crash leaves no partial object.
//! A damaged object is deleted and reported as corrupt, so the stage that
//! made it runs again instead of feeding bad bytes downstream.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::{io_err, CacheError};
use crate::fsutil;
use crate::hash::{self, Hash};
use crate::items::ItemLog;
use crate::stat::StatCache;

pub use crate::lock::StoreLock;
pub use crate::records::{
    Artifact, ArtifactKind, GcStats, ObjectState, OutputRecord, RunRecord, Usage,
};

/// Format of the store's directory layout and records. Bump it when a change
/// would make an older retort misread the store.
const STORE_FORMAT_VERSION: u32 = 1;
const STAT_FILE: &str = "stat-cache";

/// A content-addressed store rooted at a directory.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    /// Stat of every object as stored, so `state` costs a `stat`, not a hash.
    pub(crate) stat: Mutex<StatCache>,
    /// Item logs opened by this process, by namespace (items.rs).
    pub(crate) item_logs: Mutex<HashMap<Hash, Arc<ItemLog>>>,
    /// Where item logs opened for the first time also get records from.
    pub(crate) item_source: Mutex<Option<crate::items::ItemSource>>,
}

impl Drop for Store {
    fn drop(&mut self) {
        self.flush();
    }
}

impl Store {
    /// Opens the store at `root`, creating its layout if absent. Refuses a
    /// store written by a newer, incompatible retort.
    pub fn open(root: &Path) -> Result<Store, CacheError> {
        let root = std::path::absolute(root).map_err(io_err("resolve", root))?;
        for sub in ["objects", "runs", "tmp"] {
            let dir = root.join(sub);
            fs::create_dir_all(&dir).map_err(io_err("create directory", &dir))?;
        }
        check_version(&root)?;
        let stat = Mutex::new(StatCache::load(&root.join(STAT_FILE)));
        Ok(Store { root, stat, item_logs: Mutex::default(), item_source: Mutex::default() })
    }

    /// The store's root directory (absolute).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A fresh directory under `root/tmp` for a stage to write outputs into;
    /// on the store's filesystem, so `put_path` can rename from it.
    pub fn temp_dir(&self) -> Result<tempfile::TempDir, CacheError> {
        let tmp = self.tmp_root();
        tempfile::Builder::new()
            .prefix("stage-")
            .tempdir_in(&tmp)
            .map_err(io_err("create temp directory in", &tmp))
    }

    /// Where the object named `hash` lives: `objects/<2 hex>/<62 hex>`.
    pub fn object_path(&self, hash: &Hash) -> PathBuf {
        let hex = hash.to_hex();
        self.root.join("objects").join(&hex[..2]).join(&hex[2..])
    }

    /// Moves the file or directory at `path` into the store under its hash.
    ///
    /// If the object already exists the source is just deleted. The caller
    /// must have finished writing `path`: bytes changed after hashing would
    /// be stored under the wrong name.
    pub fn put_path(&self, path: &Path) -> Result<Artifact, CacheError> {
        let meta = fs::symlink_metadata(path).map_err(io_err("read", path))?;
        if meta.file_type().is_symlink() {
            // Renaming would store the link, not the bytes it points to.
            let err = io::Error::new(io::ErrorKind::InvalidInput, "outputs must not be symlinks");
            return Err(io_err("store", path)(err));
        }
        let manifest = if meta.is_dir() {
            hash::dir_manifest(path, &mut |p| hash::hash_file(p)).map_err(io_err("hash", path))?
        } else {
            let hash = hash::hash_file(path).map_err(io_err("hash", path))?;
            vec![hash::ManifestEntry {
                path: String::new(),
                hash,
                bytes: meta.len(),
            }]
        };
        let artifact = Artifact {
            hash: if meta.is_dir() {
                hash::manifest_hash(&manifest)
            } else {
                manifest[0].hash
            },
            kind: if meta.is_dir() {
                ArtifactKind::Dir
            } else {
                ArtifactKind::File
            },
            bytes: manifest.iter().map(|e| e.bytes).sum(),
        };
        let dest = self.object_path(&artifact.hash);
        if self.state(&artifact.hash) == ObjectState::Valid {
            fsutil::remove_tree(path).map_err(io_err("remove", path))?;
            return Ok(artifact);
        }
        self.move_in(path, &dest)?;
        let mut stat = self.stat();
        for e in &manifest {
            let file = if e.path.is_empty() {
                dest.clone()
            } else {
                dest.join(&e.path)
            };
            stat.record(&file, e.hash).map_err(io_err("read", &file))?;
        }
        Ok(artifact)
    }

    /// Seals `src` and renames it to `dest`; copies through `tmp` first if
    /// `src` is on another filesystem.
    fn move_in(&self, src: &Path, dest: &Path) -> Result<(), CacheError> {
        let parent = dest.parent().unwrap_or(&self.root);
        fs::create_dir_all(parent).map_err(io_err("create directory", parent))?;
        fsutil::seal(src, fsutil::object_mtime()).map_err(io_err("make read-only", src))?;
        match fs::rename(src, dest) {
            Ok(()) => Ok(()),
            // Another process stored the same directory meanwhile.
            Err(_) if dest.exists() => fsutil::remove_tree(src).map_err(io_err("remove", src)),
            Err(e) if e.kind() == io::ErrorKind::CrossesDevices => {
                let staging = self.temp_dir()?;
                let copy = staging.path().join("object");
                fsutil::copy_tree(src, &copy).map_err(io_err("copy", src))?;
                self.move_in(&copy, dest)?;
                fsutil::remove_tree(src).map_err(io_err("remove", src))
            }
            Err(e) => Err(io_err("move into the store", src)(e)),
        }
    }

    /// Stores `bytes` as a file object (temp file, fsync, rename).
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<Artifact, CacheError> {
        let hash = hash::hash_bytes(bytes);
        let artifact = Artifact {
            hash,
            kind: ArtifactKind::File,
            bytes: bytes.len() as u64,
        };
        if self.state(&hash) == ObjectState::Valid {
            return Ok(artifact);
        }
        let dest = self.object_path(&hash);
        fsutil::write_atomic(&self.tmp_root(), &dest, bytes, 0o444)?;
        let _ = fsutil::seal(&dest, fsutil::object_mtime());
        let mut stat = self.stat();
        stat.record(&dest, hash).map_err(io_err("read", &dest))?;
        Ok(artifact)
    }

    pub(crate) fn tmp_root(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Drops stat cache entries for a deleted object and saves.
    pub(crate) fn forget(&self, path: &Path) {
        let mut stat = self.stat();
        stat.forget(path);
        let _ = stat.save();
    }

    /// Writes the objects' stat cache (done when the store is dropped, so
    /// once per run rather than once per object; a lost stat cache costs a
    /// rehash, nothing more).
    pub fn flush(&self) {
        let _ = self.stat().save();
    }

    pub(crate) fn stat(&self) -> MutexGuard<'_, StatCache> {
        // A panic while holding the lock cannot leave the cache inconsistent
        // in a harmful way (worst case: a missing entry, i.e. a rehash).
        self.stat.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Creates `VERSION` in a new store, or checks an existing one is readable.
fn check_version(root: &Path) -> Result<(), CacheError> {
    let path = root.join("VERSION");
    match fs::read_to_string(&path) {
        Ok(text) => match text.trim().parse::<u32>() {
            Ok(found) if found > STORE_FORMAT_VERSION => Err(CacheError::StoreTooNew {
                path: root.to_path_buf(),
                found,
                supported: STORE_FORMAT_VERSION,
            }),
            Ok(_) => Ok(()),
            Err(_) => Err(CacheError::BadStoreVersion {
                path,
                content: text.chars().take(40).collect(),
            }),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let text = format!("{STORE_FORMAT_VERSION}\n");
            fsutil::write_atomic(&root.join("tmp"), &path, text.as_bytes(), 0o644)
        }
        Err(e) => Err(io_err("read", &path)(e)),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::hash::FILES_HASHED;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    pub(crate) fn store() -> (tempfile::TempDir, Store) {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(&d.path().join("cache")).unwrap();
        (d, s)
    }

    pub(crate) fn hashes() -> u64 {
        FILES_HASHED.with(|c| c.get())
    }

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    /// Overwrites byte `at` of an object with its complement, as bit rot or
    /// a stray editor would.
    pub(crate) fn flip_byte(p: &Path, at: u64) {
        fs::set_permissions(p, fs::Permissions::from_mode(0o644)).unwrap();
        let mut bytes = fs::read(p).unwrap();
        bytes[at as usize] ^= 0xff;
        fs::write(p, bytes).unwrap();
    }

    #[test]
    fn open_creates_layout_and_checks_version() {
        let (d, s) = store();
        for sub in ["objects", "runs", "tmp"] {
            assert!(s.root().join(sub).is_dir());
        }
        assert_eq!(fs::read_to_string(s.root().join("VERSION")).unwrap(), "1\n");
        assert!(s.root().is_absolute());
        Store::open(s.root()).unwrap(); // reopening is fine

        fs::write(s.root().join("VERSION"), "7\n").unwrap();
        let err = Store::open(s.root()).unwrap_err();
        assert!(
            matches!(err, CacheError::StoreTooNew { found: 7, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("upgrade retort"), "{err}");
        fs::write(s.root().join("VERSION"), "seven").unwrap();
        let err = Store::open(s.root()).unwrap_err();
        assert!(matches!(err, CacheError::BadStoreVersion { .. }), "{err:?}");
        drop(d);
    }

    #[test]
    fn object_path_layout() {
        let (_d, s) = store();
        let h = hash::hash_bytes(b"x");
        let hex = h.to_hex();
        let p = s.object_path(&h);
        assert_eq!(p, s.root().join("objects").join(&hex[..2]).join(&hex[2..]));
    }

    #[test]
    fn put_bytes_stores_read_only_and_is_idempotent() {
        let (_d, s) = store();
        let a = s.put_bytes(b"{\"q\":1}\n").unwrap();
        assert_eq!(a.kind, ArtifactKind::File);
        assert_eq!(a.bytes, 8);
        let p = s.object_path(&a.hash);
        assert_eq!(fs::read(&p).unwrap(), b"{\"q\":1}\n");
        assert_eq!(mode(&p), 0o444);
        assert_eq!(s.put_bytes(b"{\"q\":1}\n").unwrap(), a);
        assert_eq!(s.state(&a.hash), ObjectState::Valid);
        assert_eq!(s.verify(&a.hash), ObjectState::Valid);
        assert!(
            fs::read_dir(s.tmp_root()).unwrap().next().is_none(),
            "no temp leftovers"
        );
    }

    #[test]
    fn put_path_moves_a_file_and_deletes_a_duplicate_source() {
        let (_d, s) = store();
        let t = s.temp_dir().unwrap();
        let out = t.path().join("rows.jsonl");
        fs::write(&out, b"row\n").unwrap();
        let a = s.put_path(&out).unwrap();
        assert_eq!(
            a,
            Artifact {
                hash: hash::hash_bytes(b"row\n"),
                kind: ArtifactKind::File,
                bytes: 4
            }
        );
        assert!(!out.exists(), "moved, not copied");
        assert_eq!(mode(&s.object_path(&a.hash)), 0o444);

        fs::write(&out, b"row\n").unwrap();
        let ino = fs::metadata(s.object_path(&a.hash)).unwrap().ino();
        assert_eq!(s.put_path(&out).unwrap(), a);
        assert!(!out.exists());
        let same = fs::metadata(s.object_path(&a.hash)).unwrap().ino();
        assert_eq!(same, ino, "existing object left in place");
    }

    #[test]
    fn symlink_output_is_refused() {
        let (_d, s) = store();
        let t = s.temp_dir().unwrap();
        fs::write(t.path().join("real"), b"x").unwrap();
        std::os::unix::fs::symlink(t.path().join("real"), t.path().join("link")).unwrap();
        let err = s.put_path(&t.path().join("link")).unwrap_err();
        assert!(err.to_string().contains("link"), "{err}");
        assert!(s.entries("objects", "").unwrap().is_empty());
    }

    #[test]
    fn dir_objects() {
        let (_d, s) = store();
        let t = s.temp_dir().unwrap();
        let model = t.path().join("model");
        fs::create_dir_all(model.join("tok")).unwrap();
        fs::write(model.join("config.json"), b"{}").unwrap();
        fs::write(model.join("tok/tokenizer.json"), b"[1,2]").unwrap();
        let expected = hash::hash_dir(&model).unwrap();
        let a = s.put_path(&model).unwrap();
        assert_eq!((a.hash, a.kind, a.bytes), (expected, ArtifactKind::Dir, 7));
        let p = s.object_path(&a.hash);
        assert!(p.is_dir());
        assert_eq!(mode(&p.join("tok/tokenizer.json")), 0o444);
        assert_eq!(hash::hash_dir(&p).unwrap(), a.hash);
        assert_eq!(s.state(&a.hash), ObjectState::Valid);

        flip_byte(&p.join("tok/tokenizer.json"), 0);
        assert_eq!(s.verify(&a.hash), ObjectState::Corrupt);
        assert!(p.exists(), "verify reports, never deletes");
        assert_eq!(s.state(&a.hash), ObjectState::Corrupt);
        assert!(!p.exists(), "state deletes a corrupt directory");
        assert_eq!(s.state(&a.hash), ObjectState::Missing);
    }

    #[test]
    fn a_corrupt_existing_object_is_replaced_on_put() {
        let (_d, s) = store();
        let a = s.put_bytes(b"abc").unwrap();
        flip_byte(&s.object_path(&a.hash), 0);
        let t = s.temp_dir().unwrap();
        fs::write(t.path().join("o"), b"abc").unwrap();
        s.put_path(&t.path().join("o")).unwrap();
        assert_eq!(s.verify(&a.hash), ObjectState::Valid);
    }
}
