//! A stat cache: remembers which hash a file had at a given (device, inode,
//! size, mtime), so an unchanged multi-gigabyte checkpoint is not re-read on
//! every run (DVC's state db does the same).
//!
//! An entry is trusted only if the file's mtime was at least [`RACY_NS`]
//! older than the moment the entry was recorded. Otherwise a write landing in
//! the same timestamp tick as the one we saw could change the bytes without
//! changing the stat (git's "racy clean" problem); such entries are rehashed.
//!
//! Its on-disk format is in `stat_file.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{io_err, CacheError};
use crate::hash::{self, Hash};
use crate::stat_file::{encode, mtime_ns, read_entries, Entry};
use crate::store::ArtifactKind;

/// How much older than its recording time a file's mtime must be for the
/// entry to be trusted.
pub(crate) const RACY_NS: i64 = 2_000_000_000;

/// Remembers file hashes by stat so unchanged files are not re-hashed.
#[derive(Debug)]
pub struct StatCache {
    file: PathBuf,
    /// Keyed by the absolute path's bytes: byte comparison is much cheaper
    /// than `Path`'s component-wise ordering, which matters for load time.
    entries: BTreeMap<Vec<u8>, Entry>,
    /// Paths changed or forgotten since load; only these override what
    /// another process may have saved meanwhile.
    changed: BTreeSet<Vec<u8>>,
}

impl StatCache {
    /// Loads the cache stored at `file`. A missing, unreadable or corrupt
    /// file gives an empty cache, never an error.
    pub fn load(file: &Path) -> StatCache {
        StatCache {
            file: file.to_path_buf(),
            entries: read_entries(file),
            changed: BTreeSet::new(),
        }
    }

    /// The hash of the file at `path`, read from the cache if its stat is
    /// unchanged, otherwise computed and remembered.
    pub fn hash_file(&mut self, path: &Path) -> io::Result<Hash> {
        let abs = std::path::absolute(path)?;
        let meta = fs::metadata(&abs)?;
        if let Some(hash) = self.lookup(&abs, &meta) {
            return Ok(hash);
        }
        let hash = hash::hash_file(&abs)?;
        self.remember(&abs, &meta, hash)?;
        Ok(hash)
    }

    /// The cached hash of `abs` if `meta` (its current stat) matches a
    /// trusted entry.
    fn lookup(&self, abs: &Path, meta: &fs::Metadata) -> Option<Hash> {
        let e = self.entries.get(key_of(abs))?;
        e.matches(meta).then_some(e.hash)
    }

    /// Remembers `hash` for `abs`, whose stat was `before` when hashing
    /// started, unless the file changed meanwhile: then the hash may describe
    /// neither version, so it must not be remembered.
    fn remember(&mut self, abs: &Path, before: &fs::Metadata, hash: Hash) -> io::Result<()> {
        if same_stat(before, &fs::metadata(abs)?) {
            self.insert(abs, before, hash);
        }
        Ok(())
    }

    /// The hash of a file or directory; a directory's files each go through
    /// the cache, then its manifest is hashed (cheap).
    pub fn hash_path(&mut self, path: &Path) -> io::Result<(Hash, ArtifactKind)> {
        if !fs::metadata(path)?.is_dir() {
            return Ok((self.hash_file(path)?, ArtifactKind::File));
        }
        let entries = hash::dir_manifest(path, &mut |p| self.hash_file(p))?;
        Ok((hash::manifest_hash(&entries), ArtifactKind::Dir))
    }

    /// Like [`StatCache::hash_file`] on a cache shared between threads,
    /// holding its mutex only for the look-up and the update, never while a
    /// (possibly multi-gigabyte) file is read.
    pub(crate) fn hash_file_shared(cache: &Mutex<StatCache>, path: &Path) -> io::Result<Hash> {
        let lock = || {
            cache
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
        };
        let abs = std::path::absolute(path)?;
        let meta = fs::metadata(&abs)?;
        if let Some(hash) = lock().lookup(&abs, &meta) {
            return Ok(hash);
        }
        let hash = hash::hash_file(&abs)?;
        lock().remember(&abs, &meta, hash)?;
        Ok(hash)
    }

