//! What the CUDA backend loads at run time, found before the first kernel needs it.
//!
//! Nothing CUDA is linked: cudarc opens libcuda, libnvrtc and libnccl by name when first used,
//! and NVRTC compiles every kernel against the headers under `CUDA_PATH` (`include/`,
//! `include/cccl`). On a machine whose CUDA came with PyTorch, these exist under other names
//! and paths than cudarc tries, and a miss is a panic in a device thread:
//! - NCCL is `nvidia/nccl/lib/libnccl.so.2` in NVIDIA's pip wheel, a name cudarc never tries
//!   (it tries `libnccl.so`, `libnccl.so.13` ... `libnccl.so.9`, `libnccl.so.1`);
//! - NVRTC is `nvidia/cu13/lib/libnvrtc.so.13`, a name it tries, in a folder the loader does not
//!   search;
//! - the headers are `nvidia/cu13/include` (with `crt/`, and `cccl/` when that wheel is there),
//!   which cubecl finds only through `CUDA_PATH`.
//!
//! [`plan`] works out what to change; the binary applies it by starting itself again with
//! `LD_LIBRARY_PATH` and `CUDA_PATH` set (the loader reads `LD_LIBRARY_PATH` once, at process
//! start) and with a folder of links under the names cudarc tries. What cannot be found is an
//! error that names the file and the package that provides it.
#![cfg_attr(not(feature = "cuda"), allow(dead_code))]

use std::path::{Path, PathBuf};

/// The CUDA major version cudarc's bindings were generated for (cubecl-cuda 0.10 without
/// `nvcc` at build time: CUDA 13), which sets the library names it tries.
pub const CUDA_MAJOR: u32 = 13;

/// Set in the environment of the process started again, so that it does not start itself a
/// third time.
pub const PREPARED_VARIABLE: &str = "LVFACE_CUDA_ENV_PREPARED";

/// The names cudarc's loader tries for `lib{name}.so` on Linux, in its order.
pub fn candidate_names(name: &str) -> Vec<String> {
    let mut names = vec![
        format!("lib{name}.so"),
        format!("lib{name}.so.{CUDA_MAJOR}"),
    ];
    names.extend([12, 11, 10, 9, 1].map(|v| format!("lib{name}.so.{v}")));
    names
}

/// Where one library is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Library {
    /// The loader finds it by one of cudarc's names as things are.
    Loadable(String),
    /// `file` in `dir` would be found once `dir` is on `LD_LIBRARY_PATH`; `link` is the name
    /// cudarc tries to give it when `file`'s own name is not one of them.
    InFolder {
        /// The folder holding it.
        dir: PathBuf,
        /// Its file name.
        file: String,
        /// A name cudarc tries, when `file` is not one.
        link: Option<String>,
    },
    /// Not found; the text says what to install.
    Missing(String),
}

/// What was found of everything the CUDA backend loads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Findings {
    /// The driver's libcuda: it comes with the driver, never from pip.
    pub driver: Library,
    /// NVRTC, which compiles cubecl's kernels.
    pub nvrtc: Library,
    /// The folder to give as `CUDA_PATH`: it holds `include/cuda_runtime.h`. `Err` says what
    /// is missing.
    pub cuda_path: Result<PathBuf, String>,
    /// Whether `CUDA_PATH/include/cccl` exists (cubecl adds it when it does; kernels that use
    /// `cuda/pipeline` or `cuda/barrier` need it).
    pub cccl: bool,
    /// NCCL, which multi-GPU collectives use.
    pub nccl: Library,
}

/// What the machine offers, so that [`find`] can be tested on a made-up one.
pub struct Machine<'a> {
    /// Whether the loader opens this name as things are.
    pub can_load: &'a dyn Fn(&str) -> bool,
    /// `CUDA_PATH` as set, if set.
    pub cuda_path: Option<PathBuf>,
    /// Folders of NVIDIA's pip packages (`.../site-packages/nvidia`), in search order.
    pub nvidia_dirs: Vec<PathBuf>,
    /// System CUDA installations to try when `CUDA_PATH` is unset (cubecl's own defaults).
    pub system_cuda: Vec<PathBuf>,
}

