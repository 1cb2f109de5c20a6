//! Where a pipeline's lock file and cache live, and reading/writing its
//! section of `retort.lock`.
//!
//! One directory may hold several pipelines (`pipelines/` does), so
//! `retort.lock` keeps one section per pipeline file name.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use retort_cache::{LockEntry, LockFile, PipelineLock, Store};

use super::{CliError, Common};
use crate::spec::Pipeline;

/// `retort.lock` next to the pipeline file.
pub fn lock_path(p: &Pipeline) -> PathBuf {
    p.dir.join("retort.lock")
}

/// The key of a pipeline's section: its file name.
fn section(p: &Pipeline) -> String {
    p.file.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

/// This pipeline's entries of the lock file (empty if none).
pub fn read_lock(p: &Pipeline) -> Result<BTreeMap<String, LockEntry>, CliError> {
    let lock = LockFile::read(&lock_path(p))?;
    Ok(lock.and_then(|mut l| l.pipelines.remove(&section(p))).map(|s| s.stages).unwrap_or_default())
}

/// Replaces this pipeline's section, leaving other pipelines' alone. Stages
/// no longer in the pipeline are dropped.
pub fn write_lock(p: &Pipeline, stages: BTreeMap<String, LockEntry>) -> Result<(), CliError> {
    let path = lock_path(p);
    let mut lock = LockFile::read(&path)?.unwrap_or_default();
    let stages = stages.into_iter().filter(|(name, _)| p.stage_index(name).is_some()).collect();
    lock.pipelines.insert(section(p), PipelineLock { stages });
    lock.write(&path)?;
    Ok(())
}

/// The cache directory: `--cache-dir`/`RETORT_CACHE_DIR`, else `.retort/`
/// next to the pipeline (or in the current directory without one).
pub fn cache_dir(common: &Common, pipeline_dir: Option<&Path>) -> PathBuf {
    match (&common.cache_dir, pipeline_dir) {
        (Some(d), _) => d.clone(),
        (None, Some(dir)) => dir.join(".retort"),
        (None, None) => PathBuf::from(".retort"),
    }
}

/// Opens the store for a pipeline.
pub fn open_store(common: &Common, p: &Pipeline) -> Result<Store, CliError> {
    Ok(Store::open(&cache_dir(common, Some(&p.dir)))?)
}
