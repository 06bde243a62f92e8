//! [`AugmentConfig`]: training augmentations, each applied with its own probability.

use image::imageops::FilterType;
use image::{Rgb, RgbImage};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};

/// Which augmentations run and how strongly. The default is insightface's training recipe: a
/// horizontal flip with probability 0.5 and nothing else. [`AugmentConfig::dali`] gives the
/// probabilities of insightface's optional DALI augmentation.
///
/// Applied in this order: down-and-up resize, Gaussian blur, colour jitter, grayscale, mask
/// occlusion, flip.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AugmentConfig {
    /// Probability of a horizontal flip.
    pub flip_p: f64,
    /// Probability of resizing down by a factor in `downscale_range` and back up.
    pub downscale_p: f64,
    /// Range of the down-scaling factor, within `(0, 1]`.
    pub downscale_range: [f64; 2],
    /// Probability of a Gaussian blur with a 3- or 5-pixel window.
    pub blur_p: f64,
    /// Probability of an HSV jitter.
    pub color_p: f64,
    /// Largest hue rotation in degrees (the rotation is uniform in `[0, hue_max_degrees]`).
    pub hue_max_degrees: f64,
    /// Range of the saturation factor.
    pub saturation_range: [f64; 2],
    /// Range of the brightness (HSV value) factor.
    pub brightness_range: [f64; 2],
    /// Probability of converting to grayscale (kept as three equal channels).
    pub gray_p: f64,
    /// Probability of drawing a synthetic face mask over the lower face.
    pub mask_p: f64,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        Self {
            flip_p: 0.5,
            downscale_p: 0.0,
            downscale_range: [0.5, 0.8],
            blur_p: 0.0,
            color_p: 0.0,
            hue_max_degrees: 20.0,
            saturation_range: [1.0, 1.2],
            brightness_range: [1.0, 1.0],
            gray_p: 0.0,
            mask_p: 0.0,
        }
    }
}

impl AugmentConfig {
    /// No augmentation at all (evaluation).
    pub fn none() -> Self {
        Self {
            flip_p: 0.0,
            ..Self::default()
        }
    }

    /// insightface's `dali_aug`: down-and-up resize to 56..89.6 pixels with p 0.1, blur p 0.2,
    /// HSV shift (hue up to 20 degrees, saturation 1..1.2) p 0.2, grayscale p 0.1, plus the flip.
    pub fn dali() -> Self {
        Self {
            downscale_p: 0.1,
            blur_p: 0.2,
            color_p: 0.2,
            gray_p: 0.1,
            ..Self::default()
        }
    }

    /// Checks every probability and range.
    pub fn validate(&self) -> Result<()> {
        let probabilities = [
            ("augment.flip_p", self.flip_p),
            ("augment.downscale_p", self.downscale_p),
            ("augment.blur_p", self.blur_p),
            ("augment.color_p", self.color_p),
            ("augment.gray_p", self.gray_p),
            ("augment.mask_p", self.mask_p),
        ];
        for (field, p) in probabilities {
            if !(0.0..=1.0).contains(&p) {
                return Err(DataError::config(field, "must be in [0, 1]", p));
            }
        }
        let ranges = [
            ("augment.downscale_range", self.downscale_range, 1e-3, 1.0),
            ("augment.saturation_range", self.saturation_range, 0.0, 10.0),
            ("augment.brightness_range", self.brightness_range, 0.0, 10.0),
        ];
        for (field, [lo, hi], min, max) in ranges {
            if !(lo >= min && lo <= hi && hi <= max) {
                let rule = format!("must be [lo, hi] with {min} <= lo <= hi <= {max}");
                return Err(DataError::config(field, &rule, format!("[{lo}, {hi}]")));
            }
        }
        if !(0.0..=180.0).contains(&self.hue_max_degrees) {
            return Err(DataError::config(
                "augment.hue_max_degrees",
                "must be in [0, 180]",
                self.hue_max_degrees,
            ));
        }
        Ok(())
    }

