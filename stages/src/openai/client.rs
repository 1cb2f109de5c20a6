//! One request to a remote model, with retries.
//!
//! 429, 5xx, timeouts and dropped or refused connections are retried with
//! exponential backoff and full jitter (a `Retry-After` header sets the wait
//! instead), each retry going to the next base URL. Anything else, or a
//! request still failing after `max_retries`, is an error naming the
//! endpoint, the HTTP status and the server's message.
//!
//! The API key lives in [`ApiKey`], whose `Debug` prints nothing, and every
//! message taken from a server passes through [`ApiKey::redact`], so the key
//! cannot reach a log line, an error or the cache.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use retort_engine::OpenAiModel;
use serde_json::Value;

use super::http::{Http, HttpError, Response};
use super::limiter::Limiter;
use super::wire;

/// An API key read from the environment.
#[derive(Clone)]
pub struct ApiKey(String);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

impl ApiKey {
    /// The key named by `api_key_env`: `Ok(None)` when the model names no
    /// variable, an error (naming the variable, never a value) when it is unset.
    pub fn from_env(m: &OpenAiModel) -> Result<Option<ApiKey>, String> {
        let Some(var) = &m.api_key_env else { return Ok(None) };
        match std::env::var(var) {
            Ok(v) if !v.is_empty() => Ok(Some(ApiKey(v))),
            _ => Err(format!("the API key variable `{var}` (api_key_env) is not set; export it, or remove `api_key_env` if the server needs no key")),
        }
    }

    /// `text` with every occurrence of the key masked.
    pub fn redact(key: Option<&ApiKey>, text: String) -> String {
        match key {
            Some(k) if k.0.len() >= 4 && text.contains(&k.0) => text.replace(&k.0, "<redacted>"),
            _ => text,
        }
    }

    fn header(&self) -> String {
        format!("Bearer {}", self.0)
    }
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The server answered with an error status.
    #[error("{url}: HTTP {status}: {message}")]
    Status {
        /// The endpoint asked.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The server's message.
        message: String,
        /// Seconds from `Retry-After`.
        retry_after: Option<f64>,
    },
    /// No answer: refused, reset, timed out.
    #[error("{url}: {message}")]
    Transport {
        /// The endpoint asked.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// An answer retort cannot read.
    #[error("{url}: unexpected response: {message}")]
    Response {
        /// The endpoint asked.
        url: String,
        /// What is wrong with it.
        message: String,
    },
}

impl RequestError {
    pub(crate) fn retryable(&self) -> bool {
        match self {
            RequestError::Status { status, .. } => *status == 429 || *status == 408 || *status >= 500,
            RequestError::Transport { .. } => true,
            RequestError::Response { .. } => false,
        }
    }

