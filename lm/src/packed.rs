//! The packed (block-format) model: what [`crate::host`] runs and what
//! [`crate::model::Llama`] carries as an inference cache.

use std::sync::Arc;

use crate::qmatmul::QMatrix;

/// A model's weights on the host in block format, for CPU inference
/// ([`crate::host`]) and for the packed path of [`crate::model::Llama`]'s
/// forward pass. An inference cache: training must not use it.
#[derive(Debug, Clone)]
pub struct PackedModel {
    pub(crate) cfg: crate::config::LlamaConfig,
    /// `token_embd`, `[vocab, hidden]`: embedding rows, and the head when tied.
    pub(crate) embed: QMatrix,
    /// An untied output head, `[vocab, hidden]`.
    pub(crate) head: Option<QMatrix>,
    pub(crate) blocks: Vec<PackedBlock>,
    /// Final norm weight.
    pub(crate) norm: Vec<f32>,
    /// RoPE tables, `[max_positions, head_dim]`.
    pub(crate) rope_cos: Vec<f32>,
    pub(crate) rope_sin: Vec<f32>,
    /// Decode-sized products quantize their activations to 8 bits
    /// (`crate::qmatmul::q8`): llama.cpp's arithmetic, off the f32 model's.
    pub(crate) q8_activations: bool,
}

/// One decoder block's weights, fused like the model's (`qkv`, `gate_up`).
#[derive(Debug, Clone)]
pub(crate) struct PackedBlock {
    pub attn_norm: Vec<f32>,
    pub qkv: QMatrix,
    pub qkv_bias: Option<Vec<f32>>,
    pub o: QMatrix,
    pub mlp_norm: Vec<f32>,
    pub gate_up: QMatrix,
    pub down: QMatrix,
}

impl PackedModel {
    /// The output head.
    pub(crate) fn head(&self) -> &QMatrix {
        self.head.as_ref().unwrap_or(&self.embed)
    }

    /// Switches decode-sized products (up to [`crate::qmatmul::MAX_ROWS`]
    /// rows) to 8-bit activations and integer dot products, as llama.cpp
    /// computes them: faster on one stream, but the outputs leave the f32
    /// model's (the default, which the golden tests hold to transformers').
    pub fn set_q8_activations(&mut self, on: bool) {
        self.q8_activations = on;
    }

    /// `x @ wᵀ` for `m` rows, on 8-bit activations where this model asks
    /// for them and the product is decode-sized.
    pub(crate) fn product(&self, w: &QMatrix, x: &[f32], m: usize) -> Vec<f32> {
        if self.q8_activations && m <= crate::qmatmul::row_kernel_rows() {
            w.matmul_q8(x, m)
        } else {
            w.matmul(x, m)
        }
    }
}

/// The packed copy of a model's weights as a field of the model. It is a
/// cache of the f32 parameters, so every burn transformation that may
/// change them or move them (an optimizer step or any other `map`,
/// `to_device`, `fork`, `train`) drops it; `clone` and `valid` keep it.
#[derive(Debug, Clone, Default)]
pub struct PackedSlot(pub(crate) Option<Arc<PackedModel>>);

impl burn::module::Module for PackedSlot {
    fn collect_devices(&self, devices: burn::module::Devices) -> burn::module::Devices {
        devices
    }

    fn fork(self, _device: &burn::tensor::Device) -> Self {
        Self(None)
    }

    fn to_device(self, _device: &burn::tensor::Device) -> Self {
        Self(None)
    }

    fn train(self) -> Self {
        Self(None)
    }

    fn valid(&self) -> Self {
        self.clone()
    }

    fn materialize(self) -> Self {
        self
    }

    fn visit<V: burn::module::ModuleVisitor>(&self, _visitor: &mut V) {}

    fn map<M: burn::module::ModuleMapper>(self, _mapper: &mut M) -> Self {
        Self(None)
    }
}

impl burn::module::ModuleDisplayDefault for PackedSlot {
    fn content(&self, content: burn::module::Content) -> Option<burn::module::Content> {
        content.add_formatted(&if self.0.is_some() { "packed" } else { "none" }).optional()
    }
}

impl burn::module::ModuleDisplay for PackedSlot {}
