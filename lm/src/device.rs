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

    /// The burn device, or an error naming the cargo feature to enable
    /// (or, for wgpu, the driver to install).
    pub fn device(self) -> Result<Device, LmError> {
        match self {
            DeviceKind::Cpu => cpu_device(),
            DeviceKind::Wgpu => wgpu_device(),
            DeviceKind::Cuda => cuda_device(),
        }
    }

    /// One line naming the backend (and, for wgpu, the adapter and graphics
    /// API) that models on this device run on, e.g. `cpu (burn flex)` or
    /// `wgpu (llvmpipe (LLVM 15.0.6, 256 bits), Vulkan, cpu adapter)`.
    ///
    /// The device is not part of a fingerprint (a model trained on wgpu is
    /// reused by a CPU run of the same stage), so this is what the lock and
    /// `retort show` record instead: which hardware produced an artifact.
    ///
    /// # Errors
    /// As [`device`](Self::device)'s.
    pub fn describe(self) -> Result<String, LmError> {
        match self {
            DeviceKind::Cpu => cpu_device().map(|_| CPU_BACKEND.to_string()),
            DeviceKind::Wgpu => wgpu_adapter().map(|(_, adapter)| format!("wgpu ({adapter})")),
            DeviceKind::Cuda => cuda_device().map(|_| "cuda (device 0)".to_string()),
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
const CPU_BACKEND: &str = "cpu (burn flex)";
#[cfg(all(not(feature = "flex"), feature = "ndarray"))]
const CPU_BACKEND: &str = "cpu (burn ndarray)";
#[cfg(not(any(feature = "flex", feature = "ndarray")))]
const CPU_BACKEND: &str = "cpu";

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

fn wgpu_device() -> Result<Device, LmError> {
    wgpu_adapter().map(|(device, _)| device)
}

/// What to do when no adapter comes up: lavapipe is the driver CI and
/// these machines use (README, "GPU backends").
#[cfg(feature = "wgpu")]
const NO_ADAPTER_FIX: &str = "burn's wgpu backend needs a Vulkan driver: install your GPU's driver, \
     or Mesa's software one (`apt-get install mesa-vulkan-drivers` on Debian/Ubuntu: lavapipe, \
     correct but about 100x slower than `device: cpu`), or use `device: cpu`";

/// The wgpu device and a description of its adapter, brought up once per
/// process.
///
/// burn's lazy `Device::wgpu` acquires the adapter on the first tensor
/// operation and panics there when there is none, deep inside a stage. So
/// the runtime is initialised here, explicitly, where a missing driver is
/// an error that says what to install; the adapter it settled on is kept
/// for [`DeviceKind::describe`].
#[cfg(feature = "wgpu")]
fn wgpu_adapter() -> Result<(Device, String), LmError> {
    use std::sync::OnceLock;
    static WGPU: OnceLock<Result<(Device, String), String>> = OnceLock::new();
    let init = WGPU.get_or_init(|| {
        // A driver that panics while being probed is the same answer as
        // no driver: keep the process (and the stage's error) alive.
        let attempt = std::panic::catch_unwind(|| wgpu_options().init_with_setup());
        match attempt {
            Ok(Ok((device, setup))) => {
                let info = setup.adapter.get_info();
                let kind = format!("{:?}", info.device_type).to_lowercase();
                let kind = kind.replace("gpu", " gpu").trim().to_string();
                Ok((device, format!("{}, {:?}, {kind} adapter", info.name, info.backend)))
            }
            Ok(Err(e)) => Err(format!("no graphics adapter could be used ({e}); {NO_ADAPTER_FIX}")),
            Err(_) => Err(format!("probing the graphics drivers panicked; {NO_ADAPTER_FIX}")),
        }
    });
    init.clone().map_err(|why| LmError::Device { device: "wgpu".into(), why })
}

/// On Linux, Vulkan only. wgpu would fall back to OpenGL ES (through EGL,
/// which Mesa's llvmpipe provides on machines with no Vulkan driver), a
/// compute path burn does not test and we have not checked; a missing
/// Vulkan driver is better said than papered over.
#[cfg(all(feature = "wgpu", target_os = "linux"))]
fn wgpu_options() -> burn::tensor::wgpu::WgpuOptions {
    Device::wgpu_options().graphics_api(burn::tensor::wgpu::WgpuBackend::Vulkan)
}

/// Elsewhere, wgpu's own choice (Metal on macOS, DX12 or Vulkan on Windows).
#[cfg(all(feature = "wgpu", not(target_os = "linux")))]
fn wgpu_options() -> burn::tensor::wgpu::WgpuOptions {
    Device::wgpu_options()
}

#[cfg(not(feature = "wgpu"))]
fn wgpu_adapter() -> Result<(Device, String), LmError> {
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
