//! Choosing the device training runs on: `auto` takes a hardware GPU when one is present
//! (through CUDA in a build with the `cuda` feature and an NVIDIA driver, else through
//! wgpu) and falls back to burn's CPU backend; `gpu` and `cpu` insist. The choice is
//! logged with why each faster backend was passed over.
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

/// The burn backend a [`ComputeDevice`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// burn-flex, on the CPU.
    Flex,
    /// burn-wgpu: Vulkan, Metal or DX12.
    Wgpu,
    /// burn-cuda, on an NVIDIA GPU.
    Cuda,
}

impl Runtime {
    /// The backend's short name: "flex", "wgpu" or "cuda".
    pub fn name(self) -> &'static str {
        match self {
            Self::Flex => "flex",
            Self::Wgpu => "wgpu",
            Self::Cuda => "cuda",
        }
    }
}

/// The device chosen for training, with a name people can read.
#[derive(Debug, Clone)]
pub struct ComputeDevice {
    device: Device,
    kind: BackendKind,
    runtime: Runtime,
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
            runtime: Runtime::Flex,
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

    /// The burn backend it runs on.
    pub fn runtime(&self) -> Runtime {
        self.runtime
    }

    /// For logs and the UI, e.g. "GPU: NVIDIA H200 (burn cuda)" or "CPU: 2 threads (burn
    /// flex)".
    pub fn description(&self) -> String {
        let kind = match self.kind {
            BackendKind::Cpu => "CPU",
            BackendKind::Gpu => "GPU",
        };
        format!("{kind}: {} (burn {})", self.name, self.runtime.name())
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
/// heap top is also trimmed as soon as 128 KiB are free. Now:
/// - buffers come from the heap whatever their size: glibc's threshold stops at 32 MiB,
///   below a MiniLM word-embedding gradient's 47 MB, so mapping is switched off instead;
/// - up to 1 GiB of freed heap is kept for reuse;
/// - a thread's own arena (the server trains on such a thread) keeps its 64 MiB heaps
///   when they empty instead of unmapping them, which a top pad of 64 MiB does; a buffer
///   larger than such a heap is still mapped.
///
/// This measured 12–20% off a CPU MiniLM step; the last two points took 2–7% more off a
/// step on a worker thread, with half to three quarters fewer page faults, for 14–43% more
/// resident memory while a run lasts (docs/benchmarks.md).
/// [`return_freed_cpu_memory`] gives the kept memory back after a run. Other C libraries
/// are left alone.
fn keep_tensor_buffers_in_the_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            // SAFETY: mallopt only changes allocator settings; it is safe to call at any
            // time, from any thread, and leaves existing allocations valid.
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
                libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
                libc::mallopt(libc::M_MMAP_MAX, 0);
                libc::mallopt(libc::M_TOP_PAD, 64 << 20);
            }
        });
    }
}

