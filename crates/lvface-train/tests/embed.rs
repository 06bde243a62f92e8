//! embed / verify on synthetic identities: same-identity pairs score above different ones, and
//! the decision threshold read back from an evaluation report separates them.
//!
//! The backbone is the `vit-parity` fixture's (width 64, depth 2: random PyTorch weights, not a
//! trained model). A random ViT is a fixed non-linear projection of the pixels, so two images of
//! one synthetic identity stay closer than two identities; the test checks the embed/verify
//! plumbing (decoding, flip-sum, cosine, threshold), not recognition quality.
#![allow(clippy::print_stderr)] // The measured means are printed for the record.

use std::path::PathBuf;

use burn::backend::Flex;
use lvface_data::{decode_face, SyntheticConfig, SyntheticFaces};
use lvface_eval::{evaluate_pair_set, write_report_dir, Embeddings, VerificationConfig};
use lvface_train::{cosine, embed_faces, threshold_from_report, EmbedOptions};
use lvface_vit::VitConfig;

type B = Flex;

fn parity_backbone() -> lvface_vit::Vit<B> {
    let config = VitConfig {
        embed_dim: 64,
        depth: 2,
        drop_path_rate: 0.0,
        mask_ratio: 0.0,
        ..VitConfig::vit_t()
    };
    let weights = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../lvface-vit/tests/fixtures/vit-parity/weights.pt");
    config
        .init::<B>(&Default::default())
        .load_weights(weights)
        .unwrap()
}

#[test]
fn same_identity_pairs_score_above_different_ones() {
    let faces = SyntheticFaces::new(SyntheticConfig {
        identities: 4,
        held_out_identities: 12,
        pairs: 40,
        seed: 3,
        ..Default::default()
    })
    .unwrap();
    let pairs = faces.verification_pairs().unwrap();
    let images: Vec<_> = pairs
        .images
        .iter()
        .enumerate()
        .map(|(i, bytes)| decode_face(bytes, &format!("image {i}"), 112).unwrap())
        .collect();
    let vit = parity_backbone();
    let options = EmbedOptions {
        flip: true,
        normalize: false,
        batch_size: 16,
    };
    let (rows, dim) = embed_faces(&vit, &images, &options, &Default::default()).unwrap();
    assert_eq!((rows.len(), dim), (80 * 512, 512));

    let scores: Vec<f64> = rows
        .chunks(2 * dim)
        .map(|pair| cosine(&pair[..dim], &pair[dim..]))
        .collect();
    let (same, different): (Vec<_>, Vec<_>) = scores
        .iter()
        .zip(&pairs.issame)
        .partition(|(_, same)| **same);
    let mean = |v: &[(&f64, &bool)]| v.iter().map(|(s, _)| **s).sum::<f64>() / v.len() as f64;
    // The fraction of (same, different) pairs ordered correctly: the ROC's area.
    let ordered = same
        .iter()
        .flat_map(|(s, _)| {
            different
                .iter()
                .map(move |(d, _)| f64::from(u8::from(**s > **d)))
        })
        .sum::<f64>()
        / (same.len() * different.len()) as f64;
    eprintln!(
        "same mean {:.4}, different mean {:.4}, ordered {ordered:.3}",
        mean(&same),
        mean(&different)
    );
    assert!(mean(&same) > mean(&different));
    assert!(
        ordered > 0.75,
        "only {ordered:.3} of the orderings are right"
    );

    // --normalize gives unit rows and leaves the cosines unchanged.
    let unit = EmbedOptions {
        normalize: true,
        ..options
    };
    let (normalized, _) = embed_faces(&vit, &images[..4], &unit, &Default::default()).unwrap();
    for row in normalized.chunks(dim) {
        let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "norm {norm}");
    }
    let again = cosine(&normalized[..dim], &normalized[dim..2 * dim]);
    assert!((again - scores[0]).abs() < 1e-5);

    // The threshold `verify` reads from an evaluation report: with 20 impostor pairs FAR 1e-4
    // is not resolved, so it is the one at FAR 0, above every impostor score.
    let embeddings = Embeddings::new(rows, dim).unwrap();
    let result = evaluate_pair_set(
        "synthetic",
        &VerificationConfig::default().init(),
        &embeddings,
        None,
        &pairs.issame,
    )
    .unwrap();
    let dir = std::env::temp_dir().join(format!("lvface-embed-{}", std::process::id()));
    write_report_dir(&dir, "test", &[result]).unwrap();
    let threshold = threshold_from_report(&dir.join("report.json"), 1e-4)
        .unwrap()
        .expect("some genuine pair scores above every impostor");
    assert_eq!(threshold.set, "synthetic");
    assert!(!threshold.resolved);
    for (score, same) in scores.iter().zip(&pairs.issame) {
        if !same {
            assert!(*score < threshold.threshold, "impostor {score} accepted");
        }
    }
    std::fs::remove_dir_all(dir).unwrap();
}
