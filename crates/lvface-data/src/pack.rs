//! Packing an image folder into an insightface RecordIO training set.

use std::path::Path;

use crate::decode::decode_rgb;
use crate::error::Result;
use crate::face_source::FaceSource;
use crate::image_folder::ImageFolder;
use crate::record_dataset_writer::RecordDatasetWriter;

/// What [`pack_folder`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackSummary {
    /// Number of images written, repeats included.
    pub images: usize,
    /// How many times the last image was written again so that insightface's float32 header
    /// holds the image count exactly (only above 2^24 images; see [`RecordDatasetWriter`]).
    pub repeated: usize,
    /// Number of identities.
    pub identities: usize,
    /// Size written to `property` (height, width): the size of the first image.
    pub size: (u32, u32),
    /// Number of images whose size differs from `size` (decoding resizes them).
    pub other_sizes: usize,
}

/// Packs `folder` (one sub-folder per identity, see [`ImageFolder`]) into `out_dir/train.rec`,
/// `train.idx` and `property`, in insightface's layout, and writes the label map to
/// `out_dir/labels.tsv`.
///
/// The encoded bytes are stored unchanged (no re-encoding, so no quality loss), after a full
/// decode that rejects corrupt files with an error naming them.
pub fn pack_folder(folder: &Path, out_dir: &Path) -> Result<PackSummary> {
    let source = ImageFolder::open(folder)?;
    let mut writer: Option<RecordDatasetWriter> = None;
    let mut size = (0, 0);
    let mut other_sizes = 0;
    for i in 0..source.len() {
        let face = source.encoded(i)?;
        let image = decode_rgb(&face.bytes, &face.origin)?;
        let dims = (image.height(), image.width());
        let writer = match writer.as_mut() {
            Some(writer) => {
                other_sizes += usize::from(dims != size);
                writer
            }
            None => {
                size = dims;
                writer.insert(RecordDatasetWriter::create(out_dir, dims.0, dims.1)?)
            }
        };
        writer.add_image(face.label, &face.bytes)?;
    }
    let writer = writer.expect("an opened image folder holds at least one image");
    let (images, identities) = writer.finish()?;
    source.write_label_map(&out_dir.join("labels.tsv"))?;
    Ok(PackSummary {
        images,
        repeated: images - source.len(),
        identities,
        size,
        other_sizes,
    })
}
