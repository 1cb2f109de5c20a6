//! `cache ls|du|gc|verify`.

use std::collections::BTreeSet;

use retort_cache::{ObjectState, Store};

use super::args::{CacheArgs, CacheCommand, GcArgs, VerifyArgs};
use super::lock::{cache_dir, read_lock};
use super::pipeline_cmd::load_checked;
use super::{CliError, Common};
use crate::stage::Registry;

/// Dispatches a cache subcommand.
pub(super) fn cache(c: CacheCommand, common: &Common, registry: &Registry) -> Result<(), CliError> {
    match c {
        CacheCommand::Ls(a) => ls(a, common, registry),
        CacheCommand::Du(a) => du(a, common, registry),
        CacheCommand::Gc(a) => gc(a, common, registry),
        CacheCommand::Verify(a) => verify(a, common, registry),
    }
}

fn store_for(a: &CacheArgs, common: &Common, registry: &Registry) -> Result<Store, CliError> {
    let dir = match &a.pipeline {
        Some(path) => {
            let p = crate::spec::load(path, &[], registry)?;
            cache_dir(common, Some(&p.dir))
        }
        None => cache_dir(common, None),
    };
    if !dir.exists() {
        return Err(CliError::Usage(format!("no cache at {}", dir.display())));
    }
    Ok(Store::open(&dir)?)
}

fn ls(a: CacheArgs, common: &Common, registry: &Registry) -> Result<(), CliError> {
    let store = store_for(&a, common, registry)?;
    for (fp, rec) in store.runs()? {
        let outputs: Vec<String> = rec
            .outputs
            .iter()
            .map(|(k, o)| format!("{k}={}{}", o.hash.short(), o.rows.map_or(String::new(), |r| format!(" ({r} rows)"))))
            .collect();
        println!("{}  {:>8}ms  {}", fp.short(), rec.duration_ms, outputs.join("  "));
    }
    Ok(())
}

fn du(a: CacheArgs, common: &Common, registry: &Registry) -> Result<(), CliError> {
    let store = store_for(&a, common, registry)?;
    let u = store.du()?;
    println!(
        "{}: {} objects, {} bytes; {} runs; {} items, {} bytes",
        store.root().display(),
        u.objects,
        u.object_bytes,
        u.runs,
        u.items,
        u.item_bytes
    );
    Ok(())
}

fn gc(a: GcArgs, common: &Common, registry: &Registry) -> Result<(), CliError> {
    let mut keep_objects = BTreeSet::new();
    let mut keep_runs = BTreeSet::new();
    let mut dir = None;
    for path in &a.pipelines {
        let p = crate::spec::load(path, &[], registry)?;
        let d = cache_dir(common, Some(&p.dir));
        if dir.get_or_insert_with(|| d.clone()) != &d {
            return Err(CliError::Usage("the pipelines given to `cache gc` use different caches".into()));
        }
        for entry in read_lock(&p)?.values() {
            keep_runs.insert(entry.fingerprint);
            keep_objects.extend(entry.outputs.values().map(|o| o.hash));
        }
    }
    let dir = dir.expect("clap requires a pipeline");
    let store = Store::open(&dir)?;
    let _lock = store.lock()?;
    keep_runs.extend(store.runs()?.into_iter().take(a.keep).map(|(fp, _)| fp));
    if a.dry_run {
        let total = store.runs()?.len();
        println!("would keep {} of {} runs", keep_runs.len().min(total), total);
        return Ok(());
    }
    let stats = store.gc(&keep_objects, &keep_runs)?;
    println!(
        "removed {} objects ({} bytes) and {} runs",
        stats.removed_objects, stats.removed_bytes, stats.removed_runs
    );
    let (jobs, job_bytes) = crate::executor::gc(store.root(), &keep_runs)
        .map_err(|e| CliError::Failed(format!("cannot remove Slurm job files under {}: {e}", store.root().join("slurm").display())))?;
    if jobs > 0 {
        println!("removed {jobs} Slurm job files ({job_bytes} bytes) of runs not kept");
    }
    if stats.removed_legacy_items > 0 {
        println!("removed {} item files of the earlier one-file-per-item layout", stats.removed_legacy_items);
    }
    Ok(())
}

fn verify(v: VerifyArgs, common: &Common, registry: &Registry) -> Result<(), CliError> {
    if let Some(url) = &v.remote {
        return super::remote_cmd::verify(&v.pipeline, url, registry);
    }
    let a = v.pipeline;
    let (p, _) = load_checked(&a, registry)?;
    let store = Store::open(&cache_dir(common, Some(&p.dir)))?;
    let mut bad = 0;
    let mut checked = 0;
    for (stage, entry) in read_lock(&p)? {
        for (name, out) in &entry.outputs {
            checked += 1;
            match store.verify(&out.hash) {
                ObjectState::Valid => {}
                ObjectState::Missing => {
                    bad += 1;
                    println!("missing  {stage}.{name}  {}", out.hash);
                }
                ObjectState::Corrupt => {
                    bad += 1;
                    println!("corrupt  {stage}.{name}  {}", out.hash);
                }
            }
        }
    }
    if bad > 0 {
        return Err(CliError::Failed(format!(
            "{bad} of {checked} objects missing or corrupt; `retort run {}` recomputes them",
            a.pipeline.display()
        )));
    }
    println!("ok: {checked} objects verified");
    Ok(())
}
