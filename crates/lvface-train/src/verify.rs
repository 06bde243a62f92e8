//! Verification of a trained backbone on `.bin` pair sets: embeddings of every image and of its
//! mirror image (insightface's flip-sum), scored by lvface-eval's 10-fold protocol; and the same
//! protocol on raw pixels, the floor any useful model must clear.

use anyhow::{Context, Result};
use burn::prelude::*;
use lvface_data::{decode_face, Batch, BinPairs};
use lvface_eval::{Embeddings, VerificationConfig, VerificationReport};
use lvface_vit::Vit;

/// The embeddings of a pair set's images and of their mirror images, in the set's order.
pub struct PairEmbeddings {
    /// `[2 x pairs, dim]`.
    pub embeddings: Embeddings,
    /// The same for horizontally flipped images.
    pub flipped: Embeddings,
}

/// Decodes the set's images at `size` and embeds them `batch` at a time with `model` in
/// evaluation mode.
pub fn embed_pairs<B: Backend>(
    model: &Vit<B>,
    pairs: &BinPairs,
    size: u32,
    batch: usize,
    device: &B::Device,
) -> Result<PairEmbeddings> {
    let (mut plain, mut flipped, mut dim) = (Vec::new(), Vec::new(), 0);
    for chunk in pixel_batches(pairs, size, batch) {
        let images = chunk?.to_tensor::<B>(device);
        let a = model.forward(images.clone());
        let b = model.forward(images.flip([3]));
        dim = a.dims()[1];
        plain.extend(values(a)?);
        flipped.extend(values(b)?);
    }
    Ok(PairEmbeddings {
        embeddings: Embeddings::new(plain, dim)?,
        flipped: Embeddings::new(flipped, dim)?,
    })
}

/// 10-fold verification accuracy (and the rest of insightface's figures) of flip-summed
/// embeddings, through lvface-eval.
pub fn verification(
    embeddings: &PairEmbeddings,
    issame: &[bool],
    config: &VerificationConfig,
) -> Result<VerificationReport> {
    Ok(config.init().evaluate_embeddings(
        &embeddings.embeddings,
        Some(&embeddings.flipped),
        issame,
    )?)
}

/// The same protocol with the normalised pixels themselves as embeddings.
pub fn pixel_baseline(
    pairs: &BinPairs,
    size: u32,
    config: &VerificationConfig,
) -> Result<VerificationReport> {
    let mut pixels = Vec::new();
    let mut dim = 0;
    for chunk in pixel_batches(pairs, size, 64) {
        let chunk = chunk?;
        dim = chunk.shape[1..].iter().product();
        pixels.extend(chunk.pixels);
    }
    let embeddings = Embeddings::new(pixels, dim)?;
    Ok(config
        .init()
        .evaluate_embeddings(&embeddings, None, &pairs.issame)?)
}

fn pixel_batches(
    pairs: &BinPairs,
    size: u32,
    batch: usize,
) -> impl Iterator<Item = Result<Batch>> + '_ {
    pairs
        .images
        .chunks(batch)
        .enumerate()
        .map(move |(b, chunk)| {
            let images = chunk
                .iter()
                .enumerate()
                .map(|(i, bytes)| {
                    let origin = format!("pair image {}", b * batch + i);
                    decode_face(bytes, &origin, size).context("decoding a verification image")
                })
                .collect::<Result<Vec<_>>>()?;
            let n = images.len();
            Ok(Batch::from_images(&images, vec![0; n], (0..n).collect()))
        })
}

pub(crate) fn values<B: Backend>(tensor: Tensor<B, 2>) -> Result<Vec<f32>> {
    tensor
        .into_data()
        .convert::<f32>()
        .to_vec()
        .map_err(|e| anyhow::anyhow!("reading embeddings back: {e:?}"))
}
