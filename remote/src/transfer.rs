//! Moving store entries between the local store and the remote: objects
//! (files, and directories as a manifest plus one blob per file), run
//! records and item-log copies.
//!
//! Pushes go leaves first (a directory's files before its manifest, a
//! run's outputs before its record), so whatever names something on the
//! remote was written after the thing it names. Fetches re-hash every byte
//! before it enters the local store; a mismatch is a miss, warned once.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path as FsPath;

use bytes::Bytes;
use futures::{stream, StreamExt, TryStreamExt};
use retort_cache::{canonical_json, CacheError, hash_bytes, manifest_of, ArtifactKind, Hash, ManifestEntry, ObjectState, RunRecord, Store};
use serde::{Deserialize, Serialize};

use crate::client::Remote;
use crate::error::RemoteError;

/// Requests in flight at once during a transfer.
const PARALLEL: usize = 16;

/// What fetching one object did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fetched {
    /// It was in the local store already; nothing was downloaded.
    Present,
    /// Downloaded, re-hashed and stored.
    Fetched,
    /// The remote does not have it.
    Missing,
    /// The remote's bytes do not match the name (warned once; not stored).
    Corrupt,
}

/// An object as found on the remote by [`Remote::verify_object`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemoteState {
    /// Present, and every byte hashes to its name.
    Valid,
    /// Not there.
    Missing,
    /// There, but its bytes do not match its name.
    Corrupt,
}

/// Counts of a push.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PushReport {
    /// Entries this push wrote.
    pub uploaded: u64,
    /// Entries the remote had already.
    pub present: u64,
    /// Bytes this push wrote.
    pub bytes: u64,
    /// Objects to push that the local store no longer has (or has damaged).
    pub missing_locally: u64,
}

impl PushReport {
    fn add(&mut self, o: PushReport) {
        self.uploaded += o.uploaded;
        self.present += o.present;
        self.bytes += o.bytes;
        self.missing_locally += o.missing_locally;
    }

    fn one(created: bool, bytes: usize) -> PushReport {
        match created {
            true => PushReport { uploaded: 1, bytes: bytes as u64, ..PushReport::default() },
            false => PushReport { present: 1, ..PushReport::default() },
        }
    }
}

/// A blob as downloaded.
enum Blob {
    Intact(Bytes),
    Missing,
    Corrupt,
}

/// A directory object's manifest on the remote: the exact bytes its name
/// is the hash of (see `retort_cache::manifest_hash`).
#[derive(Serialize, Deserialize)]
struct Tree {
    files: Vec<ManifestEntry>,
}

/// The first line of a run record on the remote; the checksum after it
/// covers the fingerprint and the record, so a record cannot be damaged, or
/// moved to another fingerprint's key, without the fetch noticing.
const RUN_MAGIC: &str = "retort-run-1";

fn seal_run(fp: &Hash, json: &[u8]) -> Vec<u8> {
    let mut out = format!("{RUN_MAGIC} {}\n", run_sum(fp, json).to_hex()).into_bytes();
    out.extend_from_slice(json);
    out
}

fn unseal_run<'b>(fp: &Hash, body: &'b [u8]) -> Option<&'b [u8]> {
    let nl = body.iter().position(|&b| b == b'\n')?;
    let head = std::str::from_utf8(&body[..nl]).ok()?;
    let sum = head.strip_prefix(RUN_MAGIC)?.trim().parse::<Hash>().ok()?;
    let json = &body[nl + 1..];
    (run_sum(fp, json) == sum).then_some(json)
}

fn run_sum(fp: &Hash, json: &[u8]) -> Hash {
    let mut bytes = fp.as_bytes().to_vec();
    bytes.extend_from_slice(json);
    hash_bytes(&bytes)
}

/// A relative path inside a directory object that stays inside it.
fn safe_relative(path: &str) -> bool {
    !path.is_empty() && !path.starts_with('/') && path.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
}

