//! Reading and writing insightface-named state dicts.
//!
//! Every difference between insightface's keys and this crate's module paths is handled here:
//! - `feature.{0,1,2,3}` (an `nn.Sequential`) are the fields `feature.{fc0,bn1,fc2,bn3}`;
//! - a `module.` prefix (a state dict saved from a `DistributedDataParallel` wrapper) is dropped;
//! - LayerNorm/BatchNorm `weight`/`bias` are burn's `gamma`/`beta`, and Linear weights are stored
//!   transposed in burn: burn-store's PyTorch adapters do both;
//! - `num_batches_tracked` has no counterpart in burn and is ignored on load. It is not written:
//!   PyTorch's BatchNorm fills it in when a state dict lacks it, so saved files load there too.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn_store::{
    ApplyResult, BurnToPyTorchAdapter, KeyRemapper, ModuleStore, PyTorchToBurnAdapter,
    PytorchStore, SafetensorsStore,
};

use crate::error::{Result, VitError};
use crate::vit::Vit;

/// insightface key pattern -> module path, for loading.
const LOAD_RULES: [(&str, &str); 5] = [
    (r"^module\.", ""),
    (r"^feature\.0\.", "feature.fc0."),
    (r"^feature\.1\.", "feature.bn1."),
    (r"^feature\.2\.", "feature.fc2."),
    (r"^feature\.3\.", "feature.bn3."),
];

/// Module path pattern -> insightface key, for saving.
const SAVE_RULES: [(&str, &str); 4] = [
    (r"^feature\.fc0\.", "feature.0."),
    (r"^feature\.bn1\.", "feature.1."),
    (r"^feature\.fc2\.", "feature.2."),
    (r"^feature\.bn3\.", "feature.3."),
];

fn remapper(rules: &[(&str, &str)]) -> KeyRemapper {
    KeyRemapper::from_patterns(rules.to_vec()).expect("the remap patterns should be valid regexes")
}

enum Format {
    Safetensors,
    Pytorch,
}

fn format_of(path: &Path) -> Result<Format> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("safetensors") => Ok(Format::Safetensors),
        Some("pt" | "pth") => Ok(Format::Pytorch),
        _ => Err(VitError::UnsupportedFormat {
            path: path.to_path_buf(),
        }),
    }
}

impl<B: Backend> Vit<B> {
    /// Loads an insightface-named state dict from `.safetensors`, `.pt` or `.pth` (a bare state
    /// dict, or a checkpoint holding one under `state_dict`/`model`), BatchNorm running
    /// statistics included.
    ///
    /// Every missing key, unexpected key and wrongly shaped tensor is listed in the error.
    pub fn load_weights(mut self, path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let unreadable = |reason: String| VitError::UnreadableWeights {
            path: path.into(),
            reason,
        };
        // Validation is ours: the stores would stop at the first kind of problem.
        let result = match format_of(path)? {
            Format::Safetensors => {
                plausible_weights(&mut SafetensorsStore::from_file(path)).map_err(unreadable)?;
                SafetensorsStore::from_file(path)
                    .with_from_adapter(PyTorchToBurnAdapter)
                    .remap(remapper(&LOAD_RULES))
                    .validate(false)
                    .allow_partial(true)
                    .apply_to::<B, _>(&mut self)
                    .map_err(|e| unreadable(e.to_string()))?
            }
            Format::Pytorch => load_pytorch(&mut self, path).map_err(unreadable)?,
        };
        check(&result, path)?;
        Ok(self)
    }

