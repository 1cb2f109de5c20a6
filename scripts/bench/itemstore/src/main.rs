//! Puts N items (one commit each, as the item cache stores them: each as
//! soon as it is sampled, so a killed run keeps it), then reads them all back
//! from a fresh handle (a warm re-run), in four stores:
//! - files: one file per item, written to a temp file and renamed (today's);
//! - log: one append-only file of checksummed records, indexed on open;
//! - redb: one write transaction per item (Durability::Immediate: fsync,
//!   and Durability::None, which a killed process loses);
//! - sqlite: WAL, synchronous=NORMAL (survives a killed process, not a
//!   power loss: the same promise as files and log).
//!
//!   itemstore-bench N DIR

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::Path;
use std::time::Instant;

fn key(i: usize) -> [u8; 32] {
    *blake3::hash(format!("item {i}").as_bytes()).as_bytes()
}

fn value(i: usize) -> Vec<u8> {
    format!(r#"{{"response":"answer number {i} to the question, a short one","tokens":12,"finish_reason":"length","seed":{}}}"#, i * 7919).into_bytes()
}

fn time(label: &str, n: usize, f: impl FnOnce() -> usize) {
    let t = Instant::now();
    let got = f();
    let s = t.elapsed().as_secs_f64();
    assert_eq!(got, n, "{label}: read back {got} of {n}");
    println!("| {label} | {n} | {s:.3} | {:.0} |", n as f64 / s);
}

fn hex(k: &[u8; 32]) -> String {
    k.iter().map(|b| format!("{b:02x}")).collect()
}

fn files(n: usize, dir: &Path) {
    let root = dir.join("files");
    std::fs::create_dir_all(root.join("tmp")).unwrap();
    time("files: put (temp file + rename)", n, || {
        for i in 0..n {
            let h = hex(&key(i));
            let d = root.join("items").join(&h[..2]);
            std::fs::create_dir_all(&d).unwrap();
            let v = value(i);
            let mut raw = blake3::hash(&v).as_bytes().to_vec();
            raw.extend_from_slice(&v);
            let mut tmp = tempfile::NamedTempFile::new_in(root.join("tmp")).unwrap();
            tmp.write_all(&raw).unwrap();
            tmp.persist(d.join(&h[2..])).unwrap();
        }
        n
    });
    time("files: get all", n, || {
        (0..n)
            .filter(|&i| {
                let h = hex(&key(i));
                let raw = std::fs::read(root.join("items").join(&h[..2]).join(&h[2..])).unwrap();
                blake3::hash(&raw[32..]).as_bytes() == &raw[..32]
            })
            .count()
    });
}

/// Record: key (32) | payload length (u32 LE) | payload | blake3(key | len | payload) (32).
fn log(n: usize, dir: &Path) {
    let path = dir.join("items.log");
    time("log: put (one append each)", n, || {
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path).unwrap();
        for i in 0..n {
            let v = value(i);
            let mut rec = Vec::with_capacity(68 + v.len());
            rec.extend_from_slice(&key(i));
            rec.extend_from_slice(&(v.len() as u32).to_le_bytes());
            rec.extend_from_slice(&v);
            let sum = blake3::hash(&rec);
            rec.extend_from_slice(sum.as_bytes());
            f.write_all(&rec).unwrap();
        }
        n
    });
    time("log: open (read, check, index) + get all", n, || {
        let mut bytes = Vec::new();
        std::fs::File::open(&path).unwrap().read_to_end(&mut bytes).unwrap();
        let mut index: HashMap<[u8; 32], (usize, usize)> = HashMap::new();
        let mut at = 0;
        while at + 68 <= bytes.len() {
            let len = u32::from_le_bytes(bytes[at + 32..at + 36].try_into().unwrap()) as usize;
            let end = at + 36 + len;
            if end + 32 > bytes.len() || blake3::hash(&bytes[at..end]).as_bytes() != &bytes[end..end + 32] {
                break;
            }
            index.insert(bytes[at..at + 32].try_into().unwrap(), (at + 36, len));
            at = end + 32;
        }
        (0..n).filter(|&i| index.get(&key(i)).is_some_and(|&(o, l)| bytes[o..o + l] == value(i)[..])).count()
    });
}

const TABLE: redb::TableDefinition<&[u8; 32], &[u8]> = redb::TableDefinition::new("items");

fn redb_with(n: usize, dir: &Path, durability: redb::Durability, label: &str) {
    let path = dir.join(format!("{label}.redb"));
    time(&format!("redb ({label}): put (one transaction each)"), n, || {
        let db = redb::Database::create(&path).unwrap();
        for i in 0..n {
            let mut tx = db.begin_write().unwrap();
            tx.set_durability(durability);
            tx.open_table(TABLE).unwrap().insert(&key(i), value(i).as_slice()).unwrap();
            tx.commit().unwrap();
        }
        n
    });
    time(&format!("redb ({label}): open + get all"), n, || {
        let db = redb::Database::create(&path).unwrap();
        let tx = db.begin_read().unwrap();
        let t = tx.open_table(TABLE).unwrap();
        (0..n).filter(|&i| t.get(&key(i)).unwrap().is_some_and(|v| v.value() == value(i).as_slice())).count()
    });
}

fn sqlite(n: usize, dir: &Path) {
    let path = dir.join("items.sqlite");
    let open = || {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.pragma_update(None, "journal_mode", "WAL").unwrap();
        c.pragma_update(None, "synchronous", "NORMAL").unwrap();
        c.execute("CREATE TABLE IF NOT EXISTS items (key BLOB PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID", []).unwrap();
        c
    };
    time("sqlite (WAL, synchronous=NORMAL): put (one transaction each)", n, || {
        let c = open();
        let mut st = c.prepare("INSERT OR REPLACE INTO items (key, value) VALUES (?1, ?2)").unwrap();
        for i in 0..n {
            st.execute(rusqlite::params![&key(i)[..], value(i)]).unwrap();
        }
        n
    });
    time("sqlite: open + get all", n, || {
        let c = open();
        let mut st = c.prepare("SELECT value FROM items WHERE key = ?1").unwrap();
        (0..n)
            .filter(|&i| {
                let v: Option<Vec<u8>> = st.query_row([&key(i)[..]], |r| r.get(0)).ok();
                v.is_some_and(|v| v == value(i))
            })
            .count()
    });
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args[1].parse().unwrap();
    let dir = Path::new(&args[2]);
    let only = args.get(3).map(String::as_str);
    println!("| store: operation | items | seconds | items/s |");
    println!("|---|---|---|---|");
    let want = |s: &str| only.is_none_or(|o| o.split(',').any(|x| x == s));
    if want("files") {
        files(n, dir);
    }
    if want("log") {
        log(n, dir);
    }
    if want("redb-none") {
        redb_with(n, dir, redb::Durability::None, "none");
    }
    if want("redb-immediate") {
        // Immediate fsyncs every commit: measured on fewer items.
        redb_with(n.min(2000), dir, redb::Durability::Immediate, "immediate");
    }
    if want("sqlite") {
        sqlite(n, dir);
    }
}
