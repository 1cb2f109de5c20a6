//! The item cache: per-item results of stages that call a model once per
//! item (generate, evaluate), so adding 100 prompts samples only those 100
//! and a run killed mid-stage resumes where it stopped: the stage looks
//! each item up before computing it and stores it right after.
//!
//! Items are small (a few hundred bytes) and many (100k in one stage is
//! ordinary), so they live in append-only logs, one per *namespace* (what a
//! stage's items share: model, sampling settings, seed), under
//! `items/<2 hex>/<62 hex>.log`. A stage opens only its own log: it reads
//! it once, sequentially, checks every record and indexes it in memory;
//! each new item is one appended record. One file per item, the earlier
//! layout, cost a file open per lookup and a file, a rename and a 4 KiB
//! block per item (BENCHMARKS.md, "Remote models", has the measurements).
//!
//! A record is `MAGIC | key (32) | length (u32 LE) | payload | blake3 of
//! key, length and payload (32)`. The guarantees are the earlier ones:
//! - **A killed process never leaves a torn item readable as data.** A
//!   record cut short, or damaged, fails its checksum and reads as a miss;
//!   reading resumes at the next record that checks. Records are written
//!   without fsync, like the files were: they survive a killed process (the
//!   kernel has them), not a power loss.
//! - **Writers take turns.** Appending holds an exclusive `flock` on the log
//!   (and each record goes out in one `write` to an `O_APPEND` file), so two
//!   processes never interleave records; a writer first cuts a torn tail
//!   left by a killed one, so its records follow a good one.
//! - The last record for a key wins (a put replaces).

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use fs4::fs_std::FileExt;

use crate::error::{io_err, CacheError};
use crate::hash::{hash_bytes, Hash};
use crate::store::Store;

/// Starts every record, so reading can find the next one after damage.
const MAGIC: [u8; 4] = *b"rtI1";
/// Magic, key and length before the payload; the checksum after it.
const HEAD: usize = 4 + 32 + 4;
const SUM: usize = 32;

/// Given a namespace, copies of its log (each a [`ItemLog::snapshot`]).
pub type FetchCopies = dyn Fn(&Hash) -> Vec<Vec<u8>> + Send + Sync;

/// Where item records come from besides the local logs: given a
/// namespace, copies of its log to merge.
#[derive(Clone)]
pub struct ItemSource(pub Arc<FetchCopies>);

impl std::fmt::Debug for ItemSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ItemSource")
    }
}

/// One namespace's items, indexed. A process holds one per namespace (see
/// [`Store::items`]); its first put takes the log's lock until it is dropped
/// with its store.
#[derive(Debug)]
pub struct ItemLog {
    path: PathBuf,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// The log's good records as read, then the ones appended since.
    bytes: Vec<u8>,
    /// Key -> (payload offset, length) in `bytes`.
    index: HashMap<Hash, (usize, usize)>,
    /// Where the good records end in the file (a torn tail starts there).
    good_len: u64,
    /// Open for appending, with the lock held, from the first put on.
    writer: Option<fs::File>,
}

impl Store {
    fn log_path(&self, ns: &Hash) -> PathBuf {
        let hex = ns.to_hex();
        self.root().join("items").join(&hex[..2]).join(format!("{}.log", &hex[2..]))
    }

    /// The item log of namespace `ns`, read and indexed on first use; the
    /// same handle for every stage of this process that shares it. On first
    /// use the records an [`ItemSource`] holds for `ns` are merged in.
    pub fn items(&self, ns: &Hash) -> Result<Arc<ItemLog>, CacheError> {
        if let Some(log) = self.item_logs.lock().expect("item logs lock").get(ns) {
            return Ok(log.clone());
        }
        let log = Arc::new(ItemLog::open(self.log_path(ns))?);
        // Outside the lock: a remote source is a network round trip.
        let source = self.item_source.lock().expect("item source lock").clone();
        if let Some(source) = source {
            for copy in (source.0)(ns) {
                log.merge(&copy)?;
            }
        }
        let mut open = self.item_logs.lock().expect("item logs lock");
        Ok(open.entry(*ns).or_insert(log).clone())
    }

    /// Where [`Store::items`] also looks for a namespace's records (the
    /// remote cache), from the next namespace opened on.
    pub fn set_item_source(&self, source: ItemSource) {
        *self.item_source.lock().expect("item source lock") = Some(source);
    }

    /// The namespaces of every item log in the store.
    pub fn item_namespaces(&self) -> Result<Vec<Hash>, CacheError> {
        if !self.root().join("items").is_dir() {
            return Ok(Vec::new());
        }
        Ok(self.entries("items", ".log")?.into_iter().map(|(ns, _)| ns).collect())
    }

