//! The stat cache's file: small text, one entry per line,
//! `hash \t dev \t ino \t size \t mtime_ns \t recorded_ns \t path`.
//!
//! Text rather than JSON because it is read on every run and must load 200
//! entries in well under a millisecond; the path comes last so it may hold
//! tabs. Anything unreadable is simply not cached: losing the stat cache
//! costs time, never correctness.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::hash::Hash;
use crate::stat::RACY_NS;

/// First line of the file; another header means another format, and the file
/// is ignored.
const HEADER: &[u8] = b"retort-stat-cache 1\n";

/// The stat key of a file plus its hash and when that was observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) dev: u64,
    pub(crate) ino: u64,
    pub(crate) size: u64,
    pub(crate) mtime_ns: i64,
    pub(crate) recorded_ns: i64,
    pub(crate) hash: Hash,
}

impl Entry {
    /// Whether `meta` is the stat this entry saw, and the entry is old
    /// enough to be trusted.
    pub(crate) fn matches(&self, meta: &fs::Metadata) -> bool {
        self.dev == meta.dev()
            && self.ino == meta.ino()
            && self.size == meta.len()
            && self.mtime_ns == mtime_ns(meta)
            && self.recorded_ns.saturating_sub(self.mtime_ns) >= RACY_NS
    }
}

pub(crate) fn mtime_ns(meta: &fs::Metadata) -> i64 {
    meta.mtime()
        .saturating_mul(1_000_000_000)
        .saturating_add(meta.mtime_nsec())
}

pub(crate) fn encode(entries: &BTreeMap<Vec<u8>, Entry>) -> Vec<u8> {
    let mut out = HEADER.to_vec();
    for (path, e) in entries {
        let line = format!(
            "{}\t{}\t{}\t{}\t{}\t{}\t",
            e.hash, e.dev, e.ino, e.size, e.mtime_ns, e.recorded_ns
        );
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(path);
        out.push(b'\n');
    }
    out
}

pub(crate) fn read_entries(file: &Path) -> BTreeMap<Vec<u8>, Entry> {
    let Ok(bytes) = fs::read(file) else {
        return BTreeMap::new();
    };
    let Some(body) = bytes.strip_prefix(HEADER) else {
        return BTreeMap::new();
    };
    body.split(|&b| b == b'\n').filter_map(parse_line).collect()
}

/// One line, or `None` if it is damaged in any way (the entry is dropped).
fn parse_line(line: &[u8]) -> Option<(Vec<u8>, Entry)> {
    let mut fields = line.splitn(7, |&b| b == b'\t');
    let mut next = || std::str::from_utf8(fields.next()?).ok();
    let hash = next()?.parse().ok()?;
    let dev = next()?.parse().ok()?;
    let ino = next()?.parse().ok()?;
    let size = next()?.parse().ok()?;
    let mtime_ns = next()?.parse().ok()?;
    let recorded_ns = next()?.parse().ok()?;
    let path = fields.next().filter(|p| !p.is_empty())?;
    let path = path.to_vec();
    let entry = Entry {
        dev,
        ino,
        size,
        mtime_ns,
        recorded_ns,
        hash,
    };
    Some((path, entry))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::hash_bytes;

    #[test]
    fn missing_or_corrupt_file_loads_empty() {
        let d = tempfile::tempdir().unwrap();
        assert!(read_entries(&d.path().join("absent")).is_empty());
        let bad = d.path().join("bad");
        fs::write(&bad, b"\xff\xfe garbage").unwrap();
        assert!(read_entries(&bad).is_empty());
        // Right header, damaged lines: the damaged entries are dropped.
        let mut text = HEADER.to_vec();
        text.extend_from_slice(b"nothex\t1\t2\t3\t4\t5\t/x\n");
        text.extend_from_slice(format!("{}\t1\t2\t3\t4\t5\t/ok\n", hash_bytes(b"")).as_bytes());
        text.extend_from_slice(format!("{}\t1\t2\n", hash_bytes(b"")).as_bytes());
        fs::write(&bad, text).unwrap();
        assert_eq!(read_entries(&bad).len(), 1);
    }
}