impl Remote {
    /// Pushes objects (and for directories, their files), many at once.
    pub fn push_objects(&self, store: &Store, objects: &[(Hash, ArtifactKind)]) -> Result<PushReport, RemoteError> {
        self.block_on(self.push_objects_async(store, objects))
    }

    async fn push_objects_async(&self, store: &Store, objects: &[(Hash, ArtifactKind)]) -> Result<PushReport, RemoteError> {
        let unique: BTreeSet<_> = objects.iter().copied().collect();
        let reports: Vec<PushReport> = stream::iter(unique)
            .map(|(hash, kind)| async move {
                match kind {
                    ArtifactKind::File => self.push_file(store, &hash).await,
                    ArtifactKind::Dir => self.push_dir(store, &hash).await,
                }
            })
            .buffer_unordered(PARALLEL)
            .try_collect()
            .await?;
        let mut total = PushReport::default();
        reports.into_iter().for_each(|r| total.add(r));
        Ok(total)
    }

    async fn push_file(&self, store: &Store, hash: &Hash) -> Result<PushReport, RemoteError> {
        let key = self.keys.object(hash);
        if self.exists(&key).await? {
            return Ok(PushReport::one(false, 0));
        }
        // Re-hashed as read: bad local bytes never go out under a good name.
        match fs::read(store.object_path(hash)) {
            Ok(bytes) if hash_bytes(&bytes) == *hash => {
                let n = bytes.len();
                Ok(PushReport::one(self.put_new(&key, Bytes::from(bytes)).await?, n))
            }
            _ => Ok(PushReport { missing_locally: 1, ..PushReport::default() }),
        }
    }

    async fn push_dir(&self, store: &Store, hash: &Hash) -> Result<PushReport, RemoteError> {
        let key = self.keys.tree(hash);
        if self.exists(&key).await? {
            return Ok(PushReport::one(false, 0));
        }
        let dir = store.object_path(hash);
        let files = match manifest_of(&dir) {
            Ok(files) if retort_cache::manifest_hash(&files) == *hash => files,
            _ => return Ok(PushReport { missing_locally: 1, ..PushReport::default() }),
        };
        let mut report = PushReport::default();
        for r in stream::iter(&files)
            .map(|f| self.push_blob(&dir, f))
            .buffer_unordered(PARALLEL)
            .try_collect::<Vec<_>>()
            .await?
        {
            report.add(r);
        }
        let body = canonical_json(&serde_json::json!({ "files": files })).into_bytes();
        let n = body.len();
        report.add(PushReport::one(self.put_new(&key, Bytes::from(body)).await?, n));
        Ok(report)
    }

    /// One file of a directory object, as a blob named by its hash.
    async fn push_blob(&self, dir: &FsPath, f: &ManifestEntry) -> Result<PushReport, RemoteError> {
        let key = self.keys.object(&f.hash);
        if self.exists(&key).await? {
            return Ok(PushReport::one(false, 0));
        }
        let path = dir.join(&f.path);
        let bytes = fs::read(&path).map_err(|e| CacheError::from_io("read", &path, e))?;
        if hash_bytes(&bytes) != f.hash {
            return Ok(PushReport { missing_locally: 1, ..PushReport::default() });
        }
        let n = bytes.len();
        Ok(PushReport::one(self.put_new(&key, Bytes::from(bytes)).await?, n))
    }

    /// Fetches objects into the local store, many at once.
    pub fn fetch_objects(&self, store: &Store, objects: &[(Hash, ArtifactKind)]) -> Result<Vec<Fetched>, RemoteError> {
        self.block_on(async {
            stream::iter(objects)
                .map(|(hash, kind)| self.fetch_object(store, hash, *kind))
                .buffered(PARALLEL)
                .try_collect()
                .await
        })
    }

