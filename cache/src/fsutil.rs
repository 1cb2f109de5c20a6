//! Small filesystem helpers shared by the store: atomic writes, sealing an
//! object read-only, removing objects, measuring trees.
//!
//! They exist so that every write in the store goes through the same
//! "temp file, then rename" path: a process killed at any instant leaves
//! either the old state or the new one visible, never a partial file.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::error::{io_err, CacheError};

/// Writes `bytes` to `dest` atomically: a temp file in `tmp_dir` (which must
/// be on the same filesystem), fsynced, given `mode`, then renamed over
/// `dest`. The parent of `dest` is created if needed.
pub(crate) fn write_atomic(
    tmp_dir: &Path,
    dest: &Path,
    bytes: &[u8],
    mode: u32,
) -> Result<(), CacheError> {
    write_atomic_with(tmp_dir, dest, bytes, mode, true)
}

/// [`write_atomic`] with the fsync optional: a rename is atomic against a
/// killed process either way; fsync only adds durability across a power
/// loss, which records that are validated on read (a damaged one is a miss)
/// do not need.
pub(crate) fn write_atomic_with(
    tmp_dir: &Path,
    dest: &Path,
    bytes: &[u8],
    mode: u32,
    sync: bool,
) -> Result<(), CacheError> {
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent).map_err(io_err("create directory", parent))?;
    }
    let mut tmp =
        tempfile::NamedTempFile::new_in(tmp_dir).map_err(io_err("create temp file in", tmp_dir))?;
    let write = |f: &mut fs::File| -> io::Result<()> {
        f.write_all(bytes)?;
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        if sync {
            f.sync_all()?;
        }
        Ok(())
    };
    write(tmp.as_file_mut()).map_err(io_err("write", tmp.path()))?;
    tmp.persist(dest)
        .map_err(|e| io_err("rename into", dest)(e.error))?;
    Ok(())
}

/// The mtime given to objects: older than now by more than the stat cache's
/// racy window, so the stat recorded right after storing is trusted at once,
/// and any later write (which sets mtime to the current time) shows up as a
/// changed stat.
pub(crate) fn object_mtime() -> SystemTime {
    SystemTime::now() - Duration::from_secs(3)
}

/// Makes a file or every file under a directory read-only (0444) and stamps
/// it with `mtime`. Directories themselves stay writable so that gc and
/// corruption recovery can delete their contents without chmod games.
pub(crate) fn seal(path: &Path, mtime: SystemTime) -> io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    if meta.is_dir() {
        for entry in fs::read_dir(path)? {
            seal(&entry?.path(), mtime)?;
        }
        return Ok(());
    }
    // Stamping needs ownership; if we do not own the file the stat cache
    // just rehashes it once, so a failure here is not worth failing for.
    if let Ok(f) = fs::File::open(path) {
        let _ = f.set_modified(mtime);
    }
    fs::set_permissions(path, fs::Permissions::from_mode(0o444))
}

/// Deletes a file or directory object, first making directories writable
/// (someone may have chmodded them) so the removal cannot half-fail on
/// permissions.
pub(crate) fn remove_tree(path: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    if !meta.is_dir() {
        return fs::remove_file(path);
    }
    make_dirs_writable(path);
    fs::remove_dir_all(path)
}

fn make_dirs_writable(dir: &Path) {
    let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o755));
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            make_dirs_writable(&entry.path());
        }
    }
}

/// Total size of the regular files in a file or directory, not following
/// symlinks.
pub(crate) fn tree_bytes(path: &Path) -> io::Result<u64> {
    let meta = fs::symlink_metadata(path)?;
    if !meta.is_dir() {
        return Ok(meta.len());
    }
    let mut total = 0;
    for entry in fs::read_dir(path)? {
        total += tree_bytes(&entry?.path())?;
    }
    Ok(total)
}

