//! [`Loader`]: shuffled, sharded, augmented batches decoded by a pool of threads.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::augment::{sample_rng, AugmentConfig};
use crate::batch::Batch;
use crate::decode::{decode_face, FACE_SIZE};
use crate::error::{DataError, Result};
use crate::face_source::FaceSource;

/// What to do with an image that does not decode (or a record that does not read).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CorruptPolicy {
    /// Stop with the error, which names the file, record and offset.
    Fail,
    /// Leave the image out of its batch (the batch is one shorter) and count it; see
    /// [`Loader::skipped`]. Labels stay aligned with their images.
    Skip,
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
    skip_notes: Arc<Mutex<Vec<String>>>,
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
            skip_notes: Arc::default(),
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

    /// Images skipped as corrupt so far (with [`CorruptPolicy::Skip`]).
    pub fn skipped(&self) -> usize {
        self.skipped.load(Ordering::Relaxed)
    }

    /// The errors of the first (up to 16) skipped images, for the end-of-run report.
    pub fn skip_notes(&self) -> Vec<String> {
        self.skip_notes
            .lock()
            .map(|n| n.clone())
            .unwrap_or_default()
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
                    skip_notes: Arc::clone(&self.skip_notes),
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
        EpochIter {
            rx: Some(rx),
            pending: BTreeMap::new(),
            next: 0,
            total,
            workers,
            stop,
        }
    }
}

struct BatchJob {
    source: Arc<dyn FaceSource>,
    config: LoaderConfig,
    indices: Arc<Vec<usize>>,
    epoch: u64,
    skipped: Arc<AtomicUsize>,
    skip_notes: Arc<Mutex<Vec<String>>>,
}

impl BatchJob {
    fn build(&self, b: usize) -> Result<Batch> {
        let size = self.config.batch_size;
        let mut images = Vec::with_capacity(size);
        let (mut labels, mut kept) = (Vec::with_capacity(size), Vec::with_capacity(size));
        for &index in &self.indices[b * size..(b + 1) * size] {
            // A panic in a codec or a source must not end the epoch silently; it becomes an
            // error naming the image, which no `on_corrupt` policy skips.
            let mut origin = None;
            let loaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let face = self.source.encoded(index)?;
                origin = Some(face.origin.clone());
                let image = decode_face(&face.bytes, &face.origin, self.config.image_size)?;
                let mut rng = sample_rng(self.config.seed, self.epoch, index as u64);
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
            });
            match (loaded, self.config.on_corrupt) {
                (Ok((image, label)), _) => {
                    images.push(image);
                    labels.push(label as i64);
                    kept.push(index);
                }
                (Err(e @ DataError::Loader { .. }), _) => return Err(e),
                // A bad label is never skipped: it points at a broken file, not a bad image.
                (Err(e @ DataError::BadLabel { .. }), _) | (Err(e), CorruptPolicy::Fail) => {
                    return Err(e)
                }
                (Err(e), CorruptPolicy::Skip) => {
                    self.skipped.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut notes) = self.skip_notes.lock() {
                        if notes.len() < 16 {
                            notes.push(e.to_string());
                        }
                    }
                }
            }
        }
        let mut batch = Batch::from_images(&images, labels, kept);
        if batch.is_empty() {
            let side = self.config.image_size as usize;
            batch.shape = [0, 3, side, side];
        }
        Ok(batch)
    }
}

/// The text a panic carried, when it is a string.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

/// The batches of one epoch on one rank, in order; dropping it stops the workers.
pub struct EpochIter {
    rx: Option<Receiver<(usize, Result<Batch>)>>,
    pending: BTreeMap<usize, Result<Batch>>,
    next: usize,
    total: usize,
    workers: Vec<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

impl EpochIter {
    /// Number of batches this epoch yields in all.
    pub fn total(&self) -> usize {
        self.total
    }
}

impl Iterator for EpochIter {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Result<Batch>> {
        if self.next >= self.total {
            return None;
        }
        let rx = self.rx.as_ref()?;
        let batch = loop {
            if let Some(batch) = self.pending.remove(&self.next) {
                break batch;
            }
            match rx.recv() {
                Ok((b, batch)) => {
                    self.pending.insert(b, batch);
                }
                // Every worker is gone with batches still owed: say so rather than end early.
                Err(_) => {
                    let error = DataError::Loader {
                        reason: format!(
                            "the workers stopped before batch {} of {}",
                            self.next, self.total
                        ),
                    };
                    self.next = self.total;
                    return Some(Err(error));
                }
            }
        };
        self.next += 1;
        if batch.is_err() {
            // After an error the epoch ends: later batches would be out of step with the error.
            self.next = self.total;
        }
        Some(batch)
    }
}

impl Drop for EpochIter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Dropping the receiver unblocks workers waiting to send.
        self.rx = None;
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
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
        // Every kept image shows its own index as grey level, with its own label.
        let order = one.epoch_indices(2);
        for (k, batch) in a.iter().enumerate() {
            let expected: Vec<usize> = order[k * 4..k * 4 + 4]
                .iter()
                .copied()
                .filter(|&i| i != 5)
                .collect();
            assert_eq!(batch.indices, expected);
            for (j, &index) in batch.indices.iter().enumerate() {
                assert_eq!(batch.labels[j], (index % 7) as i64);
                let value = batch.pixels[j * 3 * 64];
                assert!((value - (index as f32 / 127.5 - 1.0)).abs() < 1e-6);
            }
        }
        assert_eq!(one.skipped(), 1);
        assert!(one.skip_notes()[0].contains("flat 5"));
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
