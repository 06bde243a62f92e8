//! [`CurricularFace`]: adaptive curriculum margin (Huang et al., CVPR 2020; code
//! HuangYG123/CurricularFace `head/metrics.py`).
//!
//! Target: `cos(θ_y + m)` when `cos θ_y > cos(π - m)`, else `cos θ_y - m·sin(π - m)`. Negatives
//! harder than the margined target (`cos θ_j > cos(θ_y + m)`) become `cos θ_j·(t + cos θ_j)`;
//! the others stay. `t ← μ·mean_batch(cos θ_y) + (1 - μ)·t` before the logits are formed, without
//! gradient, `t` starting at 0. All logits are scaled by `s`. The gradient is exact.

use std::f64::consts::PI;

use burn::prelude::*;
use burn::tensor::IndexingUpdateOp;
use serde::{Deserialize, Serialize};

use crate::cosine::cosine_matrix;
use crate::cross_entropy::softmax_cross_entropy;
use crate::error::{LossError, Result};

/// Configuration of a [`CurricularFace`]; defaults are the paper's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CurricularFaceConfig {
    /// Logit scale.
    pub s: f64,
    /// Additive angular margin, in `[0, π/2)`.
    pub m: f64,
    /// Momentum `μ` of `t`, in `[0, 1]`.
    pub t_momentum: f64,
}

impl Default for CurricularFaceConfig {
    fn default() -> Self {
        Self {
            s: 64.0,
            m: 0.5,
            t_momentum: 0.01,
        }
    }
}

impl CurricularFaceConfig {
    /// Checks every field once; the error names the key (under `curricular_face`) and the value.
    pub fn validate(&self) -> Result<()> {
        if !(self.s.is_finite() && self.s > 0.0) {
            return Err(LossError::invalid(
                "curricular_face.s",
                "must be positive and finite",
                self.s,
            ));
        }
        if !(0.0..PI / 2.0).contains(&self.m) {
            return Err(LossError::invalid(
                "curricular_face.m",
                "must be in [0, π/2)",
                self.m,
            ));
        }
        if !(0.0..=1.0).contains(&self.t_momentum) {
            return Err(LossError::invalid(
                "curricular_face.t_momentum",
                "must be in [0, 1]",
                self.t_momentum,
            ));
        }
        Ok(())
    }

    /// The loss with `t = 0`, after [`validate`](Self::validate).
    ///
    /// # Panics
    /// If the configuration is invalid.
    pub fn init(&self) -> CurricularFace {
        if let Err(e) = self.validate() {
            panic!("{e}");
        }
        CurricularFace {
            config: *self,
            t: 0.0,
        }
    }
}

/// CurricularFace with its running `t` (save it with checkpoints: [`t`](Self::t),
/// [`set_t`](Self::set_t)).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CurricularFace {
    config: CurricularFaceConfig,
    t: f64,
}

impl CurricularFace {
    /// The configuration this loss was built from.
    pub fn config(&self) -> &CurricularFaceConfig {
        &self.config
    }

    /// The running mean of target cosines.
    pub fn t(&self) -> f64 {
        self.t
    }

    /// Restores `t` (from a checkpoint).
    pub fn set_t(&mut self, t: f64) {
        self.t = t;
    }

    /// Updates `t` with the batch, then forms the scaled logits. Rows labelled `-1` get neither
    /// margin nor modulation and do not count in `t`'s mean.
    ///
    /// # Shapes
    /// - cos: `[batch, classes]`, in `[-1, 1]`
    /// - labels: `[batch]`, in `-1..classes`
    /// - output: `[batch, classes]`
    pub fn forward_logits<B: Backend>(
        &mut self,
        cos: Tensor<B, 2>,
        labels: Tensor<B, 1, Int>,
    ) -> Tensor<B, 2> {
        let [batch, _] = cos.dims();
        let absent = labels.clone().lower_elem(0).reshape([batch, 1]);
        let index = labels.clone().clamp_min(0).reshape([batch, 1]);
        let target = cos.clone().gather(1, index).detach();
        let values = host(target.clone().reshape([batch]));
        let flags: Vec<bool> = absent
            .clone()
            .bool_not()
            .reshape([batch])
            .into_data()
            .to_vec()
            .expect("bool");
        let present: Vec<f64> = values
            .iter()
            .zip(&flags)
            .filter(|(_, &p)| p)
            .map(|(v, _)| *v)
            .collect();
        self.update_t(&present);
        let threshold = self
            .margined(target)
            .mask_fill(absent, f64::INFINITY)
            .reshape([batch]);
        self.logits_with_thresholds(cos, labels, threshold)
    }

