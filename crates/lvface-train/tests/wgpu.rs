//! The GPU code path on burn's wgpu backend (cubecl's kernels, autodiff over them, lvface's use
//! of them), on whatever adapter the machine has: Mesa's lavapipe, a software Vulkan device, in
//! CI. Opt-in: `cargo test -p lvface-train --features wgpu --test wgpu` (docs/backends.md).
//!
//! The optimizer step against PyTorch's train_v2 on wgpu is `step::parity`'s
//! `one_step_on_wgpu_equals_insightface_train_v2` (a unit test: it drives the step directly).
#![cfg(feature = "wgpu")]
// What was measured is printed for the record.
#![allow(clippy::print_stderr)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use burn::backend::{Autodiff, Wgpu};
use burn::prelude::*;
use burn_store::{ModuleStore, SafetensorsStore};
use common::LEARNING_SIZE;
use lvface_train::{create_run, train, train_local, Experiment, RunSummary, TrainConfig};
use lvface_vit::VitConfig;

type B = Autodiff<Wgpu>;

/// The embeddings of the vit-parity fixture agree with PyTorch's within this, as on the CPU:
/// every kernel here runs in f32 (lavapipe has no reduced-precision matrix units; on GPUs
/// whose matmuls cubecl runs as TF32 the bound would not hold).
const PARITY_TOL: f32 = 1e-4;

/// Two runs of the same training on wgpu (launched processes against in-process ranks) agree in
/// the loss of step 1, before any update, within this, relative...
const SAME_START_REL_TOL: f64 = 1e-5;

/// ...and (those, and a resumed run against an uninterrupted one) in every loss within this.
/// Not to the bit, as on the CPU: cubecl sums a whole
/// tensor (the loss's mean, the gradient norm) with atomic adds where the adapter has them, in
/// whatever order its threads arrive, so two runs of the same code differ in the last bits, and
/// training amplifies that, by jumps where a sample crosses a branch of the margin. Measured on
/// lavapipe, launched against in-process: at most 2.7e-7 up to step 11, then 6.8e-5 at step 12
/// and 5.8e-4 by step 22 (AMD EPYC, 2 cores); 3.0e-4 on another machine of that kind. Resumed:
/// 0 to 1.2e-7.
const SAME_RUN_REL_TOL: f64 = 1e-2;

fn vit_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../lvface-vit/tests/fixtures/vit-parity")
        .join(name)
}

fn fixture_tensor<const D: usize>(
    name: &str,
    device: &burn::backend::wgpu::WgpuDevice,
) -> Tensor<Wgpu, D> {
    let mut store = SafetensorsStore::from_file(vit_fixture("io.safetensors"));
    let snapshot = store.get_snapshot(name).unwrap().unwrap();
    Tensor::from_data(snapshot.to_data().unwrap(), device)
}

#[test]
fn vit_parity_fixture_holds_on_wgpu() {
    let device = Default::default();
    let config = VitConfig::vit_micro();
    for weights in ["weights.safetensors", "weights.pt"] {
        let model = config
            .init::<Wgpu>(&device)
            .load_weights(vit_fixture(weights))
            .unwrap();
        let output = model.forward(fixture_tensor::<4>("input", &device));
        assert_eq!(output.dims(), [3, 512]);
        let expected = fixture_tensor::<2>("output", &device);
        let diff: f32 = (output - expected).abs().max().into_scalar();
        eprintln!("{weights}: max abs difference from PyTorch {diff:e}");
        assert!(diff <= PARITY_TOL, "{weights}: {diff} > {PARITY_TOL}");
    }
}

/// A new run folder of the smoke config with `sets` applied.
fn smoke_dir(name: &str, sets: &[&str]) -> PathBuf {
    let smoke = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/smoke.toml");
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    let config = TrainConfig::load(&Experiment::File(smoke), &sets).unwrap();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("lvface-wgpu-{name}"));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
    create_run(&config, &dir).unwrap();
    dir
}

fn smoke_run(name: &str, sets: &[&str], ranks: usize) -> (PathBuf, RunSummary) {
    let dir = smoke_dir(name, sets);
    let summary = if ranks == 1 {
        train::<B>(&dir, &Default::default()).unwrap()
    } else {
        train_local::<B>(&dir, &[Default::default()], ranks).unwrap()
    };
    (dir, summary)
}

#[test]
fn a_compute_dtype_the_wgpu_device_lacks_is_an_error_and_f16_trains_where_it_has_it() {
    // WGSL has no bf16: without the check the first product panics inside cubecl.
    let dir = smoke_dir("bf16", &["vit.compute_dtype=\"bf16\""]);
    let error = format!("{:#}", train::<B>(&dir, &Default::default()).unwrap_err());
    assert!(
        error.contains("vit.compute_dtype = \"bf16\" is not supported by the"),
        "{error}"
    );

    let device = Default::default();
    if !<Wgpu as Backend>::supports_dtype(&device, burn::tensor::DType::F16) {
        eprintln!("this adapter has no f16; the f16 run is skipped");
        return;
    }
    let (_, summary) = smoke_run("f16", &["vit.compute_dtype=\"f16\""], 1);
    assert!(summary.finished);
    let losses: Vec<f64> = summary.losses.iter().map(|l| l.1).collect();
    assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");
    assert!(
        mean(&losses[8..12]) < 0.8 * mean(&losses[..4]),
        "the f16 run's early loss did not fall: {losses:?}"
    );
}

