//! Importing insightface and LVFace backbones: [`infer_config`] reads a state dict's tensor
//! shapes and names the ViT they belong to; [`import_weights`] loads the file through
//! lvface-vit (every key checked) and writes lvface's weights file.
//!
//! What the shapes tell: width `D` and tokens `T` (`pos_embed` `[1, T, D]`), patch size
//! (`patch_embed.proj.weight` `[D, 3, p, p]`), depth (the `blocks.{i}` indices), MLP ratio
//! (`blocks.0.mlp.fc1.weight` `[r * D, D]`) and embedding width (`feature.2.weight` `[F, D]`).
//! What they do not tell: the number of heads (`qkv` is `[3D, D]` for any count), taken as 8 as
//! in every insightface configuration; the image side, taken as 112 when `112 / p` patches fit
//! the grid (insightface drops the remainder) and as `grid * p` otherwise; and the training-only
//! settings (drop path, masking), taken from the matching preset.

use std::collections::BTreeMap;
use std::path::Path;

use burn::prelude::*;
use burn_store::{ModuleStore, PytorchStore, SafetensorsStore};
use lvface_vit::VitConfig;

use crate::error::{ExportError, Result};

/// More blocks than any insightface ViT has (vit_h: 48), so a key name cannot ask for more.
const MAX_DEPTH: usize = 256;

/// Heads of every insightface ViT; shapes cannot tell.
pub const DEFAULT_HEADS: usize = 8;

/// A configuration read off a state dict.
#[derive(Debug, Clone, PartialEq)]
pub struct InferredConfig {
    /// The architecture.
    pub config: VitConfig,
    /// The insightface preset with these shapes, if any (the first in
    /// [`VitConfig::PRESETS`] order: `vit_t` rather than `vit_t_dp005_mask0`, which differ only
    /// in training settings).
    pub preset: Option<&'static str>,
}

/// Infers the ViT of the state dict in `path` (`.pt`/`.pth`, bare or under `state_dict` or
/// `model`, with or without a DDP `module.` prefix; or `.safetensors`).
pub fn infer_config(path: &Path) -> Result<InferredConfig> {
    let shapes = tensor_shapes(path)?;
    let fail = |reason: String| ExportError::Infer {
        path: path.to_path_buf(),
        reason,
    };
    let get = |key: &str, rank: usize| -> Result<&Vec<usize>> {
        match shapes.get(key) {
            Some(shape) if shape.len() == rank => Ok(shape),
            Some(shape) => Err(fail(format!(
                "{key} has shape {shape:?}, expected rank {rank}"
            ))),
            None => Err(fail(format!("no tensor {key}"))),
        }
    };
    let pos = get("pos_embed", 3)?;
    let (tokens, dim) = (pos[1], pos[2]);
    let patch = get("patch_embed.proj.weight", 4)?;
    if patch[0] != dim || patch[1] != 3 || patch[2] != patch[3] {
        return Err(fail(format!(
            "patch_embed.proj.weight has shape {patch:?}, expected [{dim}, 3, p, p]"
        )));
    }
    let patch_size = patch[2];
    if dim == 0 || tokens == 0 || patch_size == 0 || patch_size > 112 {
        return Err(fail(format!(
            "pos_embed {pos:?} and patch_embed.proj.weight {patch:?} describe no ViT (width, \
             tokens and patch side must be positive, the patch at most 112)"
        )));
    }
    let grid = (tokens as f64).sqrt().round() as usize;
    if grid * grid != tokens {
        return Err(fail(format!("{tokens} tokens do not form a square grid")));
    }
    let image_size = if 112 / patch_size == grid {
        112
    } else {
        grid * patch_size
    };
    let deepest = shapes
        .keys()
        .filter_map(|k| {
            let index = k.strip_prefix("blocks.")?.split('.').next()?;
            Some((index.parse::<usize>().ok()?, k))
        })
        .max();
    let depth = match deepest {
        None => return Err(fail("no blocks.{i} tensors".into())),
        // The depth is read off a key name; a name is no reason to allocate without bound.
        Some((last, key)) if last >= MAX_DEPTH => {
            return Err(fail(format!(
                "{key} names block {last}; insightface's ViTs have at most {MAX_DEPTH} blocks"
            )))
        }
        Some((last, _)) => last + 1,
    };
    let hidden = get("blocks.0.mlp.fc1.weight", 2)?[0];
    if hidden % dim != 0 {
        return Err(fail(format!(
            "MLP width {hidden} is not a multiple of {dim}"
        )));
    }
    let num_features = get("feature.2.weight", 2)?[0];

    let shape_of = |c: &VitConfig| {
        (
            c.image_size,
            c.patch_size,
            c.embed_dim,
            c.depth,
            c.num_heads,
            c.mlp_ratio,
            c.num_features,
        )
    };
    let config = VitConfig {
        image_size,
        patch_size,
        embed_dim: dim,
        depth,
        num_heads: DEFAULT_HEADS,
        mlp_ratio: hidden / dim,
        num_features,
        drop_path_rate: 0.0,
        mask_ratio: 0.0,
        ..VitConfig::vit_t()
    };
    let preset = VitConfig::PRESETS
        .into_iter()
        .find(|name| VitConfig::preset(name).is_ok_and(|p| shape_of(&p) == shape_of(&config)));
    let config = match preset {
        Some(name) => VitConfig::preset(name)?,
        None => config,
    };
    config.validate()?;
    Ok(InferredConfig { config, preset })
}

