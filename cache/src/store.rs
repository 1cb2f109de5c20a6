//! The content-addressed object store: artifacts named by their hash.
//!
//! Layout under the root:
//!
//! ```text
//! VERSION              store format version
//! lock                 advisory lock held by a running pipeline
//! objects/ab/cdef…     one file or directory per artifact, read-only
//! runs/ab/cdef….json   run records, keyed by stage fingerprint (runs.rs)
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
use std::sync::{Mutex, MutexGuard};

use fs4::fs_std::FileExt;

use crate::error::{io_err, CacheError};
use crate::fsutil;
use crate::hash::{self, Hash};
use crate::stat::StatCache;

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
    stat: Mutex<StatCache>,
}

/// Exclusive hold on a store's `lock` file; released on drop.
#[derive(Debug)]
pub struct StoreLock {
    file: fs::File,
    path: PathBuf,
}

impl StoreLock {
    /// The lock file held.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for StoreLock {
    fn drop(&mut self) {
        // Closing the file would release it too; unlocking first makes the
        // release not depend on other handles to the same open file.
        let _ = FileExt::unlock(&self.file);
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
        Ok(Store { root, stat })
    }

    /// The store's root directory (absolute).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Takes the store's exclusive lock, waiting for another process to
    /// release it if needed (and saying so once on stderr).
    pub fn lock(&self) -> Result<StoreLock, CacheError> {
        let path = self.root.join("lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_err("open", &path))?;
        if !FileExt::try_lock_exclusive(&file).map_err(io_err("lock", &path))? {
            eprintln!("waiting for another retort process to release {}", path.display());
            FileExt::lock_exclusive(&file).map_err(io_err("lock", &path))?;
        }
        Ok(StoreLock { file, path })
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
        let meta = fs::metadata(path).map_err(io_err("read", path))?;
        let manifest = if meta.is_dir() {
            hash::dir_manifest(path, &mut |p| hash::hash_file(p))
                .map_err(io_err("hash", path))?
        } else {
            let hash = hash::hash_file(path).map_err(io_err("hash", path))?;
            vec![hash::ManifestEntry { path: String::new(), hash, bytes: meta.len() }]
        };
        let artifact = Artifact {
            hash: if meta.is_dir() { hash::manifest_hash(&manifest) } else { manifest[0].hash },
            kind: if meta.is_dir() { ArtifactKind::Dir } else { ArtifactKind::File },
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
            let file = if e.path.is_empty() { dest.clone() } else { dest.join(&e.path) };
            stat.record(&file, e.hash).map_err(io_err("read", &file))?;
        }
        let _ = stat.save(); // a lost stat cache costs a rehash, nothing more
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
        let artifact = Artifact { hash, kind: ArtifactKind::File, bytes: bytes.len() as u64 };
        if self.state(&hash) == ObjectState::Valid {
            return Ok(artifact);
        }
        let dest = self.object_path(&hash);
        fsutil::write_atomic(&self.tmp_root(), &dest, bytes, 0o444)?;
        let _ = fsutil::seal(&dest, fsutil::object_mtime());
        let mut stat = self.stat();
        stat.record(&dest, hash).map_err(io_err("read", &dest))?;
        let _ = stat.save();
        Ok(artifact)
    }

    /// Whether the object is present and intact, cheaply: a stat compared
    /// with the one recorded when it was stored, or a full rehash if that
    /// differs. A corrupt object is deleted (with a warning on stderr) so the
    /// stage that made it runs again.
    pub fn state(&self, hash: &Hash) -> ObjectState {
        let path = self.object_path(hash);
        match fs::symlink_metadata(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return ObjectState::Missing,
            Ok(m) if !m.file_type().is_symlink() => {}
            _ => return self.discard_corrupt(hash, &path),
        }
        let mut stat = self.stat();
        let got = stat.hash_path(&path);
        let _ = stat.save();
        drop(stat);
        match got {
            Ok((h, _)) if h == *hash => ObjectState::Valid,
            Err(e) if e.kind() == io::ErrorKind::NotFound => ObjectState::Missing,
            _ => self.discard_corrupt(hash, &path),
        }
    }

    fn discard_corrupt(&self, hash: &Hash, path: &Path) -> ObjectState {
        eprintln!("warning: object {} is corrupt; removed, will recompute", hash.short());
        let _ = fsutil::remove_tree(path);
        self.forget(path);
        ObjectState::Corrupt
    }

    /// Like [`Store::state`] but always rehashes every byte, and never
    /// deletes: for `cache verify`, which reports rather than repairs.
    pub fn verify(&self, hash: &Hash) -> ObjectState {
        let path = self.object_path(hash);
        match fs::symlink_metadata(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return ObjectState::Missing,
            Ok(m) if !m.file_type().is_symlink() => {}
            _ => return ObjectState::Corrupt,
        }
        match hash::hash_path(&path) {
            Ok((h, _)) if h == *hash => ObjectState::Valid,
            _ => ObjectState::Corrupt,
        }
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

    fn stat(&self) -> MutexGuard<'_, StatCache> {
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
