//! [`Loader`]: shuffled, sharded, augmented batches decoded by a pool of threads.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Mutex};

use image::RgbImage;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::augment::{sample_rng, AugmentConfig};
use crate::batch::Batch;
use crate::decode::{decode_face, FACE_SIZE};
use crate::epoch_iter::EpochIter;
use crate::error::{DataError, Result};
use crate::face_source::FaceSource;

/// What to do with an image that does not decode (or a record that does not read).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CorruptPolicy {
    /// Stop with the error, which names the file, record and offset.
    Fail,
    /// Put the next readable image of the rank's epoch order in its place, with that image's
    /// own label, so that every batch keeps `batch_size` images on every rank (a sharded
    /// classifier needs equal batches); count it and say which, see [`Loader::skipped`] and
    /// [`Loader::take_skips`]. The replacement is the same on every run and for any number
    /// of workers.
    Skip,
}

/// How far along the epoch order a corrupt image's replacement is looked for before the loader
/// gives up: a set with that many unreadable images in a row is broken, not unlucky.
const REPLACEMENT_TRIES: usize = 64;

/// Skips held for [`Loader::take_skips`]; past this many untaken ones only the count grows.
const PENDING_SKIPS: usize = 1024;

/// An image that did not read or decode under [`CorruptPolicy::Skip`], and the image put in its
/// place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip {
    /// Epoch of the batch.
    pub epoch: u64,
    /// Dataset index of the unreadable image.
    pub index: usize,
    /// Why it did not read, naming its file or record.
    pub reason: String,
    /// Dataset index of the image that took its place.
    pub replacement: usize,
}

/// Batch size, workers, seed and augmentation of a [`Loader`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoaderConfig {
    /// Images per batch on each rank.
    pub batch_size: usize,
    /// Decoding threads.
    pub workers: usize,
    /// Batches decoded ahead of the consumer.
    pub prefetch: usize,
    /// Seed of the shuffle and of the augmentation.
    pub seed: u64,
    /// Reshuffle every epoch; off, samples come in dataset order.
    pub shuffle: bool,
    /// Side the images are resized to when they are another size.
    pub image_size: u32,
    /// Failing or skipping on corrupt images.
    pub on_corrupt: CorruptPolicy,
    /// Training augmentation.
    pub augment: AugmentConfig,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        Self {
            batch_size: 128,
            workers: 2,
            prefetch: 4,
            seed: 2048,
            shuffle: true,
            image_size: FACE_SIZE,
            on_corrupt: CorruptPolicy::Fail,
            augment: AugmentConfig::default(),
        }
    }
}

impl LoaderConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        if self.batch_size == 0 {
            return Err(DataError::config(
                "loader.batch_size",
                "must be positive",
                0,
            ));
        }
        if self.workers == 0 {
            return Err(DataError::config("loader.workers", "must be positive", 0));
        }
        if self.prefetch == 0 {
            return Err(DataError::config("loader.prefetch", "must be positive", 0));
        }
        if !(8..=4096).contains(&self.image_size) {
            return Err(DataError::config(
                "loader.image_size",
                "must be in 8..=4096",
                self.image_size,
            ));
        }
        self.augment.validate()
    }
}

/// The per-epoch order of `len` samples: a Fisher-Yates shuffle driven by ChaCha8 keyed with
/// `(seed, epoch)`, specified here bit for bit so it does not depend on a library's choices.
pub fn epoch_permutation(len: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&epoch.to_le_bytes());
    key[16..24].copy_from_slice(b"shuffle\0");
    let mut rng = ChaCha8Rng::from_seed(key);
    let mut order: Vec<usize> = (0..len).collect();
    for i in (1..len).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}