    /// The item logs this process has opened, by namespace: what the stages
    /// run so far may have added to.
    pub fn open_item_logs(&self) -> Vec<(Hash, Arc<ItemLog>)> {
        let open = self.item_logs.lock().expect("item logs lock");
        let mut logs: Vec<_> = open.iter().map(|(ns, log)| (*ns, log.clone())).collect();
        logs.sort_by_key(|(ns, _)| *ns);
        logs
    }

    /// An item of the earlier one-file-per-item layout
    /// (`items/ab/<62 hex>`: a blake3 checksum, then the bytes), so an
    /// upgrade keeps what was cached: the caller moves it into its log.
    /// `None` when absent or damaged. `cache gc` deletes these files.
    pub fn legacy_item(&self, key: &Hash) -> Option<Vec<u8>> {
        let hex = key.to_hex();
        let raw = fs::read(self.root().join("items").join(&hex[..2]).join(&hex[2..])).ok()?;
        let (sum, payload) = raw.split_at_checked(SUM)?;
        (hash_bytes(payload).as_bytes() == sum).then(|| payload.to_vec())
    }

    /// Items and their bytes over every log (for `cache du`): each log's
    /// good records, counted once per key.
    pub fn item_usage(&self) -> Result<(u64, u64), CacheError> {
        let (mut items, mut bytes) = (0, 0);
        if !self.root().join("items").is_dir() {
            return Ok((0, 0));
        }
        for (_, path) in self.entries("items", ".log")? {
            let log = ItemLog::open(path)?;
            let s = log.state.lock().expect("item log lock");
            items += s.index.len() as u64;
            bytes += s.good_len;
        }
        Ok((items, bytes))
    }
}

impl ItemLog {
    fn open(path: PathBuf) -> Result<ItemLog, CacheError> {
        let mut raw = Vec::new();
        match fs::File::open(&path) {
            Ok(mut f) => {
                f.read_to_end(&mut raw).map_err(io_err("read", &path))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("open", &path)(e)),
        }
        let (bytes, index, good_len) = scan(raw);
        Ok(ItemLog { path, state: Mutex::new(State { bytes, index, good_len, writer: None }) })
    }

    /// The log's good records, in its on-disk format: what another copy of
    /// the cache [`merge`](ItemLog::merge)s.
    pub fn snapshot(&self) -> Vec<u8> {
        self.state.lock().expect("item log lock").bytes.clone()
    }

    /// Appends the good records of `raw` (another copy's
    /// [`snapshot`](ItemLog::snapshot)) whose keys this log lacks; damaged
    /// records in `raw` are skipped, as reading a log skips them. Returns
    /// how many were added.
    pub fn merge(&self, raw: &[u8]) -> Result<usize, CacheError> {
        let (bytes, index, _) = scan(raw.to_vec());
        let mut added = 0;
        let mut theirs: Vec<_> = index.into_iter().collect();
        theirs.sort_by_key(|(_, (at, _))| *at);
        for (key, (at, len)) in theirs {
            if self.get(&key).is_none() {
                self.put(&key, &bytes[at..at + len])?;
                added += 1;
            }
        }
        Ok(added)
    }

    /// The bytes stored for `key`, or `None`.
    pub fn get(&self, key: &Hash) -> Option<Vec<u8>> {
        let s = self.state.lock().expect("item log lock");
        let &(at, len) = s.index.get(key)?;
        Some(s.bytes[at..at + len].to_vec())
    }

    /// Stores `bytes` for `key`: one record appended to the log.
    pub fn put(&self, key: &Hash, bytes: &[u8]) -> Result<(), CacheError> {
        let len = u32::try_from(bytes.len()).expect("an item is under 4 GiB");
        let mut rec = Vec::with_capacity(HEAD + bytes.len() + SUM);
        rec.extend_from_slice(&MAGIC);
        rec.extend_from_slice(key.as_bytes());
        rec.extend_from_slice(&len.to_le_bytes());
        rec.extend_from_slice(bytes);
        let sum = hash_bytes(&rec[MAGIC.len()..]);
        rec.extend_from_slice(sum.as_bytes());
        let mut s = self.state.lock().expect("item log lock");
        if s.writer.is_none() {
            let f = self.open_writer(&mut s)?;
            s.writer = Some(f);
        }
        s.writer.as_mut().expect("just opened").write_all(&rec).map_err(io_err("append to", &self.path))?;
        let at = s.bytes.len() + HEAD;
        s.bytes.extend_from_slice(&rec);
        s.index.insert(*key, (at, bytes.len()));
        s.good_len += rec.len() as u64;
        Ok(())
    }

