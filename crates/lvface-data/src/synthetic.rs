//! [`SyntheticFaces`]: face-like images of made-up identities, for tests and demos without data.

use std::path::Path;

use image::{Rgb, RgbImage};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::augment::{draw_face_mask, gaussian_blur};
use crate::bin_pairs::BinPairs;
use crate::decode::{encode_jpeg, encode_png};
use crate::error::{DataError, Result};
use crate::record_dataset_writer::RecordDatasetWriter;

/// How synthetic images are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageCodec {
    /// JPEG at [`SyntheticConfig::jpeg_quality`], as real training sets are stored.
    Jpeg,
    /// Lossless PNG.
    Png,
}

/// What to generate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyntheticConfig {
    /// Training identities (labels `0..identities`).
    pub identities: usize,
    /// Images per training identity.
    pub images_per_identity: usize,
    /// Identities kept out of training, used only by the verification pairs.
    pub held_out_identities: usize,
    /// Verification pairs; even-numbered pairs are same-identity, odd ones different.
    pub pairs: usize,
    /// Seed of everything; the same seed gives the same bytes on every platform.
    pub seed: u64,
    /// Side of the square images.
    pub size: u32,
    /// Strength of per-image nuisance (pose, light, blur, noise, occlusion); 0 renders every
    /// image of an identity the same, 1 is the default.
    pub nuisance: f32,
    /// Encoding of the images.
    pub codec: ImageCodec,
    /// JPEG quality (1-100).
    pub jpeg_quality: u8,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        Self {
            identities: 100,
            images_per_identity: 20,
            held_out_identities: 20,
            pairs: 200,
            seed: 0,
            size: 112,
            nuisance: 1.0,
            codec: ImageCodec::Jpeg,
            jpeg_quality: 95,
        }
    }
}

impl SyntheticConfig {
    /// Checks the counts and ranges.
    pub fn validate(&self) -> Result<()> {
        if self.identities == 0 || self.identities >= 1 << 24 {
            return Err(DataError::config(
                "synthetic.identities",
                "must be in 1..2^24",
                self.identities,
            ));
        }
        if self.images_per_identity == 0 {
            return Err(DataError::config(
                "synthetic.images_per_identity",
                "must be positive",
                0,
            ));
        }
        if self.pairs > 0 && self.held_out_identities < 2 {
            return Err(DataError::config(
                "synthetic.held_out_identities",
                "must be at least 2 when pairs are asked for",
                self.held_out_identities,
            ));
        }
        if !(32..=1024).contains(&self.size) {
            return Err(DataError::config(
                "synthetic.size",
                "must be in 32..=1024",
                self.size,
            ));
        }
        if !(0.0..=2.0).contains(&self.nuisance) {
            return Err(DataError::config(
                "synthetic.nuisance",
                "must be in [0, 2]",
                self.nuisance,
            ));
        }
        if !(1..=100).contains(&self.jpeg_quality) {
            return Err(DataError::config(
                "synthetic.jpeg_quality",
                "must be in 1..=100",
                self.jpeg_quality,
            ));
        }
        Ok(())
    }
}

/// The fixed look of one identity, in units of the image side.
#[derive(Debug, Clone)]
struct Traits {
    skin: [f32; 3],
    hair: [f32; 3],
    iris: [f32; 3],
    lips: [f32; 3],
    face_half_width: f32,
    face_half_height: f32,
    jaw: f32,
    hairline: f32,
    eye_y: f32,
    eye_dx: f32,
    eye_rx: f32,
    eye_ry: f32,
    brow_gap: f32,
    brow_thickness: f32,
    brow_tilt: f32,
    nose_length: f32,
    nose_width: f32,
    mouth_y: f32,
    mouth_half_width: f32,
    lip_thickness: f32,
    beard: bool,
    glasses: bool,
}

fn lerp3(a: [f32; 3], b: [f32; 3], t: f32) -> [f32; 3] {
    [0, 1, 2].map(|c| a[c] + (b[c] - a[c]) * t)
}

