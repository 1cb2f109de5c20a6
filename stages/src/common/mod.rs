//! What stage kinds share: model loading, how a PRM reads a solution, item-cached sampling and its
//! settings (and two-step sampling that continues a KV cache), prompt
//! templates, the row fields kinds exchange, and the rows-in/rows-out helper.

pub mod model;
pub mod prm;
pub mod rows;
pub mod sampler;
pub mod sampling;
pub mod template;
pub mod two_step;

/// Metrics are for people and the lock file: four decimals is plenty and
/// keeps the lock file stable across float formatting.
pub fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}
