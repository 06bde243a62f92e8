//! `cargo xtask`: lvface's orchestration, as ordinary Rust.
//!
//! xtask depends on no burn crate, so it builds in seconds; the heavy work runs in the
//! `lvface-train` binary, built in release mode with the backend's feature.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod bench;
mod data;
mod deploy;
mod eval;
mod probe;
mod rehearse;
mod train;
mod util;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// lvface tasks.
#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Train a face ViT with the LVFace curriculum and verify it (default: the CPU demo on
    /// synthetic identities); runs go to a fresh folder under runs/ unless --out is given.
    Train(train::Args),
    /// Evaluate a run, a weights file (with --model) or embeddings computed elsewhere on .bin pair
    /// sets (and a model on IJB-B/C folders): one line per set, report.json, report.md and ROC
    /// plots.
    Eval(eval::Args),
    /// Build a backbone on a backend, embed random batches, print parameters and images/s;
    /// with --train-step, time whole training steps instead.
    Probe(probe::Args),
    /// Rehearse a recipe's classifier and curriculum at its real class count with a tiny
    /// backbone on in-process ranks, with a resume on another rank count (`lvface-train
    /// rehearse --help`).
    Rehearse(rehearse::Args),
    /// Run the criterion benchmarks (`benches/`) on the default CPU backend.
    Bench(bench::Args),
    /// Write a backbone as ONNX ([N,3,112,112] -> [N,512], opset 17) and check the MFR rules.
    Export(deploy::ExportArgs),
    /// Turn an insightface / LVFace .pt backbone into lvface weights (.safetensors).
    Import(deploy::ImportArgs),
    /// Embed aligned face images into an .npy file (raw, or --flip / --normalize).
    Embed(deploy::EmbedArgs),
    /// Cosine similarity of two faces and the same/different decision at a threshold.
    Verify(deploy::VerifyArgs),
    /// Data sets: inspect a RecordIO set or .bin file, pack an image folder into RecordIO,
    /// render synthetic identities (runs `lvface-train data`).
    Data {
        #[command(subcommand)]
        command: data::Args,
    },
}

fn main() -> Result<()> {
    match Cli::parse().task {
        Task::Train(args) => train::run(args),
        Task::Eval(args) => eval::run(args),
        Task::Probe(args) => probe::run(args),
        Task::Rehearse(args) => rehearse::run(args),
        Task::Bench(args) => bench::run(args),
        Task::Export(args) => deploy::run(deploy::Deploy::Export(args)),
        Task::Import(args) => deploy::run(deploy::Deploy::Import(args)),
        Task::Embed(args) => deploy::run(deploy::Deploy::Embed(args)),
        Task::Verify(args) => deploy::run(deploy::Deploy::Verify(args)),
        Task::Data { command } => data::run(command),
    }
}