    async fn fetch_object(&self, store: &Store, hash: &Hash, kind: ArtifactKind) -> Result<Fetched, RemoteError> {
        if store.state(hash) == ObjectState::Valid {
            return Ok(Fetched::Present);
        }
        match kind {
            ArtifactKind::File => match self.checked_blob(hash, None).await? {
                Blob::Intact(bytes) => {
                    store.put_bytes(&bytes)?;
                    Ok(Fetched::Fetched)
                }
                Blob::Missing => Ok(Fetched::Missing),
                Blob::Corrupt => Ok(Fetched::Corrupt),
            },
            ArtifactKind::Dir => self.fetch_dir(store, hash).await,
        }
    }

    /// Blob `hash` as the remote has it, checked against its name (and,
    /// when given, its length); a damaged blob is warned about once.
    async fn checked_blob(&self, hash: &Hash, len: Option<u64>) -> Result<Blob, RemoteError> {
        let key = self.keys.object(hash);
        let Some(bytes) = self.get(&key).await? else { return Ok(Blob::Missing) };
        if hash_bytes(&bytes) != *hash || len.is_some_and(|l| l != bytes.len() as u64) {
            self.warn_corrupt(key.as_ref());
            return Ok(Blob::Corrupt);
        }
        Ok(Blob::Intact(bytes))
    }

    fn warn_corrupt(&self, key: &str) {
        self.warn_once(key, &format!("`{key}` does not match its hash; ignored (recomputing instead)"));
    }

    async fn fetch_dir(&self, store: &Store, hash: &Hash) -> Result<Fetched, RemoteError> {
        let key = self.keys.tree(hash);
        let Some(body) = self.get(&key).await? else { return Ok(Fetched::Missing) };
        let tree = match serde_json::from_slice::<Tree>(&body) {
            Ok(t) if hash_bytes(&body) == *hash && t.files.iter().all(|f| safe_relative(&f.path)) => t,
            _ => {
                self.warn_corrupt(key.as_ref());
                return Ok(Fetched::Corrupt);
            }
        };
        let tmp = store.temp_dir()?;
        let root = tmp.path().join("object");
        fs::create_dir(&root).map_err(|e| CacheError::from_io("create directory", &root, e))?;
        let blobs: Vec<Blob> = stream::iter(&tree.files)
            .map(|f| self.checked_blob(&f.hash, Some(f.bytes)))
            .buffered(PARALLEL)
            .try_collect()
            .await?;
        for (f, blob) in tree.files.iter().zip(blobs) {
            let bytes = match blob {
                Blob::Intact(bytes) => bytes,
                Blob::Missing => return Ok(Fetched::Missing),
                Blob::Corrupt => return Ok(Fetched::Corrupt),
            };
            let path = root.join(&f.path);
            let write = |p: &FsPath| -> std::io::Result<()> {
                fs::create_dir_all(p.parent().expect("inside the root"))?;
                fs::write(p, &bytes)
            };
            write(&path).map_err(|e| CacheError::from_io("write", &path, e))?;
        }
        let stored = store.put_path(&root)?;
        Ok(if stored.hash == *hash { Fetched::Fetched } else { Fetched::Corrupt })
    }

    /// Downloads an object and re-hashes it without storing it (for
    /// `cache verify --remote`).
    pub fn verify_object(&self, hash: &Hash, kind: ArtifactKind) -> Result<RemoteState, RemoteError> {
        self.block_on(async {
            let blob = |h: Hash, len: Option<u64>| async move {
                match self.get(&self.keys.object(&h)).await? {
                    None => Ok::<_, RemoteError>(RemoteState::Missing),
                    Some(b) if hash_bytes(&b) == h && len.is_none_or(|l| l == b.len() as u64) => Ok(RemoteState::Valid),
                    Some(_) => Ok(RemoteState::Corrupt),
                }
            };
            if kind == ArtifactKind::File {
                return blob(*hash, None).await;
            }
            let Some(body) = self.get(&self.keys.tree(hash)).await? else { return Ok(RemoteState::Missing) };
            let tree = match serde_json::from_slice::<Tree>(&body) {
                Ok(t) if hash_bytes(&body) == *hash => t,
                _ => return Ok(RemoteState::Corrupt),
            };
            for f in &tree.files {
                match blob(f.hash, Some(f.bytes)).await? {
                    RemoteState::Valid => {}
                    RemoteState::Missing => return Ok(RemoteState::Missing),
                    RemoteState::Corrupt => return Ok(RemoteState::Corrupt),
                }
            }
            Ok(RemoteState::Valid)
        })
    }

