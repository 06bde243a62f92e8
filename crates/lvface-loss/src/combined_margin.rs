//! [`CombinedMargin`]: the unified margin softmax of ArcFace (paper Eq. 12), after insightface's
//! `CombinedMarginLoss` (`recognition/arcface_torch/losses.py`).
//!
//! Target logit `s·(cos(m1·θ + m2) - m3)`, every other logit `s·cos θ`, where `θ = acos(cos)` and
//! `cos` is the clamped cosine of the L2-normalised embedding and centre. ArcFace is
//! `(1, 0.5, 0)`, CosFace `(1, 0, 0.4)`, SphereFace-style margins use `m1 > 1`.
//!
//! **NOTE:** insightface supports `m1 = 1` only and applies the ArcFace margin without gradient;
//! here any `m1 ≥ 1` works and the gradient mode is a setting ([`GradientMode`]).

use std::f64::consts::PI;

use burn::prelude::*;
use burn::tensor::IndexingUpdateOp;
use serde::{Deserialize, Serialize};

use crate::cosine::cosine_matrix;
use crate::cross_entropy::softmax_cross_entropy;
use crate::error::{LossError, Result};

/// How the margin enters the backward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GradientMode {
    /// The margin is the identity in backward: `∂logit_y/∂cos_y = s`, evaluated at the margined
    /// logits. This is what insightface's arcface_torch does (it edits the logits under
    /// `no_grad`) and recommends for ViT training.
    #[default]
    Straight,
    /// The true derivative of `s·(cos(m1·acos(c) + m2) - m3)`.
    Exact,
}

/// What the target logit becomes when `m1·θ + m2` exceeds π.
///
/// Past π, `cos(m1·θ + m2)` rises again as θ grows: a worse-aligned sample would get a *larger*
/// target logit, and its gradient pushes the wrong way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MarginGuard {
    /// No guard: the formula is used as is, as insightface's arcface_torch does. With ArcFace's
    /// `m2 = 0.5` this only concerns samples at more than 151° from their centre.
    #[default]
    None,
    /// The original ArcFace guard (`easy_margin = False`): when `θ > π - m2`, use
    /// `cos θ - m3 - m2·sin(m2)` (a CosFace-like margin). Needs `m1 = 1`.
    #[serde(rename = "arcface")]
    ArcFace,
    /// When `θ > θmax = (π - m2)/m1`, use `cos θ - m3 - (1 + cos θmax)`: it meets the margined
    /// curve at `θmax` (both equal `-1 - m3` there) and keeps decreasing, for any `m1`.
    Continuous,
}

/// Configuration of a [`CombinedMargin`]; the defaults are insightface's ArcFace (`s = 64`,
/// `m = 0.5`, straight gradient, no guard).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CombinedMarginConfig {
    /// Logit scale `s`.
    pub s: f64,
    /// Multiplicative angular margin `m1` (SphereFace); 1 for none.
    pub m1: f64,
    /// Additive angular margin `m2` in radians (ArcFace).
    pub m2: f64,
    /// Additive cosine margin `m3` (CosFace).
    pub m3: f64,
    /// Gradient of the margin.
    pub gradient: GradientMode,
    /// Treatment of `m1·θ + m2 > π`.
    pub guard: MarginGuard,
}

impl Default for CombinedMarginConfig {
    fn default() -> Self {
        Self::arcface(0.5)
    }
}

impl CombinedMarginConfig {
    /// ArcFace: `(1, m, 0)` at `s = 64`.
    pub fn arcface(m: f64) -> Self {
        Self::combined(1.0, m, 0.0)
    }

    /// CosFace: `(1, 0, m)` at `s = 64` (insightface's WebFace42M ViT configs use 0.4).
    pub fn cosface(m: f64) -> Self {
        Self::combined(1.0, 0.0, m)
    }

    /// Any `(m1, m2, m3)` at `s = 64`, straight gradient, no guard.
    pub fn combined(m1: f64, m2: f64, m3: f64) -> Self {
        Self {
            s: 64.0,
            m1,
            m2,
            m3,
            gradient: GradientMode::Straight,
            guard: MarginGuard::None,
        }
    }

    /// The same margin with another gradient mode.
    pub fn with_gradient(self, gradient: GradientMode) -> Self {
        Self { gradient, ..self }
    }

    /// The same margin with another guard.
    pub fn with_guard(self, guard: MarginGuard) -> Self {
        Self { guard, ..self }
    }

