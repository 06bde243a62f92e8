//! `cargo xtask`: builds the `lvface` binary and runs it.
//!
//! xtask decides only what the binary cannot: the cargo features its `--backend` needs, the
//! release build (shown as cargo shows it, since the first one takes minutes), and the folder it
//! runs in, the caller's, so that relative paths mean what they say. Every other argument goes
//! to the binary untouched, and the binary alone defines its command lines:
//! `cargo xtask train --help` is `lvface train --help`. Its two tasks of its own are `bench`
//! (criterion over `benches/`) and `gpu-check` (the bundle of the one-shot GPU check). xtask
//! depends on no burn crate, so it builds in seconds.
#![allow(clippy::print_stderr)]

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use anyhow::{bail, Context, Result};

mod gpu_check;

/// The package and binary xtask builds and runs.
const PACKAGE: &str = "lvface-train";
const BINARY: &str = "lvface";

fn main() -> Result<ExitCode> {
    let mut args: Vec<OsString> = std::env::args_os().skip(1).collect();
    if args.first().is_some_and(|a| a == "bench") {
        return bench(&args[1..]);
    }
    if args.first().is_some_and(|a| a == "gpu-check") {
        return gpu_check::run(&gpu_check::parse(&args[1..])?, project_root(), build);
    }
    let asks_for_help = match args.as_slice() {
        [] => true,
        [only] => only == "-h" || only == "--help",
        _ => false,
    };
    if asks_for_help {
        eprintln!(
            "cargo xtask COMMAND [ARGS...]: builds `{BINARY}` in release mode (with the cargo \
             feature of its --backend) and runs `{BINARY} COMMAND ARGS...` in this folder.\n\
             `cargo xtask bench [FILTER]` runs the criterion benchmarks; `cargo xtask gpu-check \
             --bundle DIR [--dry-run] [--cuda-headers DIR]` prepares the one-shot GPU check \
             (docs/gpu-check.md). The commands of \
             `{BINARY}`:\n"
        );
        args = vec!["--help".into()];
    }
    let binary = build(features(&args))?;
    let status = Command::new(&binary)
        .args(&args)
        .status()
        .with_context(|| format!("starting {}", binary.display()))?;
    // The binary has said what went wrong; its code is the answer.
    Ok(ExitCode::from(status.code().map_or(1, |c| c as u8)))
}

/// The cargo features for the backend that `args` ask for (`--backend cuda`, `--backend=wgpu`,
/// the `cuda-env` command; the CPU otherwise). A backend the binary does not know is left to the
/// binary to refuse, in the CPU build.
fn features(args: &[OsString]) -> &'static str {
    if args.first().is_some_and(|a| a == "cuda-env") {
        // It reports on the CUDA backend's libraries, so it is in the CUDA build only.
        return "cuda";
    }
    let mut backend = None;
    let mut args = args.iter().map(|a| a.to_string_lossy());
    while let Some(arg) = args.next() {
        if arg == "--" {
            break;
        }
        if arg == "--backend" {
            backend = args.next().map(|v| v.into_owned());
        } else if let Some(value) = arg.strip_prefix("--backend=") {
            backend = Some(value.to_string());
        }
    }
    match backend.as_deref() {
        Some("cuda") => "cuda",
        Some("wgpu") => "wgpu",
        _ => "cpu",
    }
}

/// Builds the binary in release mode with `features` and returns its path, with cargo's own
/// progress on the terminal.
fn build(features: &str) -> Result<PathBuf> {
    eprintln!(
        "building {BINARY} (release, --features {features}); the first build takes about 7 \
         minutes on 2 cores, later ones seconds"
    );
    let output = cargo()
        .args(["build", "--release", "-p", PACKAGE, "--bin", BINARY])
        .args(["--no-default-features", "--features", features])
        .args(["--message-format", "json-render-diagnostics"])
        .stderr(Stdio::inherit())
        .output()
        .context("starting cargo")?;
    if !output.status.success() {
        bail!("building {BINARY} failed ({})", output.status);
    }
    let messages = String::from_utf8_lossy(&output.stdout);
    executable(&messages).with_context(|| format!("cargo built no `{BINARY}` executable"))
}

/// The path of the `lvface` executable among cargo's JSON messages.
fn executable(messages: &str) -> Option<PathBuf> {
    messages
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == BINARY)
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
}

/// `cargo bench -p lvface-bench [-- FILTER]`.
fn bench(args: &[OsString]) -> Result<ExitCode> {
    let mut command = cargo();
    command.args(["bench", "-p", "lvface-bench"]);
    if !args.is_empty() {
        command.arg("--").args(args);
    }
    let status = command.status().context("starting cargo")?;
    Ok(ExitCode::from(status.code().map_or(1, |c| c as u8)))
}

/// `cargo` as the user invoked it (rustup's proxy sets `CARGO`), on the workspace's manifest
/// whatever folder xtask was started from.
fn cargo() -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(project_root());
    command
}

/// The workspace root.
fn project_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<OsString> {
        line.split_whitespace().map(OsString::from).collect()
    }

    #[test]
    fn the_backend_argument_picks_the_build_and_nothing_else_does() {
        for (line, want) in [
            ("train", "cpu"),
            ("train --backend cuda --devices 8", "cuda"),
            ("eval --run runs/a --backend=cuda", "cuda"),
            ("probe --backend cpu", "cpu"),
            ("embed --backend wgpu a.jpg", "wgpu"),
            ("cuda-env", "cuda"),
            // A value after `--` is not an option of the binary's.
            ("verify a.jpg -- --backend cuda", "cpu"),
            // A name the binary refuses is refused by the CPU build.
            ("train --backend tpu", "cpu"),
            // `--set` values are the configuration's, not xtask's.
            ("train --set run.backend=cuda", "cpu"),
        ] {
            assert_eq!(features(&args(line)), want, "{line}");
        }
    }

    #[test]
    fn the_executable_is_found_among_cargos_messages() {
        let messages = [
            r#"{"reason":"compiler-artifact","target":{"name":"lvface_train"},"executable":null}"#,
            "not json",
            r#"{"reason":"compiler-artifact","target":{"name":"lvface"},"executable":"/t/release/lvface"}"#,
            r#"{"reason":"build-finished","success":true}"#,
        ]
        .join("\n");
        assert_eq!(
            executable(&messages),
            Some(PathBuf::from("/t/release/lvface"))
        );
        assert_eq!(executable(r#"{"reason":"build-finished"}"#), None);
    }
}
