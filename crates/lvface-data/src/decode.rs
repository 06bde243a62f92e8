//! Decoding JPEG and PNG faces to RGB, resizing, normalising, and encoding.

use image::imageops::FilterType;
use image::{ImageFormat, RgbImage};

use crate::error::{DataError, Result};

/// Side of the square face crops insightface trains and evaluates on.
pub const FACE_SIZE: u32 = 112;

/// Largest width or height accepted from a file, so a forged header cannot ask for gigabytes.
const MAX_SIDE: u32 = 8192;

/// Decodes JPEG or PNG `bytes` to RGB (grey and alpha are converted); `origin` names the image in
/// errors (a file, or a `.rec` file with key and offset).
pub fn decode_rgb(bytes: &[u8], origin: &str) -> Result<RgbImage> {
    let fail = |reason: String| DataError::CorruptImage {
        origin: origin.to_string(),
        reason,
    };
    let format = image::guess_format(bytes).map_err(|e| fail(e.to_string()))?;
    if !matches!(format, ImageFormat::Jpeg | ImageFormat::Png) {
        return Err(fail(format!("{format:?} is not JPEG or PNG")));
    }
    let mut reader = image::ImageReader::with_format(std::io::Cursor::new(bytes), format);
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    reader.limits(limits);
    Ok(reader
        .decode()
        .map_err(|e| fail(e.to_string()))?
        .into_rgb8())
}

/// Decodes a face and resizes it (bilinear) to `size` x `size` when it is another size.
pub fn decode_face(bytes: &[u8], origin: &str, size: u32) -> Result<RgbImage> {
    let image = decode_rgb(bytes, origin)?;
    Ok(resize_to(image, size))
}

/// `image` resized (bilinear) to `size` x `size`, or unchanged when already that size.
pub fn resize_to(image: RgbImage, size: u32) -> RgbImage {
    if image.dimensions() == (size, size) {
        image
    } else {
        image::imageops::resize(&image, size, size, FilterType::Triangle)
    }
}

/// Writes `image` into `out` as planar RGB (`[3, height, width]`) normalised the insightface
/// way, `(pixel / 255 - 0.5) / 0.5`, which maps 0..=255 onto -1..=1.
///
/// # Panics
/// If `out` does not hold exactly `3 * height * width` values.
pub fn normalize_into(image: &RgbImage, out: &mut [f32]) {
    let plane = (image.width() * image.height()) as usize;
    assert_eq!(
        out.len(),
        3 * plane,
        "output should hold 3 planes of {plane} pixels"
    );
    for (i, pixel) in image.pixels().enumerate() {
        for c in 0..3 {
            out[c * plane + i] = (f32::from(pixel[c]) / 255.0 - 0.5) / 0.5;
        }
    }
}

/// Encodes `image` as JPEG at `quality` (1-100).
pub fn encode_jpeg(image: &RgbImage, quality: u8, origin: &str) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality.clamp(1, 100))
        .encode_image(image)
        .map_err(|e| DataError::Encode {
            origin: origin.to_string(),
            reason: e.to_string(),
        })?;
    Ok(out)
}

/// Encodes `image` as PNG (lossless).
pub fn encode_png(image: &RgbImage, origin: &str) -> Result<Vec<u8>> {
    let mut out = std::io::Cursor::new(Vec::new());
    image
        .write_to(&mut out, ImageFormat::Png)
        .map_err(|e| DataError::Encode {
            origin: origin.to_string(),
            reason: e.to_string(),
        })?;
    Ok(out.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 2) as u8, (y * 2) as u8, 200]))
    }

    #[test]
    fn png_round_trip_is_exact_and_normalised_per_plane() {
        let image = gradient(112, 112);
        let decoded = decode_face(&encode_png(&image, "t").unwrap(), "t", 112).unwrap();
        assert_eq!(decoded, image);
        let mut out = vec![0.0; 3 * 112 * 112];
        normalize_into(&decoded, &mut out);
        // Pixel (x=3, y=5) has RGB (6, 10, 200).
        let at = 5 * 112 + 3;
        let plane = 112 * 112;
        for (c, value) in [6.0f32, 10.0, 200.0].into_iter().enumerate() {
            assert!((out[c * plane + at] - (value / 127.5 - 1.0)).abs() < 1e-6);
        }
        assert_eq!(out[0], -1.0);
    }

    #[test]
    fn jpeg_decodes_close_and_other_sizes_are_resized() {
        let image = RgbImage::from_pixel(120, 96, image::Rgb([90, 140, 30]));
        let bytes = encode_jpeg(&image, 95, "t").unwrap();
        let face = decode_face(&bytes, "t", 112).unwrap();
        assert_eq!(face.dimensions(), (112, 112));
        let p = face.get_pixel(56, 56);
        for (got, want) in p.0.iter().zip([90u8, 140, 30]) {
            assert!((*got as i32 - want as i32).abs() <= 3, "{:?}", p);
        }
    }

    #[test]
    fn corrupt_and_foreign_bytes_name_their_origin() {
        let mut bytes = encode_jpeg(&gradient(112, 112), 90, "t").unwrap();
        bytes.truncate(bytes.len() / 3);
        bytes.extend_from_slice(&[0xff, 0x00].repeat(40));
        let err = decode_face(&bytes, "train.rec record 9 (byte 4096)", 112);
        // A cut JPEG may decode to grey or fail; either way nothing panics. Garbage must fail.
        if let Err(e) = err {
            assert!(e.to_string().contains("record 9"));
        }
        let err = decode_rgb(b"GIF89a....", "a/b.gif")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("a/b.gif: cannot decode image"), "{err}");
        let err = decode_rgb(&[0x89, b'P', b'N', b'G', 0, 0], "x.png")
            .unwrap_err()
            .to_string();
        assert!(err.contains("x.png"), "{err}");
    }
}