    /// Checks every field once; the error names the key (under `margin`) and the value.
    pub fn validate(&self) -> Result<()> {
        self.validate_at("margin")
    }

    pub(crate) fn validate_at(&self, prefix: &str) -> Result<()> {
        let key = |name: &str| format!("{prefix}.{name}");
        if !(self.s.is_finite() && self.s > 0.0) {
            return Err(LossError::invalid(
                key("s"),
                "must be positive and finite",
                self.s,
            ));
        }
        if !(self.m1.is_finite() && self.m1 >= 1.0) {
            return Err(LossError::invalid(
                key("m1"),
                "must be finite and at least 1",
                self.m1,
            ));
        }
        if !(0.0..PI / 2.0).contains(&self.m2) {
            return Err(LossError::invalid(
                key("m2"),
                "must be in [0, π/2)",
                self.m2,
            ));
        }
        if !(0.0..1.0).contains(&self.m3) {
            return Err(LossError::invalid(key("m3"), "must be in [0, 1)", self.m3));
        }
        if self.guard == MarginGuard::ArcFace && self.m1 != 1.0 {
            return Err(LossError::invalid(
                key("guard"),
                "`arcface` needs m1 = 1 (use `continuous`)",
                format!("arcface with m1 = {}", self.m1),
            ));
        }
        Ok(())
    }

    /// The margin, after [`validate`](Self::validate).
    ///
    /// # Panics
    /// If the configuration is invalid.
    pub fn init(&self) -> CombinedMargin {
        if let Err(e) = self.validate() {
            panic!("{e}");
        }
        CombinedMargin { config: *self }
    }
}

/// The combined margin softmax: margined logits and their cross-entropy. It holds no tensors;
/// class centres belong to the caller (a parameter of the training model, or a Partial FC shard).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CombinedMargin {
    config: CombinedMarginConfig,
}

/// Cosines closer than this to ±1 get their angle's gradient from the nearest point inside:
/// `d acos(c)/dc = -1/sqrt(1 - c²)` is infinite at ±1. The value is unchanged.
const ACOS_EDGE: f64 = 1e-6;

impl CombinedMargin {
    /// The configuration this margin was built from.
    pub fn config(&self) -> &CombinedMarginConfig {
        &self.config
    }

    /// `cos(m1·θ + m2) - m3` (with the guard) of target cosines, unscaled, with the exact
    /// gradient. `θ = acos(c)` for `c` in `[-1, 1]`.
    ///
    /// # Shapes
    /// - cos: any shape
    /// - output: the same shape
    pub fn target_cos<B: Backend, const D: usize>(&self, cos: Tensor<B, D>) -> Tensor<B, D> {
        let CombinedMarginConfig {
            m1, m2, m3, guard, ..
        } = self.config;
        let inner = cos.clone().clamp(-1.0 + ACOS_EDGE, 1.0 - ACOS_EDGE);
        let theta =
            inner.clone().acos() + (cos.clone().clamp(-1.0, 1.0).acos() - inner.acos()).detach();
        let margined = theta
            .clone()
            .mul_scalar(m1)
            .add_scalar(m2)
            .cos()
            .sub_scalar(m3);
        let theta_max = (PI - m2) / m1;
        let shift = match guard {
            MarginGuard::None => return margined,
            MarginGuard::ArcFace => m2 * m2.sin(),
            MarginGuard::Continuous => 1.0 + theta_max.cos(),
        };
        let beyond = theta.detach().greater_elem(theta_max);
        margined.mask_where(beyond, cos.sub_scalar(m3 + shift))
    }

    /// [`target_cos`](Self::target_cos) of one cosine in `[-1, 1]`, with the derivative that
    /// backward gives it: the exact one, zero within [`ACOS_EDGE`] of ±1 as the tensor form's
    /// clamp gives, or 1 in straight mode. Computed in f64; the blockwise softmax applies it on
    /// the host.
    pub(crate) fn target_cos_and_slope(&self, c: f32) -> (f64, f64) {
        let CombinedMarginConfig {
            m1,
            m2,
            m3,
            guard,
            gradient,
            ..
        } = self.config;
        let theta = f64::from(c.clamp(-1.0, 1.0)).acos();
        let theta_max = (PI - m2) / m1;
        let shift = match guard {
            MarginGuard::None => None,
            MarginGuard::ArcFace => Some(m2 * m2.sin()),
            MarginGuard::Continuous => Some(1.0 + theta_max.cos()),
        };
        if let Some(shift) = shift.filter(|_| theta > theta_max) {
            return (f64::from(c) - m3 - shift, 1.0);
        }
        let value = (m1 * theta + m2).cos() - m3;
        let edge = ACOS_EDGE as f32;
        let slope = match gradient {
            GradientMode::Straight => 1.0,
            _ if c < -1.0 + edge || c > 1.0 - edge => 0.0,
            GradientMode::Exact => {
                let c = f64::from(c);
                (m1 * theta + m2).sin() * m1 / (1.0 - c * c).sqrt()
            }
        };
        (value, slope)
    }

