//! Face-recognition losses for lvface, generic over the burn backend: the combined margin
//! softmax of ArcFace/CosFace/SphereFace, Partial FC negative-class sampling, EPL's EMA class
//! prototypes, the LVFace stable-stage loss (paper Eq. 19), the LVFace curriculum that switches
//! between them, CurricularFace and AdaFace as alternatives, and a blockwise form of the combined
//! margin softmax that never stores the `[batch, classes]` logits ([`BlockwiseMarginSoftmax`]).
//! The formulas and the interpretation of Eq. 19 are in `docs/losses.md`.
//!
//! Invariants:
//! - The crate works on embeddings, class-centre tensors and labels only. It knows nothing of
//!   backbones, data or devices, does no IO except [`PrototypeBank::save`] / [`PrototypeBank::load`],
//!   and depends on no other lvface crate.
//! - Logits are cosines clamped to `[-1, 1]` times `s`, plus a target margin. Label `-1` means
//!   "this sample's class is not among these columns" and such a row adds neither loss nor
//!   gradient, so a sharded classifier can reuse every loss here.
//! - The cross-entropy never overflows: it subtracts each row's maximum before `exp`.
//! - Nothing here owns a trainable parameter. The prototype bank is state without gradient: its
//!   inputs are detached.
//! - Randomness (negative sampling) is a pure function of a seed and the step.
//!
//! ```
//! use burn::backend::{Autodiff, Flex};
//! use burn::prelude::*;
//! use burn::tensor::Distribution;
//! use lvface_loss::{CurriculumConfig, NegativeSamplerConfig, PrototypeBankConfig, StableStageConfig};
//!
//! type B = Autodiff<Flex>;
//! let device = Default::default();
//! let (batch, dim, num_classes, steps_per_epoch) = (8, 16, 100, 10);
//! let normal = Distribution::Normal(0.0, 1.0);
//! let embeddings = Tensor::<B, 2>::random([batch, dim], normal, &device).require_grad();
//! let centres = Tensor::<B, 2>::random([num_classes, dim], normal, &device).require_grad();
//! let host_labels: Vec<i64> = (0..batch as i64).map(|i| i * 7).collect();
//! let labels = Tensor::<B, 1, Int>::from_data(host_labels.as_slice(), &device);
//!
//! let curriculum = CurriculumConfig::default().init(); // the paper's: 40 early, 60 stable epochs
//! let mut bank = PrototypeBankConfig::default().init::<B>(num_classes, dim, &device);
//! for step in [0, 400] { // epoch 0 (ArcFace, Partial FC 0.3), epoch 40 (prototypes)
//!     let phase = curriculum.phase_at_step(step, steps_per_epoch);
//!     let loss = if phase.prototypes {
//!         StableStageConfig { margin: phase.margin, ..Default::default() }
//!             .init()
//!             .forward(embeddings.clone(), centres.clone(), labels.clone(), &bank)
//!     } else {
//!         let sampler = NegativeSamplerConfig { sample_rate: phase.effective_sample_rate(), seed: 2048 }.init();
//!         let sample = sampler.sample(&host_labels, num_classes, step);
//!         phase.margin.init().forward(
//!             embeddings.clone(),
//!             sample.select_centres(centres.clone()),
//!             sample.label_tensor(&device),
//!         )
//!     };
//!     let grads = loss.backward();
//!     assert!(centres.grad(&grads).is_some());
//!     bank.update(embeddings.clone(), labels.clone()); // every step, in every phase
//! }
//! ```

mod ada_face;
mod blockwise;
mod combined_margin;
mod cosine;
mod cross_entropy;
mod curricular_face;
mod curriculum;
mod error;
mod lanes;
mod negative_sampler;
mod prototype_bank;
mod rng;
mod stable_stage;

pub use ada_face::{AdaFace, AdaFaceConfig};
pub use blockwise::{
    BlockwiseMarginSoftmax, Columns, Cosines, MarginGradients, NormalizedRows, RowStatistics,
    DEFAULT_BLOCK_CLASSES, DEFAULT_COSINE_BUDGET,
};
pub use combined_margin::{CombinedMargin, CombinedMarginConfig, GradientMode, MarginGuard};
pub use cosine::{cosine_matrix, l2_normalize};
pub use cross_entropy::{
    log_sum_exp, softmax_cross_entropy, softmax_cross_entropy_per_row, target_logits,
};
pub use curricular_face::{CurricularFace, CurricularFaceConfig};
pub use curriculum::{Curriculum, CurriculumConfig, MarginLoss, Phase};
pub use error::{LossError, Result};
pub use negative_sampler::{NegativeSampler, NegativeSamplerConfig, SampledClasses};
pub use prototype_bank::{Momentum, PrototypeBank, PrototypeBankConfig};
pub use stable_stage::{StableStageConfig, StableStageLoss};
