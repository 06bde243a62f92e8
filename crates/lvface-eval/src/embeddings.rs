//! [`Embeddings`]: a row-major `[rows, dim]` matrix of f32 embeddings, and the pair distances the
//! verification protocol scores.

use crate::error::{check_finite, EvalError, Result};

/// Embeddings of a verification set, one row per image, row-major `[rows, dim]`.
///
/// For a `.bin` set the rows are in the file's image order: pair `i` is rows `2i` and `2i + 1`.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    dim: usize,
    data: Vec<f32>,
}

impl Embeddings {
    /// Wraps `data` as rows of `dim` values.
    ///
    /// Fails if `dim` is 0, if `data.len()` is not a multiple of `dim`, or if a value is NaN or
    /// infinite.
    pub fn new(data: Vec<f32>, dim: usize) -> Result<Self> {
        if dim == 0 {
            return Err(EvalError::invalid("embedding dim", "must be positive", 0));
        }
        if !data.len().is_multiple_of(dim) {
            return Err(EvalError::shape(
                format!("embedding values (a multiple of dim {dim})"),
                data.len().div_ceil(dim) * dim,
                data.len(),
            ));
        }
        check_finite("embedding value", data.iter().map(|&v| f64::from(v)))?;
        Ok(Self { dim, data })
    }

    /// Number of rows (images).
    pub fn rows(&self) -> usize {
        self.data.len() / self.dim
    }

    /// Length of one embedding.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Row `i`.
    ///
    /// # Panics
    /// If `i >= rows()`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    /// All values, row-major.
    pub fn as_slice(&self) -> &[f32] {
        &self.data
    }

    /// The element-wise sum `self + other`: the flip-sum of original and mirrored embeddings.
    pub fn sum(&self, other: &Self) -> Result<Self> {
        if self.dim != other.dim || self.rows() != other.rows() {
            return Err(EvalError::shape(
                "values of the embeddings to add",
                self.data.len(),
                other.data.len(),
            ));
        }
        let data = self
            .data
            .iter()
            .zip(&other.data)
            .map(|(a, b)| a + b)
            .collect();
        Self::new(data, self.dim)
    }

    /// The L2 norm of every row, accumulated in f64.
    pub fn norms(&self) -> Vec<f64> {
        self.data
            .chunks_exact(self.dim)
            .map(|row| {
                row.iter()
                    .map(|&v| f64::from(v) * f64::from(v))
                    .sum::<f64>()
                    .sqrt()
            })
            .collect()
    }

    /// Mean L2 norm of the rows (insightface's `XNorm` when given the raw, un-normalised
    /// embeddings), or `None` for an empty matrix.
    pub fn mean_norm(&self) -> Option<f64> {
        let norms = self.norms();
        (!norms.is_empty()).then(|| norms.iter().sum::<f64>() / norms.len() as f64)
    }

    /// Every row divided by its L2 norm, in f64. A zero row stays zero, as in
    /// `sklearn.preprocessing.normalize`.
    pub fn normalized(&self) -> Vec<f64> {
        let mut out: Vec<f64> = self.data.iter().map(|&v| f64::from(v)).collect();
        for row in out.chunks_exact_mut(self.dim) {
            let norm = row.iter().map(|v| v * v).sum::<f64>().sqrt();
            if norm > 0.0 {
                row.iter_mut().for_each(|v| *v /= norm);
            }
        }
        out
    }

    /// Squared L2 distances between the L2-normalised rows `2i` and `2i + 1`, one per pair, in
    /// `[0, 4]`. This is the verification score of insightface (`eval/verification.py`):
    /// smaller means more alike.
    ///
    /// Fails if the number of rows is odd.
    pub fn pair_distances(&self) -> Result<Vec<f64>> {
        self.pair_scores(|a, b| a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum())
    }

    /// Cosine similarities between the L2-normalised rows `2i` and `2i + 1`: `1 - d / 2` for the
    /// squared distance `d` of [`pair_distances`](Self::pair_distances), computed directly.
    pub fn pair_cosines(&self) -> Result<Vec<f64>> {
        self.pair_scores(|a, b| a.iter().zip(b).map(|(x, y)| x * y).sum())
    }

    /// `score(a, b)` of the L2-normalised rows `2i` and `2i + 1`, one per pair.
    fn pair_scores(&self, score: impl Fn(&[f64], &[f64]) -> f64) -> Result<Vec<f64>> {
        if !self.rows().is_multiple_of(2) {
            return Err(EvalError::shape(
                "embedding rows (two per pair)",
                self.rows() + 1,
                self.rows(),
            ));
        }
        let unit = self.normalized();
        Ok(unit
            .chunks_exact(2 * self.dim)
            .map(|pair| {
                let (a, b) = pair.split_at(self.dim);
                score(a, b)
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_of_unit_vectors_follow_the_angle() {
        // Pair 0: identical directions (different lengths) -> 0. Pair 1: orthogonal -> 2.
        // Pair 2: opposite -> 4. Pair 3: 60 degrees -> 2 - 2 cos 60 = 1.
        let h = (3.0f32).sqrt() / 2.0;
        let e = Embeddings::new(
            vec![
                1.0, 0.0, 5.0, 0.0, //
                0.0, 2.0, 3.0, 0.0, //
                1.0, 1.0, -2.0, -2.0, //
                1.0, 0.0, 0.5, h,
            ],
            2,
        )
        .unwrap();
        let d = e.pair_distances().unwrap();
        let expected = [0.0, 2.0, 4.0, 1.0];
        for (got, want) in d.iter().zip(expected) {
            assert!((got - want).abs() < 1e-6, "{d:?}");
        }
        let c = e.pair_cosines().unwrap();
        for (cos, dist) in c.iter().zip(&d) {
            assert!((cos - (1.0 - dist / 2.0)).abs() < 1e-12);
        }
    }

    #[test]
    fn zero_rows_stay_zero_and_norms_are_exact() {
        let e = Embeddings::new(vec![0.0, 0.0, 3.0, 4.0], 2).unwrap();
        assert_eq!(e.normalized(), vec![0.0, 0.0, 0.6, 0.8]);
        assert_eq!(e.norms(), vec![0.0, 5.0]);
        assert_eq!(e.mean_norm(), Some(2.5));
        // Distance of the zero vector to a unit vector is 1.
        assert!((e.pair_distances().unwrap()[0] - 1.0).abs() < 1e-12);
    }

    #[test]
    fn bad_shapes_and_values_are_errors() {
        assert!(matches!(
            Embeddings::new(vec![1.0; 5], 2),
            Err(EvalError::ShapeMismatch { .. })
        ));
        assert!(matches!(
            Embeddings::new(vec![1.0; 4], 0),
            Err(EvalError::InvalidConfig { .. })
        ));
        let err = Embeddings::new(vec![1.0, f32::NAN], 1).unwrap_err();
        assert!(
            matches!(err, EvalError::NotFinite { index: 1, .. }),
            "{err}"
        );
        let odd = Embeddings::new(vec![1.0; 6], 2).unwrap();
        assert!(odd.pair_distances().is_err());
        let a = Embeddings::new(vec![1.0, 2.0], 1).unwrap();
        let b = Embeddings::new(vec![0.5, -2.0], 1).unwrap();
        assert_eq!(a.sum(&b).unwrap().as_slice(), &[1.5, 0.0]);
        assert!(a.sum(&Embeddings::new(vec![1.0; 4], 2).unwrap()).is_err());
    }
}
