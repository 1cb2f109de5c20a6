//! retort's model runtime: a Llama-family decoder on burn.
//!
//! - [`gguf`]: GGUF v2/v3 reader; [`quant`]: ggml dequantization.
//! - [`config`], [`model`]: the decoder and its hyper-parameters.
//! - [`weights`]: GGUF/safetensors loading, checkpoint saving.
//! - [`sampling`], [`generate`]: batched generation with a KV cache.
//! - [`loaded`]: [`LoadedModel`], a model with its tokenizer (what callers use).
//! - [`device`]: `cpu|wgpu|cuda` selection at run time.
//! - [`tokenizer`]: tokenizers from GGUF metadata, `tokenizer.json`, or a trained
//!   character vocabulary; [`chat`]: chat templates.

pub mod config;
pub mod device;
pub mod error;
pub mod generate;
pub mod gguf;
pub mod loaded;
pub mod model;
pub mod qmatmul;
pub mod quant;
pub mod sampling;
pub mod weights;
pub mod train;
pub mod tokenizer;
pub mod chat;

#[cfg(test)]
pub(crate) mod test_util;

pub use config::LlamaConfig;
pub use device::DeviceKind;
pub use error::LmError;
pub use generate::{generate, FinishReason, Generation, GenerateRequest};
pub use gguf::{GgufFile, MetaValue, TensorInfo};
pub use loaded::LoadedModel;
pub use model::{AttnLayout, KvCache, Llama};
pub use quant::GgmlType;
pub use sampling::{Sampler, SamplingParams};
