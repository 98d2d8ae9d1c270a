//! The one place where a backend is chosen: `--device cpu|ndarray|wgpu|cuda` → a concrete burn
//! backend.
//! Everything else in detox is generic over `B: Backend`.

use anyhow::{bail, Context, Result};
use burn::prelude::Backend;
use burn::tensor::backend::AutodiffBackend;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceKind {
    /// The fastest CPU backend (the default): burn-flex — gemm with run-time AVX-512 / AVX2+FMA
    /// kernels, strided views without copies, rayon on every core (see BENCHMARKS.md).
    /// `flex` is accepted as another name for it.
    #[value(alias = "flex")]
    Cpu,
    /// burn-ndarray on the CPU (always available): the design card's reference CPU backend, kept
    /// for parity checks; much slower at decoding (it copies both matmul operands).
    Ndarray,
    /// wgpu: Vulkan, Metal, DX12 (any GPU vendor); needs the `wgpu` cargo feature.
    Wgpu,
    /// CUDA (NVIDIA); needs the `cuda` cargo feature.
    Cuda,
}

impl DeviceKind {
    /// The name `--device` takes (`cpu`, `ndarray`, `wgpu`, `cuda`).
    pub fn name(self) -> String {
        format!("{self:?}").to_lowercase()
    }
}

/// Records this start of a run in `out/run_info.json` (detox's version, command line, device,
/// CPU): call once the run's trainer holds the directory's lock.
pub fn record_start(out: &std::path::Path, device: DeviceArgs) -> Result<()> {
    detox_train::runlog::record_start(out, &device.name()).with_context(|| {
        format!(
            "{}: cannot write",
            out.join(detox_train::runlog::RUN_INFO_FILE).display()
        )
    })
}

/// `--device`, flattened (`#[command(flatten)]`) into every command that computes; the command
/// then runs through [`DeviceArgs::run`] or [`DeviceArgs::run_autodiff`].
#[derive(clap::Args, Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceArgs {
    #[arg(
        id = "device",
        long = "device",
        value_name = "DEVICE",
        value_enum,
        default_value = "cpu"
    )]
    pub kind: DeviceKind,
}

impl DeviceArgs {
    /// The name of the chosen device (`cpu`, `ndarray`, `wgpu`, `cuda`).
    pub fn name(self) -> String {
        self.kind.name()
    }

    /// Runs `job` on the chosen backend ([`run_on`]).
    pub fn run<J: Job>(self, job: J) -> Result<J::Output> {
        run_on(self.kind, job)
    }

    /// Runs `job` on the autodiff version of the chosen backend ([`run_autodiff_on`]).
    pub fn run_autodiff<J: AutodiffJob>(self, job: J) -> Result<J::Output> {
        run_autodiff_on(self.kind, job)
    }

    /// Runs `job` on `n` devices of the chosen kind, autodiff ([`run_parallel_on`]).
    pub fn run_parallel<J: ParallelJob>(self, n: usize, job: J) -> Result<J::Output> {
        run_parallel_on(self.kind, n, job)
    }
}

/// Work that runs on whichever backend the user picked.
pub trait Job {
    type Output;
    fn run<B: Backend>(self, device: B::Device) -> Result<Self::Output>;
}

/// The backend behind `--device cpu`.
pub type Cpu = burn::backend::Flex;
/// The backend behind `--device ndarray`.
pub type Ndarray = burn::backend::NdArray<f32>;

/// Runs `job` on the backend of `kind`.
pub fn run_on<J: Job>(kind: DeviceKind, job: J) -> Result<J::Output> {
    match kind {
        DeviceKind::Cpu => job.run::<Cpu>(Default::default()),
        DeviceKind::Ndarray => job.run::<Ndarray>(burn::backend::ndarray::NdArrayDevice::Cpu),
        #[cfg(feature = "wgpu")]
        DeviceKind::Wgpu => {
            job.run::<burn::backend::Wgpu>(burn::backend::wgpu::WgpuDevice::default())
        }
        #[cfg(feature = "cuda")]
        DeviceKind::Cuda => {
            job.run::<burn::backend::Cuda>(burn::backend::cuda::CudaDevice::default())
        }
        #[allow(unreachable_patterns)]
        other => missing_feature(other),
    }
}