/// Loads the backbone in `source` (any format lvface-vit reads) as `config`, checking every key
/// and shape, and writes it to `dest` (`.safetensors`, insightface names, PyTorch layouts).
pub fn import_weights<B: Backend>(
    source: &Path,
    dest: &Path,
    config: &VitConfig,
    device: &B::Device,
) -> Result<()> {
    config.validate()?;
    let vit = config.init::<B>(device).load_weights(source)?;
    vit.save_weights(dest)?;
    Ok(())
}

/// Every tensor's shape, under insightface's key (a DDP `module.` prefix removed).
fn tensor_shapes(path: &Path) -> Result<BTreeMap<String, Vec<usize>>> {
    let read_error = |reason: String| ExportError::Read {
        path: path.to_path_buf(),
        reason,
    };
    let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let entries = match extension {
        "safetensors" => {
            snapshot_shapes(&mut SafetensorsStore::from_file(path)).map_err(read_error)?
        }
        "pt" | "pth" => {
            // A bare state dict, or a training checkpoint holding one under a key.
            let mut first_error = None;
            let mut found = None;
            for key in [None, Some("state_dict"), Some("model")] {
                let store = PytorchStore::from_file(path);
                let mut store = match key {
                    Some(key) => store.with_top_level_key(key),
                    None => store,
                };
                match snapshot_shapes(&mut store) {
                    Ok(entries) if entries.iter().any(|(k, _)| k.ends_with("pos_embed")) => {
                        found = Some(entries);
                        break;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
            found.ok_or_else(|| {
                read_error(first_error.unwrap_or_else(|| "no ViT state dict found".into()))
            })?
        }
        _ => {
            return Err(read_error(
                "unsupported format (expected .pt, .pth or .safetensors)".into(),
            ))
        }
    };
    Ok(entries
        .into_iter()
        .map(|(key, shape)| match key.strip_prefix("module.") {
            Some(stripped) => (stripped.to_string(), shape),
            None => (key, shape),
        })
        .collect())
}

fn snapshot_shapes<S: ModuleStore>(
    store: &mut S,
) -> std::result::Result<Vec<(String, Vec<usize>)>, String>
where
    S::Error: std::fmt::Display,
{
    let snapshots = store.get_all_snapshots().map_err(|e| e.to_string())?;
    Ok(snapshots
        .iter()
        .map(|(key, snapshot)| (key.clone(), snapshot.shape.to_vec()))
        .collect())
}