    /// Remembers that `path` has `hash` as of its current stat, without
    /// reading it: for callers that just wrote or hashed the bytes themselves.
    pub(crate) fn record(&mut self, path: &Path, hash: Hash) -> io::Result<()> {
        let abs = std::path::absolute(path)?;
        let meta = fs::metadata(&abs)?;
        self.insert(&abs, &meta, hash);
        Ok(())
    }

    /// Drops what is known about `path` (and, for a directory, every path
    /// under it), e.g. because it was deleted.
    pub fn forget(&mut self, path: &Path) {
        let Ok(abs) = std::path::absolute(path) else {
            return;
        };
        let gone: Vec<Vec<u8>> = self
            .entries
            .keys()
            .filter(|p| Path::new(std::ffi::OsStr::from_bytes(p)).starts_with(&abs))
            .cloned()
            .collect();
        for p in gone {
            self.entries.remove(&p);
            self.changed.insert(p);
        }
    }

    /// Writes the cache back if anything changed: merged over what is on
    /// disk now (another process may have saved meanwhile), to a temp file
    /// that is renamed into place, so readers never see half a file.
    pub fn save(&self) -> Result<(), CacheError> {
        if self.changed.is_empty() {
            return Ok(());
        }
        let mut merged = read_entries(&self.file);
        for p in &self.changed {
            match self.entries.get(p) {
                Some(e) => merged.insert(p.clone(), *e),
                None => merged.remove(p),
            };
        }
        let dir = match self.file.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        fs::create_dir_all(dir).map_err(io_err("create directory", dir))?;
        let mut tmp =
            tempfile::NamedTempFile::new_in(dir).map_err(io_err("create temp file in", dir))?;
        tmp.write_all(&encode(&merged))
            .map_err(io_err("write", tmp.path()))?;
        tmp.persist(&self.file)
            .map_err(|e| io_err("replace", &self.file)(e.error))?;
        Ok(())
    }

    fn insert(&mut self, path: &Path, meta: &fs::Metadata, hash: Hash) {
        let key = key_of(path);
        let entry = Entry {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.len(),
            mtime_ns: mtime_ns(meta),
            recorded_ns: now_ns(),
            hash,
        };
        // A newline in a path would break the line format; such files are
        // just never cached.
        if key.contains(&b'\n') {
            return;
        }
        if self.entries.get(key) != Some(&entry) {
            self.entries.insert(key.to_vec(), entry);
            self.changed.insert(key.to_vec());
        }
    }

    /// How many files are remembered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

fn key_of(abs: &Path) -> &[u8] {
    abs.as_os_str().as_bytes()
}

fn same_stat(a: &fs::Metadata, b: &fs::Metadata) -> bool {
    (a.dev(), a.ino(), a.len(), mtime_ns(a)) == (b.dev(), b.ino(), b.len(), mtime_ns(b))
}

fn now_ns() -> i64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::{hash_bytes, FILES_HASHED};
    use std::time::{Duration, Instant};

    fn hashes() -> u64 {
        FILES_HASHED.with(|c| c.get())
    }

    /// Writes `bytes` with an mtime well outside the racy window.
    fn write_old(path: &Path, bytes: &[u8], mtime: SystemTime) {
        fs::write(path, bytes).unwrap();
        fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
    }

    fn long_ago() -> SystemTime {
        SystemTime::now() - Duration::from_secs(3600)
    }

    #[test]
    fn unchanged_file_is_not_rehashed() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("data.jsonl");
        let t = long_ago();
        write_old(&f, b"one\n", t);
        let mut sc = StatCache::load(&d.path().join("stat"));
        let before = hashes();
        assert_eq!(sc.hash_file(&f).unwrap(), hash_bytes(b"one\n"));
        assert_eq!(sc.hash_file(&f).unwrap(), hash_bytes(b"one\n"));
        assert_eq!(
            hashes() - before,
            1,
            "second lookup must come from the cache"
        );

        // Same size, same mtime, other bytes: the cache (by design) trusts
        // the stat. This is what proves the bytes were not read again.
        write_old(&f, b"two\n", t);
        assert_eq!(sc.hash_file(&f).unwrap(), hash_bytes(b"one\n"));
        assert_eq!(hashes() - before, 1);