fn mean(losses: &[f64]) -> f64 {
    losses.iter().sum::<f64>() / losses.len() as f64
}

#[test]
fn the_smoke_run_learns_on_wgpu_and_resumes_exactly() {
    let (dir, full) = smoke_run("smoke", &[], 1);
    assert!(full.finished);
    assert_eq!(full.steps, 24);
    let losses: Vec<f64> = full.losses.iter().map(|l| l.1).collect();
    assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");
    assert!(
        mean(&losses[8..12]) < 0.8 * mean(&losses[..4]),
        "early-phase loss did not fall on wgpu: {losses:?}"
    );
    let sets: Vec<&str> = full.verification.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(sets, ["synthetic", "synthetic-masked"]);
    assert!(dir.join("report.json").is_file());

    // Stopped at step 6 and resumed: the later steps repeat the uninterrupted run's losses, to
    // rounding (see SAME_RUN_REL_TOL).
    let (split, first) = smoke_run(
        "smoke-split",
        &["run.stop_at_step=6", "run.checkpoint_every=3"],
        1,
    );
    assert_eq!(first.steps, 6);
    let resumed = train::<B>(&split, &Default::default()).unwrap();
    assert!(resumed.finished);
    assert_eq!(resumed.losses.len(), 18);
    assert_same_run("resumed", &resumed.losses, &full.losses[6..]);
}

#[test]
fn two_ranks_on_one_wgpu_device_learn_to_beat_raw_pixels() {
    // The sharded classifier and the in-process collectives over wgpu tensors, at the size where
    // the CPU run beats raw pixels by about 0.29 (tests/smoke.rs).
    let mut sets = LEARNING_SIZE.to_vec();
    sets[4] = "data.batch_size=16";
    let (_, two) = smoke_run("learns-2", &sets, 2);
    assert!(two.finished);
    let (_, report) = &two.verification[0];
    let (_, pixels) = &two.pixel_baseline[0];
    assert_eq!(report.pairs, 300);
    eprintln!(
        "2 ranks on wgpu: accuracy {:.4}, raw pixels {:.4}",
        report.accuracy, pixels.accuracy
    );
    assert!(
        report.accuracy > pixels.accuracy + 0.15,
        "accuracy {} against raw pixels' {}",
        report.accuracy,
        pixels.accuracy
    );
}

#[test]
fn two_launched_processes_on_wgpu_train_like_two_in_process_ranks() {
    // Two "nodes" on loopback (127.0.0.1, 127.0.0.2; Linux routes all of 127/8 to lo), one
    // process each on local rank 0, so both take the one adapter: the launched path (the
    // rendezvous, the TCP ring through host memory) on wgpu tensors.
    let sets = ["data.batch_size=8"];
    let (_, expected) = smoke_run("launch-in-process", &sets, 2);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("lvface-wgpu-launched");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let smoke = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/smoke.toml");
    let children: Vec<_> = (0..2)
        .map(|rank| {
            Command::new(env!("CARGO_BIN_EXE_lvface"))
                .args(["train", "--backend", "wgpu", "--config"])
                .arg(&smoke)
                .args(["--set", sets[0], "--out"])
                .arg(&dir)
                .env("RANK", rank.to_string())
                .env("WORLD_SIZE", "2")
                .env("LOCAL_RANK", "0")
                .env("LOCAL_WORLD_SIZE", "1")
                .env("MASTER_ADDR", "127.0.0.1")
                .env("MASTER_PORT", port.to_string())
                .env("LVFACE_NODE_ADDR", format!("127.0.0.{}", rank + 1))
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (rank, child) in children.into_iter().enumerate() {
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "rank {rank}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let launched: Vec<(u64, f64)> = std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|v| (v["step"].as_u64().unwrap(), v["loss"].as_f64().unwrap()))
        .collect();
    assert_same_run("launched", &launched, &expected.losses);
}

/// Asserts that `got` repeats `want`'s losses, step for step: step 1's within
/// [`SAME_START_REL_TOL`] (a resumed run's first step comes after updates whose last bits
/// differed, so only the wider bound holds there), all within [`SAME_RUN_REL_TOL`].
fn assert_same_run(label: &str, got: &[(u64, f64)], want: &[(u64, f64)]) {
    assert_eq!(got.len(), want.len(), "{label}: {got:?} against {want:?}");
    let relative: Vec<f64> = got
        .iter()
        .zip(want)
        .map(|(&(step, got), &(want_step, want))| {
            assert_eq!(step, want_step, "{label}");
            (got - want).abs() / want.abs()
        })
        .collect();
    let by_step: Vec<String> = relative.iter().map(|r| format!("{r:.1e}")).collect();
    eprintln!(
        "{label} on wgpu: relative loss differences by step {}",
        by_step.join(" ")
    );
    if got[0].0 == 1 {
        assert!(
            relative[0] <= SAME_START_REL_TOL,
            "{label}: step 1's loss is off by {:e}",
            relative[0]
        );
    }
    let worst = relative.iter().cloned().fold(0f64, f64::max);
    assert!(
        worst <= SAME_RUN_REL_TOL,
        "{label}: losses off by {worst:e}"
    );
}