impl Traits {
    fn sample(rng: &mut ChaCha8Rng) -> Self {
        let mut u = |lo: f32, hi: f32| rng.random_range(lo..hi);
        let tone = u(0.0, 1.0);
        let warm = u(-12.0, 12.0);
        let skin = lerp3([238.0, 206.0, 182.0], [96.0, 62.0, 46.0], tone);
        let skin = [skin[0] + warm, skin[1], skin[2] - warm];
        const HAIR: [[f32; 3]; 6] = [
            [25.0, 20.0, 18.0],
            [70.0, 45.0, 30.0],
            [120.0, 80.0, 45.0],
            [205.0, 170.0, 110.0],
            [150.0, 65.0, 35.0],
            [165.0, 165.0, 165.0],
        ];
        const IRIS: [[f32; 3]; 4] = [
            [70.0, 45.0, 25.0],
            [60.0, 100.0, 150.0],
            [70.0, 110.0, 70.0],
            [100.0, 100.0, 110.0],
        ];
        let hair_i = u(0.0, 6.0) as usize;
        let iris_i = u(0.0, 4.0) as usize;
        let hair = lerp3(
            HAIR[hair_i.min(5)],
            [u(0.0, 255.0), u(0.0, 255.0), u(0.0, 255.0)],
            0.1,
        );
        let lips = lerp3(skin, [170.0, 60.0, 70.0], u(0.3, 0.7));
        Self {
            skin,
            hair,
            iris: IRIS[iris_i.min(3)],
            lips,
            face_half_width: u(0.28, 0.37),
            face_half_height: u(0.38, 0.47),
            jaw: u(0.55, 0.95),
            hairline: u(0.12, 0.24),
            eye_y: u(0.40, 0.47),
            eye_dx: u(0.14, 0.20),
            eye_rx: u(0.045, 0.068),
            eye_ry: u(0.018, 0.032),
            brow_gap: u(0.045, 0.085),
            brow_thickness: u(0.010, 0.028),
            brow_tilt: u(-0.25, 0.25),
            nose_length: u(0.10, 0.17),
            nose_width: u(0.030, 0.060),
            mouth_y: u(0.70, 0.78),
            mouth_half_width: u(0.075, 0.13),
            lip_thickness: u(0.012, 0.028),
            beard: u(0.0, 1.0) < 0.2,
            glasses: u(0.0, 1.0) < 0.15,
        }
    }
}

/// Coverage of an ellipse at `(x, y)` relative to its centre, antialiased over about one pixel
/// (`px` is one pixel in the same units).
fn ellipse(x: f32, y: f32, rx: f32, ry: f32, px: f32) -> f32 {
    if rx <= 0.0 || ry <= 0.0 {
        return 0.0;
    }
    let d = ((x / rx).powi(2) + (y / ry).powi(2)).sqrt() - 1.0;
    (0.5 - d * rx.min(ry) / px).clamp(0.0, 1.0)
}

fn blend(dst: &mut [f32; 3], colour: [f32; 3], alpha: f32) {
    for c in 0..3 {
        dst[c] += (colour[c] - dst[c]) * alpha;
    }
}

/// A generator of face-like images: each identity has its own face shape, skin tone, hair,
/// eye, brow, nose and mouth geometry (and sometimes a beard or glasses); each image adds pose
/// (shift, rotation, scale, yaw), expression, light, background, blur, noise and occasional
/// occlusion. Identities are separable but not from raw pixels alone.
#[derive(Debug, Clone)]
pub struct SyntheticFaces {
    config: SyntheticConfig,
}