    /// Saves the weights as safetensors with insightface's names and PyTorch's layouts, so
    /// `model.load_state_dict(safetensors.torch.load_weights(path))` works in PyTorch.
    ///
    /// The file is written next to its destination and renamed into place: a crash never leaves
    /// a truncated file under the final name.
    pub fn save_weights(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        if !matches!(format_of(path)?, Format::Safetensors) {
            return Err(VitError::Write {
                path: path.into(),
                reason: "only .safetensors is written".into(),
            });
        }
        let write_error = |reason: String| VitError::Write {
            path: path.into(),
            reason,
        };
        let tmp = temp_path(path);
        SafetensorsStore::from_file(&tmp)
            .with_to_adapter(BurnToPyTorchAdapter)
            .remap(remapper(&SAVE_RULES))
            .overwrite(true)
            .collect_from::<B, _>(self)
            .map_err(|e| {
                // A full disk leaves a partial file, which nothing would ever remove.
                let _ = std::fs::remove_file(&tmp);
                write_error(e.to_string())
            })?;
        std::fs::rename(&tmp, path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            write_error(e.to_string())
        })
    }
}

/// A `.pt` holds the state dict at the top level or, for training checkpoints, under a key.
fn load_pytorch<B: Backend>(
    vit: &mut Vit<B>,
    path: &Path,
) -> std::result::Result<ApplyResult, String> {
    let store = |key: Option<&str>| {
        let store = PytorchStore::from_file(path)
            .remap(remapper(&LOAD_RULES))
            .validate(false)
            .allow_partial(true);
        match key {
            Some(key) => store.with_top_level_key(key),
            None => store,
        }
    };
    let mut first_error = None;
    for key in [None, Some("state_dict"), Some("model")] {
        if let Err(e) = plausible_weights(&mut store(key)) {
            first_error.get_or_insert(e);
            continue;
        }
        match store(key).apply_to::<B, _>(vit) {
            Ok(result) if !result.applied.is_empty() || key == Some("model") => return Ok(result),
            Ok(_) => {}
            Err(e) => {
                first_error.get_or_insert(e.to_string());
            }
        }
    }
    Err(first_error.unwrap_or_else(|| "no tensors found".into()))
}

/// Refuses, before burn-store loads them, tensors that would make burn panic (both found by the
/// import fuzz targets): integer data for a float parameter ("Expected float dtype"; only
/// BatchNorm's `num_batches_tracked` counter is an integer in insightface's state dicts), and a
/// dimension of size 0, for which burn-store's `.pt` reader hands over a storage of another size.
fn plausible_weights<S: ModuleStore>(store: &mut S) -> std::result::Result<(), String>
where
    S::Error: std::fmt::Display,
{
    let snapshots = store.get_all_snapshots().map_err(|e| e.to_string())?;
    for (key, snapshot) in snapshots {
        if !snapshot.dtype.is_float() && !key.ends_with("num_batches_tracked") {
            return Err(format!(
                "tensor `{key}` holds {:?} values; the backbone's weights are floating point",
                snapshot.dtype
            ));
        }
        if snapshot.shape.contains(&0) {
            return Err(format!(
                "tensor `{key}` has shape {:?}; no weight of the backbone is empty",
                snapshot.shape.to_vec()
            ));
        }
    }
    Ok(())
}

fn check(result: &ApplyResult, path: &Path) -> Result<()> {
    let mut problems = Vec::new();
    for (key, _) in &result.missing {
        problems.push(format!("missing: {key}"));
    }
    for key in &result.unused {
        if !key.ends_with("num_batches_tracked") && !applied_under_burn_name(key, result) {
            problems.push(format!("unexpected: {key}"));
        }
    }
    for error in &result.errors {
        problems.push(format!("wrong: {error}"));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(VitError::WeightsMismatch {
            path: path.to_path_buf(),
            problems: problems.join("\n"),
        })
    }
}

/// burn-store lists a norm's `weight`/`bias` as unused even when it applied them as
/// `gamma`/`beta`; such a key was used.
fn applied_under_burn_name(key: &str, result: &ApplyResult) -> bool {
    let burn_name = if let Some(prefix) = key.strip_suffix(".weight") {
        format!("{prefix}.gamma")
    } else if let Some(prefix) = key.strip_suffix(".bias") {
        format!("{prefix}.beta")
    } else {
        return false;
    };
    result.applied.contains(&burn_name)
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp{}", std::process::id()));
    path.with_file_name(name)
}