        // Any stat change (here: size) is noticed.
        write_old(&f, b"three\n", t);
        assert_eq!(sc.hash_file(&f).unwrap(), hash_bytes(b"three\n"));
        assert_eq!(hashes() - before, 2);
    }

    #[test]
    fn recently_modified_file_is_always_rehashed() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("fresh");
        fs::write(&f, b"abc").unwrap();
        let mut sc = StatCache::load(&d.path().join("stat"));
        let before = hashes();
        sc.hash_file(&f).unwrap();
        // Rewritten within the same timestamp tick: same size and the same
        // mtime (forced here, since the tick is too fine to hit reliably).
        // Only the racy rule makes us read it again.
        let mtime = fs::metadata(&f).unwrap().modified().unwrap();
        write_old(&f, b"xyz", mtime);
        assert_eq!(sc.hash_file(&f).unwrap(), hash_bytes(b"xyz"));
        assert_eq!(hashes() - before, 2);
    }

    #[test]
    fn save_and_load_round_trip_and_skip_unchanged_saves() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("state/stat");
        let f = d.path().join("a b\tc"); // spaces and tabs in paths survive
        write_old(&f, b"content", long_ago());
        let mut sc = StatCache::load(&file);
        let h = sc.hash_file(&f).unwrap();
        sc.save().unwrap();
        let ino = fs::metadata(&file).unwrap().ino();

        let mut again = StatCache::load(&file);
        assert_eq!(again.len(), 1);
        let before = hashes();
        assert_eq!(again.hash_file(&f).unwrap(), h);
        assert_eq!(hashes(), before);
        again.save().unwrap();
        assert_eq!(
            fs::metadata(&file).unwrap().ino(),
            ino,
            "nothing changed, nothing written"
        );
    }

    #[test]
    fn forget_forces_a_rehash_and_survives_merge() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("stat");
        let f = d.path().join("f");
        write_old(&f, b"x", long_ago());
        let mut sc = StatCache::load(&file);
        sc.hash_file(&f).unwrap();
        sc.save().unwrap();
        sc.forget(d.path());
        sc.save().unwrap();
        assert_eq!(
            StatCache::load(&file).len(),
            0,
            "merge must not resurrect it"
        );
        let before = hashes();
        sc.hash_file(&f).unwrap();
        assert_eq!(hashes() - before, 1);
    }

    #[test]
    fn concurrent_savers_merge() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("stat");
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        write_old(&a, b"a", long_ago());
        write_old(&b, b"b", long_ago());
        let mut one = StatCache::load(&file);
        let mut two = StatCache::load(&file);
        one.hash_file(&a).unwrap();
        two.hash_file(&b).unwrap();
        one.save().unwrap();
        two.save().unwrap();
        assert_eq!(StatCache::load(&file).len(), 2);
    }

    #[test]
    fn directory_files_go_through_the_cache() {
        let d = tempfile::tempdir().unwrap();
        let model = d.path().join("model");
        fs::create_dir_all(model.join("sub")).unwrap();
        write_old(&model.join("config.json"), b"{}", long_ago());
        write_old(&model.join("sub/w.bin"), b"weights", long_ago());
        let mut sc = StatCache::load(&d.path().join("stat"));
        let got = sc.hash_path(&model).unwrap();
        assert_eq!(got, (hash::hash_dir(&model).unwrap(), ArtifactKind::Dir));
        let before = hashes();
        assert_eq!(sc.hash_path(&model).unwrap(), got);
        assert_eq!(hashes(), before);
    }

    #[test]
    fn two_hundred_entries_load_fast() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("stat");
        let mut sc = StatCache::load(&file);
        let mut meta_src = d.path().join("f");
        write_old(&meta_src, b"x", long_ago());
        let meta = fs::metadata(&meta_src).unwrap();
        for i in 0..200 {
            meta_src = d.path().join(format!("objects/ab/{i:062}"));
            sc.insert(&meta_src, &meta, hash_bytes(&[i as u8]));
        }
        sc.save().unwrap();
        let start = Instant::now();
        let loaded = StatCache::load(&file);
        let took = start.elapsed();
        assert_eq!(loaded.len(), 200);
        // The real bound is well under 1 ms in an optimized build; this
        // unoptimized test only guards against a pathological format.
        assert!(took < Duration::from_millis(20), "took {took:?}");
    }
}
