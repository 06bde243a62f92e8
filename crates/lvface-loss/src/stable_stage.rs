//! [`StableStageLoss`]: LVFace's stable-stage loss (paper Eq. 19) joined with EPL's prototype
//! logits. The interpretation of Eq. 19 is written out in `docs/losses.md`.
//!
//! Target logit `s·a_y·(cos(m1·θ_y + m2) - m3)` with `a_y = ‖α(w, x)‖_y` the length of class
//! `y`'s feature expectation from the [`PrototypeBank`], in `[0, 1]` and detached; other
//! logits `s·cos θ_j` over the classes given (all of them, or those Partial FC sampled). As in EPL, the prototype
//! logits `s·(⟨x̂, P̂_j⟩ - k·detach(⟨x̂, P̂_y⟩)·[j = y])` form a second copy of the batch, and the
//! loss is `(L_centres + λ·L_prototypes) / (1 + λ)`; `λ = 1` is EPL's doubled batch.

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::combined_margin::{CombinedMargin, CombinedMarginConfig};
use crate::cosine::cosine_matrix;
use crate::cross_entropy::softmax_cross_entropy;
use crate::error::{LossError, Result};
use crate::prototype_bank::PrototypeBank;

/// Configuration of a [`StableStageLoss`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StableStageConfig {
    /// The margin on the class-centre logits; its `s` also scales the prototype logits.
    pub margin: CombinedMarginConfig,
    /// Weight `λ ≥ 0` of the prototype cross-entropy; 0 leaves Eq. 19 alone.
    pub prototype_weight: f64,
    /// Multiply the target term by the expectation length `a_y` (Eq. 19); `false` gives the plain
    /// combined margin (Eq. 12) over all classes.
    pub expectation_weighting: bool,
}

impl Default for StableStageConfig {
    fn default() -> Self {
        Self {
            margin: CombinedMarginConfig::default(),
            prototype_weight: 1.0,
            expectation_weighting: true,
        }
    }
}

impl StableStageConfig {
    /// Checks every field once; the error names the key (under `stable`) and the value.
    pub fn validate(&self) -> Result<()> {
        self.margin.validate_at("stable.margin")?;
        if !(self.prototype_weight.is_finite() && self.prototype_weight >= 0.0) {
            return Err(LossError::invalid(
                "stable.prototype_weight",
                "must be finite and non-negative",
                self.prototype_weight,
            ));
        }
        Ok(())
    }

    /// The loss, after [`validate`](Self::validate).
    ///
    /// # Panics
    /// If the configuration is invalid.
    pub fn init(&self) -> StableStageLoss {
        if let Err(e) = self.validate() {
            panic!("{e}");
        }
        StableStageLoss {
            config: *self,
            margin: self.margin.init(),
        }
    }
}

/// The stable-stage loss. It reads the bank and never writes it: update the bank with the
/// batch after computing the loss, so no sample meets a prototype that already contains it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StableStageLoss {
    config: StableStageConfig,
    margin: CombinedMargin,
}

impl StableStageLoss {
    /// The configuration this loss was built from.
    pub fn config(&self) -> &StableStageConfig {
        &self.config
    }

    /// The class-centre logits of Eq. 19, scaled.
    ///
    /// # Shapes
    /// - embeddings: `[batch, dim]`
    /// - centres: `[classes, dim]`
    /// - labels: `[batch]`, in `-1..classes`
    /// - output: `[batch, classes]`
    pub fn forward_logits<B: Backend>(
        &self,
        embeddings: Tensor<B, 2>,
        centres: Tensor<B, 2>,
        labels: Tensor<B, 1, Int>,
        bank: &PrototypeBank<B>,
    ) -> Tensor<B, 2> {
        let lengths = bank.expectation_length(labels.clone());
        self.forward_logits_with_lengths(embeddings, centres, labels, lengths)
    }

    /// [`forward_logits`](Self::forward_logits) with each row's expectation length given, for
    /// columns that are not the bank's classes (sampled centres): `lengths` is
    /// [`PrototypeBank::expectation_length`] of the rows' labels in the bank's numbering.
    ///
    /// # Shapes
    /// - embeddings: `[batch, dim]`
    /// - centres: `[n, dim]`
    /// - labels: `[batch]`, in `-1..n`, numbered as the centres
    /// - lengths: `[batch]`, in `[0, 1]`
    /// - output: `[batch, n]`
    pub fn forward_logits_with_lengths<B: Backend>(
        &self,
        embeddings: Tensor<B, 2>,
        centres: Tensor<B, 2>,
        labels: Tensor<B, 1, Int>,
        lengths: Tensor<B, 1>,
    ) -> Tensor<B, 2> {
        let weight = self.config.expectation_weighting.then_some(lengths);
        let cos = cosine_matrix(embeddings, centres);
        self.margin.forward_logits_weighted(cos, labels, weight)
    }

    /// The loss of a batch.
    ///
    /// # Shapes
    /// - embeddings: `[batch, dim]`
    /// - centres: `[classes, dim]`, the bank has as many classes
    /// - labels: `[batch]`, in `-1..classes`
    /// - output: `[1]`
    pub fn forward<B: Backend>(
        &self,
        embeddings: Tensor<B, 2>,
        centres: Tensor<B, 2>,
        labels: Tensor<B, 1, Int>,
        bank: &PrototypeBank<B>,
    ) -> Tensor<B, 1> {
        let logits = self.forward_logits(embeddings.clone(), centres, labels.clone(), bank);
        let loss = softmax_cross_entropy(logits, labels.clone());
        let lambda = self.config.prototype_weight;
        if lambda == 0.0 {
            return loss;
        }
        let prototype_logits = bank
            .forward_logits(embeddings, labels.clone())
            .mul_scalar(self.config.margin.s);
        let prototype_loss = softmax_cross_entropy(prototype_logits, labels);
        (loss + prototype_loss.mul_scalar(lambda)).div_scalar(1.0 + lambda)
    }
}
