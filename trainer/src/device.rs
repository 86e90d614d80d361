//! Choosing the device training runs on: `auto` takes a hardware GPU through wgpu when one
//! is present and falls back to burn's CPU backend; `gpu` and `cpu` insist.
//!
//! Software GPU adapters (llvmpipe, lavapipe) count as no GPU: they are far slower than the
//! CPU backend for training. With `JIGSAW_GPU_ALLOW_SOFTWARE=1`, `gpu` (never `auto`) takes
//! one when there is no hardware GPU, which runs the GPU code paths anywhere, slowly.

use burn::tensor::Device;
use std::fmt;
use std::str::FromStr;

/// What the operator asked for (`JIGSAW_DEVICE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// A hardware GPU when usable, else the CPU.
    #[default]
    Auto,
    /// A hardware GPU, or refuse to start.
    Gpu,
    /// The CPU backend.
    Cpu,
}

impl FromStr for DeviceChoice {
    type Err = DeviceError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "gpu" => Ok(Self::Gpu),
            "cpu" => Ok(Self::Cpu),
            _ => Err(DeviceError::UnknownChoice(text.to_string())),
        }
    }
}

/// Why a device could not be chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    /// The choice is not one of auto, gpu, cpu.
    #[error("\u{201c}{0}\u{201d} is not a device choice; use auto, gpu or cpu")]
    UnknownChoice(String),
    /// A GPU was demanded but none is usable.
    #[error("a GPU was requested but none is usable ({0}); use auto or cpu to train on the CPU")]
    NoGpu(String),
}

/// Which kind of backend a [`ComputeDevice`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// burn's pure-Rust CPU backend (flex).
    Cpu,
    /// burn's wgpu backend on a hardware GPU.
    Gpu,
}

/// The device chosen for training, with a name people can read.
#[derive(Debug, Clone)]
pub struct ComputeDevice {
    device: Device,
    kind: BackendKind,
    name: String,
    card: String,
}

impl ComputeDevice {
    /// The CPU backend.
    pub fn cpu() -> Self {
        keep_tensor_buffers_in_the_heap();
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self {
            device: Device::flex(),
            kind: BackendKind::Cpu,
            name: format!("{threads} threads"),
            card: cpu_model_name(),
        }
    }

    /// The hardware alone, for benchmark records: the GPU adapter's name (such as
    /// "NVIDIA H200") or the CPU's model name from /proc/cpuinfo.
    pub fn card(&self) -> &str {
        &self.card
    }

    /// The burn device to create tensors and modules on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// CPU or GPU.
    pub fn kind(&self) -> BackendKind {
        self.kind
    }

    /// For logs and the UI, e.g. "GPU: NVIDIA H200 (burn wgpu)" or "CPU: 2 threads (burn flex)".
    pub fn description(&self) -> String {
        match self.kind {
            BackendKind::Cpu => format!("CPU: {} (burn flex)", self.name),
            BackendKind::Gpu => format!("GPU: {} (burn wgpu)", self.name),
        }
    }
}

impl fmt::Display for ComputeDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.description())
    }
}

/// Whether `device` (with or without autodiff) is burn's CPU backend, the one
/// [`ComputeDevice::cpu`] opens: the engine's CPU-only fast paths check this.
pub(crate) fn on_cpu_backend(device: &Device) -> bool {
    *device == Device::flex()
}

/// Tunes glibc's allocator for the CPU backend, which allocates a fresh buffer of up to
/// tens of MB for every intermediate tensor. By default glibc maps each buffer above its
/// threshold from the kernel and unmaps it when freed, so every step pays page faults and
/// zeroing for memory it just gave back (about 10% of a MiniLM step in a profile); the
/// heap top is also trimmed as soon as 128 KiB are free. Buffers up to 32 MiB (the most
/// glibc allows) now come from the heap, and up to 1 GiB of freed heap is kept for reuse.
/// This measured 12–20% off a CPU MiniLM step (docs/benchmarks.md). Other C libraries
/// are left alone.
fn keep_tensor_buffers_in_the_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            // SAFETY: mallopt only changes allocator thresholds; it is safe to call at any
            // time, from any thread, and leaves existing allocations valid.
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
                libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
            }
        });
    }
}

/// The CPU's model name as /proc/cpuinfo gives it, or "unknown CPU" where there is none.
fn cpu_model_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split_once(':'))
                .map(|(_, name)| name.trim().to_string())
        })
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown CPU".into())
}