    /// Augments `image` with randomness from `rng`.
    pub fn apply(&self, mut image: RgbImage, rng: &mut ChaCha8Rng) -> RgbImage {
        if rng.random_bool(self.downscale_p) {
            let [lo, hi] = self.downscale_range;
            image = down_up(&image, uniform(rng, lo, hi));
        }
        if rng.random_bool(self.blur_p) {
            let radius = if rng.random_bool(0.5) { 1 } else { 2 };
            image = gaussian_blur(&image, radius);
        }
        if rng.random_bool(self.color_p) {
            let hue = uniform(rng, 0.0, self.hue_max_degrees);
            let [slo, shi] = self.saturation_range;
            let [blo, bhi] = self.brightness_range;
            hsv_jitter(
                &mut image,
                hue,
                uniform(rng, slo, shi),
                uniform(rng, blo, bhi),
            );
        }
        if rng.random_bool(self.gray_p) {
            grayscale(&mut image);
        }
        if rng.random_bool(self.mask_p) {
            draw_face_mask(&mut image, rng);
        }
        if rng.random_bool(self.flip_p) {
            image::imageops::flip_horizontal_in_place(&mut image);
        }
        image
    }
}

/// The random stream of one sample in one epoch: independent of worker count and order.
///
/// The three numbers form the ChaCha key, so distinct triples give unrelated streams.
pub fn sample_rng(seed: u64, epoch: u64, index: u64) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&epoch.to_le_bytes());
    key[16..24].copy_from_slice(&index.to_le_bytes());
    key[24..].copy_from_slice(b"lvfaceAu");
    ChaCha8Rng::from_seed(key)
}

fn uniform(rng: &mut ChaCha8Rng, lo: f64, hi: f64) -> f64 {
    if hi > lo {
        rng.random_range(lo..=hi)
    } else {
        lo
    }
}

/// Resizes down by `factor` and back to the original size (bilinear both ways).
pub fn down_up(image: &RgbImage, factor: f64) -> RgbImage {
    let (w, h) = image.dimensions();
    let small_w = ((w as f64 * factor).round() as u32).clamp(1, w);
    let small_h = ((h as f64 * factor).round() as u32).clamp(1, h);
    let small = image::imageops::resize(image, small_w, small_h, FilterType::Triangle);
    image::imageops::resize(&small, w, h, FilterType::Triangle)
}

/// Separable Gaussian blur with window `2 * radius + 1` and OpenCV's default sigma for that
/// window, `0.3 * (radius - 1) + 0.8`; edges are clamped.
pub fn gaussian_blur(image: &RgbImage, radius: usize) -> RgbImage {
    let sigma = 0.3 * (radius as f32 - 1.0) + 0.8;
    let kernel: Vec<f32> = (-(radius as i32)..=radius as i32)
        .map(|i| (-(i * i) as f32 / (2.0 * sigma * sigma)).exp())
        .collect();
    let total: f32 = kernel.iter().sum();
    let kernel: Vec<f32> = kernel.iter().map(|k| k / total).collect();
    let (w, h) = (image.width() as i32, image.height() as i32);
    let pass = |src: &RgbImage, dx: i32, dy: i32| {
        RgbImage::from_fn(w as u32, h as u32, |x, y| {
            let mut acc = [0f32; 3];
            for (k, weight) in kernel.iter().enumerate() {
                let off = k as i32 - radius as i32;
                let sx = (x as i32 + off * dx).clamp(0, w - 1) as u32;
                let sy = (y as i32 + off * dy).clamp(0, h - 1) as u32;
                let p = src.get_pixel(sx, sy);
                for c in 0..3 {
                    acc[c] += weight * f32::from(p[c]);
                }
            }
            Rgb(acc.map(|v| v.round().clamp(0.0, 255.0) as u8))
        })
    };
    pass(&pass(image, 1, 0), 0, 1)
}

