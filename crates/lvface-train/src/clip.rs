//! Global-norm gradient clipping, as PyTorch's `clip_grad_norm_` (which insightface applies to
//! the backbone with `max_norm = 5`).
//!
//! burn's own `GradientClipping::Norm` clips each parameter's gradient on its own; this treats
//! all gradients of a module as one vector: `n = sqrt(Σ‖g‖²)`, and when `n > max` every
//! gradient is scaled by `max / (n + 1e-6)`.

use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

/// Clips the gradients of `module`'s parameters in `grads` to global L2 norm `max_norm` (0: no
/// clipping) and returns the norm before clipping. Gradients of other modules are untouched.
pub fn clip_global_norm<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    grads: &mut GradientsParams,
    max_norm: f64,
) -> f64 {
    let mut squares = SumSquares::<B> { grads, total: None };
    module.visit(&mut squares);
    let norm = squares
        .total
        .map_or(0.0, |t| t.into_scalar().elem::<f64>().sqrt());
    if max_norm > 0.0 && norm > max_norm {
        let scale = max_norm / (norm + 1e-6);
        module.visit(&mut Scale::<B> {
            grads,
            scale,
            backend: std::marker::PhantomData,
        });
    }
    norm
}

struct SumSquares<'a, B: AutodiffBackend> {
    grads: &'a GradientsParams,
    total: Option<Tensor<B::InnerBackend, 1>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for SumSquares<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(grad) = self.grads.get::<B::InnerBackend, D>(param.id) {
            let sum = grad.square().sum();
            self.total = Some(match self.total.take() {
                Some(total) => total + sum,
                None => sum,
            });
        }
    }
}

struct Scale<'a, B: AutodiffBackend> {
    grads: &'a mut GradientsParams,
    scale: f64,
    backend: std::marker::PhantomData<B>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Scale<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(grad) = self.grads.remove::<B::InnerBackend, D>(param.id) {
            self.grads.register(param.id, grad.mul_scalar(self.scale));
        }
    }
}

#[cfg(all(test, feature = "cpu"))]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};

    type B = Autodiff<Flex>;

    #[derive(Module, Debug)]
    struct Two<B: Backend> {
        a: Param<Tensor<B, 1>>,
        b: Param<Tensor<B, 2>>,
    }

    #[derive(Module, Debug)]
    struct Pair<B: Backend> {
        clipped: Two<B>,
        other: Param<Tensor<B, 1>>,
    }

    /// loss = <a, x> + <b, y> + <c, z>, so the gradients are x, y and z.
    fn grads_of(pair: &Pair<B>, x: [f32; 2], y: [[f32; 2]; 2], z: [f32; 1]) -> GradientsParams {
        let device = Default::default();
        let x = Tensor::<B, 1>::from_floats(x, &device);
        let y = Tensor::<B, 2>::from_floats(y, &device);
        let z = Tensor::<B, 1>::from_floats(z, &device);
        let loss = (pair.clipped.a.val() * x).sum()
            + (pair.clipped.b.val() * y).sum()
            + (pair.other.val() * z).sum();
        GradientsParams::from_grads(loss.backward(), pair)
    }

    fn pair() -> Pair<B> {
        let device = Default::default();
        Pair {
            clipped: Two {
                a: Param::from_tensor(Tensor::zeros([2], &device)),
                b: Param::from_tensor(Tensor::zeros([2, 2], &device)),
            },
            other: Param::from_tensor(Tensor::zeros([1], &device)),
        }
    }

    fn values<const D: usize>(grads: &GradientsParams, param: &Param<Tensor<B, D>>) -> Vec<f32> {
        grads
            .get::<Flex, D>(param.id)
            .unwrap()
            .into_data()
            .to_vec()
            .unwrap()
    }

    #[test]
    fn scales_all_gradients_of_the_module_together() {
        let pair = pair();
        // ‖(1, 2, 2, 0, 0, 4)‖ = sqrt(1 + 4 + 4 + 16) = 5; the other module's 100 is ignored.
        let mut grads = grads_of(&pair, [1.0, 2.0], [[2.0, 0.0], [0.0, 4.0]], [100.0]);
        let norm = clip_global_norm(&pair.clipped, &mut grads, 2.5);
        assert!((norm - 5.0).abs() < 1e-6, "norm {norm}");
        let k = (2.5 / (5.0 + 1e-6)) as f32;
        let a = values(&grads, &pair.clipped.a);
        let b = values(&grads, &pair.clipped.b);
        let expected_a = [k, 2.0 * k];
        let expected_b = [2.0 * k, 0.0, 0.0, 4.0 * k];
        for (got, want) in a.iter().chain(&b).zip(expected_a.iter().chain(&expected_b)) {
            assert!((got - want).abs() < 1e-6, "{got} != {want}");
        }
        assert_eq!(values(&grads, &pair.other), vec![100.0]);
        let clipped: f32 = a.iter().chain(&b).map(|g| g * g).sum::<f32>().sqrt();
        assert!((clipped - 2.5).abs() < 1e-5, "clipped norm {clipped}");
    }

    #[test]
    fn leaves_small_gradients_alone() {
        let pair = pair();
        let mut grads = grads_of(&pair, [0.3, 0.0], [[0.0, 0.4], [0.0, 0.0]], [1.0]);
        let norm = clip_global_norm(&pair.clipped, &mut grads, 5.0);
        assert!((norm - 0.5).abs() < 1e-6, "norm {norm}");
        assert_eq!(values(&grads, &pair.clipped.a), vec![0.3, 0.0]);
        assert_eq!(values(&grads, &pair.clipped.b), vec![0.0, 0.4, 0.0, 0.0]);
    }
}
