//! Helpers shared by unit tests.

use burn::tensor::{Device, Tensor, TensorData};

pub(crate) fn device() -> Device {
    crate::DeviceKind::Cpu.device().expect("cpu backend built")
}

pub(crate) fn tensor4(data: &[f32], shape: [usize; 4], device: &Device) -> Tensor<4> {
    Tensor::from_data(TensorData::new(data.to_vec(), shape), device)
}

#[track_caller]
pub(crate) fn assert_close(got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "lengths differ");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol * (1.0 + w.abs()), "at {i}: got {g}, want {w}");
    }
}

/// The `micro` preset reshaped so every input width is a multiple of 32,
/// GGUF's block size (2 query heads of 32, 1 KV head, MLP width 96): small
/// models that quantized formats and the host engine accept.
pub(crate) fn micro_in_blocks_of_32() -> crate::config::LlamaConfig {
    let mut cfg = crate::config::LlamaConfig::preset("micro", 64).expect("the micro preset");
    cfg.num_attention_heads = 2;
    cfg.num_key_value_heads = Some(1);
    cfg.head_dim = Some(32);
    cfg.intermediate_size = 96;
    cfg
}