    /// Folds a batch's target cosines into `t`: `t ← μ·mean + (1 - μ)·t`; an empty batch leaves
    /// it. A sharded classifier passes the target cosine of every row of the gathered batch, so
    /// every rank keeps the `t` one device would.
    pub fn update_t(&mut self, target_cosines: &[f64]) {
        if target_cosines.is_empty() {
            return;
        }
        let mean = target_cosines.iter().sum::<f64>() / target_cosines.len() as f64;
        let mu = self.config.t_momentum;
        self.t = mu * mean + (1.0 - mu) * self.t;
    }

    /// The scaled logits of a shard of the classes, after [`update_t`](Self::update_t) has seen
    /// the whole batch: a column is a hard negative when its cosine is above the row's
    /// threshold `cos(θ_y + m)`, which needs the row's target cosine even where its class is
    /// on another shard.
    ///
    /// # Shapes
    /// - cos: `[batch, classes]`, in `[-1, 1]`
    /// - labels: `[batch]`, in `-1..classes` (`-1`: the class is not among these columns)
    /// - target_cosines: `[batch]`, every row's target cosine wherever its class is
    /// - output: `[batch, classes]`
    pub fn forward_logits_shard<B: Backend>(
        &self,
        cos: Tensor<B, 2>,
        labels: Tensor<B, 1, Int>,
        target_cosines: Tensor<B, 1>,
    ) -> Tensor<B, 2> {
        let [batch] = target_cosines.dims();
        let threshold = self
            .margined(target_cosines.detach().reshape([batch, 1]))
            .reshape([batch]);
        self.logits_with_thresholds(cos, labels, threshold)
    }

    /// `cos(θ + m)` of target cosines, θ through a guarded `acos`.
    ///
    /// # Shapes
    /// - target: `[batch, 1]`
    /// - output: `[batch, 1]`
    fn margined<B: Backend>(&self, target: Tensor<B, 2>) -> Tensor<B, 2> {
        let edge = 1e-6;
        let inner = target.clone().clamp(-1.0 + edge, 1.0 - edge);
        let theta = inner.clone().acos() + (target.acos() - inner.acos()).detach();
        theta.add_scalar(self.config.m).cos()
    }

    /// The logits with hard negatives judged against each row's `threshold` (`∞`: none).
    fn logits_with_thresholds<B: Backend>(
        &self,
        cos: Tensor<B, 2>,
        labels: Tensor<B, 1, Int>,
        threshold: Tensor<B, 1>,
    ) -> Tensor<B, 2> {
        let [batch, _] = cos.dims();
        let m = self.config.m;
        let absent = labels.clone().lower_elem(0).reshape([batch, 1]);
        let index = labels.clamp_min(0).reshape([batch, 1]);
        let target = cos.clone().gather(1, index.clone());
        let margined = self.margined(target.clone());
        let fallback = target.clone().sub_scalar(m * (PI - m).sin());
        let easy = target.greater_elem((PI - m).cos());
        let final_target = fallback.mask_where(easy, margined);

        // Hard negatives are judged against the unguarded cos(θ_y + m), as the reference does.
        let hard = cos
            .clone()
            .greater(threshold.reshape([batch, 1]).expand(cos.dims()));
        let modulated = cos.clone() * cos.clone().add_scalar(self.t);
        let logits = cos.mask_where(hard, modulated);
        let current = logits.clone().gather(1, index.clone());
        let delta = (final_target - current).mask_fill(absent, 0.0);
        logits
            .scatter(1, index, delta, IndexingUpdateOp::Add)
            .mul_scalar(self.config.s)
    }

    /// The mean loss of a batch (updates `t`).
    ///
    /// # Shapes
    /// - embeddings: `[batch, dim]`
    /// - centres: `[classes, dim]`
    /// - labels: `[batch]`, in `-1..classes`
    /// - output: `[1]`
    pub fn forward<B: Backend>(
        &mut self,
        embeddings: Tensor<B, 2>,
        centres: Tensor<B, 2>,
        labels: Tensor<B, 1, Int>,
    ) -> Tensor<B, 1> {
        let logits = self.forward_logits(cosine_matrix(embeddings, centres), labels.clone());
        softmax_cross_entropy(logits, labels)
    }
}

fn host<B: Backend>(t: Tensor<B, 1>) -> Vec<f64> {
    t.into_data().convert::<f64>().to_vec().expect("float")
}
