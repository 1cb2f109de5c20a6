//! retort's model runtime: a Llama-family decoder on burn.
//!
//! - [`gguf`]: GGUF v2/v3 reader; [`quant`]: ggml dequantization.
//! - [`config`], [`model`]: the decoder and its hyper-parameters.
//! - [`weights`]: GGUF/safetensors loading, checkpoint saving.
//! - [`sampling`], [`generate`]: batched generation with a KV cache;
//!   [`kv_state`]: a generation's keys and values kept for a later one;
//!   [`joint`]: one continuation under several contexts (Hinted Decoding);
//!   [`score`]: each token's log-prob and entropy (φ, METHODS §4.1).
//! - [`qmatmul`]: CPU kernels on GGUF's quantized blocks; [`packed`]: the
//!   block-format model that the host engine (`host.rs`) runs on the CPU.
//! - [`loaded`]: [`LoadedModel`], a model with its tokenizer (what callers use).
//! - [`device`]: `cpu|wgpu|cuda` selection at run time.
//! - [`tokenizer`]: tokenizers from GGUF metadata, `tokenizer.json`, or a trained
//!   character vocabulary; [`chat`]: chat templates.
//!
//! ```no_run
//! use retort_lm::{DeviceKind, LoadedModel, SamplingParams};
//! # fn main() -> Result<(), retort_lm::LmError> {
//! let lm = LoadedModel::load("models/SmolLM2-135M-Instruct.Q4_1.gguf".as_ref(), DeviceKind::Cpu)?;
//! let prompt = lm.encode_prompt("What is 2 + 2?", true)?;
//! let params = SamplingParams { temperature: 0.7, top_p: 0.9, seed: 1, ..SamplingParams::greedy(64) };
//! // One RNG per item id: a sample does not depend on its batch neighbours.
//! let out = lm.generate(&[prompt.clone(), prompt], &params, &[0, 1])?;
//! println!("{}", lm.decode(&out[0].tokens)?);
//! lm.save("out/checkpoint".as_ref())?; // config.json, model.safetensors, tokenizer.json
//! # Ok(())
//! # }
//! ```
//!
//! burn 0.22 has no backend type parameter: tensors are `Tensor<D>` on a
//! run-time [`burn::tensor::Device`]. Training uses the same [`Llama`] on
//! `device.autodiff()`.

pub mod config;
pub mod device;
pub mod error;
pub mod generate;
pub mod joint;
pub mod kv_state;
pub mod gguf;
pub(crate) mod host;
pub mod loaded;
pub mod model;
pub mod packed;
pub mod qmatmul;
pub mod quant;
pub mod rng;
pub mod sampling;
pub mod score;
pub mod weights;
pub mod train;
pub mod tokenizer;
pub(crate) mod threads;
pub mod chat;
#[doc(hidden)]
pub mod fuzzing;

#[cfg(test)]
pub(crate) mod test_util;

pub use config::LlamaConfig;
pub use device::DeviceKind;
pub use error::LmError;
pub use generate::{generate, generate_continuous, generate_kv, FinishReason, Generation, GenerateRequest};
pub use kv_state::KvState;
pub use gguf::{GgufFile, MetaValue, TensorInfo};
pub use loaded::LoadedModel;
pub use model::{AttnLayout, KvCache, Llama};
pub use quant::GgmlType;
pub use sampling::{Sampler, SamplingParams};
