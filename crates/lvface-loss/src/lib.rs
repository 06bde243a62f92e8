//! Face-recognition losses for lvface, generic over the burn backend: the combined margin
//! softmax of ArcFace/CosFace/SphereFace, Partial FC negative-class sampling, EPL's EMA class
//! prototypes, the LVFace stable-stage loss (paper Eq. 19), the LVFace curriculum that switches
//! between them, and CurricularFace and AdaFace as alternatives. The formulas and the
//! interpretation of Eq. 19 are in `docs/losses.md`.
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
//! ```ignore
//! use lvface_loss::{CurriculumConfig, NegativeSamplerConfig, PrototypeBankConfig, StableStageConfig};
//! let curriculum = CurriculumConfig::default().init();
//! let mut bank = PrototypeBankConfig::default().init::<B>(num_classes, 512, &device);
//! let phase = curriculum.phase_at_step(step, steps_per_epoch);
//! let loss = if phase.prototypes {
//!     StableStageConfig { margin: phase.margin, ..Default::default() }
//!         .init()
//!         .forward(embeddings.clone(), centres.val(), labels.clone(), &bank)
//! } else {
//!     let sampler = NegativeSamplerConfig { sample_rate: phase.effective_sample_rate(), seed }.init();
//!     let sample = sampler.sample(&host_labels, num_classes, step);
//!     let margin = phase.margin.init();
//!     margin.forward(embeddings.clone(), sample.select_centres(centres.val()), sample.label_tensor(&device))
//! };
//! bank.update(embeddings, labels); // every step, in every phase
//! ```

mod ada_face;
mod combined_margin;
mod cosine;
mod cross_entropy;
mod curricular_face;
mod curriculum;
mod error;
mod negative_sampler;
mod prototype_bank;
mod rng;
mod stable_stage;

pub use ada_face::{AdaFace, AdaFaceConfig};
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
