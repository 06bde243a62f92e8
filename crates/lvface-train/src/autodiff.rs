//! The autodiff backend a run trains on: `vit.grad_checkpoint` picks burn's checkpointing
//! strategy, which is a type parameter of `Autodiff`, so the choice is made once where the
//! concrete backend is named ([`with_autodiff!`](crate::with_autodiff)).

use burn::backend::autodiff::checkpoint::strategy::BalancedCheckpointing;
use burn::backend::Autodiff;

/// `Autodiff<B>` that keeps every intermediate backward needs (`vit.grad_checkpoint = false`).
pub type PlainAutodiff<B> = Autodiff<B>;

/// `Autodiff<B>` that keeps the outputs of the ops burn marks compute-bound (matmuls, linear,
/// convolutions, reductions, gathers, casts) and recomputes those it marks memory-bound
/// (elementwise arithmetic, `exp`, `sqrt`, GELU, ...) during backward (`vit.grad_checkpoint =
/// true`). burn 0.21 applies this to the whole graph, not per block; the gradients are those of
/// [`PlainAutodiff`].
pub type CheckpointedAutodiff<B> = Autodiff<B, BalancedCheckpointing>;

/// Evaluates `$body` with the type `$b` bound to the training backend over `$inner`:
/// [`CheckpointedAutodiff`] when `$grad_checkpoint` is true, else [`PlainAutodiff`].
///
/// A macro rather than a function because the body is generic code that has to be
/// instantiated for both backend types, and Rust closures cannot be generic.
///
/// ```ignore
/// let summary = lvface_train::with_autodiff!(Flex, config.vit.grad_checkpoint, |B| {
///     lvface_train::train::<B>(&run_dir, &device)
/// })?;
/// ```
#[macro_export]
macro_rules! with_autodiff {
    ($inner:ty, $grad_checkpoint:expr, |$b:ident| $body:expr) => {
        if $grad_checkpoint {
            type $b = $crate::CheckpointedAutodiff<$inner>;
            $body
        } else {
            type $b = $crate::PlainAutodiff<$inner>;
            $body
        }
    };
}
