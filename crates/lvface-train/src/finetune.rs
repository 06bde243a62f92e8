//! Starting a run's backbone from trained weights (`finetune.backbone`): which file that is,
//! the check that it fits the configured model before anything is written, the load, and which
//! of the backbone's parameters stay frozen (`finetune.freeze_patch_embed`, `frozen_blocks`).
//!
//! A frozen parameter does not require a gradient, so burn's AdamW, which steps only the
//! parameters with one, never touches it: it stays the same to the bit, and backward does not
//! run through the frozen front of the network at all. Holding the whole backbone
//! (`freeze_backbone`, `classifier_warmup_steps`) is the step's business (`crate::step`): it
//! embeds in inference mode so that BatchNorm's running statistics stay too.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use burn::prelude::*;
use lvface_vit::Vit;

use crate::checkpoint;
use crate::config::{FinetuneConfig, TrainConfig};

/// The weights file `finetune.backbone` names: the file itself, or a run folder's latest
/// checkpoint's backbone. `None` when the key is empty.
pub fn backbone_source(config: &TrainConfig) -> Result<Option<PathBuf>> {
    let spec = config.finetune.backbone.as_str();
    if spec.is_empty() {
        return Ok(None);
    }
    let path = Path::new(spec);
    let file = if path.is_dir() {
        checkpoint::latest_backbone(path).with_context(|| {
            format!(
                "finetune.backbone = {spec} is a folder but not an lvface run with a checkpoint"
            )
        })?
    } else if path.is_file() {
        path.to_path_buf()
    } else {
        anyhow::bail!("finetune.backbone = {spec}: no such file or run folder");
    };
    Ok(Some(file))
}

/// Loads `finetune.backbone` into a model of the configured shape on the CPU, so that a wrong
/// file, another preset, a missing key or a shape mismatch stops the run before its folder is
/// created; the error names the keys and shapes.
#[cfg(feature = "cpu")]
pub(crate) fn check(config: &TrainConfig) -> Result<()> {
    if let Some(file) = backbone_source(config)? {
        let device = Default::default();
        config
            .vit
            .init::<burn::backend::Flex>(&device)
            .load_weights(&file)
            .with_context(|| mismatch(config, &file))?;
    }
    Ok(())
}

/// Built without the CPU backend there is nothing to load into before the run's devices
/// exist: the file's presence is checked here, its fit when the run starts.
#[cfg(not(feature = "cpu"))]
pub(crate) fn check(config: &TrainConfig) -> Result<()> {
    backbone_source(config).map(|_| ())
}

/// `backbone` with the weights of `finetune.backbone`, if the key is set.
pub(crate) fn start<B: Backend>(config: &TrainConfig, backbone: Vit<B>) -> Result<Vit<B>> {
    match backbone_source(config)? {
        Some(file) => backbone
            .load_weights(&file)
            .with_context(|| mismatch(config, &file)),
        None => Ok(backbone),
    }
}

/// `backbone` with the parameters `config` freezes marked as needing no gradient. Applied after
/// every load (fresh weights, `finetune.backbone` or a checkpoint), since a load does not keep
/// the mark.
pub(crate) fn freeze<B: Backend>(config: &FinetuneConfig, mut backbone: Vit<B>) -> Vit<B> {
    if config.freeze_patch_embed || config.frozen_blocks > 0 {
        backbone.patch_embed = backbone.patch_embed.no_grad();
        backbone.pos_embed = backbone.pos_embed.set_require_grad(false);
    }
    for block in backbone.blocks.iter_mut().take(config.frozen_blocks) {
        *block = block.clone().no_grad();
    }
    backbone
}

fn mismatch(config: &TrainConfig, file: &Path) -> String {
    let vit = &config.vit;
    format!(
        "finetune.backbone: {} does not fit the configured backbone (width {}, depth {}, {} \
         heads, patch {} on {} px, {}-d embedding)",
        file.display(),
        vit.embed_dim,
        vit.depth,
        vit.num_heads,
        vit.patch_size,
        vit.image_size,
        vit.num_features
    )
}
