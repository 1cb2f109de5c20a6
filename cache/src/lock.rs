//! The store's advisory lock: one pipeline run (or gc) at a time per cache.
//!
//! Two `retort run`s on the same cache would otherwise race on run records
//! and gc could delete what a running stage is about to reference. The lock
//! is `flock` on `root/lock` (via fs4): the kernel drops it when the process
//! dies, so a crash never leaves a stale lock behind.

use std::fs;
use std::path::{Path, PathBuf};

use fs4::fs_std::FileExt;

use crate::error::{io_err, CacheError};
use crate::store::Store;

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
    /// Takes the store's exclusive lock, waiting for another process to
    /// release it if needed (and saying so once on stderr).
    pub fn lock(&self) -> Result<StoreLock, CacheError> {
        let path = self.root().join("lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_err("open", &path))?;
        if !FileExt::try_lock_exclusive(&file).map_err(io_err("lock", &path))? {
            eprintln!(
                "waiting for another retort process to release {}",
                path.display()
            );
            FileExt::lock_exclusive(&file).map_err(io_err("lock", &path))?;
        }
        Ok(StoreLock { file, path })
    }
}

#[cfg(test)]
mod tests {
    use crate::store::tests::store;
    use crate::store::Store;
    use std::io::Read;
    use std::path::Path;
    use std::process::{Command, Stdio};
    use std::sync::Mutex;
    use std::time::Duration;

    #[test]
    fn lock_serializes_holders() {
        let (_d, s) = store();
        let log = Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for id in 0..3 {
                let (s, log) = (&s, &log);
                scope.spawn(move || {
                    let _held = s.lock().unwrap();
                    log.lock().unwrap().push((id, "in"));
                    std::thread::sleep(Duration::from_millis(60));
                    log.lock().unwrap().push((id, "out"));
                });
            }
        });
        let log = log.into_inner().unwrap();
        assert_eq!(log.len(), 6);
        for pair in log.chunks(2) {
            assert_eq!(
                (pair[0].0, pair[0].1, pair[1].1),
                (pair[1].0, "in", "out"),
                "{log:?}"
            );
        }
        let held = s.lock().unwrap();
        assert_eq!(held.path(), s.root().join("lock"));
    }

    /// Body of the second process in `another_process_waits_and_says_so`.
    #[test]
    #[ignore = "run by another_process_waits_and_says_so"]
    fn lock_child() {
        let root = std::env::var("RETORT_CACHE_TEST_STORE").expect("child only");
        let s = Store::open(Path::new(&root)).unwrap();
        let _held = s.lock().unwrap();
        std::fs::write(s.root().join("child-got-it"), b"").unwrap();
    }

    #[test]
    fn another_process_waits_and_says_so() {
        let (_d, s) = store();
        let held = s.lock().unwrap();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "lock::tests::lock_child",
                "--exact",
                "--ignored",
                "--nocapture",
            ])
            .env("RETORT_CACHE_TEST_STORE", s.root())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(400));
        let marker = s.root().join("child-got-it");
        assert!(!marker.exists(), "child took a lock we hold");
        drop(held);
        assert!(child.wait().unwrap().success());
        assert!(marker.exists());
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        let expected = format!(
            "waiting for another retort process to release {}",
            s.root().join("lock").display()
        );
        assert_eq!(stderr.matches(&expected).count(), 1, "{stderr}");
    }
}
