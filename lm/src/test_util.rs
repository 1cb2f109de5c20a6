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
