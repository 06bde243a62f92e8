//! wgpu through cubecl: the same kernels as the CUDA backend, compiled to WGSL and run on
//! Vulkan (Linux, Windows), Metal (macOS) or DX12.
//!
//! cubecl picks an adapter by kind and index (`DiscreteGpu(1)`) and panics when there is none;
//! this module lists the adapters first, the way cubecl does, so that a missing driver or a
//! `--devices` beyond what the machine has is an error that lists what was found.
// Which adapter a rank runs on is told on stderr, as cubecl's own log would.
#![allow(clippy::print_stderr)]

use ::wgpu::DeviceType;
use anyhow::{bail, Result};
use burn::backend::wgpu::graphics::{AutoGraphicsApi, GraphicsApi};
use burn::backend::wgpu::WgpuDevice;

pub use lvface_train::{train_launched, train_local};

/// The GPU backend, fp32 with 32-bit integers (what every wgpu adapter supports).
pub type Backend = burn::backend::Wgpu<f32, i32>;

/// cubecl's variable that names one adapter, as a `WgpuDevice` is spelled (`DiscreteGpu(1)`,
/// `IntegratedGpu(0)`, `Cpu`).
const ADAPTER_VARIABLE: &str = "CUBECL_WGPU_DEFAULT_DEVICE";

/// What lvface needs to know of an adapter to choose it and to say what it chose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adapter {
    /// The driver's name for it ("NVIDIA GeForce RTX 4090", "llvmpipe (LLVM 15.0.6, 256 bits)").
    pub name: String,
    /// Discrete, integrated, virtual, CPU (software) or other.
    pub kind: DeviceType,
}

/// The adapter of GPU `index` (a launched run's `LOCAL_RANK`; 0 for a one-rank run): the
/// `index`-th adapter of the best kind present (discrete, then integrated, virtual, software).
/// For a one-rank run, `CUBECL_WGPU_DEFAULT_DEVICE` picks another.
pub fn device(index: usize) -> Result<WgpuDevice> {
    if index == 0 && std::env::var_os(ADAPTER_VARIABLE).is_some() {
        return Ok(WgpuDevice::DefaultDevice);
    }
    let adapters = adapters();
    let (device, chosen) = choose(&adapters, index)?;
    eprintln!("wgpu device {index}: {} ({:?})", chosen.name, chosen.kind);
    Ok(device)
}

/// One adapter per in-process rank, all of one kind.
pub fn rank_devices(ranks: usize) -> Result<Vec<WgpuDevice>> {
    if ranks > 1 && std::env::var_os(ADAPTER_VARIABLE).is_some() {
        bail!("{ADAPTER_VARIABLE} picks the adapter of a one-rank run; unset it for --devices {ranks}");
    }
    (0..ranks).map(device).collect()
}

/// The adapters of the graphics API cubecl uses on this system, in the order cubecl indexes
/// them.
pub fn adapters() -> Vec<Adapter> {
    let backend = AutoGraphicsApi::backend();
    let instance = ::wgpu::Instance::new(::wgpu::InstanceDescriptor {
        backends: backend.into(),
        ..::wgpu::InstanceDescriptor::new_without_display_handle()
    });
    futures_lite::future::block_on(instance.enumerate_adapters(backend.into()))
        .into_iter()
        .map(|adapter| {
            let info = adapter.get_info();
            Adapter {
                name: info.name,
                kind: info.device_type,
            }
        })
        .collect()
}

/// The kinds cubecl can address, best first; `Other` adapters are only its fallback.
const PREFERENCE: [DeviceType; 4] = [
    DeviceType::DiscreteGpu,
    DeviceType::IntegratedGpu,
    DeviceType::VirtualGpu,
    DeviceType::Cpu,
];

/// The device of adapter `index` of the best kind among `adapters`, and that adapter.
pub fn choose(adapters: &[Adapter], index: usize) -> Result<(WgpuDevice, &Adapter)> {
    let found = || {
        adapters
            .iter()
            .map(|a| format!("{} ({:?})", a.name, a.kind))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let Some(kind) = PREFERENCE
        .into_iter()
        .find(|kind| adapters.iter().any(|a| a.kind == *kind))
    else {
        bail!(
            "the wgpu backend found no {:?} adapter{}; install the GPU's Vulkan driver (on \
             Debian, `apt-get install mesa-vulkan-drivers libvulkan1` also gives lavapipe, a \
             software device), or use --backend cpu",
            AutoGraphicsApi::backend(),
            if adapters.is_empty() {
                String::new()
            } else {
                format!(" it can use (found only: {})", found())
            }
        );
    };
    let of_kind: Vec<&Adapter> = adapters.iter().filter(|a| a.kind == kind).collect();
    // cubecl addresses a software adapter without an index: there is only ever one.
    let addressable = if kind == DeviceType::Cpu {
        1
    } else {
        of_kind.len()
    };
    if index >= addressable {
        bail!(
            "wgpu device {index} asked for, but this machine has {addressable} {kind:?} \
             adapter{} (found: {}); in-process ranks need one adapter each, so give --devices \
             {addressable} or fewer",
            if addressable == 1 { "" } else { "s" },
            found()
        );
    }
    let device = match kind {
        DeviceType::DiscreteGpu => WgpuDevice::DiscreteGpu(index),
        DeviceType::IntegratedGpu => WgpuDevice::IntegratedGpu(index),
        DeviceType::VirtualGpu => WgpuDevice::VirtualGpu(index),
        _ => WgpuDevice::Cpu,
    };
    Ok((device, of_kind[index]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adapter(name: &str, kind: DeviceType) -> Adapter {
        Adapter {
            name: name.to_string(),
            kind,
        }
    }

    #[test]
    fn the_best_kind_is_chosen_and_indexed_within_its_kind() {
        let adapters = [
            adapter("llvmpipe", DeviceType::Cpu),
            adapter("Intel Arc iGPU", DeviceType::IntegratedGpu),
            adapter("Radeon 0", DeviceType::DiscreteGpu),
            adapter("Radeon 1", DeviceType::DiscreteGpu),
        ];
        let (device, chosen) = choose(&adapters, 1).unwrap();
        assert_eq!(device, WgpuDevice::DiscreteGpu(1));
        assert_eq!(chosen.name, "Radeon 1");
        let error = choose(&adapters, 2).unwrap_err().to_string();
        assert!(
            error.contains("2 DiscreteGpu adapters") && error.contains("--devices 2 or fewer"),
            "{error}"
        );

        let integrated = [adapter("Apple M3", DeviceType::IntegratedGpu)];
        assert_eq!(
            choose(&integrated, 0).unwrap().0,
            WgpuDevice::IntegratedGpu(0)
        );
    }

    #[test]
    fn a_software_adapter_serves_one_rank() {
        let lavapipe = [adapter("llvmpipe (LLVM 15.0.6, 256 bits)", DeviceType::Cpu)];
        assert_eq!(choose(&lavapipe, 0).unwrap().0, WgpuDevice::Cpu);
        let error = choose(&lavapipe, 1).unwrap_err().to_string();
        assert!(
            error.contains("1 Cpu adapter ") && error.contains("llvmpipe"),
            "{error}"
        );
    }

    #[test]
    fn no_adapter_says_which_driver_to_install() {
        let error = choose(&[], 0).unwrap_err().to_string();
        assert!(error.contains("mesa-vulkan-drivers"), "{error}");
        let other = [adapter("mystery", DeviceType::Other)];
        let error = choose(&other, 0).unwrap_err().to_string();
        assert!(error.contains("found only: mystery (Other)"), "{error}");
    }
}
