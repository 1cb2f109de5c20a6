//! Object integrity: is an object still the bytes its name promises?
//!
//! `state` is the cheap check done on every cache hit (a `stat` per file,
//! thanks to the stat recorded when the object was stored) and repairs by
//! deleting, so the stage runs again. `verify` is the thorough check behind
//! `cache verify`: it reads every byte and only reports.

use std::fs;
use std::io;
use std::path::Path;

use crate::fsutil;
use crate::hash::{self, Hash};
use crate::records::ObjectState;
use crate::stat::StatCache;
use crate::store::Store;

impl Store {
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
        let got = self.cached_hash(&path);
        let _ = self.stat().save();
        match got {
            Ok(h) if h == *hash => ObjectState::Valid,
            Err(e) if e.kind() == io::ErrorKind::NotFound => ObjectState::Missing,
            _ => self.discard_corrupt(hash, &path),
        }
    }

    fn discard_corrupt(&self, hash: &Hash, path: &Path) -> ObjectState {
        eprintln!(
            "warning: object {} is corrupt; removed, will recompute",
            hash.short()
        );
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

    /// The hash of an object through the store's stat cache, locking it per
    /// file so concurrent checks do not wait on each other's reads.
    fn cached_hash(&self, path: &Path) -> io::Result<Hash> {
        if !fs::metadata(path)?.is_dir() {
            return StatCache::hash_file_shared(&self.stat, path);
        }
        let files = hash::dir_manifest(path, &mut |p| StatCache::hash_file_shared(&self.stat, p))?;
        Ok(hash::manifest_hash(&files))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::{flip_byte, hashes, store};
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn state_is_a_stat_not_a_rehash() {
        let (_d, s) = store();
        let a = s.put_bytes(&vec![7u8; 100_000]).unwrap();
        let before = hashes();
        assert_eq!(s.state(&a.hash), ObjectState::Valid);
        // A fresh `Store` reads the stat cache saved by the first one.
        let again = Store::open(s.root()).unwrap();
        assert_eq!(again.state(&a.hash), ObjectState::Valid);
        assert_eq!(hashes(), before, "no object was read");
        assert_eq!(again.verify(&a.hash), ObjectState::Valid);
        assert_eq!(hashes(), before + 1, "verify always reads");
    }

    #[test]
    fn state_detects_a_flipped_byte_and_deletes() {
        let (_d, s) = store();
        let a = s.put_bytes(b"0123456789").unwrap();
        let p = s.object_path(&a.hash);
        flip_byte(&p, 3);
        assert_eq!(s.state(&a.hash), ObjectState::Corrupt);
        assert!(!p.exists());
        assert_eq!(s.state(&a.hash), ObjectState::Missing);
        // And the same bytes can be stored again.
        assert_eq!(s.put_bytes(b"0123456789").unwrap(), a);
        assert_eq!(s.state(&a.hash), ObjectState::Valid);
    }

    #[test]
    fn state_detects_truncation() {
        let (_d, s) = store();
        let a = s.put_bytes(b"0123456789").unwrap();
        let p = s.object_path(&a.hash);
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(4)
            .unwrap();
        assert_eq!(s.state(&a.hash), ObjectState::Corrupt);
        assert!(!p.exists());
    }
}
