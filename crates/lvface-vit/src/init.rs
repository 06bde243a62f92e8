//! Parameter initialisation as insightface's `_init_weights`: Linear weights trunc_normal(std .02)
//! and biases 0, LayerNorm weight 1 and bias 0 (burn's LayerNorm default), the rest as PyTorch
//! initialises it.

use burn::nn::{Initializer, Linear, LinearConfig};
use burn::prelude::*;

/// timm's `trunc_normal_(std=.02)` truncates at ±2 in absolute value, a hundred standard
/// deviations: a plain normal draw is the same distribution for every practical purpose.
pub(crate) const TRUNC_NORMAL_02: Initializer = Initializer::Normal {
    mean: 0.0,
    std: 0.02,
};

/// A Linear layer initialised as insightface does (normal std .02, zero bias).
pub(crate) fn linear<B: Backend>(
    d_input: usize,
    d_output: usize,
    bias: bool,
    device: &B::Device,
) -> Linear<B> {
    let mut layer = LinearConfig::new(d_input, d_output)
        .with_bias(false)
        .with_initializer(TRUNC_NORMAL_02)
        .init(device);
    // burn draws a Linear's bias from the weight's initializer; insightface sets it to 0.
    layer.bias = bias.then(|| Initializer::Zeros.init([d_output], device));
    layer
}
