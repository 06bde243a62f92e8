//! [`write_shared_record_set`]: an insightface-layout set of any number of images that takes
//! little disk, for testing readers and trainers at the key counts of the real sets.

use std::io::{BufWriter, Write};
use std::path::Path;

use crate::error::{DataError, Result};
use crate::ir_header::IrHeader;
use crate::property::Property;
use crate::record_io::RecordWriter;

/// The first image key of every class, and one past the last image, when `images` images are
/// spread evenly, in key order, over `identities` classes (image key `k` has class
/// `(k - 1) · identities / images`): `identities + 1` keys.
pub fn even_class_starts(images: u64, identities: usize) -> Vec<u64> {
    (0..=identities as u64)
        .map(|c| 1 + (c * images).div_ceil(identities as u64))
        .collect()
}

/// Writes `dir/train.rec`, `train.idx` and `property` in insightface's layout for the classes
/// whose image keys start at `class_starts` (class `c` has keys `class_starts[c]..
/// class_starts[c + 1]`; the first is 1, the last one past the last image; see
/// [`even_class_starts`]). The `.rec` file holds one image record per class (with `image` as its
/// bytes) and the index points every image key of a class at that record. A class may have no
/// image (an empty range, as insightface's builder writes for one), which gives a classifier of
/// a real set's width over few images.
///
/// Everything else is as insightface's builder writes it: image keys `1..=N` in class order,
/// identity records `N+1..=N+C` with float32 labels `[first, end)`, and record 0 with float32
/// labels `[N+1, N+C+1]`, rounded as float32 rounds them above 2^24; the `.idx` lists key 0 last.
/// A set of 16.8 M images takes about 300 MB of index and a few kilobytes of records.
pub fn write_shared_record_set(
    dir: &Path,
    class_starts: &[u64],
    image: &[u8],
    size: (u32, u32),
) -> Result<()> {
    let ordered = class_starts.windows(2).all(|w| w[0] <= w[1]);
    if class_starts.len() < 2 || class_starts[0] != 1 || !ordered {
        return Err(DataError::BadWrite {
            path: dir.to_path_buf(),
            reason: "class starts must begin at key 1 and never decrease, one more than the \
                     classes"
                .into(),
        });
    }
    let starts = class_starts;
    let identities = starts.len() - 1;
    let images = starts[identities] - 1;
    std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    let rec_path = dir.join("train.rec");
    let idx_path = dir.join("train.idx");
    let rec = std::fs::File::create(&rec_path).map_err(|e| DataError::io(&rec_path, e))?;
    let mut records = RecordWriter::new(BufWriter::new(rec), &rec_path);
    let images_end = images + 1;
    let mut image_offsets = Vec::with_capacity(identities);
    for class in 0..identities {
        let start = starts[class];
        let offset = if start < starts[class + 1] {
            records.write_record(&IrHeader::scalar(class as f32, start).pack(image))?
        } else {
            0
        };
        image_offsets.push(offset);
    }
    let mut identity_offsets = Vec::with_capacity(identities);
    for class in 0..identities {
        let (start, end) = (starts[class], starts[class + 1]);
        let header = IrHeader::vector(vec![start as f32, end as f32], images_end + class as u64);
        identity_offsets.push(records.write_record(&header.pack(&[]))?);
    }
    let identities_end = images_end + identities as u64;
    let header = IrHeader::vector(vec![images_end as f32, identities_end as f32], 0);
    let header_offset = records.write_record(&header.pack(&[]))?;
    records.finish()?;

    let idx = std::fs::File::create(&idx_path).map_err(|e| DataError::io(&idx_path, e))?;
    let mut idx = BufWriter::with_capacity(1 << 20, idx);
    let io = |e| DataError::io(&idx_path, e);
    for (class, &offset) in image_offsets.iter().enumerate() {
        for key in starts[class]..starts[class + 1] {
            writeln!(idx, "{key}\t{offset}").map_err(io)?;
        }
    }
    for (class, &offset) in identity_offsets.iter().enumerate() {
        writeln!(idx, "{}\t{offset}", images_end + class as u64).map_err(io)?;
    }
    writeln!(idx, "0\t{header_offset}").map_err(io)?;
    idx.flush().map_err(io)?;
    Property {
        classes: identities,
        height: size.0,
        width: size.1,
    }
    .write(&dir.join("property"))
}
