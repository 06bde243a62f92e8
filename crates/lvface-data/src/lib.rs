//! Face-recognition data IO for lvface: insightface's MXNet RecordIO training sets (read, write,
//! pack, re-index), the pickled `.bin` verification sets, image folders, JPEG/PNG decoding to
//! normalised NCHW batches, training augmentation, synthetic identities and a threaded loader.
//!
//! Invariants:
//! - The crate knows nothing of models or losses; it depends on burn only to turn a [`Batch`]
//!   into tensors, generically over the backend.
//! - Bad input is a [`DataError`] naming the file, the record key and the byte offset, never a
//!   panic: every length read from a file is checked against the bytes that remain before
//!   anything is allocated.
//! - The pickle reader only builds plain data (bytes, str, numbers, lists, tuples, dicts); it
//!   refuses every opcode that would import or call Python code.
//! - Labels are exact integers: a float label that is not a whole number, or a label at or above
//!   the number of classes, is an error, never a silently wrong class.
//! - Everything random (shuffle, augmentation, synthetic faces) is a function of a seed, an
//!   epoch and a sample index through ChaCha8, so it is the same for any number of workers and on
//!   every platform.
//!
//! ```
//! use std::sync::Arc;
//! use burn::backend::Flex;
//! use lvface_data::{Loader, LoaderConfig, RecordDataset, SyntheticConfig, SyntheticFaces};
//!
//! let dir = std::env::temp_dir().join(format!("lvface-data-doc-{}", std::process::id()));
//! let faces = SyntheticFaces::new(SyntheticConfig { identities: 4, images_per_identity: 4, ..Default::default() })?;
//! faces.write_rec(&dir)?; // train.rec, train.idx, property
//! faces.write_bin(&dir.join("synth.bin"))?; // verification pairs of held-out identities
//!
//! let dataset = Arc::new(RecordDataset::open(&dir)?);
//! let config = LoaderConfig { batch_size: 8, workers: 1, ..Default::default() };
//! let loader = Loader::new(dataset, config, 0, 1)?; // rank 0 of 1
//! let device = Default::default();
//! for batch in loader.epoch(0) {
//!     let batch = batch?;
//!     let images = batch.to_tensor::<Flex>(&device); // [8, 3, 112, 112] in [-1, 1]
//!     let labels = batch.labels_tensor::<Flex>(&device); // [8]
//!     assert_eq!(images.dims(), [8, 3, 112, 112]);
//!     assert_eq!(labels.dims(), [8]);
//! }
//! # std::fs::remove_dir_all(&dir).unwrap();
//! # Ok::<(), lvface_data::DataError>(())
//! ```

mod augment;
mod batch;
mod bin_pairs;
mod decode;
mod epoch_iter;
mod error;
mod face_source;
mod header_bounds;
mod image_folder;
mod index_cache;
mod ir_header;
mod loader;
mod pack;
pub mod pickle;
mod property;
mod record_dataset;
mod record_dataset_writer;
mod record_index;
pub mod record_io;
mod shared_record_set;
mod synthetic;

pub use augment::{
    down_up, draw_face_mask, gaussian_blur, grayscale, hsv_jitter, sample_rng, AugmentConfig,
};
pub use batch::Batch;
pub use bin_pairs::BinPairs;
pub use decode::{
    decode_face, decode_rgb, encode_jpeg, encode_png, normalize_into, resize_to, FACE_SIZE,
};
pub use epoch_iter::EpochIter;
pub use error::{DataError, Result};
pub use face_source::{EncodedFace, FaceSource};
pub use image_folder::{is_image_file, ImageFolder};
#[doc(hidden)]
pub use index_cache::decode_cache;
pub use index_cache::{cache_path, IndexOrigin};
pub use ir_header::{IrHeader, IR_HEADER_LEN};
pub use loader::{epoch_permutation, CorruptPolicy, Loader, LoaderConfig, Skip};
pub use pack::{pack_folder, PackSummary};
pub use property::Property;
pub use record_dataset::{class_index, FaceRecord, RecordDataset, RecordLayout};
pub use record_dataset_writer::RecordDatasetWriter;
pub use record_index::{rebuild_index, RecordIndex};
pub use shared_record_set::{even_class_starts, write_shared_record_set};
pub use synthetic::{ImageCodec, SyntheticConfig, SyntheticFaces};
