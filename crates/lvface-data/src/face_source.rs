//! [`FaceSource`]: what the loader needs from a training set.

use crate::error::Result;

/// One encoded training image with its class.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedFace {
    /// The JPEG or PNG bytes.
    pub bytes: Vec<u8>,
    /// The class index, checked to be below the number of classes when that is known.
    pub label: usize,
    /// Where the bytes come from (file, or `.rec` file with key and byte offset), for errors.
    pub origin: String,
}

/// A training set of encoded face images with integer labels, readable from several threads.
///
/// Implemented by [`RecordDataset`](crate::RecordDataset) and
/// [`ImageFolder`](crate::ImageFolder).
pub trait FaceSource: Send + Sync {
    /// Number of images.
    fn len(&self) -> usize;

    /// Whether there are no images.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of classes when the source knows it (identity records, `property`, folders).
    fn num_classes(&self) -> Option<usize>;

    /// The `index`-th image, `index < len()`.
    fn encoded(&self, index: usize) -> Result<EncodedFace>;
}
