//! MAE-style random token masking, as insightface's `random_masking`.
//!
//! The noise is an argument so that tests can fix the permutation; the model draws it from the
//! backend's seeded generator.

use burn::prelude::*;

/// Keeps, per sample, the `keep` tokens with the smallest noise.
///
/// Returns the kept tokens (in ascending-noise order) and `ids_restore`, the permutation that
/// [`unmask`] uses to put every token back in place.
///
/// # Shapes
/// - tokens: `[batch, tokens, dim]`
/// - noise: `[batch, tokens]`
/// - output: (`[batch, keep, dim]`, `[batch, tokens]`)
pub fn mask<B: Backend>(
    tokens: Tensor<B, 3>,
    noise: Tensor<B, 2>,
    keep: usize,
) -> (Tensor<B, 3>, Tensor<B, 2, Int>) {
    let [_, _, dim] = tokens.dims();
    let ids_shuffle = noise.argsort(1);
    let ids_restore = ids_shuffle.clone().argsort(1);
    let ids_keep = ids_shuffle.narrow(1, 0, keep);
    let kept = tokens.gather(1, ids_keep.unsqueeze_dim::<3>(2).repeat_dim(2, dim));
    (kept, ids_restore)
}

/// Appends `mask_token` for each dropped position and undoes the shuffle of [`mask`].
///
/// # Shapes
/// - kept: `[batch, keep, dim]`
/// - mask_token: `[1, 1, dim]`
/// - ids_restore: `[batch, tokens]`
/// - output: `[batch, tokens, dim]`
pub fn unmask<B: Backend>(
    kept: Tensor<B, 3>,
    mask_token: Tensor<B, 3>,
    ids_restore: Tensor<B, 2, Int>,
) -> Tensor<B, 3> {
    let [batch, keep, dim] = kept.dims();
    let [_, tokens] = ids_restore.dims();
    let shuffled = if keep < tokens {
        Tensor::cat(
            vec![kept, mask_token.expand([batch, tokens - keep, dim])],
            1,
        )
    } else {
        kept
    };
    shuffled.gather(1, ids_restore.unsqueeze_dim::<3>(2).repeat_dim(2, dim))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    type B = Flex;

    #[test]
    fn keeps_lowest_noise_and_restores_order() {
        let device = Default::default();
        // Two samples, four tokens of width 2; token t of sample s is [10s + t, -(10s + t)].
        let tokens = Tensor::<B, 3>::from_floats(
            [
                [[0., 0.], [1., -1.], [2., -2.], [3., -3.]],
                [[10., -10.], [11., -11.], [12., -12.], [13., -13.]],
            ],
            &device,
        );
        let noise =
            Tensor::<B, 2>::from_floats([[0.9, 0.1, 0.5, 0.3], [0.2, 0.8, 0.4, 0.6]], &device);

        let (kept, restore) = mask(tokens, noise, 2);
        assert_eq!(kept.dims(), [2, 2, 2]);
        // Sample 0 keeps tokens 1 then 3; sample 1 keeps 0 then 2.
        let kept_first: Vec<f32> = kept.clone().narrow(2, 0, 1).into_data().to_vec().unwrap();
        assert_eq!(kept_first, vec![1., 3., 10., 12.]);

        let filler = Tensor::<B, 3>::from_floats([[[-7., 7.]]], &device);
        let restored = unmask(kept, filler, restore);
        assert_eq!(restored.dims(), [2, 4, 2]);
        let values: Vec<f32> = restored.into_data().to_vec().unwrap();
        #[rustfmt::skip]
        let expected = vec![
            -7., 7.,   1., -1.,   -7., 7.,   3., -3.,
            10., -10., -7., 7.,   12., -12., -7., 7.,
        ];
        assert_eq!(values, expected);
    }

    #[test]
    fn nothing_masked_is_identity() {
        let device = Default::default();
        let tokens =
            Tensor::<B, 3>::random([3, 5, 4], burn::tensor::Distribution::Default, &device);
        let noise = Tensor::<B, 2>::random([3, 5], burn::tensor::Distribution::Default, &device);
        let (kept, restore) = mask(tokens.clone(), noise, 5);
        let token = Tensor::<B, 3>::zeros([1, 1, 4], &device);
        let restored = unmask(kept, token, restore);
        restored.into_data().assert_eq(&tokens.into_data(), true);
    }
}