/// Keeps the GPU runtime's on-disk caches (autotune results, compiled kernels) in `dir`, so
/// that a machine which has trained before skips most of the first step's warm-up (about a
/// minute on a fresh process). A `cubecl.toml` that names its own cache location, and the
/// `CUBECL_*` environment variables, still win. Call before [`select`]; returns false when
/// the GPU runtime had already read its settings (then they stay as they were) or this
/// build has no GPU support.
pub fn keep_gpu_cache_in(dir: &std::path::Path) -> bool {
    gpu::keep_cache_in(dir)
}

/// Whether `JIGSAW_GPU_ALLOW_SOFTWARE=1` lets `gpu` open a software adapter (Mesa's lavapipe)
/// when there is no hardware GPU: very slow, but it runs the GPU code paths anywhere, as the
/// tests do. `auto` never takes one.
fn software_gpu_allowed() -> bool {
    std::env::var("JIGSAW_GPU_ALLOW_SOFTWARE").is_ok_and(|value| value == "1")
}

/// Resolves `choice` to a device. Call once per process: a wgpu device can be initialised
/// only once, so clone the result rather than selecting again.
pub fn select(choice: DeviceChoice) -> Result<ComputeDevice, DeviceError> {
    match choice {
        DeviceChoice::Cpu => Ok(ComputeDevice::cpu()),
        DeviceChoice::Gpu => gpu::open(software_gpu_allowed()).map_err(DeviceError::NoGpu),
        DeviceChoice::Auto => Ok(gpu::open(false).unwrap_or_else(|reason| {
            tracing::info!(%reason, "no usable GPU; training on the CPU");
            ComputeDevice::cpu()
        })),
    }
}

#[cfg(feature = "wgpu")]
mod gpu {
    use super::{BackendKind, ComputeDevice};
    use burn::cubecl::config::cache::CacheConfig;
    use burn::cubecl::config::{CubeClRuntimeConfig, RuntimeConfig};
    use burn::tensor::wgpu::wgpu;
    use burn::tensor::{Device, DeviceKind};
    use std::path::Path;

    /// See [`super::keep_gpu_cache_in`].
    pub fn keep_cache_in(dir: &Path) -> bool {
        let loaded = CubeClRuntimeConfig::from_current_dir().override_from_env();
        CubeClRuntimeConfig::try_set(with_cache_in(loaded, dir))
    }

    /// `config` with its cache in `dir`, unless it already names a location other than
    /// cubecl's default (a `target/` folder found by walking up from the working directory).
    pub(super) fn with_cache_in(
        mut config: CubeClRuntimeConfig,
        dir: &Path,
    ) -> CubeClRuntimeConfig {
        if matches!(config.environment.path, CacheConfig::Target) {
            config.environment.path = CacheConfig::Directory(dir.to_path_buf());
        }
        config
    }

    /// Opens the first hardware GPU adapter wgpu finds (or a software one, when allowed and
    /// there is no hardware).
    pub fn open(allow_software: bool) -> Result<ComputeDevice, String> {
        let info = adapters(allow_software)
            .into_iter()
            .next()
            .ok_or(if allow_software {
                "wgpu found no GPU adapter, hardware or software"
            } else {
                "wgpu found no hardware GPU adapter"
            })?;
        let kind = match info.device_type {
            wgpu::DeviceType::DiscreteGpu => DeviceKind::DiscreteGpu(0),
            wgpu::DeviceType::IntegratedGpu => DeviceKind::IntegratedGpu(0),
            wgpu::DeviceType::VirtualGpu => DeviceKind::VirtualGpu(0),
            wgpu::DeviceType::Cpu => DeviceKind::Cpu,
            _ => DeviceKind::DefaultDevice,
        };
        let device = Device::wgpu_options()
            .device_kind(kind)
            .init()
            .map_err(|e| format!("{} could not be opened: {e}", info.name))?;
        Ok(ComputeDevice {
            device,
            kind: BackendKind::Gpu,
            name: format!("{} ({:?})", info.name, info.backend),
            card: info.name.clone(),
        })
    }

