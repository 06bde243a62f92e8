//! Sharded checkpoints of class-indexed state: one safetensors file per rank and a manifest, read
//! back onto any number of ranks.
//!
//! Each rank writes the rows of its classes (centres, optimizer moments, prototypes, lengths:
//! any tensor whose first dimension is the class) to `shard-RRRRR-of-WWWWW.safetensors`; rank 0
//! then writes `manifest.json` naming the class ranges. Reading for rank `r` of `M` copies the
//! rows of `r`'s new range out of whichever old shards hold them, so a run saved on `N` devices
//! resumes on `M`. Rows are copied as bytes: re-sharding is exact.
//!
//! Every file goes to a temporary name and is renamed into place, and the manifest is written
//! last, so a checkpoint directory with a manifest is complete.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};

use crate::error::{PfcError, Result};
use crate::shard::ClassShard;

const FORMAT: &str = "lvface-pfc-shards/1";
const MANIFEST: &str = "manifest.json";

/// One class-indexed tensor of a shard: its first dimension is the shard's class count.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardTensor {
    /// The tensor's name, the same on every rank (`centres`, `prototypes`, ...).
    pub name: String,
    /// Its shape, `[num_local, ...]`.
    pub shape: Vec<usize>,
    /// Its values, row-major.
    pub values: Vec<f32>,
}

/// The manifest of a sharded checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Format tag.
    pub format: String,
    /// The classifier's class count.
    pub num_classes: usize,
    /// The number of shards.
    pub world_size: usize,
    /// The tensors every shard holds, with their shape after the class dimension.
    pub tensors: Vec<(String, Vec<usize>)>,
    /// The shards in rank order.
    pub shards: Vec<ShardEntry>,
}

/// One shard of a [`Manifest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardEntry {
    /// The file, relative to the checkpoint directory.
    pub file: String,
    /// The first class it holds.
    pub class_start: usize,
    /// How many classes it holds.
    pub num_local: usize,
}

fn shard_file(rank: usize, world: usize) -> String {
    format!("shard-{rank:05}-of-{world:05}.safetensors")
}

/// Writes `shard`'s tensors to its file in `dir` (created if missing).
pub fn save_shard(dir: &Path, shard: ClassShard, tensors: &[ShardTensor]) -> Result<()> {
    let path = dir.join(shard_file(shard.rank, shard.world_size));
    let fail = |reason: String| PfcError::CheckpointWrite {
        path: path.clone(),
        reason,
    };
    std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
    let mut bytes: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for t in tensors {
        if t.shape.first() != Some(&shard.num_local())
            || t.shape.iter().product::<usize>() != t.values.len()
        {
            return Err(fail(format!(
                "`{}` has shape {:?} and {} values; the shard holds {} classes",
                t.name,
                t.shape,
                t.values.len(),
                shard.num_local()
            )));
        }
        let raw = t.values.iter().flat_map(|v| v.to_le_bytes()).collect();
        bytes.push((t.name.clone(), t.shape.clone(), raw));
    }
    let views = bytes
        .iter()
        .map(|(name, shape, raw)| {
            TensorView::new(Dtype::F32, shape.clone(), raw)
                .map(|view| (name.clone(), view))
                .map_err(|e| fail(e.to_string()))
        })
        .collect::<Result<Vec<_>>>()?;
    let tmp = with_suffix(&path, ".tmp");
    let written = safetensors::serialize_to_file(views, None, &tmp)
        .map_err(|e| e.to_string())
        .and_then(|()| sync(&tmp))
        .and_then(|()| std::fs::rename(&tmp, &path).map_err(|e| e.to_string()));
    discard_on_error(written, &tmp).map_err(fail)
}

/// Writes the manifest of a checkpoint of `world_size` shards (after every shard is written).
pub fn write_manifest(
    dir: &Path,
    num_classes: usize,
    world_size: usize,
    tensors: &[ShardTensor],
) -> Result<()> {
    let manifest = Manifest {
        format: FORMAT.into(),
        num_classes,
        world_size,
        tensors: tensors
            .iter()
            .map(|t| (t.name.clone(), t.shape[1..].to_vec()))
            .collect(),
        shards: ClassShard::all(world_size, num_classes)
            .into_iter()
            .map(|s| ShardEntry {
                file: shard_file(s.rank, world_size),
                class_start: s.class_start(),
                num_local: s.num_local(),
            })
            .collect(),
    };
    let path = dir.join(MANIFEST);
    let fail = |reason: String| PfcError::CheckpointWrite {
        path: path.clone(),
        reason,
    };
    for entry in &manifest.shards {
        if !dir.join(&entry.file).is_file() {
            return Err(fail(format!("shard {} is missing", entry.file)));
        }
    }
    let text = serde_json::to_string_pretty(&manifest).map_err(|e| fail(e.to_string()))?;
    let tmp = with_suffix(&path, ".tmp");
    let written = std::fs::write(&tmp, text)
        .map_err(|e| e.to_string())
        .and_then(|()| sync(&tmp))
        .and_then(|()| std::fs::rename(&tmp, &path).map_err(|e| e.to_string()));
    discard_on_error(written, &tmp).map_err(fail)
}

