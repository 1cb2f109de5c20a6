//! The shared remote cache: a retort store's objects, run records and item
//! logs on S3-compatible storage, so that a colleague (or a cluster node)
//! reuses what one machine computed.
//!
//! The local store stays the only thing stages read; the remote sits behind
//! it. Everything on the remote is named by a hash and written with a
//! conditional put that never overwrites (`If-None-Match: *`): two machines
//! pushing the same result race harmlessly, the first write wins and the
//! second is told "already exists", which is success. Every download is
//! re-hashed before it enters the local store; a remote object whose bytes
//! do not match its name is a miss, reported once, never used.
//!
//! Layout under `s3://bucket/prefix/` (see [`keys`]):
//!
//! ```text
//! objects/<hash>        a file object, or one file of a directory object
//! trees/<hash>          a directory object's manifest (canonical JSON)
//! runs/<fingerprint>    a run record, sealed with a checksum
//! items/<ns>/<hash>     a copy of an item log (self-checking records)
//! ```
//!
//! [`Remote`] is the blocking client (it owns a small tokio runtime);
//! [`Session`] wraps it for a `retort run`: the first failure turns it off
//! with one warning, so a remote that is down costs one timeout, not one
//! per stage.
#![warn(missing_docs)]

mod client;
mod config;
mod error;
pub mod keys;
mod session;
mod transfer;

pub use client::Remote;
pub use config::RemoteConfig;
pub use error::{redact, RemoteError};
pub use session::Session;
pub use transfer::{Fetched, PushReport, RemoteState};
