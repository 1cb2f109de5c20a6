//! `push`, `pull`, `cache verify --remote`, and the remote a `run` uses.
//!
//! Which remote: `--remote URL`, else `RETORT_REMOTE`, else the pipeline's
//! `cache.remote` (with its `endpoint` and `region`). A remote that cannot
//! be used is exit 2, naming the remote and never a credential.

use std::sync::Arc;

use retort_cache::Store;
use retort_remote::{RemoteConfig, RemoteState, Session};

use super::args::{PipelineArgs, RemoteArgs};
use super::lock::{open_store, read_lock};
use super::pipeline_cmd::load_checked;
use super::{CliError, Common};
use crate::spec::Pipeline;
use crate::stage::Registry;

/// The remote the pipeline is configured with, given the flag (or
/// `RETORT_REMOTE`, which clap reads into it); `None` if there is none.
fn config(flag: Option<&str>, p: &Pipeline) -> Result<Option<RemoteConfig>, CliError> {
    let from_flag = flag.filter(|u| !u.is_empty()).map(str::to_string);
    let from_env = || std::env::var("RETORT_REMOTE").ok().filter(|u| !u.is_empty());
    let (url, in_file) = match (from_flag.or_else(from_env), &p.cache.remote) {
        (Some(url), _) => (url, false),
        (None, Some(url)) => (url.clone(), true),
        (None, None) => return Ok(None),
    };
    let cfg = RemoteConfig { url, endpoint: p.cache.endpoint.clone(), region: p.cache.region.clone() };
    if let Err(e) = cfg.bucket_and_prefix() {
        return Err(match in_file {
            true => p.error_at("cache.remote", e.to_string()).into(),
            false => CliError::Usage(format!("{e} (from --remote or RETORT_REMOTE)")),
        });
    }
    Ok(Some(cfg))
}

fn open(cfg: &RemoteConfig, required: bool) -> Result<Session, CliError> {
    let remote = cfg.open().map_err(|e| CliError::Usage(e.to_string()))?;
    Ok(Session::new(remote, required))
}

/// The remote a `retort run` pushes to and fetches from, if one is
/// configured and answers. One that does not answer is a warning and
/// `None` (local work only), or exit 2 when `cache.remote_required`.
pub(super) fn for_run(flag: Option<&str>, p: &Pipeline, store: &Store) -> Result<Option<Arc<Session>>, CliError> {
    let Some(cfg) = config(flag, p)? else {
        if p.cache.remote_required {
            return Err(p.error_at("cache.remote_required", "remote_required is true but no remote is configured").into());
        }
        return Ok(None);
    };
    let session = Arc::new(open(&cfg, p.cache.remote_required)?);
    if !session.probe() {
        return match p.cache.remote_required {
            true => Err(required_but_down(&session)),
            false => Ok(None),
        };
    }
    store.set_item_source(session.item_source());
    Ok(Some(session))
}

/// The exit-2 error of a required remote that failed.
pub(super) fn required_but_down(s: &Session) -> CliError {
    CliError::Usage(format!(
        "remote cache {} is required (cache.remote_required: true) but failed: {}; check the endpoint, the bucket and \
         the AWS_* credentials, or set remote_required: false to work from the local cache",
        s.remote().url(),
        s.failure().unwrap_or_default()
    ))
}

/// The remote `push`/`pull` talk to: it must be configured.
fn required(flag: Option<&str>, p: &Pipeline) -> Result<Session, CliError> {
    let cfg = config(flag, p)?.ok_or_else(|| {
        CliError::Usage(format!(
            "no remote cache for {}: pass --remote s3://bucket/prefix, set RETORT_REMOTE, or add `cache: {{remote: ...}}` to the pipeline",
            p.file.display()
        ))
    })?;
    open(&cfg, true)
}

/// For `retort status`: how many of the runs `fps` (the lock's, missing
/// here) the configured remote cache holds, and its URL. `None` without a
/// remote, or when it does not answer (status then says nothing of it).
pub(super) fn on_remote(p: &Pipeline, fps: &[retort_cache::Hash]) -> Option<(String, usize)> {
    let session = open(&config(None, p).ok()??, false).ok()?;
    if fps.is_empty() || !session.probe() {
        return None;
    }
    let remote = session.remote();
    let mut held = 0;
    for fp in fps {
        held += usize::from(matches!(remote.verify_run(fp).ok()?, RemoteState::Valid));
    }
    Some((remote.url().to_string(), held))
}

fn remote_err(e: retort_remote::RemoteError) -> CliError {
    CliError::Usage(e.to_string())
}

