//! The one place where a backend is chosen: `--device cpu|wgpu|cuda` → a concrete burn backend.
//! Everything else in detox is generic over `B: Backend`.

use anyhow::{bail, Result};
use burn::prelude::Backend;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceKind {
    /// ndarray on the CPU (always available).
    Cpu,
    /// wgpu: Vulkan, Metal, DX12 (any GPU vendor); needs the `wgpu` cargo feature.
    Wgpu,
    /// CUDA (NVIDIA); needs the `cuda` cargo feature.
    Cuda,
}

/// Work that runs on whichever backend the user picked.
pub trait Job {
    type Output;
    fn run<B: Backend>(self, device: B::Device) -> Result<Self::Output>;
}

pub type Cpu = burn::backend::NdArray<f32>;

/// Runs `job` on the backend of `kind`.
pub fn run_on<J: Job>(kind: DeviceKind, job: J) -> Result<J::Output> {
    match kind {
        DeviceKind::Cpu => job.run::<Cpu>(burn::backend::ndarray::NdArrayDevice::Cpu),
        #[cfg(feature = "wgpu")]
        DeviceKind::Wgpu => {
            job.run::<burn::backend::Wgpu>(burn::backend::wgpu::WgpuDevice::default())
        }
        #[cfg(feature = "cuda")]
        DeviceKind::Cuda => {
            job.run::<burn::backend::Cuda>(burn::backend::cuda::CudaDevice::default())
        }
        #[allow(unreachable_patterns)]
        other => {
            let name = format!("{other:?}").to_lowercase();
            bail!("this detox binary was built without the `{name}` feature: rebuild with `cargo build --release --features {name}`")
        }
    }
}