/// Yields batches of one rank, in a fixed order for a given seed and epoch whatever the number
/// of workers, like a `DistributedSampler(shuffle=True, drop_last=True)` feeding a `DataLoader`
/// with `drop_last=True`: each epoch is a permutation of the dataset, cut to a multiple of the
/// world size, dealt round-robin to ranks, and every rank gets the same number of full batches.
pub struct Loader {
    source: Arc<dyn FaceSource>,
    config: LoaderConfig,
    rank: usize,
    world_size: usize,
    skipped: Arc<AtomicUsize>,
    skips: Arc<Mutex<Vec<Skip>>>,
}

impl std::fmt::Debug for Loader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loader")
            .field("images", &self.source.len())
            .field("config", &self.config)
            .field("rank", &self.rank)
            .field("world_size", &self.world_size)
            .finish()
    }
}

impl Loader {
    /// A loader of `source` for rank `rank` of `world_size`.
    pub fn new(
        source: Arc<dyn FaceSource>,
        config: LoaderConfig,
        rank: usize,
        world_size: usize,
    ) -> Result<Self> {
        config.validate()?;
        if world_size == 0 || rank >= world_size {
            return Err(DataError::config(
                "loader.rank",
                &format!("must be below the world size {world_size}"),
                rank,
            ));
        }
        Ok(Self {
            source,
            config,
            rank,
            world_size,
            skipped: Arc::default(),
            skips: Arc::default(),
        })
    }

    /// This rank's samples for `epoch`, in order.
    pub fn epoch_indices(&self, epoch: u64) -> Vec<usize> {
        let len = self.source.len();
        let order = if self.config.shuffle {
            epoch_permutation(len, self.config.seed, epoch)
        } else {
            (0..len).collect()
        };
        let per_rank = len / self.world_size;
        order[..per_rank * self.world_size]
            .iter()
            .skip(self.rank)
            .step_by(self.world_size)
            .copied()
            .collect()
    }

    /// Full batches per epoch on every rank.
    pub fn batches_per_epoch(&self) -> usize {
        self.source.len() / self.world_size / self.config.batch_size
    }

    /// Images replaced as corrupt so far (with [`CorruptPolicy::Skip`]); an image is counted
    /// once per epoch it is met in.
    pub fn skipped(&self) -> usize {
        self.skipped.load(Ordering::Relaxed)
    }

    /// The skips since the last call, by epoch and index, for the caller to log; the batches
    /// decoded ahead are included. At most the first 1024 untaken ones are kept.
    pub fn take_skips(&self) -> Vec<Skip> {
        let mut skips = self
            .skips
            .lock()
            .map(|mut s| std::mem::take(&mut *s))
            .unwrap_or_default();
        skips.sort_by_key(|s| (s.epoch, s.index));
        skips
    }

    /// Starts decoding `epoch` and returns its batches, in order.
    pub fn epoch(&self, epoch: u64) -> EpochIter {
        let indices = Arc::new(self.epoch_indices(epoch));
        let total = self.batches_per_epoch();
        let (tx, rx) = sync_channel(self.config.prefetch);
        let counter = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let workers = (0..self.config.workers.min(total.max(1)))
            .map(|_| {
                let job = BatchJob {
                    source: Arc::clone(&self.source),
                    config: self.config.clone(),
                    indices: Arc::clone(&indices),
                    epoch,
                    skipped: Arc::clone(&self.skipped),
                    skips: Arc::clone(&self.skips),
                };
                let (tx, counter, stop) = (tx.clone(), Arc::clone(&counter), Arc::clone(&stop));
                std::thread::spawn(move || loop {
                    let b = counter.fetch_add(1, Ordering::Relaxed);
                    if b >= total || stop.load(Ordering::Relaxed) {
                        break;
                    }
                    if tx.send((b, job.build(b))).is_err() {
                        break;
                    }
                })
            })
            .collect();
        EpochIter::new(rx, total, workers, stop)
    }
}

struct BatchJob {
    source: Arc<dyn FaceSource>,
    config: LoaderConfig,
    indices: Arc<Vec<usize>>,
    epoch: u64,
    skipped: Arc<AtomicUsize>,
    skips: Arc<Mutex<Vec<Skip>>>,
}

