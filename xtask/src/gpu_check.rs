//! `cargo xtask gpu-check --bundle DIR`: a folder to copy to a GPU machine that has CUDA and
//! PyTorch but no Rust toolchain, and run there with one command (`DIR/run.sh`).
//!
//! The folder holds the release `lvface` built with `--features cuda`, what its steps read (the
//! smoke config, the vit-parity fixture, PyTorch's reference training step), optionally the
//! CUDA headers NVRTC needs, `run.sh` and `results.py`. It must stay under 64 MiB, what such a
//! machine takes in. `--dry-run` builds the bundle around the CPU build instead and runs
//! `run.sh --dry-run`: every step at toy size on the CPU backend, so the bundle is checked on
//! any machine.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};

/// What a GPU machine takes in at once.
pub const MAX_BUNDLE_BYTES: u64 = 64 << 20;

const RUN_SH: &str = include_str!("gpu_check/run.sh");
const RESULTS_PY: &str = include_str!("gpu_check/results.py");

/// The parsed command line of `gpu-check`.
#[derive(Debug, Default, PartialEq)]
pub struct Options {
    /// Where to write the bundle.
    pub bundle: PathBuf,
    /// Build around the CPU binary and run `run.sh --dry-run`.
    pub dry_run: bool,
    /// A `lvface` binary to take instead of building one.
    pub binary: Option<PathBuf>,
    /// A folder holding `include/cuda_runtime.h` (and `include/crt`, `include/cccl`) to carry.
    pub cuda_headers: Option<PathBuf>,
}

/// Parses `--bundle DIR [--dry-run] [--binary FILE] [--cuda-headers DIR]`.
pub fn parse(args: &[OsString]) -> Result<Options> {
    let mut options = Options::default();
    let mut bundle = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .map(PathBuf::from)
                .with_context(|| format!("{name} needs a value"))
        };
        match arg.to_str() {
            Some("--bundle") => bundle = Some(value("--bundle")?),
            Some("--binary") => options.binary = Some(value("--binary")?),
            Some("--cuda-headers") => options.cuda_headers = Some(value("--cuda-headers")?),
            Some("--dry-run") => options.dry_run = true,
            _ => bail!(
                "gpu-check: unknown argument {arg:?}; usage: cargo xtask gpu-check --bundle DIR \
                 [--dry-run] [--binary FILE] [--cuda-headers DIR]"
            ),
        }
    }
    options.bundle = bundle.context("gpu-check needs --bundle DIR")?;
    Ok(options)
}

/// Builds the bundle and, with `--dry-run`, runs it; `build` makes the binary for a feature.
pub fn run(
    options: &Options,
    root: &Path,
    build: impl Fn(&str) -> Result<PathBuf>,
) -> Result<ExitCode> {
    let binary = match &options.binary {
        Some(binary) => binary.clone(),
        None => build(if options.dry_run { "cpu" } else { "cuda" })?,
    };
    let size = write_bundle(
        &options.bundle,
        root,
        &binary,
        options.cuda_headers.as_deref(),
    )?;
    eprintln!(
        "bundle {}: {:.1} MiB of {} MiB; on the GPU machine run {}/run.sh",
        options.bundle.display(),
        size as f64 / (1u64 << 20) as f64,
        MAX_BUNDLE_BYTES >> 20,
        options.bundle.display()
    );
    if !options.dry_run {
        return Ok(ExitCode::SUCCESS);
    }
    let status = Command::new("bash")
        .arg(options.bundle.join("run.sh"))
        .arg("--dry-run")
        .status()
        .context("starting bash")?;
    Ok(ExitCode::from(status.code().map_or(1, |c| c as u8)))
}

/// Writes the bundle into `dir` (emptied first) and returns its size in bytes.
pub fn write_bundle(dir: &Path, root: &Path, binary: &Path, headers: Option<&Path>) -> Result<u64> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("emptying {}", dir.display()))?;
    }
    for sub in ["configs", "fixtures/vit-parity", "reference"] {
        std::fs::create_dir_all(dir.join(sub))
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    let copy = |from: PathBuf, to: &str| -> Result<()> {
        std::fs::copy(&from, dir.join(to))
            .map(|_| ())
            .with_context(|| format!("copying {} into the bundle", from.display()))
    };
    copy(binary.to_path_buf(), "lvface")?;
    strip(&dir.join("lvface"));
    copy(root.join("configs/smoke.toml"), "configs/smoke.toml")?;
    let fixture = root.join("crates/lvface-vit/tests/fixtures/vit-parity");
    for file in ["weights.safetensors", "io.safetensors", "README.md"] {
        copy(fixture.join(file), &format!("fixtures/vit-parity/{file}"))?;
    }
    for file in ["train_step_torch.py", "vit_torch.py"] {
        copy(
            root.join("benches/reference").join(file),
            &format!("reference/{file}"),
        )?;
    }
    write_executable(&dir.join("run.sh"), RUN_SH)?;
    write_executable(&dir.join("results.py"), RESULTS_PY)?;
    if let Some(headers) = headers {
        if !headers.join("include/cuda_runtime.h").is_file() {
            bail!(
                "--cuda-headers {}: no include/cuda_runtime.h there",
                headers.display()
            );
        }
        let status = Command::new("tar")
            .arg("czf")
            .arg(dir.join("cuda-headers.tar.gz"))
            .arg("-C")
            .arg(headers)
            .arg("include")
            .status()
            .context("starting tar")?;
        if !status.success() {
            bail!("tar of {} failed ({status})", headers.display());
        }
    }
    let size = folder_size(dir)?;
    if size > MAX_BUNDLE_BYTES {
        bail!(
            "the bundle is {:.1} MiB, above the {} MiB a GPU machine takes in",
            size as f64 / (1u64 << 20) as f64,
            MAX_BUNDLE_BYTES >> 20
        );
    }
    Ok(size)
}

/// Drops the symbol table where `strip` exists: the bundle's size is what matters there.
fn strip(binary: &Path) {
    let _ = Command::new("strip")
        .arg(binary)
        .stderr(std::process::Stdio::null())
        .status();
}

fn write_executable(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("making {} executable", path.display()))
}

fn folder_size(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            folder_size(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

#[cfg(test)]
mod tests;
