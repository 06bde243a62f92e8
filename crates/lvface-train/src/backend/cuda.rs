//! CUDA through cubecl; libcuda, libnvrtc and libnccl are loaded when first used, and NVRTC
//! compiles the kernels against the headers under `CUDA_PATH` ([`prepare`] sees to both).
// What the start-up changed in the environment is told on stderr.
#![allow(clippy::print_stderr)]

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use burn::backend::cuda::CudaDevice;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use lvface_pfc::{Collective, Launch};
use lvface_train::{RunSummary, TrainConfig};

use super::cuda_env::{self, Machine, PREPARED_VARIABLE};

mod nccl;
pub use nccl::{NcclCollective, NcclId};

/// The GPU backend, fp32.
pub type Backend = burn::backend::Cuda<f32>;

/// [`lvface_train::train_local`] with the ranks, GPU r for rank r, all-reducing on device
/// memory through NCCL.
pub fn train_local<B: AutodiffBackend<InnerBackend = Backend, Device = CudaDevice>>(
    run_dir: &Path,
    devices: &[CudaDevice],
    world: usize,
) -> Result<RunSummary> {
    if world <= 1 {
        return lvface_train::train_local::<B>(run_dir, devices, world);
    }
    let id = NcclId::new(0)?;
    lvface_train::train_local_with::<B, _>(run_dir, devices, world, |rank, device| {
        NcclCollective::join(rank, world, &id, &device)
    })
}

/// [`lvface_train::train_launched`] with the ranks all-reducing through NCCL once they have
/// met over the TCP ring, which carries NCCL's id from rank 0 to the others.
pub fn train_launched<B: AutodiffBackend<InnerBackend = Backend, Device = CudaDevice>>(
    run_dir: &Path,
    new: Option<&TrainConfig>,
    launch: &Launch,
    device: &CudaDevice,
) -> Result<RunSummary> {
    if launch.world_size <= 1 {
        return lvface_train::train_launched::<B>(run_dir, new, launch, device);
    }
    lvface_train::train_launched_with::<B, _>(run_dir, new, launch, device, |ring| {
        let id = NcclId::share(&ring, device)?;
        NcclCollective::join(ring.rank(), ring.world_size(), &id, device)
    })
}

/// A one-rank NCCL communicator on GPU 0 all-reduces `elements` f32 values: the result must
/// equal the input exactly (a sum over one rank). One `nccl ...` line with the time of the
/// last of five all-reduces and the bandwidth it implies.
pub fn one_rank_all_reduce(elements: usize) -> Result<String> {
    let device = device(0)?;
    let comm = NcclCollective::join(0, 1, &NcclId::new(0)?, &device)?;
    let values = Tensor::<Backend, 1, Int>::arange(0..elements as i64, &device)
        .float()
        .remainder_scalar(1000.0);
    let mut seconds = 0.0;
    let mut summed = values.clone();
    for _ in 0..5 {
        let start = Instant::now();
        summed = comm.all_reduce_sum(values.clone())?;
        seconds = start.elapsed().as_secs_f64();
    }
    let diff: f32 = (summed - values).abs().max().into_scalar();
    let bytes = (elements * 4) as f64;
    let verdict = if diff == 0.0 { "pass" } else { "FAIL" };
    let line = format!(
        "nccl ranks=1 elements={elements} max_abs_diff={diff:e} ms={:.3} gb_per_s={:.1} {verdict}",
        seconds * 1e3,
        bytes / seconds / 1e9
    );
    if diff != 0.0 {
        bail!("{line}: a one-rank all-reduce must return its input");
    }
    Ok(line)
}

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

/// GPU r for rank r.
pub fn rank_devices(ranks: usize) -> Result<Vec<burn::backend::cuda::CudaDevice>> {
    (0..ranks).map(device).collect()
}

pub(super) fn can_open(name: &str) -> bool {
    // libloading's `Library::new` is unsafe because a library's initialisers run; those of the
    // CUDA libraries are benign, and these are the libraries cudarc itself opens.
    #[allow(unsafe_code)]
    let library = unsafe { libloading::Library::new(name) };
    library.is_ok()
}

/// This machine as [`cuda_env::find`] sees it: `CUDA_PATH`, the pip packages of
/// `LVFACE_PYTHON` (default `python3`, the interpreter torchrun runs under), cubecl's default
/// toolkit folders.
pub fn this_machine() -> cuda_env::Findings {
    let python = std::env::var("LVFACE_PYTHON").unwrap_or_else(|_| "python3".to_string());
    cuda_env::find(&Machine {
        can_load: &can_open,
        cuda_path: cuda_path_set().map(Into::into),
        nvidia_dirs: cuda_env::pip_nvidia_dirs(&python),
        system_cuda: vec!["/usr/local/cuda".into(), "/opt/cuda".into()],
    })
}

/// `CUDA_PATH` when it is set to something (an empty value counts as unset, as a shell's
/// `CUDA_PATH=` means).
fn cuda_path_set() -> Option<std::ffi::OsString> {
    std::env::var_os("CUDA_PATH").filter(|v| !v.is_empty())
}