impl BatchJob {
    fn build(&self, b: usize) -> Result<Batch> {
        let size = self.config.batch_size;
        let mut images = Vec::with_capacity(size);
        let (mut labels, mut kept) = (Vec::with_capacity(size), Vec::with_capacity(size));
        for position in b * size..(b + 1) * size {
            let index = self.indices[position];
            let (image, label, used) = match self.load(index, index) {
                Ok((image, label)) => (image, label, index),
                Err(e) if self.config.on_corrupt == CorruptPolicy::Skip && skippable(&e) => {
                    let (image, label, used) = self.replacement(position, &e)?;
                    self.skipped.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut skips) = self.skips.lock() {
                        if skips.len() < PENDING_SKIPS {
                            skips.push(Skip {
                                epoch: self.epoch,
                                index,
                                reason: e.to_string(),
                                replacement: used,
                            });
                        }
                    }
                    (image, label, used)
                }
                Err(e) => return Err(e),
            };
            images.push(image);
            labels.push(label as i64);
            kept.push(used);
        }
        Ok(Batch::from_images(&images, labels, kept))
    }

    /// The next readable image after `position` in the rank's epoch order (wrapping round),
    /// for the corrupt image there. It is augmented with the corrupt image's random stream, so
    /// that it does not repeat its own augmentation when both are in one batch.
    fn replacement(&self, position: usize, why: &DataError) -> Result<(RgbImage, usize, usize)> {
        let slot = self.indices[position];
        let tries = REPLACEMENT_TRIES.min(self.indices.len() - 1);
        for step in 1..=tries {
            let index = self.indices[(position + step) % self.indices.len()];
            match self.load(index, slot) {
                Ok((image, label)) => return Ok((image, label, index)),
                Err(e) if skippable(&e) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(DataError::Loader {
            reason: format!(
                "{why}; the next {tries} images of the epoch do not read either, so none can \
                 take its place (data.on_corrupt = \"skip\")"
            ),
        })
    }

    /// Image `index` and its label, augmented with the random stream of sample `stream`.
    fn load(&self, index: usize, stream: usize) -> Result<(RgbImage, usize)> {
        // A panic in a codec or a source must not end the epoch silently; it becomes an
        // error naming the image, which no `on_corrupt` policy skips.
        let mut origin = None;
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let face = self.source.encoded(index)?;
            origin = Some(face.origin.clone());
            let image = decode_face(&face.bytes, &face.origin, self.config.image_size)?;
            let mut rng = sample_rng(self.config.seed, self.epoch, stream as u64);
            Ok((self.config.augment.apply(image, &mut rng), face.label))
        }))
        .unwrap_or_else(|payload| {
            let what = origin.unwrap_or_else(|| format!("image {index} of the training set"));
            Err(DataError::Loader {
                reason: format!(
                    "{what}: reading, decoding or augmenting it panicked: {}",
                    panic_message(payload.as_ref())
                ),
            })
        })
    }
}

/// Whether `on_corrupt = "skip"` may replace an image that failed with `error`: a panic and a
/// bad label are never skipped, since they point at a broken program or file, not a bad image.
fn skippable(error: &DataError) -> bool {
    !matches!(error, DataError::Loader { .. } | DataError::BadLabel { .. })
}

