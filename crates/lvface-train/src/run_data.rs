//! The data of a run as one rank reads it: the synthetic identities rendered into the run
//! folder once (when `data.rec` is empty), this rank's share of the training set, and the
//! verification pair sets.
// Rendering says where the images went.
#![allow(clippy::print_stdout)]

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use lvface_data::{BinPairs, FaceSource, Loader, LoaderConfig, RecordDataset, SyntheticFaces};

use crate::config::TrainConfig;
use crate::run_folder::{SYNTHETIC_MASKED_PAIRS, SYNTHETIC_PAIRS};
use crate::source::{check_class_count, open_training_source};

/// One rank's training data and every rank's pair sets.
pub(crate) struct RunData {
    /// This rank's batches.
    pub loader: Loader,
    /// Classes of the whole training set.
    pub classes: usize,
    /// Images of the whole training set.
    pub images: usize,
    /// The verification pair sets, by name.
    pub pairs: Vec<(String, BinPairs)>,
}

/// Renders the synthetic training set and its verification pairs into `RUN_DIR/data/` the
/// first time (nothing when the run trains on `data.rec`).
pub(crate) fn render_synthetic(config: &TrainConfig, run_dir: &Path) -> Result<()> {
    let dir = run_dir.join("data");
    if !config.data.rec.is_empty() || dir.exists() {
        return Ok(());
    }
    let tmp = run_dir.join("data.tmp");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    let faces = SyntheticFaces::new(config.data.synthetic.clone())?;
    let (images, classes) = faces.write_rec(&tmp)?;
    faces.write_bin(&tmp.join(SYNTHETIC_PAIRS))?;
    faces.write_masked_bin(&tmp.join(SYNTHETIC_MASKED_PAIRS))?;
    std::fs::rename(&tmp, &dir)?;
    println!(
        "rendered {images} synthetic images of {classes} identities into {}",
        dir.display()
    );
    Ok(())
}

/// The training set (rank `rank`'s share of it) and the verification pair sets.
pub(crate) fn open_data(
    config: &TrainConfig,
    run_dir: &Path,
    rank: usize,
    world: usize,
) -> Result<RunData> {
    let mut pairs = Vec::new();
    let (source, classes): (Arc<dyn FaceSource>, usize) = if config.data.rec.is_empty() {
        let dir = run_dir.join("data");
        let bin = dir.join(SYNTHETIC_PAIRS);
        if config.eval.synthetic_pairs && config.data.synthetic.pairs > 0 {
            pairs.push(("synthetic".to_string(), BinPairs::read(&bin)?));
            let masked = dir.join(SYNTHETIC_MASKED_PAIRS);
            // Run folders rendered before masked pairs existed have none.
            if masked.is_file() {
                pairs.push(("synthetic-masked".to_string(), BinPairs::read(&masked)?));
            }
        }
        let source = RecordDataset::open(&dir)?;
        let classes = source
            .num_classes()
            .with_context(|| format!("{} does not say how many classes it has", dir.display()))?;
        (Arc::new(source), classes)
    } else {
        open_training_source(&config.data.rec)?
    };
    check_class_count(classes, &run_dir.join("data").display().to_string())?;
    for bin in &config.eval.bins {
        let name = crate::evaluate::set_name(Path::new(bin));
        let set = BinPairs::read(Path::new(bin)).with_context(|| format!("eval.bins: {bin}"))?;
        pairs.push((name, set));
    }
    let images = source.len();
    let loader_config = LoaderConfig {
        batch_size: config.data.batch_size,
        workers: config.data.workers,
        prefetch: config.data.prefetch,
        seed: config.run.seed,
        shuffle: true,
        image_size: config.vit.image_size as u32,
        on_corrupt: config.data.on_corrupt,
        augment: config.data.augment.clone(),
    };
    Ok(RunData {
        loader: Loader::new(source, loader_config, rank, world)?,
        classes,
        images,
        pairs,
    })
}