/// Rotates hue by `hue_degrees` and scales saturation and value, in HSV space.
pub fn hsv_jitter(image: &mut RgbImage, hue_degrees: f64, saturation: f64, value: f64) {
    for pixel in image.pixels_mut() {
        let [r, g, b] = pixel.0.map(|c| f64::from(c) / 255.0);
        let max = r.max(g).max(b);
        let min = r.min(g).min(b);
        let delta = max - min;
        let mut hue = if delta == 0.0 {
            0.0
        } else if max == r {
            60.0 * ((g - b) / delta).rem_euclid(6.0)
        } else if max == g {
            60.0 * ((b - r) / delta + 2.0)
        } else {
            60.0 * ((r - g) / delta + 4.0)
        };
        hue = (hue + hue_degrees).rem_euclid(360.0);
        let s = if max == 0.0 {
            0.0
        } else {
            (delta / max * saturation).min(1.0)
        };
        let v = (max * value).min(1.0);
        let c = v * s;
        let x = c * (1.0 - ((hue / 60.0).rem_euclid(2.0) - 1.0).abs());
        let (r1, g1, b1) = match (hue / 60.0) as u32 {
            0 => (c, x, 0.0),
            1 => (x, c, 0.0),
            2 => (0.0, c, x),
            3 => (0.0, x, c),
            4 => (x, 0.0, c),
            _ => (c, 0.0, x),
        };
        let m = v - c;
        pixel.0 = [r1, g1, b1].map(|ch| ((ch + m) * 255.0).round().clamp(0.0, 255.0) as u8);
    }
}

/// Replaces each pixel by its ITU-R 601 luma in all three channels.
pub fn grayscale(image: &mut RgbImage) {
    for pixel in image.pixels_mut() {
        let [r, g, b] = pixel.0.map(f32::from);
        let y = (0.299 * r + 0.587 * g + 0.114 * b)
            .round()
            .clamp(0.0, 255.0) as u8;
        pixel.0 = [y, y, y];
    }
}