/// Gives the memory the CPU backend's freed tensor buffers still hold (what
/// [`keep_tensor_buffers_in_the_heap`] keeps) back to the operating system, so a server
/// does not keep a finished run's memory until the next one. glibc keeps the free top of
/// each thread arena's newest heap, at most 64 MiB. Cheap (it only returns free pages); a
/// run still in progress beside it loses nothing but some reuse.
pub fn return_freed_cpu_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory; it is safe to call from any thread.
    unsafe {
        libc::malloc_trim(0);
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

/// Keeps the GPU runtime's on-disk caches (autotune results, and compiled kernels where
/// the backend has them to keep) in `dir`, so that a machine which has trained before skips
/// most of the first step's warm-up (about a minute on a fresh process). A `cubecl.toml`
/// that names its own cache location, and the `CUBECL_*` environment variables, still win.
/// Call before [`select`]; returns false when the GPU runtime had already read its
/// settings (then they stay as they were) or this build has no GPU support.
pub fn keep_gpu_cache_in(dir: &std::path::Path) -> bool {
    gpu::keep_cache_in(dir)
}

/// Whether `JIGSAW_GPU_ALLOW_SOFTWARE=1` lets `gpu` open a software adapter (Mesa's lavapipe)
/// when there is no hardware GPU: very slow, but it runs the GPU code paths anywhere, as the
/// tests do. `auto` never takes one.
fn software_gpu_allowed() -> bool {
    std::env::var("JIGSAW_GPU_ALLOW_SOFTWARE").is_ok_and(|value| value == "1")
}

/// Resolves `choice` to a device: a GPU through CUDA, then through wgpu, for `auto` and
/// `gpu`; the CPU for `cpu`, and for `auto` when neither GPU backend opens. Logs the choice
/// with why each faster backend was passed over. Call once per process: a GPU device can
/// be initialised only once, so clone the result rather than selecting again.
pub fn select(choice: DeviceChoice) -> Result<ComputeDevice, DeviceError> {
    let chosen = match choice {
        DeviceChoice::Cpu => return Ok(ComputeDevice::cpu()),
        DeviceChoice::Gpu => open_gpu(software_gpu_allowed()).map_err(DeviceError::NoGpu)?,
        DeviceChoice::Auto => open_gpu(false).unwrap_or_else(|reasons| {
            tracing::info!(%reasons, "no usable GPU; training on the CPU");
            ComputeDevice::cpu()
        }),
    };
    Ok(chosen)
}

/// The first GPU backend that opens, CUDA before wgpu; else why neither did.
fn open_gpu(allow_software: bool) -> Result<ComputeDevice, String> {
    let cuda = match cuda::open() {
        Ok(device) => {
            tracing::info!(device = %device.description(), "training on CUDA");
            return Ok(device);
        }
        Err(reason) => reason,
    };
    match gpu::open(allow_software) {
        Ok(device) => {
            tracing::info!(device = %device.description(), cuda = %cuda, "training on wgpu");
            Ok(device)
        }
        Err(wgpu) => Err(format!("CUDA: {cuda}; wgpu: {wgpu}")),
    }
}

#[cfg(feature = "wgpu")]
mod gpu {
    use super::{BackendKind, ComputeDevice, Runtime};
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

    /// `config` with its cache in `dir` and compiled kernels kept there, unless it already
    /// names a location other than cubecl's default (a `target/` folder found by walking up
    /// from the working directory); such a `cubecl.toml` keeps all its cache settings.
    ///
    /// cubecl keeps compiled kernels only where it has an artifact of its own to store: the
    /// PTX of the CUDA backend and the SPIR-V of wgpu's Vulkan compiler. wgpu's default WGSL
    /// is compiled by the driver in each process, so there it stores nothing.
    pub(super) fn with_cache_in(
        mut config: CubeClRuntimeConfig,
        dir: &Path,
    ) -> CubeClRuntimeConfig {
        if matches!(config.environment.path, CacheConfig::Target) {
            config.environment.path = CacheConfig::Directory(dir.to_path_buf());
            config.compilation.cache = true;
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
            runtime: Runtime::Wgpu,
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

    /// This build has no wgpu support.
    pub fn open(_allow_software: bool) -> Result<ComputeDevice, String> {
        Err(
            "this build of Jigsaw Lab has no GPU backend (`make run` leaves it out where it \
             finds no GPU; JIGSAW_GPU_BUILD=1 make run builds it)"
                .into(),
        )
    }
}

#[cfg(feature = "cuda")]
mod cuda {
    use super::{BackendKind, ComputeDevice, Runtime};
    use burn::tensor::{Device, Tensor};
    use std::path::PathBuf;

    /// The NVIDIA driver's library, which CUDA needs at run time.
    const DRIVER: &std::ffi::CStr = c"libcuda.so.1";

    /// Opens the first NVIDIA GPU through CUDA, when the driver is installed and the
    /// math library that kernels link (libdevice) is found.
    pub fn open() -> Result<ComputeDevice, String> {
        // SAFETY: dlopen with a valid C string; the handle is kept open for the process,
        // as CUDA keeps the library loaded anyway.
        let driver = unsafe { libc::dlopen(DRIVER.as_ptr(), libc::RTLD_LAZY) };
        if driver.is_null() {
            return Err("no NVIDIA driver (libcuda.so.1 is not installed)".into());
        }
        let libdevice = libdevice().ok_or(
            "no libdevice.10.bc under $CUDA_PATH/nvvm/libdevice (scripts/setup.sh --for-cuda \
             installs it)",
        )?;
        tracing::debug!(libdevice = %libdevice.display(), "CUDA math library");
        // cudarc panics where the driver cannot be used; a small sum proves the device works.
        let device = std::panic::catch_unwind(|| {
            let device = Device::cuda(0);
            let sum = Tensor::<1>::ones([4], &device).sum().into_scalar::<f32>();
            (sum == 4.0).then_some(device)
        })
        .map_err(|_| "the CUDA driver could not open GPU 0".to_string())?
        .ok_or("GPU 0 computed a wrong sum through CUDA")?;
        let card = card_name().unwrap_or_else(|| "NVIDIA GPU 0".into());
        Ok(ComputeDevice {
            device,
            kind: BackendKind::Gpu,
            runtime: Runtime::Cuda,
            name: card.clone(),
            card,
        })
    }

    /// libdevice.10.bc where cubecl's CUDA compiler looks for it: under `$CUDA_PATH` when
    /// that is set, else under the first usual toolkit location that has it.
    fn libdevice() -> Option<PathBuf> {
        const ROOTS: [&str; 4] = ["/usr/local/cuda", "/opt/cuda", "/usr/lib/cuda", "/usr"];
        let roots: Vec<PathBuf> = match std::env::var_os("CUDA_PATH") {
            Some(root) => vec![PathBuf::from(root)],
            None => ROOTS.iter().map(PathBuf::from).collect(),
        };
        roots
            .into_iter()
            .map(|root| root.join("nvvm/libdevice/libdevice.10.bc"))
            .find(|file| file.is_file())
    }

    /// The first NVIDIA GPU's model name, as the driver lists it in /proc.
    fn card_name() -> Option<String> {
        let mut gpus: Vec<_> = std::fs::read_dir("/proc/driver/nvidia/gpus")
            .ok()?
            .flatten()
            .map(|entry| entry.path())
            .collect();
        gpus.sort();
        let information = std::fs::read_to_string(gpus.first()?.join("information")).ok()?;
        information
            .lines()
            .find_map(|line| line.strip_prefix("Model:"))
            .map(|model| model.trim().to_string())
    }
}

#[cfg(not(feature = "cuda"))]
mod cuda {
    use super::ComputeDevice;

    /// This build has no CUDA support.
    pub fn open() -> Result<ComputeDevice, String> {
        Err("this build has no CUDA support (the trainer's `cuda` feature is off)".into())
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
        assert!(placed.compilation.cache, "compiled kernels are kept");
        let mut chosen = CubeClRuntimeConfig::default();
        chosen.environment.path = CacheConfig::Global;
        let kept = gpu::with_cache_in(chosen, dir);
        assert!(matches!(kept.environment.path, CacheConfig::Global));
        assert!(!kept.compilation.cache, "a cubecl.toml of its own decides");
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