/// Copies a file or directory tree (regular files and directories only), for
/// moving an artifact into the store from another filesystem.
pub(crate) fn copy_tree(src: &Path, dst: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(src)?;
    if meta.is_dir() {
        fs::create_dir(dst)?;
        for entry in fs::read_dir(src)? {
            let entry = entry?;
            copy_tree(&entry.path(), &dst.join(entry.file_name()))?;
        }
        Ok(())
    } else {
        fs::copy(src, dst).map(|_| ())
    }
}

/// The mtime of `path`, or `None` if it cannot be read.
pub(crate) fn modified(path: &Path) -> Option<SystemTime> {
    fs::symlink_metadata(path).and_then(|m| m.modified()).ok()
}

#[cfg(test)]
mod tests {
    use crate::hash;
    use crate::records::{ObjectState, OutputRecord, RunRecord};
    use crate::store::tests::store;
    use crate::store::Store;
    use std::collections::BTreeMap;
    use std::fs;
    use std::io::Write;
    use std::path::Path;
    use std::time::{Duration, Instant};

    /// Not a test on its own: the body of the child process that
    /// `sigkill_mid_put_leaves_no_partial_object` kills at random moments.
    #[test]
    #[ignore = "run by sigkill_mid_put_leaves_no_partial_object"]
    fn writer_child() {
        let root = std::env::var("RETORT_CACHE_TEST_STORE").expect("child only");
        let first: u32 = std::env::var("RETORT_CACHE_TEST_FIRST")
            .unwrap()
            .parse()
            .unwrap();
        let s = Store::open(Path::new(&root)).unwrap();
        // Each child writes objects no earlier child wrote, so it cannot
        // repair (and hide) what a killed predecessor left behind.
        for i in first.. {
            let mut data = vec![i as u8; 3 << 20];
            data[..4].copy_from_slice(&i.to_le_bytes());
            s.put_bytes(&data).unwrap();
            let t = s.temp_dir().unwrap();
            let model = t.path().join("model");
            fs::create_dir(&model).unwrap();
            for f in 0..4 {
                let mut w = fs::File::create(model.join(format!("w{f}"))).unwrap();
                w.write_all(&data[f * 1024..]).unwrap();
            }
            let a = s.put_path(&model).unwrap();
            let rec = RunRecord {
                outputs: [(
                    "model".into(),
                    OutputRecord {
                        hash: a.hash,
                        kind: a.kind,
                        bytes: a.bytes,
                        rows: None,
                    },
                )]
                .into(),
                metrics: BTreeMap::new(),
                duration_ms: 1,
                created_unix_ms: u64::from(i),
                device: None,
                timings: BTreeMap::new(),
            };
            s.put_run(&hash::hash_bytes(&i.to_le_bytes()), &rec)
                .unwrap();
        }
    }

    #[test]
    fn sigkill_mid_put_leaves_no_partial_object() {
        let (_d, s) = store();
        // Ten kills at staggered moments of the write cycle; a non-atomic
        // write is caught in most runs of this test (checked by mutation).
        for round in 0..10u64 {
            let seen = s.entries("objects", "").unwrap().len();
            let mut child = std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "fsutil::tests::writer_child",
                    "--exact",
                    "--ignored",
                    "--test-threads=1",
                ])
                .env("RETORT_CACHE_TEST_STORE", s.root())
                .env("RETORT_CACHE_TEST_FIRST", (round * 1000).to_string())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            let start = Instant::now();
            while s.entries("objects", "").unwrap().len() <= seen
                && start.elapsed() < Duration::from_secs(20)
            {
                std::thread::sleep(Duration::from_micros(500));
            }
            std::thread::sleep(Duration::from_micros(1700 * round));
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
        }
        let objects = s.entries("objects", "").unwrap();
        assert!(
            objects.len() >= 10,
            "the child made progress: {}",
            objects.len()
        );
        for (hash, path) in &objects {
            assert_eq!(
                s.verify(hash),
                ObjectState::Valid,
                "partial object {}",
                path.display()
            );
        }
        let records = s.entries("runs", ".json").unwrap().len();
        assert_eq!(
            s.runs().unwrap().len(),
            records,
            "every visible run record parses"
        );
    }
}
