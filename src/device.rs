//! Where tensors live: the device kinds vqib can be built for and the burn device of each.

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::error::InputError;

/// Where tensors live.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceKind {
    /// burn's `flex` CPU backend.
    Cpu,
    /// burn's wgpu backend (Vulkan, Metal, DX12); needs the `wgpu` cargo feature.
    Wgpu,
    /// burn's CUDA backend, first GPU; needs the `cuda` cargo feature.
    Cuda,
}

/// Memory this process can still take, in bytes: the kernel's `MemAvailable`, lowered to what the
/// cgroup (a container's limit) leaves. `None` where neither can be read (not Linux).
pub fn available_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok().and_then(|t| {
        t.lines()
            .find_map(|l| l.strip_prefix("MemAvailable:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
    });
    let read = |f: &str| {
        std::fs::read_to_string(format!("/sys/fs/cgroup/{f}"))
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok())
    };
    let cgroup =
        read("memory.max").map(|max| max.saturating_sub(read("memory.current").unwrap_or(0)));
    match (meminfo, cgroup) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The burn device for a device kind (the autodiff decorator is added by the trainer).
pub fn device(kind: DeviceKind) -> Result<Device, InputError> {
    match kind {
        DeviceKind::Cpu => Ok(Device::flex()),
        DeviceKind::Wgpu => wgpu(),
        DeviceKind::Cuda => cuda(),
    }
}

#[cfg(feature = "wgpu")]
fn wgpu() -> Result<Device, InputError> {
    use burn::tensor::Tensor;
    let dev = Device::wgpu(burn::tensor::DeviceKind::DefaultDevice);
    // Adapter selection panics inside wgpu when there is none: turn that into an error.
    let probe = std::panic::catch_unwind(|| {
        let t = Tensor::<1>::from_floats([1.0f32, 2.0], &dev);
        t.sum().into_scalar::<f32>()
    });
    match probe {
        Ok(v) if (v - 3.0).abs() < 1e-6 => Ok(dev),
        _ => Err(InputError::config(
            "--device wgpu: no usable wgpu adapter (is a Vulkan driver installed? set XDG_RUNTIME_DIR)",
        )),
    }
}

#[cfg(not(feature = "wgpu"))]
fn wgpu() -> Result<Device, InputError> {
    Err(InputError::config(
        "--device wgpu needs vqib built with the `wgpu` cargo feature (cargo build --release --features wgpu)",
    ))
}

#[cfg(feature = "cuda")]
fn cuda() -> Result<Device, InputError> {
    Ok(Device::cuda(0))
}

#[cfg(not(feature = "cuda"))]
fn cuda() -> Result<Device, InputError> {
    Err(InputError::config(
        "--device cuda needs vqib built with the `cuda` cargo feature (cargo build --release --features cuda)",
    ))
}

/// The device of a saved run, or the CPU (with a warning) when that device is not available here.
pub fn device_or_cpu(kind: DeviceKind) -> Device {
    device(kind).unwrap_or_else(|e| {
        eprintln!("warning: {e}; using the CPU");
        Device::flex()
    })
}
