//! The item cache: per-item results of stages that call a model once per
//! item (generate, reflect, score), keyed by everything that determines the
//! item (model hash, sampling parameters, prompt, sample index, seed).
//!
//! It is what makes adding 100 prompts generate only those 100, and a run
//! killed mid-stage resume where it stopped: the stage looks each item up
//! before computing it and stores it right after. Items are small and many,
//! so they are written without fsync (a rename is still atomic against a
//! killed process) and carry their own blake3 checksum, so a torn or damaged
//! item reads as a miss, never as data.

use std::fs;
use std::io;
use std::path::PathBuf;

use crate::error::{io_err, CacheError};
use crate::hash::{hash_bytes, Hash};
use crate::store::Store;

impl Store {
    fn item_path(&self, key: &Hash) -> PathBuf {
        let hex = key.to_hex();
        self.root().join("items").join(&hex[..2]).join(&hex[2..])
    }

    /// The bytes stored for `key`, or `None` (absent, torn or damaged).
    pub fn item_get(&self, key: &Hash) -> Option<Vec<u8>> {
        let raw = fs::read(self.item_path(key)).ok()?;
        if raw.len() < 32 {
            return None;
        }
        let (sum, payload) = raw.split_at(32);
        (hash_bytes(payload).as_bytes() == sum).then(|| payload.to_vec())
    }

    /// Stores `bytes` for `key` (replacing any earlier value atomically).
    pub fn item_put(&self, key: &Hash, bytes: &[u8]) -> Result<(), CacheError> {
        let path = self.item_path(key);
        let dir = path.parent().expect("item paths have a parent");
        fs::create_dir_all(dir).map_err(io_err("create directory", dir))?;
        let mut raw = Vec::with_capacity(32 + bytes.len());
        raw.extend_from_slice(hash_bytes(bytes).as_bytes());
        raw.extend_from_slice(bytes);
        let tmp_dir = self.root().join("tmp");
        let mut tmp = tempfile::NamedTempFile::new_in(&tmp_dir).map_err(io_err("create temp file in", &tmp_dir))?;
        io::Write::write_all(tmp.as_file_mut(), &raw).map_err(io_err("write", tmp.path()))?;
        tmp.persist(&path).map_err(|e| io_err("rename into", &path)(e.error))?;
        Ok(())
    }

    /// Number of cached items (for `cache du`).
    pub fn item_count(&self) -> u64 {
        let Ok(dirs) = fs::read_dir(self.root().join("items")) else { return 0 };
        dirs.flatten().filter_map(|d| fs::read_dir(d.path()).ok()).map(|f| f.count() as u64).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_round_trip_and_damage_reads_as_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let key = hash_bytes(b"model|params|prompt|0|seed");
        assert_eq!(store.item_get(&key), None);
        store.item_put(&key, b"{\"response\":\"42\"}").unwrap();
        assert_eq!(store.item_get(&key).as_deref(), Some(&b"{\"response\":\"42\"}"[..]));
        // Flip one payload byte: checksum mismatch, a miss.
        let path = store.item_path(&key);
        let mut raw = fs::read(&path).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        fs::write(&path, &raw).unwrap();
        assert_eq!(store.item_get(&key), None);
        // Truncated below the checksum: a miss.
        fs::write(&path, b"short").unwrap();
        assert_eq!(store.item_get(&key), None);
        assert_eq!(store.item_count(), 1);
    }
}
