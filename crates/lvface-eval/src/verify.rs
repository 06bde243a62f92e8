//! Embedding a set of face images with any model, with insightface's flip test
//! (`eval/verification.py`, `test`): every batch is embedded as is and mirrored left-right, and
//! the two embeddings are kept apart so that XNorm can be taken over both; the score then uses
//! their sum ([`FlipEmbeddings::summed`]), L2-normalised by the protocol.

use std::fmt::Display;

use crate::embeddings::Embeddings;
use crate::error::{EvalError, Result};

/// A batch handed to the model: `[batch, channels, height, width]` f32, row-major (NCHW), with
/// the pixel normalisation of the caller (insightface: `(x / 255 - 0.5) / 0.5`, RGB).
#[derive(Debug, Clone, Copy)]
pub struct ImageBatch<'a> {
    /// The values, `batch * channels * height * width` of them.
    pub data: &'a [f32],
    /// Images in the batch.
    pub batch: usize,
    /// Channels per image.
    pub channels: usize,
    /// Rows per image.
    pub height: usize,
    /// Columns per image.
    pub width: usize,
}

/// Embeddings of the original and of the mirrored images, in image order.
#[derive(Debug, Clone, PartialEq)]
pub struct FlipEmbeddings {
    /// Embeddings of the images as given.
    pub original: Embeddings,
    /// Embeddings of the images mirrored left-right.
    pub flipped: Embeddings,
}

impl FlipEmbeddings {
    /// `original + flipped`: insightface's flip-sum, before L2 normalisation.
    pub fn summed(&self) -> Result<Embeddings> {
        self.original.sum(&self.flipped)
    }
}

/// Mirrors every `[height, width]` plane of an NCHW buffer left-right.
pub fn flip_horizontal(data: &[f32], width: usize) -> Vec<f32> {
    let mut out = data.to_vec();
    for row in out.chunks_exact_mut(width) {
        row.reverse();
    }
    out
}

/// Embeds `images` (NCHW f32, `[count, channels, height, width]` with `shape = [channels,
/// height, width]`) in batches of `batch_size`, each batch as is and mirrored.
///
/// `model` maps a batch to `batch * dim` embedding values (row-major); every batch must give
/// the same `dim`. Its error, or a wrong output size, becomes [`EvalError::Model`] naming the
/// images of the batch.
pub fn embed_with_flip<F, E>(
    images: &[f32],
    shape: [usize; 3],
    batch_size: usize,
    mut model: F,
) -> Result<FlipEmbeddings>
where
    F: FnMut(&ImageBatch<'_>) -> std::result::Result<Vec<f32>, E>,
    E: Display,
{
    let [channels, height, width] = shape;
    let per_image = channels * height * width;
    if per_image == 0 || batch_size == 0 {
        return Err(EvalError::invalid(
            "image shape and batch size",
            "must be positive",
            format!("{shape:?}, batch {batch_size}"),
        ));
    }
    if !images.len().is_multiple_of(per_image) {
        return Err(EvalError::shape(
            format!("image values (a multiple of {per_image})"),
            images.len().div_ceil(per_image) * per_image,
            images.len(),
        ));
    }
    let count = images.len() / per_image;
    let mut dim = None;
    let mut original = Vec::new();
    let mut flipped = Vec::new();
    for start in (0..count).step_by(batch_size) {
        let end = (start + batch_size).min(count);
        let data = &images[start * per_image..end * per_image];
        let mirrored = flip_horizontal(data, width);
        for (buffer, out) in [(data, &mut original), (&mirrored[..], &mut flipped)] {
            let batch = ImageBatch {
                data: buffer,
                batch: end - start,
                channels,
                height,
                width,
            };
            let values = model(&batch).map_err(|e| EvalError::Model {
                start,
                end,
                reason: e.to_string(),
            })?;
            let batch_dim = values.len() / (end - start);
            if values.is_empty() || values.len() % (end - start) != 0 {
                return Err(EvalError::Model {
                    start,
                    end,
                    reason: format!("{} values is not a whole embedding per image", values.len()),
                });
            }
            if *dim.get_or_insert(batch_dim) != batch_dim {
                return Err(EvalError::Model {
                    start,
                    end,
                    reason: format!("embedding dim {batch_dim}, earlier batches gave {dim:?}"),
                });
            }
            out.extend(values);
        }
    }
    let dim = dim.unwrap_or(1);
    Ok(FlipEmbeddings {
        original: Embeddings::new(original, dim)?,
        flipped: Embeddings::new(flipped, dim)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Features of a 1×2×3 image: sum of the left column, sum of the right column.
    fn model(batch: &ImageBatch<'_>) -> std::result::Result<Vec<f32>, String> {
        let per = batch.channels * batch.height * batch.width;
        Ok(batch
            .data
            .chunks_exact(per)
            .flat_map(|img| {
                let left: f32 = img.chunks_exact(batch.width).map(|r| r[0]).sum();
                let right: f32 = img
                    .chunks_exact(batch.width)
                    .map(|r| r[batch.width - 1])
                    .sum();
                [left, right]
            })
            .collect())
    }

    #[test]
    fn flip_mirrors_rows_and_embeddings_follow() {
        assert_eq!(
            flip_horizontal(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 3),
            vec![3.0, 2.0, 1.0, 6.0, 5.0, 4.0]
        );
        // 5 images of shape [1, 2, 3]; image k has row 0 = [k, 0, 1] and row 1 = [2, 0, k].
        let mut images = vec![];
        for k in 0..5 {
            let k = k as f32;
            images.extend([k, 0.0, 1.0, 2.0, 0.0, k]);
        }
        let mut calls = vec![];
        let e = embed_with_flip(&images, [1, 2, 3], 2, |b: &ImageBatch<'_>| {
            calls.push(b.batch);
            model(b)
        })
        .unwrap();
        // Batches of 2, 2, 1, each embedded twice.
        assert_eq!(calls, vec![2, 2, 2, 2, 1, 1]);
        for k in 0..5 {
            let k = k as f32;
            assert_eq!(e.original.row(k as usize), &[k + 2.0, 1.0 + k]);
            assert_eq!(e.flipped.row(k as usize), &[1.0 + k, k + 2.0]);
        }
        assert_eq!(e.summed().unwrap().row(3), &[9.0, 9.0]);
    }

    #[test]
    fn model_failures_name_the_batch() {
        let images = vec![0.0; 4 * 6];
        let err = embed_with_flip(&images, [1, 2, 3], 3, |b: &ImageBatch<'_>| {
            if b.batch == 1 {
                Err("out of memory")
            } else {
                Ok(vec![0.0; b.batch * 4])
            }
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "model on images 3..4: out of memory");
        let err = embed_with_flip(&images, [1, 2, 3], 3, |b: &ImageBatch<'_>| {
            Ok::<_, String>(vec![0.0; b.batch * 4 + 1])
        })
        .unwrap_err();
        assert!(
            matches!(
                err,
                EvalError::Model {
                    start: 0,
                    end: 3,
                    ..
                }
            ),
            "{err}"
        );
        let err = embed_with_flip(&images, [1, 2, 3], 3, |b: &ImageBatch<'_>| {
            Ok::<_, String>(vec![0.0; b.batch * if b.batch == 3 { 4 } else { 2 }])
        })
        .unwrap_err();
        assert!(err.to_string().contains("earlier batches"), "{err}");
        assert!(embed_with_flip(&images[..5], [1, 2, 3], 3, model).is_err());
    }
}
