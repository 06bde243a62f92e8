//! The one place where the concrete backend is chosen.
//!
//! Library crates are generic over `B: Backend`; this binary picks `Flex` on CPU, `Cuda` on
//! NVIDIA GPUs or `Wgpu` on any GPU with Vulkan, Metal or DX12 at compile time (features `cpu`,
//! `cuda`, `wgpu`) and the device at run time. Each backend is a module with the same three
//! items, so that [`on_backend!`] can hand any of them to generic code:
//! - `Backend`: the burn backend, fp32;
//! - `device(index)`: the device of GPU `index` (a launched run's `LOCAL_RANK`), checked to be
//!   there, with an error that says what is missing instead of a panic in a device thread;
//! - `rank_devices(ranks)`: the devices of `--devices ranks` in-process ranks, one per rank or
//!   one shared by all;
//! - `train_local` and `train_launched`: lvface-train's, with the ranks' transport of this
//!   backend: NCCL on CUDA, burn-collective and the TCP ring elsewhere.

use anyhow::Result;

/// Which backend the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendKind {
    /// burn's Flex CPU backend.
    Cpu,
    /// burn's CUDA backend (NVIDIA), GPU r for rank r.
    Cuda,
    /// burn's wgpu backend: Vulkan, Metal or DX12 (AMD, Intel, Apple and NVIDIA GPUs, or a
    /// software device such as Mesa's lavapipe).
    Wgpu,
}

impl BackendKind {
    /// The cargo feature that compiles this backend in.
    fn feature(self) -> &'static str {
        match self {
            BackendKind::Cpu => "cpu",
            BackendKind::Cuda => "cuda",
            BackendKind::Wgpu => "wgpu",
        }
    }

    fn compiled(self) -> bool {
        match self {
            BackendKind::Cpu => cfg!(feature = "cpu"),
            BackendKind::Cuda => cfg!(feature = "cuda"),
            BackendKind::Wgpu => cfg!(feature = "wgpu"),
        }
    }
}

/// Refuses a backend this binary was not built with, naming the feature to build it with.
pub fn ensure_compiled(kind: BackendKind) -> Result<()> {
    if !kind.compiled() {
        let feature = kind.feature();
        anyhow::bail!("this binary was built without the `{feature}` feature; rebuild with --features {feature}");
    }
    Ok(())
}

/// Evaluates `$body` with `$on` bound to the module of the backend `$kind` names
/// (`$on::Backend`, `$on::device`, `$on::rank_devices`, `$on::train_local`, ...).
///
/// A macro rather than a function because the body is generic code instantiated once per
/// compiled backend; `main` has run [`ensure_compiled`] for the command, so the arm of a
/// backend this binary lacks is unreachable.
///
/// ```ignore
/// let report = on_backend!(kind, |on| probe::probe::<on::Backend>(&config, &on::device(0)?)?);
/// ```
macro_rules! on_backend {
    ($kind:expr, |$on:ident| $body:expr) => {
        match $kind {
            #[cfg(feature = "cpu")]
            $crate::backend::BackendKind::Cpu => {
                use $crate::backend::cpu as $on;
                $body
            }
            #[cfg(feature = "cuda")]
            $crate::backend::BackendKind::Cuda => {
                use $crate::backend::cuda as $on;
                $body
            }
            #[cfg(feature = "wgpu")]
            $crate::backend::BackendKind::Wgpu => {
                use $crate::backend::wgpu as $on;
                $body
            }
            #[allow(unreachable_patterns)]
            _ => unreachable!("ensure_compiled rejected backends this binary lacks"),
        }
    };
}
pub(crate) use on_backend;

#[cfg(feature = "cpu")]
pub mod cpu {
    //! Flex: burn's portable CPU backend (SIMD `gemm`, rayon threads).
    use anyhow::Result;

    /// The CPU backend.
    pub type Backend = burn::backend::Flex;

    /// The CPU, whatever the index: launched ranks on one machine share it.
    pub fn device(_index: usize) -> Result<burn::backend::flex::FlexDevice> {
        Ok(Default::default())
    }

    /// In-process ranks share the one CPU device (and its thread pool).
    pub fn rank_devices(_ranks: usize) -> Result<Vec<burn::backend::flex::FlexDevice>> {
        Ok(vec![Default::default()])
    }

    pub use lvface_train::{train_launched, train_local};
}

#[cfg(feature = "cuda")]
pub mod cuda;
pub mod cuda_env;

#[cfg(feature = "wgpu")]
pub mod wgpu;