impl SyntheticFaces {
    /// A generator for `config`, checked.
    pub fn new(config: SyntheticConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self { config })
    }

    /// The configuration.
    pub fn config(&self) -> &SyntheticConfig {
        &self.config
    }

    fn rng(&self, kind: &[u8; 8], identity: u64, image: u64) -> ChaCha8Rng {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&self.config.seed.to_le_bytes());
        key[8..16].copy_from_slice(kind);
        key[16..24].copy_from_slice(&identity.to_le_bytes());
        key[24..].copy_from_slice(&image.to_le_bytes());
        ChaCha8Rng::from_seed(key)
    }

    /// Renders image `image` of identity `identity` (held-out identities are numbered after the
    /// training ones).
    pub fn render(&self, identity: u64, image: u64) -> RgbImage {
        let t = Traits::sample(&mut self.rng(b"traits\0\0", identity, 0));
        let mut rng = self.rng(b"nuisance", identity, image);
        let n = self.config.nuisance;
        let mut u = |lo: f32, hi: f32| {
            if hi > lo {
                rng.random_range(lo..hi)
            } else {
                lo
            }
        };
        let (shift_x, shift_y) = (u(-0.03, 0.03) * n, u(-0.03, 0.03) * n);
        let angle = u(-0.1, 0.1) * n;
        let scale = 1.0 + u(-0.06, 0.06) * n;
        let yaw = u(-0.03, 0.03) * n;
        let smile = u(-0.5, 1.0) * n.min(1.0);
        let open = (u(-0.6, 1.0) * n).max(0.0);
        let light_angle = u(0.0, std::f32::consts::TAU);
        let light = u(0.0, 0.2) * n;
        let brightness = 1.0 + u(-0.12, 0.1) * n;
        let mut tint = || 128.0 + u(-100.0, 100.0) * n.min(1.0);
        let background = [tint(), tint(), tint()];
        let blur = u(0.0, 1.0) < 0.3 * n;
        let noise = u(0.0, 7.0) * n;
        let occlusion = u(0.0, 1.0);

        let size = self.config.size;
        let s = size as f32;
        let px = 1.0 / s;
        let (sin, cos) = angle.sin_cos();
        let mut out = RgbImage::new(size, size);
        for (xi, yi, pixel) in out.enumerate_pixels_mut() {
            // Image position, centred, in units of the side; then undo the pose.
            let (ix, iy) = (
                (xi as f32 + 0.5) / s - 0.5 - shift_x,
                (yi as f32 + 0.5) / s - 0.5 - shift_y,
            );
            let x = (cos * ix + sin * iy) / scale;
            let y = (-sin * ix + cos * iy) / scale + 0.5;
            let fx = x - yaw; // features move with the yaw, the outline less so
            let mut c = background;
            // Hair mass behind the head.
            let hair_top = 0.5 - t.face_half_height - 0.03;
            let hair = ellipse(x, y - (hair_top + 0.2), t.face_half_width + 0.05, 0.24, px);
            blend(&mut c, t.hair, hair * ((0.5 - y) * 12.0).clamp(0.0, 1.0));
            // Face: an ellipse whose lower half narrows towards the jaw.
            let dy = y - 0.5;
            let narrow = if dy > 0.0 {
                1.0 - (1.0 - t.jaw) * (dy / t.face_half_height)
            } else {
                1.0
            };
            let face = ellipse(
                x,
                dy,
                t.face_half_width * narrow.max(0.3),
                t.face_half_height,
                px,
            );
            blend(&mut c, t.skin, face);
            // Hairline over the forehead.
            let forehead_top = 0.5 - t.face_half_height;
            let hairline = ((forehead_top + t.hairline - y) / px).clamp(0.0, 1.0);
            blend(&mut c, t.hair, face * hairline);
            if t.beard {
                let beard = ellipse(x, y - (t.mouth_y + 0.04), t.face_half_width * 0.8, 0.12, px);
                blend(&mut c, lerp3(t.hair, t.skin, 0.35), beard * face * 0.85);
            }
            for side in [-1.0f32, 1.0] {
                let ex = fx - side * t.eye_dx;
                let ey = y - t.eye_y;
                // Brow: a thick tilted bar above the eye.
                let by = ey + t.brow_gap + side * t.brow_tilt * ex;
                let brow = ellipse(ex, by, t.eye_rx * 1.3, t.brow_thickness, px);
                blend(&mut c, lerp3(t.hair, [0.0; 3], 0.3), brow);
                let white = ellipse(ex, ey, t.eye_rx, t.eye_ry, px);
                blend(&mut c, [235.0, 235.0, 230.0], white);
                blend(
                    &mut c,
                    t.iris,
                    ellipse(ex, ey, t.eye_ry, t.eye_ry, px) * white,
                );
                blend(
                    &mut c,
                    [10.0; 3],
                    ellipse(ex, ey, t.eye_ry * 0.45, t.eye_ry * 0.45, px),
                );
                if t.glasses {
                    let outer = ellipse(ex, ey, t.eye_rx * 1.7, t.eye_rx * 1.4, px);
                    let inner = ellipse(ex, ey, t.eye_rx * 1.7 - 0.012, t.eye_rx * 1.4 - 0.012, px);
                    blend(&mut c, [20.0, 20.0, 25.0], (outer - inner).max(0.0));
                }
            }
            // Nose: a shaded ridge and two nostrils.
            let nose_top = t.eye_y + 0.02;
            let ny = y - (nose_top + t.nose_length / 2.0);
            let ridge = ellipse(fx - 0.01, ny, t.nose_width * 0.35, t.nose_length / 2.0, px);
            blend(&mut c, lerp3(t.skin, [0.0; 3], 0.25), ridge * 0.6);
            for side in [-1.0f32, 1.0] {
                let nostril = ellipse(
                    fx - side * t.nose_width * 0.5,
                    y - nose_top - t.nose_length,
                    t.nose_width * 0.3,
                    0.012,
                    px,
                );
                blend(&mut c, lerp3(t.skin, [0.0; 3], 0.55), nostril);
            }
            // Mouth: lips bent by the smile, dark inside when open.
            let mx = fx / t.mouth_half_width;
            let my = y - t.mouth_y + smile * 0.02 * (1.0 - mx * mx);
            let gap = open * 0.015;
            let lips = ellipse(fx, my, t.mouth_half_width, t.lip_thickness + gap, px);
            blend(&mut c, t.lips, lips);
            blend(
                &mut c,
                [45.0, 15.0, 20.0],
                ellipse(fx, my, t.mouth_half_width * 0.8, gap, px),
            );
            // Directional light and exposure.
            let shade = brightness
                * (1.0 + light * (ix * light_angle.cos() + iy * light_angle.sin()) * 2.0);
            *pixel = Rgb(c.map(|v| (v * shade).clamp(0.0, 255.0) as u8));
        }
        if occlusion < 0.06 * n {
            draw_face_mask(&mut out, &mut rng);
        } else if occlusion < 0.1 * n {
            // Sunglasses: a dark band over both eyes.
            let y0 = ((t.eye_y - 0.05 + shift_y) * s).max(0.0) as u32;
            let y1 = (((t.eye_y + 0.04 + shift_y) * s) as u32).min(size);
            let x0 = ((0.5 - t.eye_dx - 0.09 + shift_x) * s).max(0.0) as u32;
            let x1 = (((0.5 + t.eye_dx + 0.09 + shift_x) * s) as u32).min(size);
            for y in y0..y1 {
                for x in x0..x1 {
                    out.put_pixel(x, y, Rgb([15, 15, 20]));
                }
            }
        }
        if blur {
            out = gaussian_blur(&out, 1);
        }
        if noise > 0.0 {
            for pixel in out.pixels_mut() {
                for c in 0..3 {
                    // Box-Muller: a standard normal from two uniforms.
                    let (a, b): (f32, f32) = (rng.random_range(f32::EPSILON..1.0), rng.random());
                    let z = (-2.0 * a.ln()).sqrt() * (std::f32::consts::TAU * b).cos();
                    pixel[c] = (f32::from(pixel[c]) + z * noise).round().clamp(0.0, 255.0) as u8;
                }
            }
        }
        out
    }

    /// Renders and encodes one image.
    pub fn encoded(&self, identity: u64, image: u64) -> Result<Vec<u8>> {
        let origin = format!("synthetic identity {identity} image {image}");
        self.encode(&self.render(identity, image), &origin)
    }

    fn encode(&self, image: &RgbImage, origin: &str) -> Result<Vec<u8>> {
        match self.config.codec {
            ImageCodec::Jpeg => encode_jpeg(image, self.config.jpeg_quality, origin),
            ImageCodec::Png => encode_png(image, origin),
        }
    }

    /// Writes the training identities to `dir` as insightface RecordIO (`train.rec`,
    /// `train.idx`, `property`); returns the number of images and identities.
    pub fn write_rec(&self, dir: &Path) -> Result<(usize, usize)> {
        let size = self.config.size;
        let mut writer = RecordDatasetWriter::create(dir, size, size)?;
        for identity in 0..self.config.identities {
            for image in 0..self.config.images_per_identity {
                writer.add_image(identity, &self.encoded(identity as u64, image as u64)?)?;
            }
        }
        writer.finish()
    }

    /// Writes the training identities to `dir/<identity>/<image>.{jpg,png}`, folder names
    /// zero-padded so that sorted order is label order.
    pub fn write_folders(&self, dir: &Path) -> Result<()> {
        let ext = match self.config.codec {
            ImageCodec::Jpeg => "jpg",
            ImageCodec::Png => "png",
        };
        for identity in 0..self.config.identities {
            let folder = dir.join(format!("{identity:07}"));
            std::fs::create_dir_all(&folder).map_err(|e| DataError::io(&folder, e))?;
            for image in 0..self.config.images_per_identity {
                let path = folder.join(format!("{image:05}.{ext}"));
                let bytes = self.encoded(identity as u64, image as u64)?;
                std::fs::write(&path, bytes).map_err(|e| DataError::io(&path, e))?;
            }
        }
        Ok(())
    }

    /// The pairs of [`SyntheticFaces::verification_pairs`] as `(identity, image)` of both sides
    /// and whether they are the same identity, without rendering anything.
    fn pair_draws(&self) -> Vec<([(u64, u64); 2], bool)> {
        let first = self.config.identities as u64;
        let held = self.config.held_out_identities as u64;
        let mut rng = self.rng(b"pairs\0\0\0", 0, 0);
        (0..self.config.pairs as u64)
            .map(|pair| {
                let same = pair % 2 == 0;
                let a = first + rng.random_range(0..held);
                let b = if same {
                    a
                } else {
                    first + (a - first + rng.random_range(1..held)) % held
                };
                // Image numbers are unique per pair, so no image appears twice.
                ([(a, 2 * pair), (b, 2 * pair + 1)], same)
            })
            .collect()
    }

    /// Verification pairs drawn from the held-out identities: even pairs show one identity
    /// twice (two different images), odd pairs two different identities.
    pub fn verification_pairs(&self) -> Result<BinPairs> {
        let mut set = BinPairs::default();
        for ([(a, image_a), (b, image_b)], same) in self.pair_draws() {
            set.images.push(self.encoded(a, image_a)?);
            set.images.push(self.encoded(b, image_b)?);
            set.issame.push(same);
        }
        Ok(set)
    }

    /// The pairs of [`SyntheticFaces::verification_pairs`] (same identities, same images, same
    /// `issame`) with a face mask ([`draw_face_mask`]) drawn on the second image of every pair:
    /// insightface's masked-face protocol, a masked probe against an unmasked gallery image.
    /// The first image of each pair is byte for byte the one of the plain set. The mask of pair
    /// `i` comes from its own random stream, keyed by the seed and `i`, so it is the same on
    /// every call and leaves every other draw unchanged.
    pub fn masked_verification_pairs(&self) -> Result<BinPairs> {
        let mut set = BinPairs::default();
        for (pair, ([(a, image_a), (b, image_b)], same)) in
            self.pair_draws().into_iter().enumerate()
        {
            set.images.push(self.encoded(a, image_a)?);
            let mut probe = self.render(b, image_b);
            draw_face_mask(&mut probe, &mut self.rng(b"pairmask", pair as u64, 0));
            let origin = format!("synthetic identity {b} image {image_b} masked");
            set.images.push(self.encode(&probe, &origin)?);
            set.issame.push(same);
        }
        Ok(set)
    }

    /// Writes [`SyntheticFaces::verification_pairs`] to `path` as a `.bin` pickle.
    pub fn write_bin(&self, path: &Path) -> Result<()> {
        self.verification_pairs()?.write(path)
    }

    /// Writes [`SyntheticFaces::masked_verification_pairs`] to `path` as a `.bin` pickle.
    pub fn write_masked_bin(&self, path: &Path) -> Result<()> {
        self.masked_verification_pairs()?.write(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(seed: u64) -> SyntheticFaces {
        SyntheticFaces::new(SyntheticConfig {
            identities: 3,
            images_per_identity: 2,
            held_out_identities: 3,
            pairs: 6,
            seed,
            codec: ImageCodec::Png,
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn rendering_is_a_function_of_seed_identity_and_image() {
        let faces = small(5);
        let a = faces.render(1, 2);
        assert_eq!(a.dimensions(), (112, 112));
        assert_eq!(a, faces.render(1, 2));
        assert_ne!(a, faces.render(1, 3));
        assert_ne!(a, small(6).render(1, 2));
    }

    /// RGB thumbnails of the central face region as vectors, for nearest-neighbour checks.
    fn thumb(image: &RgbImage) -> Vec<f32> {
        let centre = image::imageops::crop_imm(image, 22, 22, 68, 68).to_image();
        let small = image::imageops::resize(&centre, 17, 17, image::imageops::FilterType::Triangle);
        small.pixels().flat_map(|p| p.0.map(f32::from)).collect()
    }

    fn dist(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum()
    }

    /// Leave-one-out nearest-neighbour accuracy on raw thumbnails of `ids` x `per` images.
    fn nearest_neighbour_accuracy(faces: &SyntheticFaces, ids: u64, per: u64) -> f32 {
        let thumbs: Vec<(u64, Vec<f32>)> = (0..ids)
            .flat_map(|i| (0..per).map(move |k| (i, k)))
            .map(|(i, k)| (i, thumb(&faces.render(i, k))))
            .collect();
        let correct = (0..thumbs.len())
            .filter(|&a| {
                let nearest = (0..thumbs.len())
                    .filter(|&b| b != a)
                    .min_by(|&b, &c| {
                        dist(&thumbs[a].1, &thumbs[b].1)
                            .total_cmp(&dist(&thumbs[a].1, &thumbs[c].1))
                    })
                    .unwrap();
                thumbs[nearest].0 == thumbs[a].0
            })
            .count();
        correct as f32 / thumbs.len() as f32
    }

    #[test]
    fn identities_are_learnable_but_not_trivial() {
        let config = SyntheticConfig {
            identities: 10,
            ..Default::default()
        };
        let faces = SyntheticFaces::new(config.clone()).unwrap();
        let accuracy = nearest_neighbour_accuracy(&faces, 10, 4);
        // Chance is 1/10: identity shows through the nuisance, yet raw pixels do not solve it.
        assert!(
            (0.2..0.95).contains(&accuracy),
            "nearest-neighbour accuracy {accuracy}"
        );
        // Without nuisance every identity is one fixed, distinct image.
        let clean = SyntheticFaces::new(SyntheticConfig {
            nuisance: 0.0,
            ..config
        })
        .unwrap();
        assert!(clean.render(3, 0) == clean.render(3, 1));
        assert_eq!(nearest_neighbour_accuracy(&clean, 10, 2), 1.0);
    }

    #[test]
    fn writes_a_readable_rec_and_bin() {
        use crate::{FaceSource, RecordDataset};
        let dir = std::env::temp_dir().join(format!("lvface-data-synth-{}", std::process::id()));
        let faces = small(1);
        assert_eq!(faces.write_rec(&dir).unwrap(), (6, 3));
        let ds = RecordDataset::open(&dir).unwrap();
        assert_eq!((ds.len(), ds.num_classes()), (6, Some(3)));
        assert_eq!(ds.scan_labels().unwrap(), vec![0, 0, 1, 1, 2, 2]);
        let face = ds.encoded(3).unwrap();
        let decoded = crate::decode_rgb(&face.bytes, &face.origin).unwrap();
        assert_eq!(decoded, faces.render(1, 1));

        let bin = dir.join("synth.bin");
        faces.write_bin(&bin).unwrap();
        let set = BinPairs::read(&bin).unwrap();
        assert_eq!((set.len(), set.same_count(), set.images.len()), (6, 3, 12));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn masked_pairs_mask_the_second_image_only() {
        let faces = small(3);
        let plain = faces.verification_pairs().unwrap();
        let masked = faces.masked_verification_pairs().unwrap();
        assert_eq!(masked.len(), plain.len());
        assert_eq!(masked.issame, plain.issame);
        assert_eq!(masked.images.len(), plain.images.len());
        for (i, (p, m)) in plain.images.iter().zip(&masked.images).enumerate() {
            if i % 2 == 0 {
                assert_eq!(p, m, "first image of pair {} differs", i / 2);
            } else {
                assert_ne!(p, m, "second image of pair {} is not masked", i / 2);
                // The mask covers the lower face; the upper half is the plain image's.
                let p = crate::decode_rgb(p, "plain").unwrap();
                let m = crate::decode_rgb(m, "masked").unwrap();
                let top =
                    |image: &RgbImage| image::imageops::crop_imm(image, 0, 0, 112, 56).to_image();
                assert_eq!(top(&p), top(&m), "pair {}", i / 2);
            }
        }
        assert_eq!(faces.masked_verification_pairs().unwrap(), masked);
        assert_ne!(small(4).masked_verification_pairs().unwrap(), masked);

        let path =
            std::env::temp_dir().join(format!("lvface-data-masked-{}.bin", std::process::id()));
        faces.write_masked_bin(&path).unwrap();
        assert_eq!(BinPairs::read(&path).unwrap(), masked);
        std::fs::remove_file(path).unwrap();
    }
}