    /// Every adapter wgpu can see that is not a software renderer, then the software ones
    /// when `allow_software`.
    fn adapters(allow_software: bool) -> Vec<wgpu::AdapterInfo> {
        let backends = wgpu::Backends::VULKAN | wgpu::Backends::METAL | wgpu::Backends::DX12;
        let adapters = std::panic::catch_unwind(move || {
            let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
                backends,
                ..wgpu::InstanceDescriptor::new_without_display_handle()
            });
            burn::tensor::try_read_sync(instance.enumerate_adapters(backends))
                .unwrap_or_default()
                .iter()
                .map(|adapter| adapter.get_info())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
        let (software, hardware): (Vec<_>, Vec<_>) = adapters
            .into_iter()
            .partition(|info| info.device_type == wgpu::DeviceType::Cpu);
        if allow_software {
            hardware.into_iter().chain(software).collect()
        } else {
            hardware
        }
    }
}

#[cfg(not(feature = "wgpu"))]
mod gpu {
    use super::ComputeDevice;

    /// This build has no GPU support, so there is no cache to place.
    pub fn keep_cache_in(_dir: &std::path::Path) -> bool {
        false
    }

    /// This build has no GPU support.
    pub fn open(_allow_software: bool) -> Result<ComputeDevice, String> {
        Err(
            "this build of Jigsaw Lab has no GPU support (the trainer's `wgpu` feature is off)"
                .into(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Tensor, TensorData};

    #[test]
    fn choices_parse_and_bad_ones_say_what_is_allowed() {
        assert_eq!("auto".parse(), Ok(DeviceChoice::Auto));
        assert_eq!(" GPU ".parse(), Ok(DeviceChoice::Gpu));
        assert_eq!("cpu".parse(), Ok(DeviceChoice::Cpu));
        let error = "tpu".parse::<DeviceChoice>().unwrap_err().to_string();
        assert!(
            error.contains("tpu") && error.contains("auto, gpu or cpu"),
            "{error}"
        );
    }

    /// A 2x3 by 3x2 product checked against hand-computed values.
    fn matmul_on(device: &Device) -> Vec<f32> {
        let a = Tensor::<2>::from_data(
            TensorData::new(vec![1.0f32, 2., 3., 4., 5., 6.], [2, 3]),
            device,
        );
        let b = Tensor::<2>::from_data(
            TensorData::new(vec![7.0f32, 8., 9., 10., 11., 12.], [3, 2]),
            device,
        );
        a.matmul(b).into_data().try_into_vec::<f32>().unwrap()
    }

    #[test]
    fn the_cpu_backend_computes() {
        let cpu = select(DeviceChoice::Cpu).unwrap();
        assert_eq!(cpu.kind(), BackendKind::Cpu);
        assert!(cpu.description().starts_with("CPU: "));
        assert!(!cpu.card().is_empty());
        assert_eq!(matmul_on(cpu.device()), [58.0, 64.0, 139.0, 154.0]);
    }

    #[cfg(feature = "wgpu")]
    #[test]
    fn the_gpu_cache_goes_to_the_data_directory_unless_cubecl_toml_names_one() {
        use burn::cubecl::config::CubeClRuntimeConfig;
        use burn::cubecl::config::cache::CacheConfig;
        let dir = std::path::Path::new("/srv/jigsaw/gpu-cache");
        let placed = gpu::with_cache_in(CubeClRuntimeConfig::default(), dir);
        assert!(
            matches!(&placed.environment.path, CacheConfig::Directory(d) if d == dir),
            "{:?}",
            placed.environment.path
        );
        let mut chosen = CubeClRuntimeConfig::default();
        chosen.environment.path = CacheConfig::Global;
        let kept = gpu::with_cache_in(chosen, dir);
        assert!(matches!(kept.environment.path, CacheConfig::Global));
    }

    /// Runs the same product on the GPU wherever one exists; on machines without one,
    /// `auto` must fall back to the CPU, even where `gpu` may take a software adapter.
    #[test]
    fn auto_uses_a_gpu_when_present_and_the_cpu_otherwise() {
        let chosen = select(DeviceChoice::Auto).unwrap();
        if chosen.kind() == BackendKind::Gpu {
            assert!(chosen.description().starts_with("GPU: "));
        } else if !software_gpu_allowed() {
            assert!(matches!(
                select(DeviceChoice::Gpu),
                Err(DeviceError::NoGpu(_))
            ));
        }
        assert_eq!(matmul_on(chosen.device()), [58.0, 64.0, 139.0, 154.0]);
    }
}
