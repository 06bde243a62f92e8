//! Five-point face alignment to insightface's ArcFace template, as the IJB scripts do it
//! (`eval_ijbc.py`, `Embedding.get`): a similarity transform fitted to the landmarks, then an
//! affine warp to 112×112.
//!
//! The fit is the least-squares similarity (rotation, uniform scale, translation, no
//! reflection), which is what `skimage.transform.SimilarityTransform.estimate` (Umeyama) returns.
//! The warp samples bilinearly with black outside the image, like `cv2.warpAffine` with its
//! defaults; OpenCV interpolates in 5-bit fixed point, so pixels may differ by one grey level.

use image::{Rgb, RgbImage};

/// Output side of an aligned face.
pub const ALIGNED_SIZE: u32 = 112;

/// insightface's ArcFace landmark template for 112×112 (eyes, nose tip, mouth corners), with
/// the +8 on x that centres it horizontally.
pub const ARCFACE_TEMPLATE: [[f32; 2]; 5] = [
    [30.2946 + 8.0, 51.6963],
    [65.5318 + 8.0, 51.5014],
    [48.0252 + 8.0, 71.7366],
    [33.5493 + 8.0, 92.3655],
    [62.7299 + 8.0, 92.2041],
];

/// A 2×3 affine map `[x', y'] = [[a, b, c], [d, e, f]] · [x, y, 1]`.
pub type Affine = [[f64; 3]; 2];

/// The least-squares similarity transform taking `src` points onto `dst` points.
///
/// With demeaned points written as complex numbers `p_i` (source) and `q_i` (target), the
/// optimal `s·e^{iθ} = Σ conj(p_i)·q_i / Σ |p_i|²`; the translation maps the source mean onto
/// the target mean.
pub fn similarity_transform(src: &[[f32; 2]], dst: &[[f32; 2]]) -> Affine {
    assert_eq!(src.len(), dst.len(), "one target point per source point");
    let n = src.len() as f64;
    let mean = |pts: &[[f32; 2]]| {
        let (x, y) = pts.iter().fold((0.0, 0.0), |(x, y), p| {
            (x + f64::from(p[0]), y + f64::from(p[1]))
        });
        (x / n, y / n)
    };
    let (sx, sy) = mean(src);
    let (dx, dy) = mean(dst);
    let (mut re, mut im, mut norm) = (0.0, 0.0, 0.0);
    for (p, q) in src.iter().zip(dst) {
        let (px, py) = (f64::from(p[0]) - sx, f64::from(p[1]) - sy);
        let (qx, qy) = (f64::from(q[0]) - dx, f64::from(q[1]) - dy);
        // conj(p) * q = (px - i py)(qx + i qy)
        re += px * qx + py * qy;
        im += px * qy - py * qx;
        norm += px * px + py * py;
    }
    let (a, b) = (re / norm, im / norm);
    [
        [a, -b, dx - (a * sx - b * sy)],
        [b, a, dy - (b * sx + a * sy)],
    ]
}

/// Applies `m` to a point.
pub fn apply(m: &Affine, x: f64, y: f64) -> (f64, f64) {
    (
        m[0][0] * x + m[0][1] * y + m[0][2],
        m[1][0] * x + m[1][1] * y + m[1][2],
    )
}

/// The inverse of an invertible affine map.
pub fn invert(m: &Affine) -> Affine {
    let det = m[0][0] * m[1][1] - m[0][1] * m[1][0];
    let (a, b, d, e) = (m[1][1] / det, -m[0][1] / det, -m[1][0] / det, m[0][0] / det);
    [
        [a, b, -(a * m[0][2] + b * m[1][2])],
        [d, e, -(d * m[0][2] + e * m[1][2])],
    ]
}

