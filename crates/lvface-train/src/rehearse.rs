//! `lvface-train rehearse`: a recipe's classification layer and curriculum at the recipe's real
//! class count, with a tiny backbone, on in-process ranks. It runs the first phase on `--ranks`
//! ranks to a sharded checkpoint, then resumes the rest on `--resume-ranks` ranks (re-sharding
//! the classifier), and prints each part's peak memory next to `lvface_pfc::scaling`'s
//! prediction.
//!
//! The data set has the recipe's class count but few images (`write_shared_record_set`: one
//! record per class, every image of a class pointing at it), so a phase is a few steps. Each part
//! runs as a child process of this binary, so that its peak resident memory is its own.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use lvface_data::{encode_jpeg, even_class_starts, write_shared_record_set};
use lvface_loss::MarginLoss;
use lvface_pfc::scaling::{shard_memory, StepShape};
use lvface_pfc::CONSTANT_SHIFT_LIMIT;
use lvface_train::{Experiment, TrainConfig};

/// Arguments of `lvface-train rehearse`.
#[derive(clap::Args)]
pub struct Args {
    /// The recipe, e.g. configs/glint360k_vit_b_8gpu.toml.
    #[arg(long)]
    config: PathBuf,
    /// Classes of the recipe's data set (Glint360K 360232, WebFace42M 2059906).
    #[arg(long)]
    classes: usize,
    /// In-process ranks of the first phase.
    #[arg(long, default_value_t = 8)]
    ranks: u64,
    /// In-process ranks the rest of the curriculum resumes on (0: stop after the first phase).
    #[arg(long, default_value_t = 4)]
    resume_ranks: u64,
    /// Steps of each phase on `--ranks` ranks.
    #[arg(long, default_value_t = 2)]
    steps_per_phase: u64,
    /// Spread the images over the first this many classes only (default: all). One rank of a
    /// `W`-rank run is emulated by `--ranks 1 --classes C/W --set data.batch_size=W·b` with the
    /// distinct labels a shard sees, so that sampling keeps as many classes as it would there.
    #[arg(long)]
    positive_classes: Option<usize>,
    /// Override one key of the recipe (repeatable), e.g. `--set data.batch_size=64`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Folder for the data set and the run (must not hold a run yet).
    #[arg(long)]
    out: PathBuf,
}

/// What makes the backbone tiny and the run short; the classifier stays the recipe's.
const REHEARSAL: [&str; 13] = [
    "vit.image_size=32",
    "vit.patch_size=8",
    "vit.embed_dim=32",
    "vit.depth=1",
    "vit.num_heads=4",
    "vit.drop_path_rate=0.0",
    "vit.mask_ratio=0.0",
    "vit.grad_checkpoint=false",
    "vit.compute_dtype=f32",
    "optim.warmup_epochs=0.5",
    "eval.synthetic_pairs=false",
    "eval.every_epochs=0",
    "run.log_every=1",
];

