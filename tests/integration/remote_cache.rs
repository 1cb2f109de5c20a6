//! The shared remote cache (issue 15) against a real S3 server: `s3s-fs`,
//! a SigV4-checking server that keeps objects as files, started per test
//! on 127.0.0.1. Tests skip (saying so) when `s3s-fs` is not installed;
//! `scripts/setup-s3.sh` installs it and `.ci/run` calls that.
//!
//! Executions are counted by the `command` stages of `util::chain`, which
//! append their name to `$COUNTS`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::llama::free_port;
use crate::util::{chain, Run, TestPipeline};

pub(crate) const KEY_ID: &str = "retorttestkey";
/// Distinctive, so the secrets test can search every output for it.
pub(crate) const SECRET: &str = "s3cr3t-Zq81xWv0-retort-never-print-me";
pub(crate) const BUCKET: &str = "retort";

/// The `s3s-fs` binary: `$RETORT_S3S_FS`, else on `PATH` or in
/// `~/.cargo/bin`.
fn s3s_fs() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("RETORT_S3S_FS") {
        return Some(PathBuf::from(p));
    }
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()).collect();
    dirs.extend(std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin")));
    dirs.into_iter().map(|d| d.join("s3s-fs")).find(|p| p.is_file())
}

/// A running `s3s-fs` with one bucket; killed on drop.
pub(crate) struct S3 {
    child: Option<Child>,
    bin: PathBuf,
    port: u16,
    root: tempfile::TempDir,
}

