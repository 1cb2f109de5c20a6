//! Run-time device selection (`device: cpu|wgpu|cuda`).
//!
//! burn 0.22 dispatches on a run-time [`burn::tensor::Device`]; which
//! backends exist is fixed at build time by this crate's features. `cpu`
//! is burn's `flex` backend (the default feature) or, failing that,
//! `ndarray`.

use std::fmt;
use std::str::FromStr;

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::error::LmError;

/// Where a model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    /// burn's `flex` CPU backend (or `ndarray` when built without `flex`).
    #[default]
    Cpu,
    /// burn's `wgpu` backend (Vulkan/Metal/DX12/WebGPU); needs `--features wgpu`.
    Wgpu,
    /// burn's CUDA backend; needs `--features cuda`.
    Cuda,
}

impl DeviceKind {
    /// The names accepted by [`FromStr`].
    pub const NAMES: [&'static str; 3] = ["cpu", "wgpu", "cuda"];

    /// The burn device, or an error naming the cargo feature to enable.
    pub fn device(self) -> Result<Device, LmError> {
        match self {
            DeviceKind::Cpu => cpu_device(),
            DeviceKind::Wgpu => wgpu_device(),
            DeviceKind::Cuda => cuda_device(),
        }
    }
}

impl fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Self::NAMES[*self as usize])
    }
}

impl FromStr for DeviceKind {
    type Err = LmError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cpu" => Ok(DeviceKind::Cpu),
            "wgpu" => Ok(DeviceKind::Wgpu),
            "cuda" => Ok(DeviceKind::Cuda),
            other => Err(LmError::Device {
                device: other.to_string(),
                why: "unknown device (expected cpu, wgpu or cuda)".into(),
            }),
        }
    }
}

/// Whether tensors on `device` live in host memory (flex or ndarray,
/// without autodiff), where the host-side kernels of [`crate::qmatmul`]
/// pay off.
pub fn is_host(device: &Device) -> bool {
    match device.as_dispatch() {
        #[cfg(feature = "flex")]
        burn::backend::DispatchDevice::Flex(_) => true,
        #[cfg(feature = "ndarray")]
        burn::backend::DispatchDevice::NdArray(_) => true,
        _ => false,
    }
}

// Unused only when every backend is built in.
#[allow(dead_code)]
fn not_built(device: &str, feature: &str) -> LmError {
    LmError::Device {
        device: device.into(),
        why: format!("retort was built without the `{feature}` feature (rebuild with `--features {feature}`)"),
    }
}

#[cfg(feature = "flex")]
fn cpu_device() -> Result<Device, LmError> {
    Ok(Device::flex())
}

#[cfg(all(not(feature = "flex"), feature = "ndarray"))]
#[expect(deprecated, reason = "ndarray is the fallback when flex is not built")]
fn cpu_device() -> Result<Device, LmError> {
    Ok(Device::ndarray())
}

#[cfg(not(any(feature = "flex", feature = "ndarray")))]
fn cpu_device() -> Result<Device, LmError> {
    Err(not_built("cpu", "flex"))
}

#[cfg(feature = "wgpu")]
fn wgpu_device() -> Result<Device, LmError> {
    Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice))
}

#[cfg(not(feature = "wgpu"))]
fn wgpu_device() -> Result<Device, LmError> {
    Err(not_built("wgpu", "wgpu"))
}

#[cfg(feature = "cuda")]
fn cuda_device() -> Result<Device, LmError> {
    Ok(Device::cuda(0))
}

#[cfg(not(feature = "cuda"))]
fn cuda_device() -> Result<Device, LmError> {
    Err(not_built("cuda", "cuda"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_explains_missing_features() {
        for name in DeviceKind::NAMES {
            assert_eq!(name.parse::<DeviceKind>().unwrap().to_string(), name);
        }
        let e = "tpu".parse::<DeviceKind>().unwrap_err();
        assert_eq!(e.to_string(), "device `tpu` is not available: unknown device (expected cpu, wgpu or cuda)");
        let cpu = DeviceKind::Cpu.device().unwrap();
        assert!(is_host(&cpu));
        assert!(!is_host(&cpu.autodiff()));
        #[cfg(not(feature = "cuda"))]
        assert!(DeviceKind::Cuda.device().unwrap_err().to_string().contains("--features cuda"));
    }
}