/// Runs the rehearsal and prints one line per part.
pub fn run(args: Args) -> Result<()> {
    let experiment = Experiment::File(args.config.clone());
    let recipe = TrainConfig::load(&experiment, &args.sets)?;
    let phases = recipe.loss.curriculum.phases.len();
    let mut sets: Vec<String> = REHEARSAL.iter().map(|s| s.to_string()).collect();
    sets.push(format!("loss.curriculum.epochs={phases}"));
    sets.extend((0..phases).map(|i| format!("loss.curriculum.phases[{i}].start_epoch={i}")));
    sets.push("eval.bins=[]".into());
    sets.push("data.workers=2".into());
    sets.extend(args.sets.iter().cloned());
    let config = TrainConfig::load(&experiment, &sets)?;

    // One epoch (one phase) is `steps_per_phase` steps on `--ranks` ranks.
    let per_step =
        args.ranks * config.data.batch_size as u64 * config.optim.gradient_accumulation as u64;
    let images = args.steps_per_phase * per_step;
    let data = args.out.join("data");
    if !data.join("train.rec").exists() {
        let face = image::RgbImage::from_fn(32, 32, |x, y| {
            image::Rgb([(x * 8) as u8, (y * 8) as u8, 90])
        });
        let jpeg = encode_jpeg(&face, 90, "rehearsal face")?;
        let positives = args
            .positive_classes
            .unwrap_or(args.classes)
            .clamp(1, args.classes);
        let mut starts = even_class_starts(images, positives);
        starts.resize(args.classes + 1, images + 1);
        write_shared_record_set(&data, &starts, &jpeg, (32, 32))?;
    }
    sets.push(format!("data.rec={}", data.display()));
    let run_dir = args.out.join("run");
    if run_dir.exists() {
        bail!("{} exists; give a new --out", run_dir.display());
    }
    println!(
        "rehearsal of {} at {} classes: {images} images, batch {} x {} per rank, phases {phases}",
        args.config.display(),
        args.classes,
        config.data.batch_size,
        config.optim.gradient_accumulation
    );

    let exe = std::env::current_exe().context("finding this binary")?;
    let mut first = Command::new(&exe);
    first
        .args(["train", "--config"])
        .arg(&args.config)
        .arg("--out")
        .arg(&run_dir);
    for set in &sets {
        first.args(["--set", set]);
    }
    first.args([
        "--set",
        &format!("run.stop_at_step={}", args.steps_per_phase),
    ]);
    first.args(["--devices", &args.ranks.to_string()]);
    report("phase 1", &config, &args, args.ranks, 0..1, first)?;

    if args.resume_ranks == 0 {
        return Ok(());
    }
    let mut rest = Command::new(&exe);
    rest.args(["train", "--resume"]).arg(&run_dir);
    rest.args(["--devices", &args.resume_ranks.to_string()]);
    report(
        "resumed",
        &config,
        &args,
        args.resume_ranks,
        1..phases,
        rest,
    )?;
    Ok(())
}

/// Runs `command`, watching its peak resident memory, and prints it next to the prediction for
/// `ranks` ranks over the phases `phases`.
fn report(
    part: &str,
    config: &TrainConfig,
    args: &Args,
    ranks: u64,
    phases: std::ops::Range<usize>,
    mut command: Command,
) -> Result<()> {
    let start = Instant::now();
    let mut child = command
        .stdout(std::process::Stdio::null())
        .spawn()
        .with_context(|| format!("starting {command:?}"))?;
    let mut peak_kb = 0;
    let status = loop {
        peak_kb = peak_kb.max(peak_resident_kb(child.id()).unwrap_or(0));
        if let Some(status) = child.try_wait()? {
            break status;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    if !status.success() {
        bail!("the {part} part failed ({status}); its error is above");
    }
    let predicted: u64 = config.loss.curriculum.phases[phases.clone()]
        .iter()
        .map(|phase| {
            shard_memory(StepShape {
                world_size: ranks as usize,
                batch: config.data.batch_size,
                dim: config.vit.num_features,
                num_classes: args.classes,
                sample_rate: if phase.sampling {
                    phase.sample_rate
                } else {
                    1.0
                },
                prototypes: phase.prototypes,
                row_maximum: phase.margin_loss == MarginLoss::CurricularFace
                    || phase.scale() > CONSTANT_SHIFT_LIMIT,
                curricular_face: phase.margin_loss == MarginLoss::CurricularFace,
            })
            .total()
        })
        .max()
        .unwrap_or(0);
    let measured = peak_kb * 1024;
    let peak = if peak_kb == 0 {
        "process peak not sampled (the part ended within one 10 ms poll)".to_string()
    } else {
        format!(
            "process peak {:.2} GB ({:.2} GB a rank)",
            gb(measured),
            gb(measured / ranks)
        )
    };
    // `shard_memory` assumes labels spread over every class; with fewer positive classes the
    // sampled count differs, and the emulated run's own prediction is the one to compare with.
    let prediction = match args.positive_classes {
        None => format!(
            "predicted classifier {:.2} GB a rank ({:.2} GB for {ranks})",
            gb(predicted),
            gb(predicted * ranks)
        ),
        Some(p) => format!("{p} positive classes: compare with the emulated run's prediction"),
    };
    println!(
        "{part}: {ranks} ranks, {:.0} s, {peak}, {prediction}",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

fn gb(bytes: u64) -> f64 {
    bytes as f64 / 1e9
}

/// `VmHWM` of process `pid`, in kB.
fn peak_resident_kb(pid: u32) -> Option<u64> {
    let status =
        std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("status")).ok()?;
    status.lines().find_map(|l| {
        l.strip_prefix("VmHWM:")?
            .trim()
            .strip_suffix("kB")?
            .trim()
            .parse()
            .ok()
    })
}