/// Warps `image` by `m` (source → destination coordinates, pixel centres at integers, as
/// OpenCV) into a `size`×`size` image, sampling bilinearly; outside the source is black.
pub fn warp_affine(image: &RgbImage, m: &Affine, size: u32) -> RgbImage {
    let inv = invert(m);
    let (w, h) = (i64::from(image.width()), i64::from(image.height()));
    let pixel = |x: i64, y: i64| -> [f64; 3] {
        if x < 0 || y < 0 || x >= w || y >= h {
            [0.0; 3]
        } else {
            let p = image.get_pixel(x as u32, y as u32).0;
            [f64::from(p[0]), f64::from(p[1]), f64::from(p[2])]
        }
    };
    RgbImage::from_fn(size, size, |x, y| {
        let (sx, sy) = apply(&inv, f64::from(x), f64::from(y));
        let (x0, y0) = (sx.floor(), sy.floor());
        let (fx, fy) = (sx - x0, sy - y0);
        let (x0, y0) = (x0 as i64, y0 as i64);
        let mut out = [0u8; 3];
        let (p00, p10, p01, p11) = (
            pixel(x0, y0),
            pixel(x0 + 1, y0),
            pixel(x0, y0 + 1),
            pixel(x0 + 1, y0 + 1),
        );
        for c in 0..3 {
            let top = p00[c] * (1.0 - fx) + p10[c] * fx;
            let bottom = p01[c] * (1.0 - fx) + p11[c] * fx;
            out[c] = (top * (1.0 - fy) + bottom * fy).round().clamp(0.0, 255.0) as u8;
        }
        Rgb(out)
    })
}

/// Aligns a face given its five landmarks (in `image` pixels, template order) to 112×112.
pub fn align_face(image: &RgbImage, landmarks: &[[f32; 2]; 5]) -> RgbImage {
    let m = similarity_transform(landmarks, &ARCFACE_TEMPLATE);
    warp_affine(image, &m, ALIGNED_SIZE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_a_known_similarity() {
        // dst = 1.5 * R(30°) * src + (4, -7)
        let (s, t) = (1.5f64, 30f64.to_radians());
        let truth: Affine = [
            [s * t.cos(), -s * t.sin(), 4.0],
            [s * t.sin(), s * t.cos(), -7.0],
        ];
        let src = ARCFACE_TEMPLATE;
        let dst: Vec<[f32; 2]> = src
            .iter()
            .map(|p| {
                let (x, y) = apply(&truth, f64::from(p[0]), f64::from(p[1]));
                [x as f32, y as f32]
            })
            .collect();
        let m = similarity_transform(&src, &dst);
        for r in 0..2 {
            for c in 0..3 {
                assert!((m[r][c] - truth[r][c]).abs() < 1e-4, "{m:?}");
            }
        }
        let back = invert(&m);
        let (x, y) = apply(&back, f64::from(dst[2][0]), f64::from(dst[2][1]));
        assert!((x - f64::from(src[2][0])).abs() < 1e-4 && (y - f64::from(src[2][1])).abs() < 1e-4);
    }

    #[test]
    fn warp_moves_pixels_and_blacks_out_the_outside() {
        let mut img = RgbImage::from_pixel(20, 10, Rgb([10, 20, 30]));
        img.put_pixel(5, 4, Rgb([255, 0, 0]));
        // Translation by (+2, +3): the red pixel lands at (7, 7).
        let m: Affine = [[1.0, 0.0, 2.0], [0.0, 1.0, 3.0]];
        let out = warp_affine(&img, &m, 16);
        assert_eq!(out.get_pixel(7, 7).0, [255, 0, 0]);
        assert_eq!(out.get_pixel(8, 8).0, [10, 20, 30]);
        // Destination (0, 0) comes from source (-2, -3): outside, black.
        assert_eq!(out.get_pixel(0, 0).0, [0, 0, 0]);
        // Half-pixel shift averages neighbours: (255 + 10) / 2 in red.
        let m: Affine = [[1.0, 0.0, 0.5], [0.0, 1.0, 0.0]];
        let out = warp_affine(&img, &m, 16);
        assert_eq!(out.get_pixel(5, 4).0, [133, 10, 15]);
    }

    #[test]
    fn landmarks_on_the_template_give_the_identity() {
        let img = RgbImage::from_fn(112, 112, |x, y| Rgb([x as u8, y as u8, 7]));
        let out = align_face(&img, &ARCFACE_TEMPLATE);
        assert_eq!(out, img);
    }
}