/// Draws a surgical-mask-like shape over the lower face of an aligned crop: from just under the
/// nose tip (about 0.6 of the height in insightface's 112x112 template) to the chin, rounded at
/// the bottom, in a random mask colour with horizontal pleats.
pub fn draw_face_mask(image: &mut RgbImage, rng: &mut ChaCha8Rng) {
    const COLOURS: [[f32; 3]; 5] = [
        [170., 200., 230.],
        [236., 236., 236.],
        [35., 35., 40.],
        [150., 200., 180.],
        [220., 190., 200.],
    ];
    let (w, h) = (image.width() as f32, image.height() as f32);
    let top = h * uniform(rng, 0.58, 0.66) as f32;
    let bottom = h * uniform(rng, 0.93, 1.0) as f32;
    let left = w * uniform(rng, 0.10, 0.18) as f32;
    let right = w * (1.0 - uniform(rng, 0.10, 0.18) as f32);
    let colour = COLOURS[rng.random_range(0..COLOURS.len())];
    let centre = (left + right) / 2.0;
    let half = (right - left) / 2.0;
    let round_from = top + (bottom - top) * 0.4;
    for y in top as u32..(bottom.ceil() as u32).min(image.height()) {
        let yf = y as f32 + 0.5;
        let rel = ((yf - round_from) / (bottom - round_from)).max(0.0);
        let half_y = half * (1.0 - rel * rel).max(0.0).sqrt();
        let shade = if ((yf - top) / (h * 0.06)) as u32 % 2 == 0 {
            1.0
        } else {
            0.9
        };
        let x0 = (centre - half_y).max(0.0) as u32;
        let x1 = ((centre + half_y).ceil() as u32).min(image.width());
        for x in x0..x1 {
            image.put_pixel(
                x,
                y,
                Rgb(colour.map(|c| (c * shade).clamp(0.0, 255.0) as u8)),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn face() -> RgbImage {
        RgbImage::from_fn(112, 112, |x, y| {
            Rgb([x as u8 * 2, y as u8 * 2, ((x + y) % 256) as u8])
        })
    }

    #[test]
    fn default_is_insightface_flip_only() {
        let config = AugmentConfig::default();
        config.validate().unwrap();
        let image = face();
        let mut flipped = 0;
        for index in 0..200 {
            let out = config.apply(image.clone(), &mut sample_rng(7, 0, index));
            if out != image {
                // Only a flip may happen: column x of the output is column 111 - x of the input.
                assert_eq!(out.get_pixel(0, 5), image.get_pixel(111, 5));
                flipped += 1;
            }
        }
        assert!((70..=130).contains(&flipped), "{flipped} flips of 200");
    }

    #[test]
    fn same_seed_epoch_and_index_give_the_same_image() {
        let config = AugmentConfig {
            mask_p: 0.5,
            ..AugmentConfig::dali()
        };
        let a = config.apply(face(), &mut sample_rng(1, 2, 3));
        assert_eq!(a, config.apply(face(), &mut sample_rng(1, 2, 3)));
        let differs = (0..20).any(|i| config.apply(face(), &mut sample_rng(1, 2, 100 + i)) != a);
        assert!(differs);
    }

    #[test]
    fn blur_of_an_impulse_is_the_normalised_kernel() {
        let mut image = RgbImage::from_pixel(9, 9, Rgb([0, 0, 0]));
        image.put_pixel(4, 4, Rgb([255, 255, 255]));
        let out = gaussian_blur(&image, 1);
        // sigma 0.8: 1-D weights e^(-1/1.28) / (1 + 2 e^(-1/1.28)) at 1, 1 / (...) at 0.
        let e = (-1.0f32 / 1.28).exp();
        let (k0, k1) = (1.0 / (1.0 + 2.0 * e), e / (1.0 + 2.0 * e));
        assert_eq!(out.get_pixel(4, 4)[0], (255.0 * k0 * k0).round() as u8);
        assert_eq!(out.get_pixel(5, 4)[0], (255.0 * k0 * k1).round() as u8);
        assert_eq!(out.get_pixel(6, 4)[0], 0);
    }

    #[test]
    fn colour_operations_match_their_formulas() {
        let mut image = RgbImage::from_pixel(1, 1, Rgb([255, 0, 0]));
        hsv_jitter(&mut image, 120.0, 1.0, 1.0);
        assert_eq!(image.get_pixel(0, 0).0, [0, 255, 0]);
        let mut image = RgbImage::from_pixel(1, 1, Rgb([200, 100, 100]));
        hsv_jitter(&mut image, 0.0, 0.5, 0.5);
        // HSV (0, 0.5, 0.784) -> saturation 0.25, value 0.392: (100, 75, 75).
        assert_eq!(image.get_pixel(0, 0).0, [100, 75, 75]);
        let mut image = RgbImage::from_pixel(1, 1, Rgb([100, 150, 200]));
        grayscale(&mut image);
        let y = (0.299f32 * 100.0 + 0.587 * 150.0 + 0.114 * 200.0).round() as u8;
        assert_eq!(image.get_pixel(0, 0).0, [y; 3]);
    }

    #[test]
    fn mask_covers_the_lower_face_only() {
        let mut image = RgbImage::from_pixel(112, 112, Rgb([1, 2, 3]));
        draw_face_mask(&mut image, &mut sample_rng(0, 0, 0));
        let changed = |y: u32| {
            (0..112)
                .filter(|&x| image.get_pixel(x, y).0 != [1, 2, 3])
                .count()
        };
        assert_eq!(
            (0..64).map(changed).sum::<usize>(),
            0,
            "eyes and nose stay visible"
        );
        assert!(changed(85) > 70, "the mouth row is mostly covered");
        assert_eq!(
            image.get_pixel(2, 85).0,
            [1, 2, 3],
            "the cheek edge stays visible"
        );
    }

    #[test]
    fn down_up_keeps_size_and_blurs_detail() {
        let checker = RgbImage::from_fn(112, 112, |x, y| {
            if (x + y) % 2 == 0 {
                Rgb([255; 3])
            } else {
                Rgb([0; 3])
            }
        });
        let out = down_up(&checker, 0.5);
        assert_eq!(out.dimensions(), (112, 112));
        let spread =
            out.pixels().map(|p| p[0]).max().unwrap() - out.pixels().map(|p| p[0]).min().unwrap();
        assert!(
            spread < 100,
            "a 1-pixel checkerboard does not survive halving ({spread})"
        );
    }

    #[test]
    fn invalid_values_are_named() {
        let err = AugmentConfig {
            blur_p: 1.5,
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "data.augment.blur_p must be in [0, 1], got 1.5"
        );
        let bad = AugmentConfig {
            downscale_range: [0.9, 0.5],
            ..Default::default()
        };
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("downscale_range"));
    }
}