/// Training work: runs on the autodiff version of whichever backend the user picked.
pub trait AutodiffJob {
    type Output;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Result<Self::Output>;
}

/// Runs `job` on `burn::backend::Autodiff` over the backend of `kind` (the same backends as
/// [`run_on`]).
pub fn run_autodiff_on<J: AutodiffJob>(kind: DeviceKind, job: J) -> Result<J::Output> {
    use burn::backend::Autodiff;
    match kind {
        DeviceKind::Cpu => job.run::<Autodiff<Cpu>>(Default::default()),
        DeviceKind::Ndarray => {
            job.run::<Autodiff<Ndarray>>(burn::backend::ndarray::NdArrayDevice::Cpu)
        }
        #[cfg(feature = "wgpu")]
        DeviceKind::Wgpu => {
            job.run::<Autodiff<burn::backend::Wgpu>>(burn::backend::wgpu::WgpuDevice::default())
        }
        #[cfg(feature = "cuda")]
        DeviceKind::Cuda => {
            job.run::<Autodiff<burn::backend::Cuda>>(burn::backend::cuda::CudaDevice::default())
        }
        #[allow(unreachable_patterns)]
        other => missing_feature(other),
    }
}

/// Data-parallel training work: gets one device per local peer, on the autodiff version of
/// whichever backend the user picked.
pub trait ParallelJob {
    type Output;
    fn run<B: AutodiffBackend>(self, devices: Vec<B::Device>) -> Result<Self::Output>;
}

/// Runs `job` on `n` devices of `kind`: the CPU backends give every peer the (one) CPU device,
/// sharing its cores; `cuda` GPUs 0..n-1; `wgpu` the default GPU for one peer, discrete GPUs
/// 0..n-1 for several.
pub fn run_parallel_on<J: ParallelJob>(kind: DeviceKind, n: usize, job: J) -> Result<J::Output> {
    use burn::backend::Autodiff;
    match kind {
        DeviceKind::Cpu => job.run::<Autodiff<Cpu>>(vec![Default::default(); n]),
        DeviceKind::Ndarray => {
            job.run::<Autodiff<Ndarray>>(vec![burn::backend::ndarray::NdArrayDevice::Cpu; n])
        }
        #[cfg(feature = "wgpu")]
        DeviceKind::Wgpu => {
            use burn::backend::wgpu::WgpuDevice;
            let devices = match n {
                1 => vec![WgpuDevice::default()],
                _ => (0..n).map(WgpuDevice::DiscreteGpu).collect(),
            };
            job.run::<Autodiff<burn::backend::Wgpu>>(devices)
        }
        #[cfg(feature = "cuda")]
        DeviceKind::Cuda => {
            let devices = (0..n).map(burn::backend::cuda::CudaDevice::new).collect();
            job.run::<Autodiff<burn::backend::Cuda>>(devices)
        }
        #[allow(unreachable_patterns)]
        other => missing_feature(other),
    }
}

fn missing_feature<T>(kind: DeviceKind) -> Result<T> {
    let name = kind.name();
    bail!("this detox binary was built without the `{name}` feature: rebuild with `cargo build --release --features {name}`")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        device: DeviceArgs,
    }

    fn parse(argv: &[&str]) -> Result<DeviceKind, clap::Error> {
        Cli::try_parse_from(std::iter::once("detox").chain(argv.iter().copied()))
            .map(|c| c.device.kind)
    }

    #[test]
    fn device_flag_defaults_to_cpu_and_takes_each_backend() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        assert_eq!(parse(&[]).unwrap(), DeviceKind::Cpu);
        assert_eq!(parse(&["--device", "flex"]).unwrap(), DeviceKind::Cpu);
        for kind in [
            DeviceKind::Cpu,
            DeviceKind::Ndarray,
            DeviceKind::Wgpu,
            DeviceKind::Cuda,
        ] {
            assert_eq!(parse(&["--device", &kind.name()]).unwrap(), kind);
        }
        let e = parse(&["--device", "tpu"]).unwrap_err().to_string();
        assert!(e.contains("'--device <DEVICE>'"), "{e}");
    }
}
