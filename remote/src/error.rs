//! The remote cache's one error type, and the redaction every message goes
//! through so that credentials never reach a log or a terminal.

use retort_cache::CacheError;

/// Why a remote operation failed. A missing remote object is not an error
/// (it is a miss); these are for a remote that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteError {
    /// The remote's URL or settings cannot be used.
    #[error("invalid remote `{url}`: {reason}")]
    Config {
        /// The URL as given.
        url: String,
        /// What is wrong, and the fix.
        reason: String,
    },
    /// A request failed: the remote is down, refuses our credentials, or
    /// answered something we cannot use.
    #[error("remote {remote}: cannot {action} `{key}`: {message}")]
    Request {
        /// The remote's URL.
        remote: String,
        /// What was being done ("upload", "download", "list").
        action: &'static str,
        /// The object's key.
        key: String,
        /// The client's message, redacted.
        message: String,
    },
    /// The local store failed while sending or receiving.
    #[error(transparent)]
    Local(#[from] CacheError),
}

/// The environment variables whose values must never be printed.
const SECRET_VARS: [&str; 3] = ["AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID"];

/// `text` with the values of the AWS credential variables replaced by
/// `<redacted>`. The S3 client does not put secrets in its messages, but
/// servers echo requests back in errors; this makes sure of it.
pub fn redact(text: &str) -> String {
    let mut out = text.to_string();
    for var in SECRET_VARS {
        if let Ok(value) = std::env::var(var) {
            // A very short value would blank out ordinary words.
            if value.len() >= 4 {
                out = out.replace(&value, "<redacted>");
            }
        }
    }
    out
}

/// An error and its causes, `a: b: c`, redacted.
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text = format!("{text}: {part}");
        }
        source = s.source();
    }
    redact(&text)
}