/// Makes what the CUDA backend loads findable, starting this process again when the
/// environment has to change (the loader reads `LD_LIBRARY_PATH` only at start), or stops with
/// every problem named. `need_nccl`: whether this process's ranks all-reduce between GPUs
/// through NCCL (`--devices` above 1, or a launched run of several processes).
pub fn prepare(need_nccl: bool) -> Result<()> {
    if std::env::var_os(PREPARED_VARIABLE).is_some() {
        return Ok(());
    }
    let findings = this_machine();
    let plan = cuda_env::plan(&findings, cuda_path_set().is_some(), need_nccl)
        .map_err(|problems| anyhow::anyhow!("the cuda backend cannot start:\n{problems}"))?;
    if plan.is_empty() {
        return Ok(());
    }
    let mut dirs = plan.library_dirs.clone();
    if !plan.links.is_empty() {
        let links = link_folder();
        std::fs::create_dir_all(&links).with_context(|| format!("creating {}", links.display()))?;
        for (name, target) in &plan.links {
            link(&links.join(name), target)?;
        }
        dirs.insert(0, links);
    }
    let mut path = std::env::join_paths(&dirs).context("a library folder has a `:` in its name")?;
    if let Some(old) = std::env::var_os("LD_LIBRARY_PATH") {
        path.push(":");
        path.push(old);
    }
    let mut command = std::process::Command::new(
        std::env::current_exe().context("finding this program to start it again")?,
    );
    command
        .args(std::env::args_os().skip(1))
        .env("LD_LIBRARY_PATH", &path)
        .env(PREPARED_VARIABLE, "1");
    if let Some(root) = &plan.cuda_path {
        command.env("CUDA_PATH", root);
    }
    eprintln!(
        "cuda: starting again with LD_LIBRARY_PATH={}{}",
        path.to_string_lossy(),
        plan.cuda_path
            .as_ref()
            .map_or(String::new(), |r| format!(" CUDA_PATH={}", r.display()))
    );
    use std::os::unix::process::CommandExt;
    Err(command.exec()).context("starting this program again with the CUDA libraries' folders")
}

/// Where the links under cudarc's names live: one folder per user, reused by every run.
fn link_folder() -> std::path::PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("lvface").join("cuda-libs")
}

/// `at` pointing to `target`, replaced whole (ranks of one node may do this at once).
fn link(at: &std::path::Path, target: &std::path::Path) -> Result<()> {
    if std::fs::read_link(at).is_ok_and(|current| current == target) {
        return Ok(());
    }
    let staging = at.with_extension(format!("{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&staging);
    std::os::unix::fs::symlink(target, &staging)
        .and_then(|()| std::fs::rename(&staging, at))
        .with_context(|| format!("linking {} to {}", at.display(), target.display()))
}

/// The versions the driver, NVRTC and NCCL found in `findings` report of themselves, as
/// `name version` pairs (`nccl 2.30.7`); a library that is missing or cannot say is left out.
pub fn versions(findings: &cuda_env::Findings) -> Vec<String> {
    use std::os::raw::c_int;
    type OneInt = unsafe extern "C" fn(*mut c_int) -> c_int;
    type TwoInts = unsafe extern "C" fn(*mut c_int, *mut c_int) -> c_int;

    fn file(library: &cuda_env::Library) -> Option<std::ffi::OsString> {
        match library {
            cuda_env::Library::Loadable(name) => Some(name.into()),
            cuda_env::Library::InFolder { dir, file, .. } => Some(dir.join(file).into()),
            cuda_env::Library::Missing(_) => None,
        }
    }
    // Each call is the library's documented version query, which needs no device and no
    // initialisation; libloading checks that the symbol exists, and its type is the C one.
    #[allow(unsafe_code)]
    let one = |library: &cuda_env::Library, symbol: &[u8]| -> Option<c_int> {
        let lib = unsafe { libloading::Library::new(file(library)?) }.ok()?;
        let query = unsafe { lib.get::<OneInt>(symbol) }.ok()?;
        let mut value: c_int = 0;
        (unsafe { query(&mut value) } == 0).then_some(value)
    };
    #[allow(unsafe_code)]
    let two = |library: &cuda_env::Library, symbol: &[u8]| -> Option<(c_int, c_int)> {
        let lib = unsafe { libloading::Library::new(file(library)?) }.ok()?;
        let query = unsafe { lib.get::<TwoInts>(symbol) }.ok()?;
        let (mut major, mut minor): (c_int, c_int) = (0, 0);
        (unsafe { query(&mut major, &mut minor) } == 0).then_some((major, minor))
    };
    let mut found = Vec::new();
    if let Some(v) = one(&findings.driver, b"cuDriverGetVersion") {
        found.push(format!("driver (CUDA) {}.{}", v / 1000, v % 1000 / 10));
    }
    if let Some((major, minor)) = two(&findings.nvrtc, b"nvrtcVersion") {
        found.push(format!("nvrtc {major}.{minor}"));
    }
    if let Some(v) = one(&findings.nccl, b"ncclGetVersion") {
        // NCCL 2.9 and later: major·10000 + minor·100 + patch.
        found.push(format!(
            "nccl {}.{}.{}",
            v / 10000,
            v % 10000 / 100,
            v % 100
        ));
    }
    found
}