    /// Pushes runs: all their output objects first, then the records.
    pub fn push_runs(&self, store: &Store, runs: &[(Hash, RunRecord)]) -> Result<PushReport, RemoteError> {
        let objects: Vec<_> = runs.iter().flat_map(|(_, r)| r.outputs.values().map(|o| (o.hash, o.kind))).collect();
        let mut report = self.push_objects(store, &objects)?;
        if report.missing_locally > 0 {
            // A record must never name what the remote lacks.
            return Ok(report);
        }
        let records: Vec<PushReport> = self.block_on(async {
            stream::iter(runs)
                .map(|(fp, rec)| async move {
                    let json = serde_json::to_vec(rec).expect("run records serialize");
                    let body = seal_run(fp, &json);
                    let n = body.len();
                    Ok::<_, RemoteError>(PushReport::one(self.put_new(&self.keys.run(fp), Bytes::from(body)).await?, n))
                })
                .buffer_unordered(PARALLEL)
                .try_collect()
                .await
        })?;
        records.into_iter().for_each(|r| report.add(r));
        Ok(report)
    }

    /// Fetches the run record of `fp` and its outputs into the local store,
    /// and returns it as the local store now has it. `None` when the remote
    /// has no such run, or not all of it intact.
    pub fn fetch_run(&self, store: &Store, fp: &Hash) -> Result<Option<RunRecord>, RemoteError> {
        let key = self.keys.run(fp);
        let Some(body) = self.block_on(self.get(&key))? else { return Ok(None) };
        let Some(rec) = unseal_run(fp, &body).and_then(|json| serde_json::from_slice::<RunRecord>(json).ok()) else {
            self.warn_corrupt(key.as_ref());
            return Ok(None);
        };
        let outputs: Vec<_> = rec.outputs.values().map(|o| (o.hash, o.kind)).collect();
        let fetched = self.fetch_objects(store, &outputs)?;
        if fetched.iter().any(|f| matches!(f, Fetched::Missing | Fetched::Corrupt)) {
            return Ok(None);
        }
        store.put_run(fp, &rec)?;
        Ok(store.get_run(fp)?)
    }

    /// Whether the remote holds an intact run record for `fp` (for
    /// `cache verify --remote`; its outputs are checked separately).
    pub fn verify_run(&self, fp: &Hash) -> Result<RemoteState, RemoteError> {
        let Some(body) = self.block_on(self.get(&self.keys.run(fp)))? else { return Ok(RemoteState::Missing) };
        let ok = unseal_run(fp, &body).is_some_and(|json| serde_json::from_slice::<RunRecord>(json).is_ok());
        Ok(if ok { RemoteState::Valid } else { RemoteState::Corrupt })
    }

    /// Pushes a copy of an item log (a [`retort_cache::ItemLog::snapshot`]),
    /// named by its hash; `false` if it is empty or the remote had it.
    pub fn push_items(&self, ns: &Hash, snapshot: Vec<u8>) -> Result<bool, RemoteError> {
        if snapshot.is_empty() {
            return Ok(false);
        }
        let key = self.keys.items(ns, &hash_bytes(&snapshot));
        self.block_on(self.put_new(&key, Bytes::from(snapshot)))
    }

