//! Cosine similarities between L2-normalised embeddings and class centres.

use burn::prelude::*;

/// `F.normalize`'s floor on the norm: a zero row stays zero instead of becoming NaN.
pub(crate) const NORM_EPS: f64 = 1e-12;

/// Rows divided by their L2 norm (floored at 1e-12, as PyTorch's `F.normalize`).
///
/// # Shapes
/// - x: `[rows, dim]`
/// - output: `[rows, dim]`
pub fn l2_normalize<B: Backend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    let norm = x.clone().square().sum_dim(1).sqrt().clamp_min(NORM_EPS);
    x / norm
}

/// `normalize(embeddings) · normalize(centres)ᵀ`, clamped to `[-1, 1]`.
///
/// # Shapes
/// - embeddings: `[batch, dim]`, not necessarily normalised
/// - centres: `[classes, dim]`, one row per class
/// - output: `[batch, classes]`
pub fn cosine_matrix<B: Backend>(embeddings: Tensor<B, 2>, centres: Tensor<B, 2>) -> Tensor<B, 2> {
    l2_normalize(embeddings)
        .matmul(l2_normalize(centres).transpose())
        .clamp(-1.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    #[test]
    fn cosines_match_a_naive_loop() {
        let device = Default::default();
        let x = [[3.0f32, 4.0], [0.0, -2.0]];
        let w = [[1.0f32, 0.0], [1.0, 1.0], [0.0, 0.0]];
        let got = cosine_matrix::<Flex>(
            Tensor::from_floats(x, &device),
            Tensor::from_floats(w, &device),
        )
        .into_data()
        .to_vec::<f32>()
        .unwrap();
        let mut expected = Vec::new();
        for xi in x {
            for wj in w {
                let dot = xi[0] * wj[0] + xi[1] * wj[1];
                let nx = (xi[0] * xi[0] + xi[1] * xi[1]).sqrt().max(1e-12);
                let nw = (wj[0] * wj[0] + wj[1] * wj[1]).sqrt().max(1e-12);
                expected.push(dot / (nx * nw));
            }
        }
        for (g, e) in got.iter().zip(&expected) {
            assert!((g - e).abs() < 1e-6, "{got:?} vs {expected:?}");
        }
        // A zero centre gives cosine 0, not NaN.
        assert_eq!(got[2], 0.0);
    }
}