    /// Opens the log for appending with its lock held. Records another
    /// writer appended since this process read the log are indexed first;
    /// what follows the last good record (one a killed writer left torn)
    /// is cut, so every new record follows a good one.
    fn open_writer(&self, s: &mut State) -> Result<fs::File, CacheError> {
        let dir = self.path.parent().expect("logs have a parent");
        fs::create_dir_all(dir).map_err(io_err("create directory", dir))?;
        let mut f = fs::OpenOptions::new().create(true).read(true).append(true).open(&self.path).map_err(io_err("open", &self.path))?;
        if !FileExt::try_lock_exclusive(&f).map_err(io_err("lock", &self.path))? {
            eprintln!("waiting for another retort process to release {}", self.path.display());
            FileExt::lock_exclusive(&f).map_err(io_err("lock", &self.path))?;
        }
        let on_disk = f.metadata().map_err(io_err("stat", &self.path))?.len();
        if on_disk > s.good_len {
            let mut tail = Vec::new();
            f.seek(SeekFrom::Start(s.good_len)).map_err(io_err("read", &self.path))?;
            f.read_to_end(&mut tail).map_err(io_err("read", &self.path))?;
            let (tail, index, good) = scan(tail);
            let base = s.bytes.len();
            s.bytes.extend_from_slice(&tail);
            s.index.extend(index.into_iter().map(|(k, (at, len))| (k, (base + at, len))));
            s.good_len += good;
            if s.good_len < on_disk {
                f.set_len(s.good_len).map_err(io_err("truncate", &self.path))?;
            }
        }
        Ok(f)
    }
}

/// `raw` up to the end of its last good record, the index of its good
/// records (a damaged stretch between them is skipped), and that length.
fn scan(raw: Vec<u8>) -> (Vec<u8>, HashMap<Hash, (usize, usize)>, u64) {
    let mut index = HashMap::new();
    let mut at = 0;
    let mut good_end = 0;
    while at + HEAD + SUM <= raw.len() {
        match record_at(&raw, at) {
            Some((key, len)) => {
                index.insert(key, (at + HEAD, len));
                at += HEAD + len + SUM;
                good_end = at;
            }
            None => {
                // Resynchronise on the next magic that starts a good record.
                at += 1;
                match raw[at..].windows(MAGIC.len()).position(|w| w == MAGIC) {
                    Some(k) => at += k,
                    None => break,
                }
            }
        }
    }
    let mut bytes = raw;
    bytes.truncate(good_end);
    (bytes, index, good_end as u64)
}

