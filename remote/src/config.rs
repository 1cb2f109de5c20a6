//! Where the remote is: `s3://bucket/prefix`, an endpoint for
//! S3-compatible servers, a region. Credentials are not configuration: they
//! come from the standard AWS environment variables or the shared
//! credentials file, and are never stored, hashed or printed.

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};

use crate::client::Remote;
use crate::error::{chain, RemoteError};

/// A remote as configured (`cache:` in a pipeline, `RETORT_REMOTE`,
/// `--remote`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteConfig {
    /// `s3://bucket` or `s3://bucket/prefix`.
    pub url: String,
    /// The server for S3-compatible storage (MinIO, s3s, Ceph...), e.g.
    /// `http://127.0.0.1:9000`; else `AWS_ENDPOINT_URL`, else AWS itself.
    pub endpoint: Option<String>,
    /// The region; else `AWS_REGION` / `AWS_DEFAULT_REGION`, else `us-east-1`.
    pub region: Option<String>,
}

impl RemoteConfig {
    /// The bucket and the key prefix (without surrounding `/`).
    pub fn bucket_and_prefix(&self) -> Result<(String, String), RemoteError> {
        let bad = |reason: &str| RemoteError::Config { url: self.url.clone(), reason: reason.to_string() };
        let rest = self.url.strip_prefix("s3://").ok_or_else(|| bad("expected `s3://bucket/prefix`"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.contains('@') {
            return Err(bad("credentials do not belong in the URL; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"));
        }
        if bucket.is_empty() {
            return Err(bad("no bucket: expected `s3://bucket/prefix`"));
        }
        Ok((bucket.to_string(), prefix.trim_matches('/').to_string()))
    }

    /// Connects (lazily: no request is made until the first operation).
    pub fn open(&self) -> Result<Remote, RemoteError> {
        let (bucket, prefix) = self.bucket_and_prefix()?;
        let store = self.s3(&bucket)?;
        Remote::new(self.url.trim_end_matches('/').to_string(), store, &prefix)
    }

    fn s3(&self, bucket: &str) -> Result<Arc<dyn ObjectStore>, RemoteError> {
        // `from_env` reads AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
        // AWS_SESSION_TOKEN, AWS_REGION / AWS_DEFAULT_REGION and
        // AWS_ENDPOINT_URL.
        // reqwest is built without a TLS crypto provider (see Cargo.toml),
        // and `build` below makes its client: ring is the provider.
        // Installing twice is harmless (the first one stays).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket);
        if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
            if let Some(c) = profile_credentials() {
                b = b.with_access_key_id(c.key_id).with_secret_access_key(c.secret);
                if let Some(t) = c.token {
                    b = b.with_token(t);
                }
            }
        }
        if std::env::var_os("AWS_REGION").is_none() {
            if let Ok(r) = std::env::var("AWS_DEFAULT_REGION") {
                b = b.with_region(r);
            }
        }
        if let Some(r) = &self.region {
            b = b.with_region(r);
        }
        let endpoint = self.endpoint.clone().or_else(|| std::env::var("AWS_ENDPOINT_URL").ok());
        if let Some(e) = &endpoint {
            b = b.with_endpoint(e);
        }
        // On the client options: `with_client_options` below replaces them.
        let allow_http = endpoint.as_deref().is_some_and(|e| e.starts_with("http://"));
        // A remote that is down must cost seconds, not the client's default
        // of minutes of retries: the run goes on locally without it.
        let retry = RetryConfig {
            max_retries: 2,
            retry_timeout: Duration::from_secs(10),
            backoff: BackoffConfig { init_backoff: Duration::from_millis(100), max_backoff: Duration::from_secs(1), base: 2.0 },
        };
        let client = ClientOptions::new()
            .with_allow_http(allow_http)
            .with_connect_timeout(Duration::from_secs(3))
            .with_timeout(Duration::from_secs(300));
        let s3 = b
            .with_retry(retry)
            .with_client_options(client)
            .build()
            .map_err(|e| RemoteError::Config { url: self.url.clone(), reason: chain(&e) })?;
        Ok(Arc::new(s3))
    }
}

struct ProfileCredentials {
    key_id: String,
    secret: String,
    token: Option<String>,
}

/// The `AWS_PROFILE` (or `default`) section of the shared credentials file
/// (`AWS_SHARED_CREDENTIALS_FILE`, else `~/.aws/credentials`), when the
/// environment has no keys.
fn profile_credentials() -> Option<ProfileCredentials> {
    let path = match std::env::var_os("AWS_SHARED_CREDENTIALS_FILE") {
        Some(p) => std::path::PathBuf::from(p),
        None => std::path::PathBuf::from(std::env::var_os("HOME")?).join(".aws/credentials"),
    };
    let text = std::fs::read_to_string(path).ok()?;
    let profile = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".into());
    parse_profile(&text, &profile)
}

fn parse_profile(text: &str, profile: &str) -> Option<ProfileCredentials> {
    let (mut inside, mut key_id, mut secret, mut token) = (false, None, None, None);
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = name.trim() == profile;
        } else if let (true, Some((k, v))) = (inside, line.split_once('=')) {
            let v = Some(v.trim().to_string());
            match k.trim() {
                "aws_access_key_id" => key_id = v,
                "aws_secret_access_key" => secret = v,
                "aws_session_token" => token = v,
                _ => {}
            }
        }
    }
    Some(ProfileCredentials { key_id: key_id?, secret: secret?, token })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(url: &str) -> RemoteConfig {
        RemoteConfig { url: url.into(), endpoint: None, region: None }
    }

    #[test]
    fn urls_name_a_bucket_and_a_prefix() {
        assert_eq!(cfg("s3://b").bucket_and_prefix().unwrap(), ("b".into(), "".into()));
        assert_eq!(cfg("s3://b/team/cache/").bucket_and_prefix().unwrap(), ("b".into(), "team/cache".into()));
        for bad in ["b/x", "http://b", "s3://", "s3:///x", "s3://KEY:SECRET@b/x"] {
            let err = cfg(bad).bucket_and_prefix().unwrap_err().to_string();
            assert!(err.contains("invalid remote"), "{bad}: {err}");
            assert!(!err.contains("SECRET") || bad.contains("SECRET") && err.contains("credentials do not belong"), "{err}");
        }
    }

    #[test]
    fn a_profile_section_is_read_and_others_ignored() {
        let text = "[default]\naws_access_key_id = A\naws_secret_access_key = B\n[work]\naws_access_key_id=C\naws_secret_access_key=D\naws_session_token=E\n";
        let d = parse_profile(text, "default").unwrap();
        assert_eq!((d.key_id.as_str(), d.secret.as_str(), d.token), ("A", "B", None));
        let w = parse_profile(text, "work").unwrap();
        assert_eq!((w.key_id.as_str(), w.secret.as_str(), w.token.as_deref()), ("C", "D", Some("E")));
        assert!(parse_profile(text, "nope").is_none());
    }
}
