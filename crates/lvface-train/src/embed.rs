//! Embeddings of single face images, and the same/different decision between two of them.
//!
//! Faces are expected aligned at the model's input size (112x112 for every insightface ViT);
//! another size is resized (bilinear) and reported, since a resized crop is not an aligned one.
//! Pixels are normalised as in training, `(pixel / 255 - 0.5) / 0.5`.

use std::path::Path;

use anyhow::{bail, Context, Result};
use burn::prelude::*;
use lvface_data::{decode_rgb, resize_to, Batch};
use lvface_eval::EvalReport;
use lvface_vit::Vit;

/// How embeddings are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmbedOptions {
    /// Add the embedding of the horizontally mirrored image (insightface's flip-sum).
    pub flip: bool,
    /// L2-normalise each embedding (after the flip-sum).
    pub normalize: bool,
    /// Images per forward pass.
    pub batch_size: usize,
}

/// A decoded face, at the model's input size.
pub struct Face {
    /// The RGB pixels.
    pub image: image::RgbImage,
    /// The size of the file when it had to be resized, `(width, height)`.
    pub resized_from: Option<(u32, u32)>,
}

/// Reads the JPEG or PNG face at `path`, resized to `size` x `size` when it is another size.
pub fn read_face(path: &Path, size: u32) -> Result<Face> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let image = decode_rgb(&bytes, &path.display().to_string())?;
    let dims = image.dimensions();
    Ok(Face {
        image: resize_to(image, size),
        resized_from: (dims != (size, size)).then_some(dims),
    })
}

/// The embeddings of `images` (all of the model's input size), one row each, `[n, dim]`
/// row-major, computed by `vit` in evaluation mode (give it an inner, non-autodiff backend).
pub fn embed_faces<B: Backend>(
    vit: &Vit<B>,
    images: &[image::RgbImage],
    options: &EmbedOptions,
    device: &B::Device,
) -> Result<(Vec<f32>, usize)> {
    if options.batch_size == 0 {
        bail!("the batch size must be positive");
    }
    let mut rows = Vec::new();
    let mut dim = 0;
    for chunk in images.chunks(options.batch_size) {
        let n = chunk.len();
        let input = Batch::from_images(chunk, vec![0; n], (0..n).collect()).to_tensor::<B>(device);
        let mut embeddings = vit.forward(input.clone());
        if options.flip {
            embeddings = embeddings + vit.forward(input.flip([3]));
        }
        if options.normalize {
            // A zero embedding stays zero instead of becoming NaN.
            let norm = embeddings
                .clone()
                .powi_scalar(2)
                .sum_dim(1)
                .sqrt()
                .clamp_min(1e-12);
            embeddings = embeddings / norm;
        }
        dim = embeddings.dims()[1];
        rows.extend(
            embeddings
                .into_data()
                .convert::<f32>()
                .to_vec::<f32>()
                .map_err(|e| anyhow::anyhow!("reading embeddings back: {e:?}"))?,
        );
    }
    Ok((rows, dim))
}

/// Cosine similarity of two embeddings (0 when either is zero).
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let denominator = norm(a) * norm(b);
    if denominator == 0.0 {
        0.0
    } else {
        dot / denominator
    }
}

/// Writes `[rows, dim]` float32 values as a NumPy `.npy` file (format 1.0, little-endian, C
/// order), atomically.
pub fn write_npy(path: &Path, values: &[f32], rows: usize, dim: usize) -> Result<()> {
    assert_eq!(values.len(), rows * dim, "values should fill [rows, dim]");
    let mut header =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {dim}), }}");
    // Magic (6) + version (2) + header length (2) + header + '\n' is a multiple of 64.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((header.len() as u16).to_le_bytes());
    bytes.extend(header.as_bytes());
    bytes.extend(values.iter().flat_map(|v| v.to_le_bytes()));
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    std::fs::write(&tmp, &bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming {}", tmp.display()))
}

/// A decision threshold on the cosine similarity taken from an evaluation report.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportThreshold {
    /// Accept "same person" when the cosine is at or above this.
    pub threshold: f64,
    /// The pair set it was measured on.
    pub set: String,
    /// The target FAR.
    pub far: f64,
    /// Whether the set had enough impostor pairs to show that FAR (`far * impostors >= 1`).
    pub resolved: bool,
}

/// The threshold at `far` in the evaluation report at `path` (`report.json` of `cargo xtask
/// eval`): the first set with TAR@FAR figures, and there the threshold of the largest TAR whose
/// FAR is at most `far` (`threshold_at_or_below`). Those thresholds are cosines of flip-summed
/// embeddings. `None` when no set has a threshold at that FAR.
pub fn threshold_from_report(path: &Path, far: f64) -> Result<Option<ReportThreshold>> {
    let report = EvalReport::read_json(path)?;
    Ok(report.sets.iter().find_map(|set| {
        let point = set.tar_far.as_ref()?.at(far)?;
        Some(ReportThreshold {
            threshold: point.threshold_at_or_below?,
            set: set.name.clone(),
            far,
            resolved: point.resolved,
        })
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_of_known_vectors() {
        assert!((cosine(&[1.0, 0.0], &[1.0, 0.0]) - 1.0).abs() < 1e-12);
        assert!(cosine(&[1.0, 0.0], &[0.0, 2.0]).abs() < 1e-12);
        assert!((cosine(&[1.0, 1.0], &[-3.0, -3.0]) + 1.0).abs() < 1e-12);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 0.0]), 0.0);
    }

    #[test]
    fn npy_round_trips_through_the_eval_reader() {
        let dir = std::env::temp_dir().join(format!("lvface-npy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("emb.npy");
        let values: Vec<f32> = (0..15).map(|i| i as f32 * 0.5 - 2.0).collect();
        write_npy(&path, &values, 3, 5).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!((bytes.len() - 15 * 4) % 64, 0, "header padded to 64 bytes");
        let array = lvface_eval::NpyArray::read(&path).unwrap();
        assert_eq!(array.shape, [3, 5]);
        assert_eq!(array.values, values);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
