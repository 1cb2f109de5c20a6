//! The blocking client: one object store (S3, or `InMemory` in tests), the
//! key layout, a small tokio runtime to drive requests, and the set of
//! warnings already printed (each bad remote object is reported once).

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use crate::error::{chain, redact, RemoteError};
use crate::keys::Keys;

/// A remote cache: an object store and where under it retort's keys live.
pub struct Remote {
    url: String,
    store: Arc<dyn ObjectStore>,
    pub(crate) keys: Keys,
    rt: tokio::runtime::Runtime,
    warned: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Remote({})", self.url)
    }
}

impl Remote {
    /// A remote over any object store, with keys under `prefix`; `url`
    /// names it in messages (it must hold no credentials).
    pub fn new(url: String, store: Arc<dyn ObjectStore>, prefix: &str) -> Result<Remote, RemoteError> {
        // reqwest is built without a TLS crypto provider (see Cargo.toml);
        // ring is it. Installing twice is harmless (the first one stays).
        let _ = rustls::crypto::ring::default_provider().install_default();
        // Two workers: transfers are I/O-bound, and this machine's cores
        // belong to the stages.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| RemoteError::Config { url: url.clone(), reason: format!("cannot start the I/O runtime: {e}") })?;
        Ok(Remote { url, store, keys: Keys::new(prefix), rt, warned: Mutex::default() })
    }

    /// The remote's URL, for messages.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub(crate) fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// One cheap request (a listing of the prefix), to learn whether the
    /// remote answers and accepts our credentials before relying on it.
    pub fn probe(&self) -> Result<(), RemoteError> {
        let root = self.keys.root();
        let shown = root.clone().unwrap_or_default();
        self.block_on(self.store.list_with_delimiter(root.as_ref())).map_err(|e| self.error("list", &shown, &e))?;
        Ok(())
    }

    pub(crate) fn error(&self, action: &'static str, key: &Path, e: &object_store::Error) -> RemoteError {
        RemoteError::Request { remote: self.url.clone(), action, key: key.to_string(), message: chain(e) }
    }

    /// The bytes at `key`, or `None` if there is no such object.
    pub(crate) async fn get(&self, key: &Path) -> Result<Option<Bytes>, RemoteError> {
        let got = match self.store.get(key).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.error("download", key, &e)),
        };
        got.bytes().await.map(Some).map_err(|e| self.error("download", key, &e))
    }

    /// Whether an object exists at `key`.
    pub(crate) async fn exists(&self, key: &Path) -> Result<bool, RemoteError> {
        match self.store.head(key).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.error("look up", key, &e)),
        }
    }

    /// Writes `bytes` at `key` unless an object is there already (a
    /// conditional put, `If-None-Match: *`): `true` if this call created
    /// it, `false` if it existed, which is success too, since keys name
    /// their content.
    pub(crate) async fn put_new(&self, key: &Path, bytes: Bytes) -> Result<bool, RemoteError> {
        let opts = || PutOptions { mode: PutMode::Create, ..PutOptions::default() };
        let mut tries = 0;
        loop {
            tries += 1;
            match self.store.put_opts(key, PutPayload::from(bytes.clone()), opts()).await {
                Ok(_) => return Ok(true),
                Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => return Ok(false),
                // The client retries transport errors itself; one more try
                // covers a server that rejected one request spuriously.
                Err(_) if tries < 2 => continue,
                Err(e) => return Err(self.error("upload", key, &e)),
            }
        }
    }

    /// The keys directly or indirectly under `dir`.
    pub(crate) async fn list(&self, dir: &Path) -> Result<Vec<Path>, RemoteError> {
        let metas: Vec<_> = self.store.list(Some(dir)).try_collect().await.map_err(|e| self.error("list", dir, &e))?;
        Ok(metas.into_iter().map(|m| m.location).collect())
    }

    /// Prints `message` as a warning unless one was printed for `about`.
    pub(crate) fn warn_once(&self, about: &str, message: &str) {
        if self.warned.lock().expect("warned lock").insert(about.to_string()) {
            eprintln!("warning: remote {}: {}", self.url, redact(message));
        }
    }
}

#[cfg(test)]
impl Remote {
    /// Whether a warning about `about` was printed.
    pub(crate) fn warned_about(&self, about: &str) -> bool {
        self.warned.lock().expect("warned lock").contains(about)
    }
}
