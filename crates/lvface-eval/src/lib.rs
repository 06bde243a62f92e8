//! Face-verification evaluation for lvface: insightface's 10-fold accuracy with VAL@FAR and
//! XNorm on `.bin` pair sets, TAR@FAR from pair scores, IJB-B/C-style template evaluation,
//! and reports (JSON, Markdown, one machine-readable line per set, ROC plots in SVG and PNG).
//! The protocols, formulas and conventions are in `docs/eval.md`.
//!
//! Invariants:
//! - Figures mean what insightface's mean: the same score (squared L2 distance of L2-normalised
//!   flip-summed embeddings), the same threshold grids and fold split, the same tie rules
//!   (`np.argmax` takes the first best threshold; the IJB lookup takes the nearest sklearn ROC
//!   point, the later one on a tie). Every place where lvface must choose (tied FARs in VAL's
//!   interpolation, f64 distances) is documented where it is implemented.
//! - The library API is plain data: embeddings as an f32 matrix, labels as `bool`, scores as
//!   `f64`. The crate knows no tensor library and no model; embedding a set takes a closure from
//!   an NCHW f32 batch to embeddings.
//! - Inputs that make a figure undefined (fewer pairs than folds, a fold without genuine or
//!   impostor pairs, a one-class ROC, NaN) are an [`EvalError`], never a silent NaN or panic.
//! - Only the report writers, the plots, the `.npy` reader and the IJB reader (meta files and
//!   images) do IO.
//!
//! ```
//! use lvface_eval::{machine_line, tar_at_far, Embeddings, VerificationConfig, IJB_FARS};
//!
//! // 20 pairs of 2-d embeddings in the .bin's image order: rows 2i and 2i + 1 form pair i.
//! let issame: Vec<bool> = (0..20).map(|i| i % 2 == 0).collect();
//! let values: Vec<f32> = issame
//!     .iter()
//!     .enumerate()
//!     .flat_map(|(i, &same)| {
//!         let a = i as f32 * 0.3;
//!         let b = if same { a + 0.05 } else { a + 1.5 };
//!         [a.cos(), a.sin(), b.cos(), b.sin()]
//!     })
//!     .collect();
//! let embeddings = Embeddings::new(values, 2)?;
//! let report = VerificationConfig::default().init().evaluate_embeddings(&embeddings, None, &issame)?;
//! assert_eq!(report.accuracy, 1.0);
//! println!("{}", machine_line("toy", &report)); // set=toy accuracy=1.0000 std=0.0000 ...
//!
//! let scores = [0.9, 0.8, 0.7, 0.2, 0.1, 0.3];
//! let labels = [true, true, true, false, false, false];
//! let tar = tar_at_far(&scores, &labels, &IJB_FARS)?;
//! assert_eq!(tar.at(1e-4).unwrap().tar, 1.0);
//! # Ok::<(), lvface_eval::EvalError>(())
//! ```

mod align;
mod embeddings;
mod error;
mod ijb;
mod kfold;
mod npy;
mod pair_set;
mod plot;
mod report;
mod roc;
mod tar_far;
mod val_far;
mod verify;

pub use align::{
    align_face, similarity_transform, warp_affine, Affine, ALIGNED_SIZE, ARCFACE_TEMPLATE,
};
pub use embeddings::Embeddings;
pub use error::{EvalError, Result};
pub use ijb::{
    evaluate_ijb, template_features, IjbConfig, IjbFace, IjbMeta, IjbResult, TemplatePair,
    Templates,
};
pub use kfold::{
    fold_ranges, threshold_grid, Verification, VerificationConfig, VerificationReport,
};
pub use npy::{NpyArray, NpyDtype};
pub use pair_set::{evaluate_pair_set, pair_set_report, write_report_dir, PairSetResult};
pub use plot::{register_font, RocPlot, RocSeries, COLORS};
pub use report::{far_label, machine_line, tar_line, EvalReport, SetReport};
pub use roc::RocCurve;
pub use tar_far::{tar_at_far, TarAtFar, TarFarReport, IJB_FARS};
pub use val_far::interpolate_threshold;
pub use verify::{embed_with_flip, flip_horizontal, FlipEmbeddings, ImageBatch};