    /// Every intact copy of namespace `ns`'s item log on the remote (a
    /// damaged copy is warned about once and left out).
    pub fn item_copies(&self, ns: &Hash) -> Result<Vec<Vec<u8>>, RemoteError> {
        self.block_on(async {
            let keys = self.list(&self.keys.items_dir(ns)).await?;
            let mut copies = Vec::new();
            for key in keys {
                let named = key.filename().and_then(|n| n.parse::<Hash>().ok());
                let Some(bytes) = self.get(&key).await? else { continue };
                match named {
                    Some(h) if hash_bytes(&bytes) == h => copies.push(bytes.to_vec()),
                    _ => self.warn_corrupt(key.as_ref()),
                }
            }
            Ok(copies)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_run_record_checks_its_bytes_and_its_key() {
        let (fp, other) = (hash_bytes(b"fp"), hash_bytes(b"other"));
        let sealed = seal_run(&fp, b"{\"outputs\":{}}");
        assert_eq!(unseal_run(&fp, &sealed), Some(&b"{\"outputs\":{}}"[..]));
        assert_eq!(unseal_run(&other, &sealed), None, "moved to another key");
        let mut bad = sealed.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert_eq!(unseal_run(&fp, &bad), None, "damaged");
        assert_eq!(unseal_run(&fp, b"{\"outputs\":{}}"), None, "unsealed");
    }

    #[test]
    fn manifest_paths_must_stay_inside_the_directory() {
        for ok in ["config.json", "tok/tokenizer.json"] {
            assert!(safe_relative(ok), "{ok}");
        }
        for bad in ["", "/etc/passwd", "../x", "a/../../x", "a//b", "./a"] {
            assert!(!safe_relative(bad), "{bad}");
        }
    }
}

/// Round trips through `object_store`'s `InMemory`: a second check of the
/// logic (the real server is exercised by tests/integration/remote_cache.rs).
#[cfg(test)]
mod memory_tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use object_store::memory::InMemory;
    use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
    use retort_cache::{OutputRecord, Store};

    use super::*;

    fn remote(mem: &Arc<InMemory>) -> Remote {
        Remote::new("memory://test".into(), mem.clone() as Arc<dyn ObjectStore>, "p").unwrap()
    }

    fn store() -> (tempfile::TempDir, Store) {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        (d, s)
    }

    /// A store holding one file output and one directory output, and the
    /// run record naming both.
    fn produced(s: &Store) -> (Hash, RunRecord) {
        let file = s.put_bytes(b"{\"q\":1}\n").unwrap();
        let t = s.temp_dir().unwrap();
        let model = t.path().join("model");
        fs::create_dir_all(model.join("tok")).unwrap();
        fs::write(model.join("config.json"), b"{}").unwrap();
        fs::write(model.join("tok/tokenizer.json"), b"[1,2]").unwrap();
        let dir = s.put_path(&model).unwrap();
        let out = |a: retort_cache::Artifact| OutputRecord { hash: a.hash, kind: a.kind, bytes: a.bytes, rows: None };
        let outputs = BTreeMap::from([("data".to_string(), out(file)), ("model".to_string(), out(dir))]);
        let rec = RunRecord { outputs, metrics: BTreeMap::new(), duration_ms: 5, created_unix_ms: 1, timings: BTreeMap::new(), device: None };
        let fp = hash_bytes(b"fingerprint");
        s.put_run(&fp, &rec).unwrap();
        (fp, rec)
    }

    #[test]
    fn a_run_round_trips_and_a_second_push_uploads_nothing() {
        let mem = Arc::new(InMemory::new());
        let r = remote(&mem);
        let (_a, here) = store();
        let (fp, rec) = produced(&here);
        let first = r.push_runs(&here, &[(fp, rec.clone())]).unwrap();
        // file object, 2 blobs, 1 tree, 1 record
        assert_eq!((first.uploaded, first.present, first.missing_locally), (5, 0, 0), "{first:?}");
        let again = r.push_runs(&here, &[(fp, rec.clone())]).unwrap();
        assert_eq!((again.uploaded, again.present), (0, 3), "objects found by HEAD, the record by its conditional put");

        let (_b, there) = store();
        let got = r.fetch_run(&there, &fp).unwrap().expect("fetched");
        assert_eq!(got, rec);
        for o in rec.outputs.values() {
            assert_eq!(there.verify(&o.hash), ObjectState::Valid);
        }
        assert_eq!(r.fetch_run(&there, &hash_bytes(b"unknown")).unwrap(), None);
        assert_eq!(r.verify_run(&fp).unwrap(), RemoteState::Valid);
    }

    #[test]
    fn a_corrupt_blob_is_a_miss_and_never_reaches_the_store() {
        let mem = Arc::new(InMemory::new());
        let r = remote(&mem);
        let (_a, here) = store();
        let (fp, rec) = produced(&here);
        r.push_runs(&here, &[(fp, rec.clone())]).unwrap();
        let data = rec.outputs["data"].hash;
        let key = r.keys.object(&data);
        r.block_on(mem.put(&key, PutPayload::from_static(b"{\"q\":2}\n"))).unwrap();
        assert_eq!(r.verify_object(&data, ArtifactKind::File).unwrap(), RemoteState::Corrupt);
        let (_b, there) = store();
        assert_eq!(r.fetch_run(&there, &fp).unwrap(), None);
        assert_eq!(there.state(&data), ObjectState::Missing, "bad bytes never stored");
        assert!(r.warned_about(key.as_ref()));
        // A damaged blob inside a directory object, too.
        let blob = hash_bytes(b"[1,2]");
        r.block_on(mem.put(&r.keys.object(&blob), PutPayload::from_static(b"[1,3]"))).unwrap();
        let model = rec.outputs["model"].hash;
        assert_eq!(r.verify_object(&model, ArtifactKind::Dir).unwrap(), RemoteState::Corrupt);
        let (_c, elsewhere) = store();
        assert_eq!(r.fetch_objects(&elsewhere, &[(model, ArtifactKind::Dir)]).unwrap(), vec![Fetched::Corrupt]);
        assert_eq!(elsewhere.state(&model), ObjectState::Missing);
    }

    #[test]
    fn concurrent_pushers_of_the_same_run_both_succeed() {
        let mem = Arc::new(InMemory::new());
        let (_a, here) = store();
        let (fp, rec) = produced(&here);
        let reports: Vec<PushReport> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let (mem, here, rec) = (&mem, &here, &rec);
                    s.spawn(move || remote(mem).push_runs(here, &[(fp, rec.clone())]).unwrap())
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let uploaded: u64 = reports.iter().map(|r| r.uploaded).sum();
        assert!((5..=20).contains(&uploaded), "{reports:?}");
        let (_b, there) = store();
        assert_eq!(remote(&mem).fetch_run(&there, &fp).unwrap(), Some(rec));
    }

    #[test]
    fn item_log_copies_merge_and_a_damaged_copy_is_skipped() {
        let mem = Arc::new(InMemory::new());
        let r = remote(&mem);
        let ns = hash_bytes(b"namespace");
        let (_a, here) = store();
        let log = here.items(&ns).unwrap();
        log.put(&hash_bytes(b"k1"), b"one").unwrap();
        log.put(&hash_bytes(b"k2"), b"two").unwrap();
        assert!(r.push_items(&ns, log.snapshot()).unwrap());
        assert!(!r.push_items(&ns, log.snapshot()).unwrap(), "same copy: already there");
        let junk = b"not a log".to_vec();
        r.block_on(mem.put(&r.keys.items(&ns, &hash_bytes(b"other")), PutPayload::from(junk))).unwrap();
        let copies = r.item_copies(&ns).unwrap();
        assert_eq!(copies.len(), 1, "the misnamed copy is left out");

        let (_b, there) = store();
        let rr = Arc::new(crate::Session::new(remote(&mem), false));
        there.set_item_source(rr.item_source());
        let theirs = there.items(&ns).unwrap();
        assert_eq!(theirs.get(&hash_bytes(b"k2")).as_deref(), Some(&b"two"[..]));
        assert_eq!(theirs.get(&hash_bytes(b"k1")).as_deref(), Some(&b"one"[..]));
    }
}