    /// Margined, scaled logits: `s·cos` everywhere except `s·(cos(m1·θ + m2) - m3)` at each
    /// row's label. Rows labelled `-1` get no margin.
    ///
    /// # Shapes
    /// - cos: `[batch, classes]`, cosines in `[-1, 1]`
    /// - labels: `[batch]`, in `-1..classes`
    /// - output: `[batch, classes]`
    pub fn forward_logits<B: Backend>(
        &self,
        cos: Tensor<B, 2>,
        labels: Tensor<B, 1, Int>,
    ) -> Tensor<B, 2> {
        self.forward_logits_weighted(cos, labels, None)
    }

    /// As [`forward_logits`](Self::forward_logits), with each row's target term multiplied by a
    /// detached weight `a_i`: target logit `s·a_i·(cos(m1·θ + m2) - m3)`. This is the stable
    /// stage of LVFace (paper Eq. 19, see `docs/losses.md`).
    ///
    /// # Shapes
    /// - cos: `[batch, classes]`
    /// - labels: `[batch]`, in `-1..classes`
    /// - target_weight: `[batch]`, treated as a constant
    /// - output: `[batch, classes]`
    pub fn forward_logits_weighted<B: Backend>(
        &self,
        cos: Tensor<B, 2>,
        labels: Tensor<B, 1, Int>,
        target_weight: Option<Tensor<B, 1>>,
    ) -> Tensor<B, 2> {
        let [batch, _] = cos.dims();
        let absent = labels.clone().lower_elem(0).reshape([batch, 1]);
        let index = labels.clamp_min(0).reshape([batch, 1]);
        let target = cos.clone().gather(1, index.clone());
        let straight = self.config.gradient == GradientMode::Straight;
        let input = if straight {
            target.clone().detach()
        } else {
            target.clone()
        };
        let mut margined = self.target_cos(input);
        if let Some(weight) = target_weight {
            margined = margined * weight.detach().reshape([batch, 1]);
        }
        // The target entry becomes cos + (margined - cos); in straight mode that correction is
        // a constant, so backward sees s·cos.
        let mut delta = margined - target;
        if straight {
            delta = delta.detach();
        }
        let delta = delta.mask_fill(absent, 0.0);
        cos.scatter(1, index, delta, IndexingUpdateOp::Add)
            .mul_scalar(self.config.s)
    }

