//! Sampling settings as pipelines write them (`sampling:` in generate,
//! evaluate and GRPO), and the one place they narrow to the runtime's
//! `SamplingParams`.
//!
//! Numbers stay f64 in the spec, so the lock and the fingerprint see `0.8`,
//! not a widened f32 (`0.800000011920929`); they become f32 only here.

use retort_engine::Hashed;
use retort_lm::SamplingParams;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// max_tokens, temperature, top_k, top_p, min_p, stop.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Sampling {
    /// Most new tokens per sample.
    #[serde(default = "default_max_tokens")]
    pub max_tokens: usize,
    /// 0 = greedy.
    #[serde(default = "default_temperature")]
    pub temperature: f64,
    /// Keep the k most likely tokens (0 = off).
    #[serde(default)]
    pub top_k: usize,
    /// Nucleus sampling threshold (1 = off).
    #[serde(default = "one")]
    pub top_p: f64,
    /// Drop tokens below min_p × the top probability (0 = off).
    #[serde(default)]
    pub min_p: f64,
    /// Stop when the text contains one of these (kept in the response).
    #[serde(default)]
    pub stop: Vec<String>,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling { max_tokens: default_max_tokens(), temperature: default_temperature(), top_k: 0, top_p: 1.0, min_p: 0.0, stop: vec![] }
    }
}

fn default_max_tokens() -> usize {
    256
}
fn default_temperature() -> f64 {
    0.7
}
fn one() -> f64 {
    1.0
}

impl Sampling {
    /// Greedy decoding (evaluation's default).
    pub fn greedy() -> Self {
        Sampling { temperature: 0.0, ..Sampling::default() }
    }

    /// Temperature 1 (GRPO rollouts' default).
    pub fn unit_temperature() -> Self {
        Sampling { temperature: 1.0, ..Sampling::default() }
    }

    /// Everything here changes what is sampled, so all of it is hashed.
    pub fn hashed(&self) -> Hashed {
        let Sampling { max_tokens, temperature, top_k, top_p, min_p, stop } = self;
        Hashed::new()
            .field("max_tokens", max_tokens)
            .field("temperature", temperature)
            .field("top_k", top_k)
            .field("top_p", top_p)
            .field("min_p", min_p)
            .field("stop", stop)
    }

    /// The runtime's parameters, seeded: the only place these narrow to f32.
    pub fn params(&self, seed: u64) -> SamplingParams {
        SamplingParams {
            max_new_tokens: self.max_tokens,
            temperature: self.temperature as f32,
            top_k: self.top_k,
            top_p: self.top_p as f32,
            min_p: self.min_p as f32,
            seed,
            stop: self.stop.clone(),
            eos_token_ids: None,
        }
    }
}