/// Waits until the file at `path` is on the disk: a full disk or a device error that the
/// operating system reports late shows here, before the file is renamed into place.
fn sync(path: &Path) -> std::result::Result<(), String> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| e.to_string())
}

/// `written`, removing the temporary file `tmp` when it failed, so that a full disk leaves no
/// partial file behind.
fn discard_on_error(
    written: std::result::Result<(), String>,
    tmp: &Path,
) -> std::result::Result<(), String> {
    if written.is_err() {
        let _ = std::fs::remove_file(tmp);
    }
    written
}

/// Reads the manifest of a sharded checkpoint.
pub fn read_manifest(dir: &Path) -> Result<Manifest> {
    let path = dir.join(MANIFEST);
    let fail = |reason: String| PfcError::CheckpointRead {
        path: path.clone(),
        reason,
    };
    let text = std::fs::read_to_string(&path).map_err(|e| fail(e.to_string()))?;
    let manifest: Manifest = serde_json::from_str(&text).map_err(|e| fail(e.to_string()))?;
    if manifest.format != FORMAT {
        return Err(fail(format!(
            "format `{}`, expected `{FORMAT}`",
            manifest.format
        )));
    }
    let mut next = 0;
    for entry in &manifest.shards {
        if entry.class_start != next {
            return Err(fail(format!(
                "shard {} starts at class {}, expected {next}",
                entry.file, entry.class_start
            )));
        }
        next += entry.num_local;
    }
    if next != manifest.num_classes || manifest.shards.len() != manifest.world_size {
        return Err(fail(format!(
            "{} shards cover {next} classes; the manifest says {} shards and {} classes",
            manifest.shards.len(),
            manifest.world_size,
            manifest.num_classes
        )));
    }
    Ok(manifest)
}

/// The tensors of `shard` (any world size) out of the checkpoint in `dir` (any world size):
/// the rows of its classes, copied from the shards that hold them.
pub fn load_shard(dir: &Path, shard: ClassShard) -> Result<Vec<ShardTensor>> {
    let manifest = read_manifest(dir)?;
    if manifest.num_classes != shard.num_classes {
        return Err(PfcError::CheckpointRead {
            path: dir.join(MANIFEST),
            reason: format!(
                "the checkpoint has {} classes, the classifier {}",
                manifest.num_classes, shard.num_classes
            ),
        });
    }
    let wanted = shard.range();
    let mut out: Vec<ShardTensor> = manifest
        .tensors
        .iter()
        .map(|(name, rest)| {
            let mut shape = vec![shard.num_local()];
            shape.extend(rest);
            let len = shape.iter().product();
            ShardTensor {
                name: name.clone(),
                shape,
                values: Vec::with_capacity(len),
            }
        })
        .collect();
    for entry in &manifest.shards {
        let have = entry.class_start..entry.class_start + entry.num_local;
        let from = wanted.start.max(have.start);
        let to = wanted.end.min(have.end);
        if from >= to {
            continue;
        }
        let path = dir.join(&entry.file);
        let fail = |reason: String| PfcError::CheckpointRead {
            path: path.clone(),
            reason,
        };
        let buffer = std::fs::read(&path).map_err(|e| fail(e.to_string()))?;
        let file = SafeTensors::deserialize(&buffer).map_err(|e| fail(e.to_string()))?;
        for t in &mut out {
            let view = file
                .tensor(&t.name)
                .map_err(|e| fail(format!("`{}`: {e}", t.name)))?;
            let mut expected = vec![entry.num_local];
            expected.extend(&t.shape[1..]);
            if view.dtype() != Dtype::F32 || view.shape() != expected.as_slice() {
                return Err(fail(format!(
                    "`{}` is {:?} {:?}, expected F32 {expected:?}",
                    t.name,
                    view.dtype(),
                    view.shape()
                )));
            }
            let row: usize = t.shape[1..].iter().product();
            let bytes = &view.data()[(from - have.start) * row * 4..(to - have.start) * row * 4];
            t.values.extend(
                bytes
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            );
        }
    }
    Ok(out)
}

/// The tensors of a checkpoint by name, for callers that want a map.
pub fn by_name(tensors: Vec<ShardTensor>) -> HashMap<String, ShardTensor> {
    tensors.into_iter().map(|t| (t.name.clone(), t)).collect()
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}
