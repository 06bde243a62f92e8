//! The one place where the concrete backend is chosen.
//!
//! Library crates are generic over `B: Backend`; this binary picks `Flex` on CPU or `Cuda` on
//! NVIDIA GPUs at compile time (features `cpu` and `cuda`) and the device at run time.

use anyhow::Result;

/// Which backend the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendKind {
    /// burn's Flex CPU backend.
    Cpu,
    /// burn's CUDA backend, device 0.
    Cuda,
}

#[cfg(feature = "cpu")]
pub mod cpu {
    //! Flex: burn's portable CPU backend (SIMD `gemm`, rayon threads).
    /// The CPU backend.
    pub type Backend = burn::backend::Flex;
    /// Its only device.
    pub fn device() -> burn::backend::flex::FlexDevice {
        Default::default()
    }
}

#[cfg(feature = "cuda")]
pub mod cuda {
    //! CUDA through cubecl; libcuda and libnvrtc are loaded when first used.
    use anyhow::{bail, Result};

    /// The GPU backend, fp32.
    pub type Backend = burn::backend::Cuda<f32>;

    /// Device `index`, after checking that a driver is there: without one, burn panics in a
    /// device thread on the first tensor operation instead of returning an error.
    pub fn device(index: usize) -> Result<burn::backend::cuda::CudaDevice> {
        let found = ["libcuda.so.1", "libcuda.so", "nvcuda.dll"]
            .iter()
            .any(|name| can_open(name));
        if !found {
            bail!(
                "the cuda backend needs an NVIDIA driver, and libcuda was not found on this \
                 machine; use --backend cpu, or check LD_LIBRARY_PATH"
            );
        }
        Ok(burn::backend::cuda::CudaDevice::new(index))
    }

    fn can_open(name: &str) -> bool {
        // libloading's `Library::new` is unsafe because a library's initialisers run; libcuda's
        // are benign, and this is the same library cudarc itself opens.
        #[allow(unsafe_code)]
        let library = unsafe { libloading::Library::new(name) };
        library.is_ok()
    }
}

/// Refuses a backend this binary was not built with, naming the feature to build it with.
pub fn ensure_compiled(kind: BackendKind) -> Result<()> {
    let compiled = match kind {
        BackendKind::Cpu => cfg!(feature = "cpu"),
        BackendKind::Cuda => cfg!(feature = "cuda"),
    };
    if !compiled {
        let feature = match kind {
            BackendKind::Cpu => "cpu",
            BackendKind::Cuda => "cuda",
        };
        anyhow::bail!("this binary was built without the `{feature}` feature; rebuild with --features {feature}");
    }
    Ok(())
}
