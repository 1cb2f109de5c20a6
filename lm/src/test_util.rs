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

/// The same weights twice: on burn (f32, no packed copy) and packed (Q8_0
/// from a GGUF file, so the host engine runs it). A seeded
/// [`micro_in_blocks_of_32`] model with token 63 as EOS, its matrices
/// scaled up so greedy paths and scores are not flat.
pub(crate) fn burn_and_packed() -> (crate::model::Llama, crate::model::Llama) {
    let dev = device();
    let mut cfg = micro_in_blocks_of_32();
    cfg.eos_token_id = Some(crate::config::TokenIds::One(63));
    let model = cfg.init_seeded(5, &dev);
    struct Scale;
    impl burn::module::ModuleMapper for Scale {
        fn map_float<const D: usize>(
            &mut self,
            p: burn::module::Param<burn::tensor::Tensor<D>>,
        ) -> burn::module::Param<burn::tensor::Tensor<D>> {
            p.map(|t| if D == 2 { t.mul_scalar(5.0) } else { t })
        }
    }
    let model = burn::module::Module::map(model, &mut Scale);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q8.gguf");
    crate::weights::tests::write_as_gguf(&model, &path, crate::GgmlType::Q8_0);
    let packed = crate::weights::load_gguf(&crate::GgufFile::open(&path).unwrap(), &dev).unwrap();
    assert!(packed.is_packed());
    let mut burn = packed.clone();
    burn.set_packed(None);
    (burn, packed)
}