    /// The mean margin-softmax loss of a batch.
    ///
    /// # Shapes
    /// - embeddings: `[batch, dim]`, not necessarily normalised
    /// - centres: `[classes, dim]`
    /// - labels: `[batch]`, in `-1..classes`
    /// - output: `[1]`
    pub fn forward<B: Backend>(
        &self,
        embeddings: Tensor<B, 2>,
        centres: Tensor<B, 2>,
        labels: Tensor<B, 1, Int>,
    ) -> Tensor<B, 1> {
        let logits = self.forward_logits(cosine_matrix(embeddings, centres), labels.clone());
        softmax_cross_entropy(logits, labels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};

    type B = Flex;

    fn values<const D: usize>(t: Tensor<impl Backend, D>) -> Vec<f32> {
        t.into_data().convert::<f32>().to_vec().unwrap()
    }

    #[test]
    fn logits_follow_the_formula() {
        let device = Default::default();
        let cos = [[0.3f32, -0.2, 0.9], [0.1, 0.5, -0.7]];
        let labels = [2i64, 0];
        for (m1, m2, m3) in [(1.0, 0.5, 0.0), (1.0, 0.0, 0.4), (2.0, 0.1, 0.2)] {
            let margin = CombinedMarginConfig::combined(m1, m2, m3).init();
            let got = values(margin.forward_logits::<B>(
                Tensor::from_floats(cos, &device),
                Tensor::from_data(labels, &device),
            ));
            for (i, row) in cos.iter().enumerate() {
                for (j, &c) in row.iter().enumerate() {
                    let c = c as f64;
                    let expected = if j as i64 == labels[i] {
                        64.0 * ((m1 * c.acos() + m2).cos() - m3)
                    } else {
                        64.0 * c
                    };
                    let g = got[i * 3 + j] as f64;
                    assert!(
                        (g - expected).abs() < 1e-4 * expected.abs().max(1.0),
                        "{g} {expected}"
                    );
                }
            }
        }
    }

    #[test]
    fn absent_rows_get_no_margin() {
        let device = Default::default();
        let margin = CombinedMarginConfig::cosface(0.4).init();
        let got = values(margin.forward_logits::<B>(
            Tensor::from_floats([[0.5f32, 0.25]], &device),
            Tensor::from_data([-1i64], &device),
        ));
        assert_eq!(got, vec![32.0, 16.0]);
    }

    #[test]
    fn guards_take_over_past_pi() {
        let device = Default::default();
        // θ = acos(-0.95) ≈ 2.824 > π - 0.5 ≈ 2.642.
        let c = -0.95f64;
        let cos = Tensor::<B, 1>::from_floats([c as f32], &device);
        let none = CombinedMarginConfig::arcface(0.5).init();
        let arc = CombinedMarginConfig::arcface(0.5)
            .with_guard(MarginGuard::ArcFace)
            .init();
        let cont = CombinedMarginConfig::arcface(0.5)
            .with_guard(MarginGuard::Continuous)
            .init();
        let got_none = values(none.target_cos(cos.clone()))[0] as f64;
        let got_arc = values(arc.target_cos(cos.clone()))[0] as f64;
        let got_cont = values(cont.target_cos(cos))[0] as f64;
        assert!((got_none - (c.acos() + 0.5).cos()).abs() < 1e-5);
        assert!((got_arc - (c - 0.5 * 0.5f64.sin())).abs() < 1e-5);
        assert!((got_cont - (c - (1.0 - 0.5f64.cos()))).abs() < 1e-5);
        // Unguarded, the target logit exceeds that of a better-aligned sample at θ = π - 0.5.
        assert!(got_none > -1.0 + 1e-3);
        // The continuous guard meets the margined curve at θmax.
        let at_max = Tensor::<B, 1>::from_floats([(PI - 0.5).cos() as f32], &device);
        let a = values(cont.target_cos(at_max.clone()))[0];
        let b = values(none.target_cos(at_max))[0];
        assert!((a - b).abs() < 1e-4 && (a + 1.0).abs() < 1e-4, "{a} {b}");
    }

    #[test]
    fn straight_gradient_is_the_identity() {
        let device = Default::default();
        let margin = CombinedMarginConfig::arcface(0.5).init();
        let cos = Tensor::<Autodiff<B>, 2>::from_floats([[0.3f32, 0.6]], &device).require_grad();
        let logits = margin.forward_logits(cos.clone(), Tensor::from_data([0i64], &device));
        let grads = logits.sum().backward();
        assert_eq!(values(cos.grad(&grads).unwrap()), vec![64.0, 64.0]);
    }

    #[test]
    fn validation_names_key_and_value() {
        let bad = [
            (
                CombinedMarginConfig {
                    s: -1.0,
                    ..Default::default()
                },
                "margin.s",
                "-1",
            ),
            (
                CombinedMarginConfig::combined(0.5, 0.0, 0.0),
                "margin.m1",
                "0.5",
            ),
            (CombinedMarginConfig::arcface(3.2), "margin.m2", "3.2"),
            (CombinedMarginConfig::cosface(1.5), "margin.m3", "1.5"),
            (
                CombinedMarginConfig::combined(2.0, 0.0, 0.0).with_guard(MarginGuard::ArcFace),
                "margin.guard",
                "m1 = 2",
            ),
        ];
        for (config, key, value) in bad {
            let message = config.validate().unwrap_err().to_string();
            assert!(
                message.starts_with(key) && message.contains(value),
                "{message}"
            );
        }
        CombinedMarginConfig::default().validate().unwrap();
    }

    #[test]
    fn reads_from_serde_and_rejects_unknown_keys() {
        use serde::de::value::{Error, MapDeserializer};
        let entries = vec![("m2", 0.3f64), ("m4", 0.1)];
        let err = CombinedMarginConfig::deserialize(MapDeserializer::<_, Error>::new(
            entries.into_iter(),
        ))
        .unwrap_err();
        assert!(err.to_string().contains("m4"), "{err}");
    }
}