/// `retort push`: every run the lock references (outputs first, then the
/// record) and a copy of every item log.
pub(super) fn push(a: RemoteArgs, common: &Common, registry: &Registry) -> Result<(), CliError> {
    let (p, _) = load_checked(&a.pipeline, registry)?;
    let session = required(a.remote.remote.as_deref(), &p)?;
    let remote = session.remote();
    let store = open_store(common, &p)?;
    let mut runs = Vec::new();
    let mut absent = Vec::new();
    for (stage, entry) in read_lock(&p)? {
        match store.get_run(&entry.fingerprint)? {
            Some(rec) => runs.push((entry.fingerprint, rec)),
            None => absent.push(stage),
        }
    }
    let report = remote.push_runs(&store, &runs).map_err(remote_err)?;
    let mut logs = 0;
    for ns in store.item_namespaces()? {
        let log = store.items(&ns)?;
        logs += u64::from(remote.push_items(&ns, log.snapshot()).map_err(remote_err)?);
    }
    println!(
        "pushed {} runs to {}: {} entries uploaded ({} bytes), {} already there; {logs} item log copies uploaded",
        runs.len(),
        remote.url(),
        report.uploaded,
        report.bytes,
        report.present
    );
    if !absent.is_empty() || report.missing_locally > 0 {
        return Err(CliError::Failed(format!(
            "not in the local cache, so not pushed: {}; `retort run {}` makes them",
            if absent.is_empty() { format!("{} objects", report.missing_locally) } else { absent.join(", ") },
            a.pipeline.pipeline.display()
        )));
    }
    Ok(())
}

/// `retort pull`: the runs the lock references that the local cache lacks.
pub(super) fn pull(a: RemoteArgs, common: &Common, registry: &Registry) -> Result<(), CliError> {
    let (p, _) = load_checked(&a.pipeline, registry)?;
    let store = open_store(common, &p)?;
    let wanted: Vec<_> = read_lock(&p)?
        .into_iter()
        .filter_map(|(stage, e)| match store.get_run(&e.fingerprint) {
            Ok(Some(_)) => None,
            _ => Some((stage, e.fingerprint)),
        })
        .collect();
    if wanted.is_empty() {
        // Everything is here: no need to reach the remote at all.
        println!("nothing to pull: the local cache has every run in {}", super::lock::lock_path(&p).display());
        return Ok(());
    }
    let session = required(a.remote.remote.as_deref(), &p)?;
    let remote = session.remote();
    let mut absent = Vec::new();
    for (stage, fp) in &wanted {
        if remote.fetch_run(&store, fp).map_err(remote_err)?.is_none() {
            absent.push(stage.clone());
        }
    }
    println!("pulled {} runs from {}", wanted.len() - absent.len(), remote.url());
    if !absent.is_empty() {
        return Err(CliError::Failed(format!(
            "not on the remote (or damaged there): {}; `retort run {}` recomputes them",
            absent.join(", "),
            a.pipeline.pipeline.display()
        )));
    }
    Ok(())
}

/// `retort cache verify --remote`: every run record and object the lock
/// references, downloaded and re-hashed (nothing is stored locally).
pub(super) fn verify(a: &PipelineArgs, url: &str, registry: &Registry) -> Result<(), CliError> {
    let (p, _) = load_checked(a, registry)?;
    let session = required(Some(url), &p)?;
    let remote = session.remote();
    let (mut checked, mut bad) = (0, 0);
    let mut report = |what: String, state: RemoteState| {
        checked += 1;
        match state {
            RemoteState::Valid => {}
            RemoteState::Missing => {
                bad += 1;
                println!("missing  {what}");
            }
            RemoteState::Corrupt => {
                bad += 1;
                println!("corrupt  {what}");
            }
        }
    };
    for (stage, entry) in read_lock(&p)? {
        report(format!("{stage} (run record)  {}", entry.fingerprint), remote.verify_run(&entry.fingerprint).map_err(remote_err)?);
        for (name, out) in &entry.outputs {
            report(format!("{stage}.{name}  {}", out.hash), remote.verify_object(&out.hash, out.kind).map_err(remote_err)?);
        }
    }
    if bad > 0 {
        return Err(CliError::Failed(format!(
            "{bad} of {checked} remote entries missing or corrupt on {}; `retort push {}` uploads what the local cache has",
            remote.url(),
            a.pipeline.display()
        )));
    }
    println!("ok: {checked} remote entries verified on {}", remote.url());
    Ok(())
}