    fn retry_after(&self) -> Option<f64> {
        match self {
            RequestError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// Counters for the progress line.
#[derive(Default)]
pub struct Stats {
    /// Successful requests.
    pub requests: AtomicU64,
    /// Completion tokens reported.
    pub tokens: AtomicU64,
    /// Attempts retried.
    pub retries: AtomicU64,
    /// Failed attempts (retried or not).
    pub errors: AtomicU64,
}

/// A remote model's client: its URLs, key, HTTP agent and concurrency.
pub struct Client {
    /// The `openai:` entry.
    pub spec: OpenAiModel,
    urls: Vec<String>,
    key: Option<ApiKey>,
    http: Http,
    /// Adaptive bound on requests in flight.
    pub limiter: Limiter,
    next_url: AtomicUsize,
    /// Largest `n` the server took (starts unbounded; lowered by a 400).
    pub n_cap: AtomicUsize,
    /// What has happened so far.
    pub stats: Stats,
    /// When the client was made (for rates).
    pub started: Instant,
}

/// The first wait before a retry; doubled per attempt up to [`MAX_BACKOFF`].
const BASE_BACKOFF: f64 = 0.25;
const MAX_BACKOFF: f64 = 20.0;

impl Client {
    /// A client for `spec`; fails when its key variable is unset.
    pub fn new(spec: &OpenAiModel) -> Result<Client, String> {
        let key = ApiKey::from_env(spec)?;
        let http = Http::new(Duration::from_secs_f64(spec.timeout));
        Ok(Client {
            urls: spec.urls(),
            key,
            http,
            limiter: Limiter::new(spec.max_concurrency),
            next_url: AtomicUsize::new(0),
            n_cap: AtomicUsize::new(usize::MAX),
            stats: Stats::default(),
            started: Instant::now(),
            spec: spec.clone(),
        })
    }

    /// POSTs `body` to the model's endpoint, retrying what can be retried;
    /// returns the response text.
    pub fn post(&self, body: &Value) -> Result<String, RequestError> {
        let bytes = serde_json::to_vec(body).expect("request bodies serialize");
        let mut attempt = 0u32;
        loop {
            let url = self.url();
            let result = {
                let _permit = self.limiter.acquire();
                self.post_once(&url, &bytes)
            };
            match result {
                Ok(text) => {
                    self.limiter.success();
                    self.stats.requests.fetch_add(1, Ordering::Relaxed);
                    return Ok(text);
                }
                Err(e) => {
                    self.stats.errors.fetch_add(1, Ordering::Relaxed);
                    if !e.retryable() || attempt >= self.spec.max_retries {
                        return Err(e);
                    }
                    self.limiter.failure();
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(backoff(attempt, e.retry_after()));
                    attempt += 1;
                }
            }
        }
    }

    /// The next base URL's endpoint (round robin over replicas).
    fn url(&self) -> String {
        let i = self.next_url.fetch_add(1, Ordering::Relaxed) % self.urls.len();
        format!("{}{}", self.urls[i], self.spec.endpoint.path())
    }

    fn post_once(&self, url: &str, bytes: &[u8]) -> Result<String, RequestError> {
        self.send("POST", url, Some(bytes))
    }

    /// GETs `url` (for the preflight's `/models`).
    pub fn get(&self, url: &str) -> Result<String, RequestError> {
        self.send("GET", url, None)
    }

    fn send(&self, method: &str, url: &str, body: Option<&[u8]>) -> Result<String, RequestError> {
        let auth = self.key.as_ref().map(ApiKey::header);
        let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
        let resp = self.http.request(method, url, &headers, body).map_err(|e| self.transport(url, e))?;
        self.read(url, resp)
    }

    fn read(&self, url: &str, resp: Response) -> Result<String, RequestError> {
        if (200..300).contains(&resp.status) {
            return Ok(resp.body);
        }
        let retry_after = resp.header("retry-after").and_then(|v| v.trim().parse::<f64>().ok());
        let message = self.redact(wire::error_message(&resp.body));
        Err(RequestError::Status { url: url.to_string(), status: resp.status, message, retry_after })
    }

    fn transport(&self, url: &str, e: HttpError) -> RequestError {
        let message = match e {
            HttpError::Timeout => format!("no answer within {}s (timeout)", self.spec.timeout),
            other => self.redact(other.to_string()),
        };
        RequestError::Transport { url: url.to_string(), message }
    }

    /// `text` with the key masked.
    pub fn redact(&self, text: String) -> String {
        ApiKey::redact(self.key.as_ref(), text)
    }

    /// The base URLs.
    pub fn urls(&self) -> &[String] {
        &self.urls
    }
}

/// How long to wait before retry `attempt` (0-based): `Retry-After` when
/// the server gave one, else exponential backoff with full jitter.
fn backoff(attempt: u32, retry_after: Option<f64>) -> Duration {
    let secs = match retry_after {
        Some(s) => s.clamp(0.0, 300.0) + 0.1 * jitter(),
        None => (BASE_BACKOFF * 2f64.powi(attempt as i32)).min(MAX_BACKOFF) * (0.5 + 0.5 * jitter()),
    };
    Duration::from_secs_f64(secs)
}

/// A number in [0, 1), different per call (no RNG crate needed: the
/// standard library's randomly keyed hasher over a counter).
fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(CALLS.fetch_add(1, Ordering::Relaxed));
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_honours_retry_after() {
        for attempt in 0..12 {
            let d = backoff(attempt, None).as_secs_f64();
            let full = (BASE_BACKOFF * 2f64.powi(attempt as i32)).min(MAX_BACKOFF);
            assert!(d >= full * 0.5 && d <= full, "attempt {attempt}: {d}");
        }
        let d = backoff(0, Some(2.0)).as_secs_f64();
        assert!((2.0..2.1).contains(&d), "{d}");
    }

    #[test]
    fn the_key_never_prints() {
        let k = ApiKey("sk-secret-123".into());
        assert!(!format!("{k:?}").contains("sk-secret"));
        assert_eq!(ApiKey::redact(Some(&k), "bad key sk-secret-123!".into()), "bad key <redacted>!");
    }

    #[test]
    fn what_is_retried() {
        let status = |s| RequestError::Status { url: "u".into(), status: s, message: String::new(), retry_after: None };
        assert!(status(429).retryable() && status(500).retryable() && status(503).retryable());
        assert!(!status(400).retryable() && !status(401).retryable() && !status(404).retryable());
        assert!(RequestError::Transport { url: "u".into(), message: "reset".into() }.retryable());
    }
}
