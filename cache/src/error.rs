//! The one error type of this crate.
//!
//! Every variant names the path it is about, so the CLI can print a message
//! that tells the user *which* file is at fault without extra context. A cache
//! miss is never an error (it is `Ok(None)`); these are for a store or lock
//! file that cannot be used at all.

use std::io;
use std::path::{Path, PathBuf};

/// Why a store, stat cache or lock file operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// A filesystem operation failed.
    #[error("cannot {action} `{path}`")]
    Io {
        /// What was being done, as a verb phrase ("create directory").
        action: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The store was written by a newer retort with a format we cannot read.
    #[error(
        "cache store `{path}` has format version {found}, but this retort supports up to \
         {supported}; upgrade retort or point it at another cache directory"
    )]
    StoreTooNew {
        /// The store root.
        path: PathBuf,
        /// The version found in `VERSION`.
        found: u32,
        /// The newest version this build understands.
        supported: u32,
    },
    /// The store's `VERSION` file does not hold a version number.
    #[error(
        "cache store version file `{path}` is unreadable (found {content:?}); \
         it should hold a single number, or delete the cache directory"
    )]
    BadStoreVersion {
        /// The `VERSION` file.
        path: PathBuf,
        /// What it contained (truncated).
        content: String,
    },
    /// The lock file is not valid YAML of the expected shape.
    #[error(
        "cannot parse lock file `{path}`; fix it, or delete it and run again to regenerate it"
    )]
    LockParse {
        /// The lock file.
        path: PathBuf,
        /// The YAML error, with line and column.
        #[source]
        source: serde_yaml::Error,
    },
    /// The lock file was written by a newer retort.
    #[error(
        "lock file `{path}` has format version {found}, but this retort supports up to \
         {supported}; upgrade retort, or delete the lock file to regenerate it"
    )]
    LockTooNew {
        /// The lock file.
        path: PathBuf,
        /// The version found in the file.
        found: u32,
        /// The newest version this build understands.
        supported: u32,
    },
    /// A record could not be encoded (a non-string map key, a failing
    /// `Serialize` impl); a programming error, reported rather than panicking.
    #[error("cannot encode record for `{path}`")]
    Encode {
        /// Where the record was going to be written.
        path: PathBuf,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
}

impl CacheError {
    /// A failed filesystem operation on `path`, for code outside this crate
    /// that writes into the store's temp directories (the remote cache).
    pub fn from_io(action: &'static str, path: &Path, source: io::Error) -> CacheError {
        io_err(action, path)(source)
    }
}

/// Adapter for `map_err`: wraps an `io::Error` with the action and path.
pub(crate) fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> CacheError {
    let path = path.to_path_buf();
    move |source| CacheError::Io {
        action,
        path,
        source,
    }
}