/// The key and payload length of a good record at `at`.
fn record_at(raw: &[u8], at: usize) -> Option<(Hash, usize)> {
    let head = raw.get(at..at + HEAD)?;
    if head[..4] != MAGIC {
        return None;
    }
    let len = u32::from_le_bytes(head[36..40].try_into().ok()?) as usize;
    let end = at + HEAD + len;
    let sum = raw.get(end..end + SUM)?;
    let key: [u8; 32] = head[4..36].try_into().ok()?;
    (hash_bytes(&raw[at + 4..end]).as_bytes() == sum).then(|| (Hash::from_blake3(blake3::Hash::from_bytes(key)), len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, store)
    }

    fn key(i: u32) -> Hash {
        hash_bytes(format!("model|params|prompt|{i}|seed").as_bytes())
    }

    #[test]
    fn items_round_trip_across_handles_and_the_last_put_wins() {
        let (dir, store) = store();
        let ns = hash_bytes(b"namespace");
        let log = store.items(&ns).unwrap();
        assert_eq!(log.get(&key(0)), None);
        log.put(&key(0), b"{\"response\":\"41\"}").unwrap();
        log.put(&key(1), b"one").unwrap();
        log.put(&key(0), b"{\"response\":\"42\"}").unwrap();
        assert_eq!(log.get(&key(0)).as_deref(), Some(&b"{\"response\":\"42\"}"[..]));
        assert!(Arc::ptr_eq(&log, &store.items(&ns).unwrap()), "one handle per namespace in a process");
        assert_eq!(store.items(&hash_bytes(b"other")).unwrap().get(&key(0)), None, "namespaces are apart");
        drop((log, store));
        let again = Store::open(dir.path()).unwrap();
        let log = again.items(&ns).unwrap();
        assert_eq!(log.get(&key(0)).as_deref(), Some(&b"{\"response\":\"42\"}"[..]));
        assert_eq!(log.get(&key(1)).as_deref(), Some(&b"one"[..]));
        assert_eq!(again.item_usage().unwrap().0, 2, "two keys, three records");
    }

    #[test]
    fn items_of_the_earlier_layout_are_read_and_damage_is_a_miss() {
        let (_dir, store) = store();
        let hex = key(5).to_hex();
        let path = store.root().join("items").join(&hex[..2]).join(&hex[2..]);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut raw = hash_bytes(b"old").as_bytes().to_vec();
        raw.extend_from_slice(b"old");
        fs::write(&path, &raw).unwrap();
        assert_eq!(store.legacy_item(&key(5)).as_deref(), Some(&b"old"[..]));
        raw[SUM] ^= 1;
        fs::write(&path, &raw).unwrap();
        assert_eq!(store.legacy_item(&key(5)), None);
        assert_eq!(store.legacy_item(&key(6)), None);
    }

    /// What a killed writer leaves (a record cut anywhere) and what damage
    /// does (a flipped byte) read as misses, never as data; the next writer
    /// appends after the last good record.
    #[test]
    fn torn_and_damaged_records_read_as_misses_and_are_cut_before_appending() {
        let (dir, store) = store();
        let ns = hash_bytes(b"ns");
        let path = store.log_path(&ns);
        let log = store.items(&ns).unwrap();
        for i in 0..3 {
            log.put(&key(i), format!("value {i}").as_bytes()).unwrap();
        }
        // The writer holds the log's lock until its store goes (as a
        // process would at exit).
        drop((log, store));
        let whole = fs::read(&path).unwrap();
        let rec = whole.len() / 3;
        for cut in [1, HEAD, HEAD + 3, rec - 1] {
            fs::write(&path, &whole[..2 * rec + cut]).unwrap();
            let s = Store::open(dir.path()).unwrap();
            let log = s.items(&ns).unwrap();
            assert_eq!(log.get(&key(2)), None, "cut at {cut}: a torn record is a miss");
            assert_eq!(log.get(&key(1)).as_deref(), Some(&b"value 1"[..]));
            log.put(&key(3), b"after").unwrap();
            drop((log, s));
            let s = Store::open(dir.path()).unwrap();
            let log = s.items(&ns).unwrap();
            assert_eq!(log.get(&key(3)).as_deref(), Some(&b"after"[..]), "cut at {cut}: appended after the cut");
            assert_eq!(fs::read(&path).unwrap().len(), 3 * rec - "value 2".len() + "after".len());
        }
        // A flipped payload byte in the middle record: that one is a miss,
        // the records after it are read.
        let mut bad = whole.clone();
        bad[rec + HEAD] ^= 1;
        fs::write(&path, &bad).unwrap();
        let s = Store::open(dir.path()).unwrap();
        let log = s.items(&ns).unwrap();
        assert_eq!(log.get(&key(1)), None);
        assert_eq!(log.get(&key(0)).as_deref(), Some(&b"value 0"[..]));
        assert_eq!(log.get(&key(2)).as_deref(), Some(&b"value 2"[..]), "read past the damage");
    }

    /// Merging another copy's snapshot adds only the keys this log lacks,
    /// skips damaged records, and persists what it adds.
    #[test]
    fn merge_adds_missing_keys_only_and_skips_damage() {
        let (_d1, here) = store();
        let (d2, there) = store();
        let ns = hash_bytes(b"ns");
        let mine = here.items(&ns).unwrap();
        mine.put(&key(0), b"mine").unwrap();
        let theirs = there.items(&ns).unwrap();
        for (i, v) in [(0, "theirs"), (1, "one"), (2, "two")] {
            theirs.put(&key(i), v.as_bytes()).unwrap();
        }
        let mut snap = theirs.snapshot();
        let second = snap.len() / 3 + HEAD;
        snap[second] ^= 1; // damages key(1)'s record
        assert_eq!(mine.merge(&snap).unwrap(), 1, "key(2) only");
        assert_eq!(mine.get(&key(0)).as_deref(), Some(&b"mine"[..]), "a local item is kept");
        assert_eq!(mine.get(&key(1)), None, "a damaged record is not merged");
        assert_eq!(mine.get(&key(2)).as_deref(), Some(&b"two"[..]));
        assert_eq!(mine.merge(&snap).unwrap(), 0, "merging twice adds nothing");
        drop((theirs, there, d2));
    }

    #[test]
    fn a_writer_indexes_what_another_appended_since_it_read() {
        let (dir, first) = store();
        let ns = hash_bytes(b"ns");
        let reader = first.items(&ns).unwrap(); // read now: empty
        {
            let second = Store::open(dir.path()).unwrap();
            second.items(&ns).unwrap().put(&key(7), b"theirs").unwrap();
        }
        reader.put(&key(8), b"mine").unwrap();
        assert_eq!(reader.get(&key(7)).as_deref(), Some(&b"theirs"[..]), "not cut as a torn tail");
        drop((reader, first));
        let s = Store::open(dir.path()).unwrap();
        let log = s.items(&ns).unwrap();
        assert_eq!((log.get(&key(7)).is_some(), log.get(&key(8)).is_some()), (true, true));
    }
}