/// The headers NVRTC needs for every kernel cubecl writes: `cuda_runtime.h` (and the `crt/`
/// folder it includes), the half types, and `mma.h`.
const HEADERS: [&str; 5] = [
    "include/cuda_runtime.h",
    "include/crt/host_config.h",
    "include/cuda_fp16.h",
    "include/cuda_bf16.h",
    "include/mma.h",
];

/// NVIDIA's pip layout for CUDA 13: `nvidia/cu13/{lib,include}` (wheels nvidia-cuda-nvrtc,
/// nvidia-cuda-runtime, nvidia-cuda-crt, nvidia-cuda-cccl) and `nvidia/nccl/lib`
/// (nvidia-nccl-cu13).
const PIP_CUDA: &str = "cu13";

/// Finds every library and the headers on `machine`.
pub fn find(machine: &Machine) -> Findings {
    let loadable = |name: &str| {
        candidate_names(name)
            .into_iter()
            .find(|n| (machine.can_load)(n))
    };
    let driver = match ["libcuda.so.1", "libcuda.so"]
        .into_iter()
        .find(|n| (machine.can_load)(n))
    {
        Some(name) => Library::Loadable(name.to_string()),
        None => Library::Missing(
            "libcuda.so.1 (the NVIDIA driver) is not on the loader's path: install the driver, \
             or add its folder to LD_LIBRARY_PATH"
                .to_string(),
        ),
    };
    let in_pip = |relative: &str| {
        machine
            .nvidia_dirs
            .iter()
            .map(|dir| dir.join(relative))
            .find(|path| path.is_file())
    };
    let nvrtc = match loadable("nvrtc") {
        Some(name) => Library::Loadable(name),
        None => match in_pip(&format!("{PIP_CUDA}/lib/libnvrtc.so.{CUDA_MAJOR}")) {
            Some(path) => in_folder(&path, None),
            None => Library::Missing(format!(
                "libnvrtc.so.{CUDA_MAJOR} (NVRTC, which compiles the kernels) was found neither \
                 on the loader's path nor in NVIDIA's pip packages: `pip install \
                 nvidia-cuda-nvrtc=={CUDA_MAJOR}.*`, or add the CUDA toolkit's lib64 to \
                 LD_LIBRARY_PATH"
            )),
        },
    };
    let nccl = match loadable("nccl") {
        Some(name) => Library::Loadable(name),
        None => match in_pip("nccl/lib/libnccl.so.2") {
            Some(path) => in_folder(&path, Some("libnccl.so".to_string())),
            None => Library::Missing(format!(
                "NCCL was found neither on the loader's path (as {}) nor in NVIDIA's pip \
                 packages (nvidia/nccl/lib/libnccl.so.2): `pip install nvidia-nccl-cu{CUDA_MAJOR}`",
                candidate_names("nccl").join(", ")
            )),
        },
    };
    let cuda_path = find_cuda_path(machine);
    let cccl = cuda_path
        .as_ref()
        .is_ok_and(|root| root.join("include/cccl").is_dir());
    Findings {
        driver,
        nvrtc,
        cuda_path,
        cccl,
        nccl,
    }
}

fn in_folder(path: &Path, link: Option<String>) -> Library {
    Library::InFolder {
        dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
        file: path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default(),
        link,
    }
}

/// The first header of [`HEADERS`] missing under `root`.
fn missing_header(root: &Path) -> Option<&'static str> {
    HEADERS.into_iter().find(|h| !root.join(h).is_file())
}

fn find_cuda_path(machine: &Machine) -> Result<PathBuf, String> {
    if let Some(root) = &machine.cuda_path {
        // The user's choice is checked, never replaced.
        return match missing_header(root) {
            None => Ok(root.clone()),
            Some(header) => Err(format!(
                "CUDA_PATH is {}, which has no {header}; NVRTC compiles every kernel against \
                 the headers there",
                root.display()
            )),
        };
    }
    let pip = machine.nvidia_dirs.iter().map(|dir| dir.join(PIP_CUDA));
    let mut first_miss = None;
    for root in machine.system_cuda.iter().cloned().chain(pip) {
        match missing_header(&root) {
            None => return Ok(root),
            Some(header) if root.is_dir() && first_miss.is_none() => {
                first_miss = Some(format!("{} has no {header}", root.display()));
            }
            Some(_) => {}
        }
    }
    Err(format!(
        "no CUDA headers for NVRTC{}: set CUDA_PATH to a CUDA toolkit, or `pip install \
         nvidia-cuda-runtime=={CUDA_MAJOR}.* nvidia-cuda-crt=={CUDA_MAJOR}.* \
         nvidia-cuda-cccl=={CUDA_MAJOR}.*` (the runtime's, the crt's and cccl's headers)",
        first_miss.map_or(String::new(), |m| format!(" ({m})"))
    ))
}