impl S3 {
    /// A fresh server, or `None` (printing why) without the binary.
    pub(crate) fn start() -> Option<S3> {
        let Some(bin) = s3s_fs() else {
            eprintln!("skipping: s3s-fs is not installed (scripts/setup-s3.sh installs it)");
            return None;
        };
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join(BUCKET)).unwrap();
        let mut s = S3 { child: None, bin, port: free_port(), root };
        s.restart();
        Some(s)
    }

    fn restart(&mut self) {
        let child = Command::new(&self.bin)
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", KEY_ID, "--secret-key", SECRET])
            .arg(self.root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start s3s-fs");
        self.child = Some(child);
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(start.elapsed() < Duration::from_secs(20), "s3s-fs did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub(crate) fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The file s3s-fs keeps the object at `key` (under the bucket) in.
    fn file(&self, key: &str) -> PathBuf {
        self.root.path().join(BUCKET).join(key)
    }

    /// Every object key under `prefix` (relative to the bucket).
    pub(crate) fn keys(&self, prefix: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut todo = vec![self.file(prefix)];
        while let Some(d) = todo.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                if e.path().is_dir() {
                    todo.push(e.path());
                } else {
                    let rel = e.path().strip_prefix(self.root.path().join(BUCKET)).unwrap().to_string_lossy().into_owned();
                    out.push(rel);
                }
            }
        }
        out.sort();
        out
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `chain(n)` with a `cache:` block pointing at `s3` under `prefix`.
fn shared(n: usize, s3: &S3, prefix: &str, extra: &str) -> String {
    let stages = chain(n);
    let (head, rest) = stages.split_once("stages:\n").unwrap();
    format!("{head}cache:\n  remote: s3://{BUCKET}/{prefix}\n  endpoint: {}\n{extra}stages:\n{rest}", s3.endpoint())
}

/// `retort ARGS` in `t` with the test's AWS credentials (and no others).
pub(crate) fn retort(t: &TestPipeline, secret: &str, args: &[&str]) -> Run {
    let mut c = t.cmd();
    for var in ["AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_REGION", "RETORT_REMOTE"] {
        c.env_remove(var);
    }
    c.env("AWS_ACCESS_KEY_ID", KEY_ID).env("AWS_SECRET_ACCESS_KEY", secret).env("AWS_REGION", "us-east-1");
    c.env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent");
    c.args(args).output().unwrap().into()
}

fn run_json(t: &TestPipeline, secret: &str) -> Run {
    retort(t, secret, &["run", "p.yaml", "--format", "json", "-q"])
}

/// A clone of `t`'s repository: the pipeline and its lock, no cache.
fn clone(t: &TestPipeline) -> TestPipeline {
    let c = TestPipeline::new(&t.read("p.yaml"));
    c.write("retort.lock", &t.read("retort.lock"));
    c
}

fn ok(r: &Run, what: &str) {
    assert_eq!(r.code, 0, "{what} failed:\n{}\n{}", r.stdout, r.stderr);
}

#[test]
fn a_clone_pulls_and_then_runs_nothing() {
    let Some(mut s3) = S3::start() else { return };
    let a = TestPipeline::new(&shared(3, &s3, "team/clone", ""));
    let first = run_json(&a, SECRET);
    ok(&first, "run");
    assert_eq!((a.executions("s0"), a.executions("s2")), (1, 1));
    // `run` pushed as it went: every run record is on the remote already.
    assert_eq!(s3.keys("team/clone/runs").len(), 3, "{:?}", s3.keys("team/clone"));
    let push = retort(&a, SECRET, &["push", "p.yaml"]);
    ok(&push, "push");
    assert!(push.stdout.contains("0 entries uploaded"), "run had pushed everything: {}", push.stdout);

    let b = clone(&a);
    let before = retort(&b, SECRET, &["status", "p.yaml"]);
    assert!(!before.stdout.contains("up-to-date"), "{}", before.stdout);
    // Status says the remote holds what the lock records.
    assert!(before.stdout.contains("3 of the 3 stage(s) whose retort.lock result is not in this cache have it on the remote cache"), "{}", before.stdout);
    let pull = retort(&b, SECRET, &["pull", "p.yaml"]);
    ok(&pull, "pull");
    assert!(pull.stdout.contains("pulled 3 runs"), "{}", pull.stdout);
    let status = retort(&b, SECRET, &["status", "p.yaml"]);
    ok(&status, "status");
    assert!(status.stdout.contains("chain: 3 up-to-date\n"), "{}", status.stdout);
    let run = run_json(&b, SECRET);
    ok(&run, "run in the clone");
    assert!(run.statuses().iter().all(|(_, s)| s == "cached"), "{}", run.stdout);
    assert_eq!(b.read("counts"), "", "the clone executed nothing");
    assert_eq!(b.read("retort.lock"), a.read("retort.lock"));

    // Pulling again needs nothing, not even the remote.
    s3.kill_and_keep(|| {
        let again = retort(&b, SECRET, &["pull", "p.yaml"]);
        ok(&again, "no-op pull");
        assert!(again.stdout.contains("nothing to pull"), "{}", again.stdout);
    });
    let verify = retort(&a, SECRET, &["cache", "verify", "p.yaml", "--remote"]);
    ok(&verify, "cache verify --remote");
    assert!(verify.stdout.contains("ok: 6 remote entries verified"), "{}", verify.stdout);
}

impl S3 {
    /// Runs `f` with the server stopped, then starts it again.
    fn kill_and_keep(&mut self, f: impl FnOnce()) {
        self.kill();
        f();
        self.restart();
    }
}

/// A run that misses locally fetches the run from the remote instead of
/// executing it, without `pull`.
#[test]
fn a_local_miss_is_fetched_before_anything_is_recomputed() {
    let Some(s3) = S3::start() else { return };
    let a = TestPipeline::new(&shared(2, &s3, "fetch", ""));
    ok(&run_json(&a, SECRET), "run");
    let b = clone(&a);
    let r = run_json(&b, SECRET);
    ok(&r, "run in the clone");
    assert!(r.statuses().iter().all(|(_, s)| s == "cached"), "{}", r.stdout);
    assert_eq!(b.read("counts"), "");
}

/// Two machines push the same results at once: conditional writes make the
/// race harmless, both succeed, and what is on the remote is intact.
#[test]
fn two_pushers_racing_on_the_same_objects_both_succeed() {
    let Some(s3) = S3::start() else { return };
    for round in 0..3 {
        let prefix = format!("race{round}");
        let yaml = shared(4, &s3, &prefix, "");
        // Each machine computes locally (the remote switched off), then both push.
        let machines: Vec<TestPipeline> = (0..2).map(|_| TestPipeline::new(&yaml)).collect();
        for m in &machines {
            let r = retort(m, SECRET, &["run", "p.yaml", "-q", "--remote", "s3://nobucket-here/x"]);
            ok(&r, "local run");
        }
        assert_eq!(machines[0].read("retort.lock"), machines[1].read("retort.lock"));
        let pushers: Vec<_> = machines
            .iter()
            .map(|m| {
                let mut c = m.cmd();
                c.env("AWS_ACCESS_KEY_ID", KEY_ID).env("AWS_SECRET_ACCESS_KEY", SECRET).env("AWS_REGION", "us-east-1");
                c.env_remove("RETORT_REMOTE").env_remove("AWS_ENDPOINT_URL");
                c.args(["push", "p.yaml"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
            })
            .collect();
        for p in pushers {
            let r: Run = p.wait_with_output().unwrap().into();
            ok(&r, "racing push");
        }
        let fresh = clone(&machines[0]);
        ok(&retort(&fresh, SECRET, &["cache", "verify", "p.yaml", "--remote"]), "verify after the race");
        ok(&retort(&fresh, SECRET, &["pull", "p.yaml"]), "pull after the race");
        ok(&run_json(&fresh, SECRET), "run after the race");
        assert_eq!(fresh.read("counts"), "");
    }
}

/// A remote object whose bytes do not match its name is a miss: warned
/// about once, never used, and the stage that made it runs again.
#[test]
fn a_corrupt_remote_object_is_a_miss_reported_once() {
    let Some(s3) = S3::start() else { return };
    let a = TestPipeline::new(&shared(3, &s3, "corrupt", ""));
    let first = run_json(&a, SECRET);
    ok(&first, "run");
    let hash = first.stage("s0")["outputs"]["out"]["hash"].as_str().unwrap().to_string();
    let file = s3.file(&format!("corrupt/objects/{hash}"));
    let good = std::fs::read(&file).unwrap();
    let mut bad = good.clone();
    bad[0] ^= 0x20;
    std::fs::write(&file, &bad).unwrap();

    let verify = retort(&a, SECRET, &["cache", "verify", "p.yaml", "--remote"]);
    assert_eq!(verify.code, 1, "{}\n{}", verify.stdout, verify.stderr);
    assert!(verify.stdout.contains(&format!("corrupt  s0.out  {hash}")), "{}", verify.stdout);

    let b = clone(&a);
    let r = run_json(&b, SECRET);
    ok(&r, "run with a corrupt remote object");
    assert_eq!(r.status_of("s0"), "ran", "{}", r.stdout);
    assert_eq!((b.executions("s0"), b.executions("s1"), b.executions("s2")), (1, 0, 0), "only s0 recomputed");
    assert_eq!(r.stderr.matches("does not match its hash").count(), 1, "reported once:\n{}", r.stderr);
    assert_eq!(r.stage("s0")["outputs"]["out"]["hash"].as_str(), Some(hash.as_str()));
    let shown = retort(&b, SECRET, &["show", "p.yaml", "s0"]);
    assert_eq!(shown.stdout.trim(), String::from_utf8_lossy(&good).trim(), "the good bytes, recomputed");
}

/// A remote that goes away in the middle of a run: a warning, and the run
/// finishes locally; with `remote_required: true`, exit 2 naming the remote
/// (after the local work is saved). Down from the start and required: exit
/// 2 before anything runs.
#[test]
fn a_remote_that_goes_away_mid_run_degrades_or_fails_when_required() {
    let Some(mut s3) = S3::start() else { return };
    for required in [false, true] {
        let extra = if required { "  remote_required: true\n" } else { "" };
        let yaml = shared(3, &s3, &format!("away{required}"), extra).replace("echo s1 >> $COUNTS;", "echo s1 >> $COUNTS; sleep 3;");
        let t = TestPipeline::new(&yaml);
        let mut c = t.cmd();
        c.env("AWS_ACCESS_KEY_ID", KEY_ID).env("AWS_SECRET_ACCESS_KEY", SECRET).env("AWS_REGION", "us-east-1");
        c.env_remove("RETORT_REMOTE").env_remove("AWS_ENDPOINT_URL");
        let child = c.args(["run", "p.yaml", "-q", "--format", "json", "-j", "1"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let start = Instant::now();
        while t.executions("s1") == 0 {
            assert!(start.elapsed() < Duration::from_secs(60), "s1 never started");
            std::thread::sleep(Duration::from_millis(20));
        }
        s3.kill();
        let r: Run = child.wait_with_output().unwrap().into();
        assert_eq!((t.executions("s0"), t.executions("s1"), t.executions("s2")), (1, 1, 1), "{}", r.stderr);
        assert!(r.stderr.contains("warning: remote cache unavailable"), "{}", r.stderr);
        assert_eq!(r.stderr.matches("warning: remote cache unavailable").count(), 1, "one warning:\n{}", r.stderr);
        assert!(t.read("retort.lock").contains("s2"), "the local work is saved");
        if required {
            assert_eq!(r.code, 2, "{}", r.stderr);
            assert!(r.stderr.contains(&format!("remote cache s3://{BUCKET}/awaytrue is required")), "{}", r.stderr);
            // Down from the start: nothing runs.
            let t2 = TestPipeline::new(&yaml);
            let r2 = run_json(&t2, SECRET);
            assert_eq!(r2.code, 2, "{}", r2.stderr);
            assert!(r2.stderr.contains(&format!("s3://{BUCKET}/awaytrue")), "{}", r2.stderr);
            assert_eq!(t2.read("counts"), "", "nothing ran");
        } else {
            assert_eq!(r.code, 0, "{}", r.stderr);
            assert_eq!(r.statuses().iter().filter(|(_, s)| s == "ran").count(), 3);
        }
        s3.restart();
    }
}

/// Every file under `dir`, as bytes.
fn all_files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else if let Ok(b) = std::fs::read(&p) {
                out.push((p, b));
            }
        }
    }
    out
}

/// The credentials never reach stdout, stderr, the lock or the cache: not
/// on success, and not in the errors of a wrong secret (which the server
/// rejects) or a server that is down.
#[test]
fn credentials_never_reach_output_lock_or_cache() {
    let Some(mut s3) = S3::start() else { return };
    let wrong = "WRONG-s3cr3t-Kp44-never-print-me-either";
    let t = TestPipeline::new(&shared(2, &s3, "secrets", ""));
    let mut runs = vec![
        run_json(&t, SECRET),
        retort(&t, SECRET, &["push", "p.yaml"]),
        retort(&t, SECRET, &["cache", "verify", "p.yaml", "--remote"]),
        retort(&t, wrong, &["run", "p.yaml", "--force", "s0", "-q"]),
        retort(&t, wrong, &["push", "p.yaml"]),
    ];
    let rejected = runs.last().unwrap();
    assert_eq!(rejected.code, 2, "a wrong secret is refused:\n{}", rejected.stderr);
    assert!(rejected.stderr.contains(&format!("s3://{BUCKET}/secrets")), "names the remote: {}", rejected.stderr);
    assert!(runs[3].stderr.contains("warning: remote cache unavailable"), "{}", runs[3].stderr);
    let c = clone(&t);
    runs.push(retort(&c, SECRET, &["pull", "p.yaml"]));
    s3.kill();
    runs.push(retort(&c, SECRET, &["run", "p.yaml", "--force", "s1", "-q"]));
    runs.push(retort(&c, SECRET, &["push", "p.yaml"]));
    for (i, r) in runs.iter().enumerate() {
        for secret in [SECRET, wrong] {
            assert!(!r.stdout.contains(secret) && !r.stderr.contains(secret), "command {i} printed a secret:\n{}\n{}", r.stdout, r.stderr);
        }
    }
    for dir in [t.dir.path(), c.dir.path()] {
        for (path, bytes) in all_files(dir) {
            let text = String::from_utf8_lossy(&bytes);
            for secret in [SECRET, wrong] {
                assert!(!text.contains(secret), "{} holds a secret", path.display());
            }
        }
    }
}

/// A `cache:` block is checked like every other key: an unknown key or a
/// URL that is not `s3://bucket/...` is exit 2 naming the file and line,
/// before anything runs (no server needed).
#[test]
fn a_bad_cache_block_is_refused_with_its_line() {
    let stages = "stages:\n  a:\n    kind: command\n    run: echo x > $RETORT_OUT_OUT\n    outputs: [out]\n";
    crate::util::rejects(&format!("cache:\n  remote: s3://b/p\n  endpiont: http://x\n{stages}"), &["p.yaml:3", "unknown field `endpiont`"]);
    crate::util::rejects(&format!("name: x\ncache:\n  remote: http://b/p\n{stages}"), &["p.yaml:3", "invalid remote `http://b/p`", "s3://bucket/prefix"]);
}
