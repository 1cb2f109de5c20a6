//! The content-addressed store behind retort.
//!
//! This crate knows keys, bytes and paths, never pipelines (the same split as
//! turborepo's cache crate): the engine decides *what* to hash, this crate
//! decides *how* bytes are hashed, named, written atomically, verified and
//! collected.
//!
//! Unix only: the stat cache keys on device and inode numbers, objects are
//! sealed with Unix permissions, and the store lock is `flock`.
//!
//! Errors are [`CacheError`]s whose `Display` is one lowercase line naming
//! the path; the OS error is its `source()`, so print the chain (anyhow's
//! `{:#}`) to show the reason as well.
#![warn(missing_docs)]

mod canonical;
mod error;
mod fsutil;
mod hash;
mod items;
mod integrity;
mod lock;
mod lockfile;
mod records;
mod runs;
mod stat;
mod stat_file;
mod store;

pub use canonical::{canonical_json, fingerprint, try_fingerprint};
pub use error::CacheError;
pub use items::{ItemLog, ItemSource};
pub use hash::{
    hash_bytes, hash_dir, hash_file, hash_path, manifest_hash, manifest_of, Hash, ManifestEntry, ParseHashError,
};
pub use lockfile::{LockEntry, LockFile, PipelineLock, LOCK_FORMAT_VERSION};
pub use stat::StatCache;
pub use store::{
    Artifact, ArtifactKind, GcStats, ObjectState, OutputRecord, RunRecord, Store, StoreLock, Usage,
};