/// What the process started again needs: folders to put first on `LD_LIBRARY_PATH`, links to
/// make in the link folder (name, target), and `CUDA_PATH`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Folders for `LD_LIBRARY_PATH`, before what is there.
    pub library_dirs: Vec<PathBuf>,
    /// Links to make in the link folder: (the name cudarc tries, the file).
    pub links: Vec<(String, PathBuf)>,
    /// `CUDA_PATH` to set, when it was not set.
    pub cuda_path: Option<PathBuf>,
}

impl Plan {
    /// Whether the environment is right as it is.
    pub fn is_empty(&self) -> bool {
        self.library_dirs.is_empty() && self.links.is_empty() && self.cuda_path.is_none()
    }
}

/// What to change for `findings`, or every problem that no change can fix, one per line.
/// `need_nccl`: whether this run uses NCCL (more than one GPU); without it a missing NCCL is
/// not an error.
pub fn plan(findings: &Findings, cuda_path_was_set: bool, need_nccl: bool) -> Result<Plan, String> {
    let mut plan = Plan::default();
    let mut problems = Vec::new();
    if let Library::Missing(why) = &findings.driver {
        problems.push(why.clone());
    }
    for (library, needed) in [(&findings.nvrtc, true), (&findings.nccl, need_nccl)] {
        match library {
            Library::Loadable(_) => {}
            Library::InFolder { dir, file, link } => match link {
                Some(name) => plan.links.push((name.clone(), dir.join(file))),
                None => plan.library_dirs.push(dir.clone()),
            },
            Library::Missing(why) if needed => problems.push(why.clone()),
            Library::Missing(_) => {}
        }
    }
    match &findings.cuda_path {
        Ok(root) if !cuda_path_was_set => plan.cuda_path = Some(root.clone()),
        Ok(_) => {}
        Err(why) => problems.push(why.clone()),
    }
    if problems.is_empty() {
        Ok(plan)
    } else {
        Err(problems.join("\n"))
    }
}

/// One line per item of `findings` (`cargo xtask cuda-env`), and whether the cuda backend can
/// start: the driver, NVRTC and the headers found; NCCL only matters for several GPUs.
pub fn describe(findings: &Findings) -> (Vec<String>, bool) {
    let library = |what: &str, library: &Library| match library {
        Library::Loadable(name) => format!("{what:<8}{name} (on the loader's path)"),
        Library::InFolder { dir, file, link } => format!(
            "{what:<8}{} ({})",
            dir.join(file).display(),
            match link {
                Some(name) => format!("linked as {name} in a folder put on LD_LIBRARY_PATH"),
                None => "its folder is put on LD_LIBRARY_PATH".to_string(),
            }
        ),
        Library::Missing(why) => format!("{what:<8}missing: {why}"),
    };
    let headers = match &findings.cuda_path {
        Ok(root) => format!(
            "{:<8}CUDA_PATH={} (cccl headers: {})",
            "headers",
            root.display(),
            if findings.cccl { "yes" } else { "no" }
        ),
        Err(why) => format!("{:<8}missing: {why}", "headers"),
    };
    let ready = !matches!(findings.driver, Library::Missing(_))
        && !matches!(findings.nvrtc, Library::Missing(_))
        && findings.cuda_path.is_ok();
    let lines = vec![
        library("driver", &findings.driver),
        library("nvrtc", &findings.nvrtc),
        headers,
        library("nccl", &findings.nccl),
        if ready { "ready" } else { "not ready" }.to_string(),
    ];
    (lines, ready)
}

/// The folders of NVIDIA's pip packages that `python` sees (the `nvidia` namespace package), or
/// none when there is no such Python.
pub fn pip_nvidia_dirs(python: &str) -> Vec<PathBuf> {
    let script = "import nvidia, sys; sys.stdout.write('\\n'.join(nvidia.__path__))";
    match std::process::Command::new(python)
        .args(["-c", script])
        .stderr(std::process::Stdio::null())
        .output()
    {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(PathBuf::from)
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests;
