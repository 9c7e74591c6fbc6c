//! Where tensors live: the device kinds vqib can be built for, the burn device of each, and the
//! one helper through which vqib reads tensors back to the host ([`host_f32`], [`host_u32`]),
//! which counts every read from a device that is not host memory ([`host_reads`]). Each such
//! read drains the device's queue; GPU training makes none on a step that logs nothing.

use std::cell::Cell;

use burn::tensor::{Device, Int, Tensor, TensorData};
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
    /// burn's wgpu backend on Vulkan with SPIR-V kernels (cooperative matrices where the driver
    /// has them); needs the `vulkan` cargo feature.
    Vulkan,
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
        DeviceKind::Vulkan => vulkan(),
        DeviceKind::Cuda => cuda(),
    }
}

/// `dev` when a first operation on it works (adapter selection panics inside wgpu when there is
/// none: that becomes an error naming `flag`).
#[cfg(feature = "wgpu")]
fn probed(dev: Device, flag: &str) -> Result<Device, InputError> {
    use burn::tensor::Tensor;
    let probe = std::panic::catch_unwind(|| {
        let t = Tensor::<1>::from_floats([1.0f32, 2.0], &dev);
        host_f32(t.sum())[0]
    });
    match probe {
        Ok(v) if (v - 3.0).abs() < 1e-6 => Ok(dev),
        _ => Err(InputError::config(format!(
            "--device {flag}: no usable adapter (is a Vulkan driver installed? set XDG_RUNTIME_DIR)"
        ))),
    }
}

#[cfg(feature = "wgpu")]
fn wgpu() -> Result<Device, InputError> {
    probed(
        Device::wgpu(burn::tensor::DeviceKind::DefaultDevice),
        "wgpu",
    )
}

#[cfg(feature = "vulkan")]
fn vulkan() -> Result<Device, InputError> {
    probed(
        Device::vulkan(burn::tensor::DeviceKind::DefaultDevice),
        "vulkan",
    )
}

#[cfg(not(feature = "vulkan"))]
fn vulkan() -> Result<Device, InputError> {
    Err(InputError::config(
        "--device vulkan needs vqib built with the `vulkan` cargo feature (cargo build --release --features vulkan)",
    ))
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

thread_local! {
    static HOST_READS: Cell<u64> = const { Cell::new(0) };
}

/// Reads from a device other than host memory that this thread has made so far through
/// [`host_f32`] / [`host_u32`] (per thread, so that concurrent tests do not see each other's).
pub fn host_reads() -> u64 {
    HOST_READS.with(Cell::get)
}

fn count_read(device: &Device) {
    if !on_host(device) {
        HOST_READS.with(|c| c.set(c.get() + 1));
    }
}

/// Whether tensors on `device` live in host memory (burn's `flex` backend), where the fused
/// kernels of [`crate::kernels::assign`] run on them directly.
pub fn on_host(device: &Device) -> bool {
    let flex = Device::flex();
    *device == flex || *device == flex.autodiff()
}

/// A tensor's values on the host (one counted read).
pub fn host_f32<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    count_read(&t.device());
    t.into_data().try_into_vec_as::<f32>().expect("f32 data")
}

/// An index tensor's values on the host (one counted read).
pub fn host_u32(t: Tensor<1, Int>) -> Vec<u32> {
    count_read(&t.device());
    t.into_data()
        .try_into_vec_as::<i64>()
        .expect("int data")
        .into_iter()
        .map(|v| v as u32)
        .collect()
}

/// Codes as an index tensor on `device` (an upload: not a read).
pub fn index_tensor(idx: &[u32], device: &Device) -> Tensor<1, Int> {
    Tensor::<1, Int>::from_data(
        TensorData::new(
            idx.iter().map(|&s| s as i64).collect::<Vec<_>>(),
            [idx.len()],
        ),
        device,
    )
}
