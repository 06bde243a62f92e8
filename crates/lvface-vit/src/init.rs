//! Parameter initialisation as insightface's `_init_weights`.

use burn::nn::{Initializer, LinearConfig};

/// timm's `trunc_normal_(std=.02)` truncates at ±2 in absolute value, a hundred standard
/// deviations: a plain normal draw is the same distribution for every practical purpose.
pub(crate) const TRUNC_NORMAL_02: Initializer = Initializer::Normal {
    mean: 0.0,
    std: 0.02,
};

/// A Linear layer initialised as insightface does (normal std .02, zero bias).
pub(crate) fn linear(d_input: usize, d_output: usize, bias: bool) -> LinearConfig {
    LinearConfig::new(d_input, d_output)
        .with_bias(bias)
        .with_initializer(TRUNC_NORMAL_02)
}
