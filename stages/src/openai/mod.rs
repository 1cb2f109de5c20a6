//! OpenAI-compatible servers (vLLM, SGLang, llama-server) as a model
//! backend: the same sampler interface as a model loaded here, behind the
//! same item cache.
//!
//! - [`wire`]: request bodies and responses (both endpoints);
//! - [`http`]: a small HTTP/1.1 client over `std::net` (why not a crate: there);
//! - [`client`]: one request with retries, backoff and the API key;
//! - [`limiter`]: adaptive concurrency (fewer requests in flight while the
//!   server answers with errors);
//! - [`batch`]: sampling many items over a pool of workers;
//! - [`preflight`]: the checks before a run (server up, model served, key set).

pub mod batch;
pub mod client;
pub mod http;
pub mod limiter;
pub mod preflight;
pub mod wire;

pub use client::Client;
pub use preflight::check;
