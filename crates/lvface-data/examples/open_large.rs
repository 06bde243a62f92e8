//! Opens a RecordIO set and prints how long it took and the process's peak memory; with
//! `--make N C` it first writes a set of `N` images over `C` identities whose index points every
//! image of a class at one record (see `write_shared_record_set`).
//!
//! ```sh
//! cargo run --release -p lvface-data --example open_large -- /tmp/big --make 16778216 1000
//! cargo run --release -p lvface-data --example open_large -- /tmp/big   # a second, warm open
//! ```
#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::time::Instant;

use lvface_data::{
    encode_jpeg, even_class_starts, write_shared_record_set, FaceSource, RecordDataset,
};

/// A line of `/proc/self/status` (`VmHWM`, `VmRSS`), in kB; 0 where there is none.
fn status_kb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

fn main() -> lvface_data::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = PathBuf::from(
        args.first()
            .expect("usage: open_large DIR [--make IMAGES IDS]"),
    );
    if args.get(1).map(String::as_str) == Some("--make") {
        let images: u64 = args[2].parse().expect("IMAGES");
        let ids: usize = args[3].parse().expect("IDS");
        let face = image::RgbImage::from_pixel(112, 112, image::Rgb([90, 120, 150]));
        let jpeg = encode_jpeg(&face, 90, "face")?;
        let start = Instant::now();
        write_shared_record_set(&dir, &even_class_starts(images, ids), &jpeg, (112, 112))?;
        println!(
            "made {images} images over {ids} identities in {:.1} s",
            start.elapsed().as_secs_f64()
        );
    }
    let before = status_kb("VmRSS:");
    let start = Instant::now();
    let dataset = RecordDataset::open(&dir)?;
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "open {:.2} s, {} images, {:?} classes, index {:?}, index memory {:.1} bytes/record, \
         process peak {} MB (resident before open {} MB, after {} MB)",
        seconds,
        dataset.len(),
        dataset.num_classes(),
        dataset.index_origin(),
        dataset.index().heap_bytes() as f64 / dataset.index().len() as f64,
        status_kb("VmHWM:") / 1024,
        before / 1024,
        status_kb("VmRSS:") / 1024,
    );
    Ok(())
}