/// The text a panic carried, when it is a string.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::face_source::EncodedFace;

    /// Image `i` is a flat PNG of grey level `i`, label `i % 7`; image 5 is corrupt.
    struct Flat(usize);

    impl FaceSource for Flat {
        fn len(&self) -> usize {
            self.0
        }
        fn num_classes(&self) -> Option<usize> {
            Some(7)
        }
        fn encoded(&self, index: usize) -> Result<EncodedFace> {
            let image = image::RgbImage::from_pixel(8, 8, image::Rgb([index as u8; 3]));
            let bytes = if index == 5 {
                b"not an image".to_vec()
            } else {
                crate::encode_png(&image, "t")?
            };
            Ok(EncodedFace {
                bytes,
                label: index % 7,
                origin: format!("flat {index}"),
            })
        }
    }

    fn config(workers: usize) -> LoaderConfig {
        LoaderConfig {
            batch_size: 4,
            workers,
            image_size: 8,
            augment: AugmentConfig::none(),
            on_corrupt: CorruptPolicy::Skip,
            ..Default::default()
        }
    }

    #[test]
    fn permutation_is_a_seeded_shuffle() {
        let p = epoch_permutation(50, 1, 0);
        let mut sorted = p.clone();
        sorted.sort();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        assert_eq!(p, epoch_permutation(50, 1, 0));
        assert_ne!(p, epoch_permutation(50, 1, 1));
        assert_ne!(p, epoch_permutation(50, 2, 0));
    }

    #[test]
    fn ranks_split_the_epoch_evenly_and_disjointly() {
        let source: Arc<dyn FaceSource> = Arc::new(Flat(23));
        let loaders: Vec<Loader> = (0..3)
            .map(|r| Loader::new(Arc::clone(&source), config(1), r, 3).unwrap())
            .collect();
        let mut all: Vec<usize> = loaders.iter().flat_map(|l| l.epoch_indices(4)).collect();
        assert_eq!(all.len(), 21, "23 samples cut to a multiple of 3");
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 21);
        assert!(loaders.iter().all(|l| l.batches_per_epoch() == 1));
    }

    #[test]
    fn batches_follow_the_order_whatever_the_worker_count() {
        let source: Arc<dyn FaceSource> = Arc::new(Flat(40));
        let one = Loader::new(Arc::clone(&source), config(1), 0, 1).unwrap();
        let three = Loader::new(Arc::clone(&source), config(3), 0, 1).unwrap();
        let a: Vec<Batch> = one.epoch(2).map(|b| b.unwrap()).collect();
        let b: Vec<Batch> = three.epoch(2).map(|b| b.unwrap()).collect();
        assert_eq!(a.len(), 10);
        assert_eq!(a, b);
        // Every image shows its own index as grey level, with its own label; the corrupt image
        // 5 is replaced by the one after it in the epoch order.
        let order = one.epoch_indices(2);
        let at = order.iter().position(|&i| i == 5).unwrap();
        let next = order[(at + 1) % order.len()];
        for (k, batch) in a.iter().enumerate() {
            let expected: Vec<usize> = order[k * 4..k * 4 + 4]
                .iter()
                .map(|&i| if i == 5 { next } else { i })
                .collect();
            assert_eq!(batch.indices, expected);
            assert_eq!(batch.len(), 4);
            for (j, &index) in batch.indices.iter().enumerate() {
                assert_eq!(batch.labels[j], (index % 7) as i64);
                let value = batch.pixels[j * 3 * 64];
                assert!((value - (index as f32 / 127.5 - 1.0)).abs() < 1e-6);
            }
        }
        assert_eq!(one.skipped(), 1);
        let skips = one.take_skips();
        assert_eq!(skips.len(), 1);
        assert_eq!((skips[0].epoch, skips[0].index), (2, 5));
        assert_eq!(skips[0].replacement, next);
        assert!(skips[0].reason.contains("flat 5"), "{}", skips[0].reason);
        assert!(one.take_skips().is_empty(), "taken skips are gone");
    }

    /// With several ranks every batch stays full, so that the ranks' batches keep one size,
    /// and the replacement is the same on every run.
    #[test]
    fn a_skipped_image_keeps_every_rank_batch_full_and_deterministic() {
        let source: Arc<dyn FaceSource> = Arc::new(Flat(24));
        let epoch = |workers: usize| -> Vec<Vec<Batch>> {
            (0..2)
                .map(|rank| {
                    let loader =
                        Loader::new(Arc::clone(&source), config(workers), rank, 2).unwrap();
                    loader.epoch(0).map(|b| b.unwrap()).collect()
                })
                .collect()
        };
        let first = epoch(1);
        for batches in &first {
            assert_eq!(batches.len(), 3);
            assert!(batches.iter().all(|b| b.len() == 4 && b.labels.len() == 4));
        }
        let all: Vec<usize> = first
            .iter()
            .flatten()
            .flat_map(|b| b.indices.clone())
            .collect();
        assert!(!all.contains(&5));
        assert_eq!(epoch(1), first, "the same on a second run");
        assert_eq!(epoch(2), first, "the same with more workers");
    }

    /// Every image corrupt: no replacement exists, and the loader says so instead of searching
    /// the whole epoch.
    struct Broken;

    impl FaceSource for Broken {
        fn len(&self) -> usize {
            200
        }
        fn num_classes(&self) -> Option<usize> {
            Some(7)
        }
        fn encoded(&self, index: usize) -> Result<EncodedFace> {
            Ok(EncodedFace {
                bytes: b"not an image".to_vec(),
                label: 0,
                origin: format!("broken {index}"),
            })
        }
    }

    #[test]
    fn a_set_with_no_readable_image_in_reach_is_an_error_naming_the_image() {
        let source: Arc<dyn FaceSource> = Arc::new(Broken);
        let unshuffled = LoaderConfig {
            shuffle: false,
            ..config(1)
        };
        let loader = Loader::new(source, unshuffled, 0, 1).unwrap();
        let results: Vec<Result<Batch>> = loader.epoch(0).collect();
        assert_eq!(results.len(), 1);
        let err = results[0].as_ref().unwrap_err().to_string();
        assert!(
            err.contains("broken 0") && err.contains("next 64 images"),
            "{err}"
        );
        assert_eq!(loader.skipped(), 0);
    }

    #[test]
    fn failing_policy_reports_the_corrupt_image_and_ends_the_epoch() {
        let source: Arc<dyn FaceSource> = Arc::new(Flat(12));
        let loader = Loader::new(
            source,
            LoaderConfig {
                shuffle: false,
                on_corrupt: CorruptPolicy::Fail,
                ..config(2)
            },
            0,
            1,
        )
        .unwrap();
        let results: Vec<Result<Batch>> = loader.epoch(0).collect();
        assert_eq!(
            results.len(),
            2,
            "batch 0 fine, batch 1 holds image 5 and ends the epoch"
        );
        assert!(results[0].is_ok());
        let err = results[1].as_ref().unwrap_err().to_string();
        assert!(
            err.contains("flat 5") && err.contains("cannot decode"),
            "{err}"
        );
    }

    /// Image 9 makes the source panic, as a buggy codec or source might.
    struct Panicky;

    impl FaceSource for Panicky {
        fn len(&self) -> usize {
            12
        }
        fn num_classes(&self) -> Option<usize> {
            Some(7)
        }
        fn encoded(&self, index: usize) -> Result<EncodedFace> {
            assert!(index != 9, "the source broke on image 9");
            Flat(12).encoded(index.max(6))
        }
    }

    #[test]
    fn a_panicking_worker_is_an_error_naming_the_image_even_when_skipping() {
        let source: Arc<dyn FaceSource> = Arc::new(Panicky);
        let unshuffled = LoaderConfig {
            shuffle: false,
            ..config(2)
        };
        let loader = Loader::new(source, unshuffled, 0, 1).unwrap();
        let results: Vec<Result<Batch>> = loader.epoch(0).collect();
        assert_eq!(
            results.len(),
            3,
            "batches 0 and 1 fine, batch 2 holds image 9"
        );
        assert!(results[..2].iter().all(|r| r.is_ok()));
        let err = results[2].as_ref().unwrap_err().to_string();
        assert!(
            err.contains("image 9") && err.contains("panicked") && err.contains("broke on image 9"),
            "{err}"
        );
    }
}
