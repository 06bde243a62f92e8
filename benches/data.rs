//! lvface-data's per-image work in the loader, on one thread: JPEG decode, augmentation and
//! normalisation into an NCHW f32 batch, on 112x112 JPEGs (synthetic faces, quality 95), 64
//! images per iteration. `benches/reference/decode_pil.py` does the same with PIL and numpy
//! (and torchvision when installed) on the same files.
//!
//! `data/loader` runs lvface-data's `Loader` over a RecordIO set of the same kind of synthetic
//! JPEGs (512 images, batch 64, default augmentation) at 112 px and at 56 px (the size of
//! configs/default.toml), with 1 and 2 workers: one epoch per iteration, images/s of the
//! consumer, that is decode + augment + normalise + batching with threads and prefetch.
//!
//! The JPEGs are written to `LVFACE_BENCH_JPEGS` (default `target/lvface-bench-jpegs`) for the
//! Python script.
//!
//! Cases: `decode` (decode to RGB only); `flip` (decode, mirror every image, normalise:
//! the work of the insightface default augmentation when the flip happens); `default` (decode,
//! `AugmentConfig::default()` = flip with p 0.5 as configs/base.toml, normalise: what the
//! default training run does per image); `dali` (decode, insightface's optional DALI set,
//! normalise).

// criterion_group! generates undocumented functions.
#![allow(missing_docs)]

use std::path::PathBuf;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use lvface_data::{
    decode_face, sample_rng, AugmentConfig, Batch, Loader, LoaderConfig, RecordDataset,
    SyntheticConfig, SyntheticFaces,
};

const IMAGES: usize = 256;
const BATCH: usize = 64;

/// 256 synthetic 112x112 JPEGs (64 identities x 4), written out for the Python reference.
fn jpegs() -> Vec<Vec<u8>> {
    let faces = SyntheticFaces::new(SyntheticConfig {
        identities: IMAGES / 4,
        images_per_identity: 4,
        ..Default::default()
    })
    .expect("a valid synthetic config");
    let dir = std::env::var_os("LVFACE_BENCH_JPEGS").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/lvface-bench-jpegs"),
        PathBuf::from,
    );
    std::fs::create_dir_all(&dir).expect("the JPEG folder should be creatable");
    (0..IMAGES)
        .map(|i| {
            let bytes = faces
                .encoded((i / 4) as u64, (i % 4) as u64)
                .expect("synthetic faces encode");
            std::fs::write(dir.join(format!("{i:04}.jpg")), &bytes).expect("JPEG written");
            bytes
        })
        .collect()
}

/// One loader batch: decode, augment with the sample's random stream, normalise to NCHW.
fn batch(jpegs: &[Vec<u8>], first: usize, augment: Option<&AugmentConfig>) -> Batch {
    let images: Vec<_> = (first..first + BATCH)
        .map(|i| {
            let image = decode_face(&jpegs[i % IMAGES], "bench", 112).expect("decodes");
            match augment {
                Some(a) => a.apply(image, &mut sample_rng(0, 0, i as u64)),
                None => image,
            }
        })
        .collect();
    Batch::from_images(&images, vec![0; BATCH], (0..BATCH).collect())
}

fn decode_augment_normalize(c: &mut Criterion) {
    let jpegs = jpegs();
    let mut group = c.benchmark_group("data/decode_augment_normalize");
    group
        .sample_size(20)
        .throughput(Throughput::Elements(BATCH as u64));
    let mut first = 0;
    let mut next = move || {
        first = (first + BATCH) % IMAGES;
        first
    };
    group.bench_function("decode", |b| {
        b.iter(|| {
            let start = next();
            (start..start + BATCH)
                .map(|i| {
                    decode_face(&jpegs[i % IMAGES], "bench", 112)
                        .expect("decodes")
                        .width()
                })
                .sum::<u32>()
        })
    });
    let flip = AugmentConfig {
        flip_p: 1.0,
        ..AugmentConfig::none()
    };
    let cases = [
        ("flip", flip),
        ("default", AugmentConfig::default()),
        ("dali", AugmentConfig::dali()),
    ];
    for (name, augment) in cases {
        group.bench_function(name, |b| {
            b.iter(|| batch(&jpegs, next(), Some(&augment)).pixels.len())
        });
    }
    group.finish();
}

fn loader(c: &mut Criterion) {
    const LOADER_IMAGES: usize = 512;
    let mut group = c.benchmark_group("data/loader");
    group
        .sample_size(10)
        .throughput(Throughput::Elements(LOADER_IMAGES as u64));
    for size in [112u32, 56] {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join(format!("../target/lvface-bench-loader-{size}"));
        if !dir.join("train.rec").is_file() {
            let faces = SyntheticFaces::new(SyntheticConfig {
                identities: LOADER_IMAGES / 8,
                images_per_identity: 8,
                size,
                ..Default::default()
            })
            .expect("a valid synthetic config");
            faces.write_rec(&dir).expect("the RecordIO set is written");
        }
        let dataset = Arc::new(RecordDataset::open(&dir).expect("the RecordIO set opens"));
        for workers in [1, 2] {
            let config = LoaderConfig {
                batch_size: BATCH,
                workers,
                image_size: size,
                ..Default::default()
            };
            let loader = Loader::new(dataset.clone(), config, 0, 1).expect("a valid loader");
            let mut epoch = 0;
            group.bench_function(format!("{size}px/workers{workers}"), |b| {
                b.iter(|| {
                    epoch += 1;
                    loader
                        .epoch(epoch)
                        .map(|batch| batch.expect("decodes").len())
                        .sum::<usize>()
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, decode_augment_normalize, loader);
criterion_main!(benches);
