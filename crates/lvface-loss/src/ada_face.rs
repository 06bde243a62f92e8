//! [`AdaFace`]: feature-norm adaptive margin (Kim et al., CVPR 2022; code mk-minchul/AdaFace
//! `head.py`).
//!
//! With `‖z‖` the embedding norm clipped to `[0.001, 100]` and detached, running statistics
//! `μ ← α·mean‖z‖ + (1 - α)·μ`, `σ ← α·std‖z‖ + (1 - α)·σ` (unbiased std; starting at 20 and
//! 100), the margin scaler is `ŝ = clip(h·(‖z‖ - μ)/(σ + ε), -1, 1)`. On cosines clamped to
//! `[-1 + ε, 1 - ε]`, the target becomes `cos(clip(θ_y - m·ŝ, ε, π - ε)) - (m + m·ŝ)`; all logits
//! are scaled by `s`. ε = 10⁻³. The gradient is exact; `ŝ` is a constant of the step.
//!
//! **NOTE:** the reference clips every angle to `[ε, π - ε]`; only the target's is clipped here
//! (the others are already in that range after the cosine clamp).

use std::f64::consts::PI;

use burn::prelude::*;
use burn::tensor::IndexingUpdateOp;
use serde::{Deserialize, Serialize};

use crate::cosine::cosine_matrix;
use crate::cross_entropy::softmax_cross_entropy;
use crate::error::{LossError, Result};

const EPS: f64 = 1e-3;

/// Configuration of an [`AdaFace`]; defaults are the reference head's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdaFaceConfig {
    /// Logit scale.
    pub s: f64,
    /// Margin `m`.
    pub m: f64,
    /// Concentration `h` of the scaler.
    pub h: f64,
    /// Momentum `α` of the norm statistics, in `[0, 1]` (1 uses the current batch alone).
    pub t_alpha: f64,
}

impl Default for AdaFaceConfig {
    fn default() -> Self {
        Self {
            s: 64.0,
            m: 0.4,
            h: 0.333,
            t_alpha: 1.0,
        }
    }
}

impl AdaFaceConfig {
    /// Checks every field once; the error names the key (under `ada_face`) and the value.
    pub fn validate(&self) -> Result<()> {
        if !(self.s.is_finite() && self.s > 0.0) {
            return Err(LossError::invalid(
                "ada_face.s",
                "must be positive and finite",
                self.s,
            ));
        }
        if !(0.0..1.0).contains(&self.m) {
            return Err(LossError::invalid(
                "ada_face.m",
                "must be in [0, 1)",
                self.m,
            ));
        }
        if !(self.h.is_finite() && self.h >= 0.0) {
            return Err(LossError::invalid(
                "ada_face.h",
                "must be finite and non-negative",
                self.h,
            ));
        }
        if !(0.0..=1.0).contains(&self.t_alpha) {
            return Err(LossError::invalid(
                "ada_face.t_alpha",
                "must be in [0, 1]",
                self.t_alpha,
            ));
        }
        Ok(())
    }

    /// The loss with `μ = 20`, `σ = 100`, after [`validate`](Self::validate).
    ///
    /// # Panics
    /// If the configuration is invalid.
    pub fn init(&self) -> AdaFace {
        if let Err(e) = self.validate() {
            panic!("{e}");
        }
        AdaFace {
            config: *self,
            norm_mean: 20.0,
            norm_std: 100.0,
        }
    }
}

/// AdaFace with its running norm statistics (save them with checkpoints).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdaFace {
    config: AdaFaceConfig,
    /// Running mean of embedding norms.
    pub norm_mean: f64,
    /// Running standard deviation of embedding norms.
    pub norm_std: f64,
}

impl AdaFace {
    /// The configuration this loss was built from.
    pub fn config(&self) -> &AdaFaceConfig {
        &self.config
    }

    /// Updates the norm statistics with the batch and returns each row's margin scaler `ŝ`.
    /// A batch of one sample leaves `σ` unchanged (its unbiased std is undefined).
    ///
    /// # Shapes
    /// - embeddings: `[batch, dim]`, not normalised
    /// - output: `[batch]`, detached, in `[-1, 1]`
    pub fn margin_scaler<B: Backend>(&mut self, embeddings: Tensor<B, 2>) -> Tensor<B, 1> {
        let [batch, _] = embeddings.dims();
        let norms: Vec<f64> = embeddings
            .clone()
            .detach()
            .square()
            .sum_dim(1)
            .sqrt()
            .into_data()
            .convert::<f64>()
            .to_vec()
            .expect("float");
        let norms: Vec<f64> = norms.iter().map(|n| n.clamp(0.001, 100.0)).collect();
        let n = norms.len() as f64;
        let mean = norms.iter().sum::<f64>() / n;
        let a = self.config.t_alpha;
        self.norm_mean = a * mean + (1.0 - a) * self.norm_mean;
        if norms.len() > 1 {
            let var = norms.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
            self.norm_std = a * var.sqrt() + (1.0 - a) * self.norm_std;
        }
        let scaler: Vec<f64> = norms
            .iter()
            .map(|v| {
                (self.config.h * (v - self.norm_mean) / (self.norm_std + EPS)).clamp(-1.0, 1.0)
            })
            .collect();
        let device = embeddings.device();
        Tensor::from_data(
            TensorData::new(scaler, [batch]),
            (&device, embeddings.dtype()),
        )
    }

    /// Scaled logits for given margin scalers (rows labelled `-1` get no margin).
    ///
    /// # Shapes
    /// - cos: `[batch, classes]`
    /// - labels: `[batch]`, in `-1..classes`
    /// - scaler: `[batch]`, treated as a constant
    /// - output: `[batch, classes]`
    pub fn forward_logits<B: Backend>(
        &self,
        cos: Tensor<B, 2>,
        labels: Tensor<B, 1, Int>,
        scaler: Tensor<B, 1>,
    ) -> Tensor<B, 2> {
        let [batch, _] = cos.dims();
        let m = self.config.m;
        let scaler = scaler.detach().reshape([batch, 1]);
        let cos = cos.clamp(-1.0 + EPS, 1.0 - EPS);
        let absent = labels.clone().lower_elem(0).reshape([batch, 1]);
        let index = labels.clamp_min(0).reshape([batch, 1]);
        let target = cos.clone().gather(1, index.clone());
        let theta = target.clone().acos() - scaler.clone().mul_scalar(m);
        let margined = theta.clamp(EPS, PI - EPS).cos() - scaler.mul_scalar(m).add_scalar(m);
        let delta = (margined - target).mask_fill(absent, 0.0);
        cos.scatter(1, index, delta, IndexingUpdateOp::Add)
            .mul_scalar(self.config.s)
    }

    /// The mean loss of a batch (updates the norm statistics).
    ///
    /// # Shapes
    /// - embeddings: `[batch, dim]`, not normalised: their norms set the margin
    /// - centres: `[classes, dim]`
    /// - labels: `[batch]`, in `-1..classes`
    /// - output: `[1]`
    pub fn forward<B: Backend>(
        &mut self,
        embeddings: Tensor<B, 2>,
        centres: Tensor<B, 2>,
        labels: Tensor<B, 1, Int>,
    ) -> Tensor<B, 1> {
        let scaler = self.margin_scaler(embeddings.clone());
        let cos = cosine_matrix(embeddings, centres);
        softmax_cross_entropy(self.forward_logits(cos, labels.clone(), scaler), labels)
    }
}
