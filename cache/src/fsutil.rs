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
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent).map_err(io_err("create directory", parent))?;
    }
    let mut tmp =
        tempfile::NamedTempFile::new_in(tmp_dir).map_err(io_err("create temp file in", tmp_dir))?;
    let write = |f: &mut fs::File| -> io::Result<()> {
        f.write_all(bytes)?;
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.sync_all()
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
