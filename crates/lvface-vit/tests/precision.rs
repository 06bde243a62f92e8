//! Mixed precision (`VitConfig::compute_dtype`): f32 is the plain model bit for bit, the half
//! types stay close to it in the forward and the backward, and parameters stay f32.

mod common;

use burn::backend::Autodiff;
use burn::module::{AutodiffModule, Module, ModuleVisitor, Param};
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::activation::softmax;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{DType, Distribution};
use common::{fixture, micro_config, read_tensor, B};
use lvface_vit::{ComputeDType, Vit, VitConfig};

type T = Autodiff<B>;

fn model<Bk: Backend>(compute_dtype: ComputeDType) -> Vit<Bk> {
    VitConfig {
        compute_dtype,
        ..micro_config()
    }
    .init::<Bk>(&Default::default())
    .load_weights(fixture("weights.pt"))
    .unwrap()
}

/// The three images of the parity fixture.
fn images<Bk: Backend>() -> Tensor<Bk, 4> {
    let input: Tensor<B, 4> = read_tensor("io.safetensors", "input");
    Tensor::from_data(input.into_data(), &Default::default())
}

/// `|a - b| / |b|` over all elements (L2 norms).
fn relative_error<Bk: Backend, const D: usize>(a: Tensor<Bk, D>, b: Tensor<Bk, D>) -> f32 {
    let norm = b
        .clone()
        .powf_scalar(2.0)
        .sum()
        .sqrt()
        .into_scalar()
        .elem::<f32>();
    let diff = (a - b)
        .powf_scalar(2.0)
        .sum()
        .sqrt()
        .into_scalar()
        .elem::<f32>();
    diff / norm
}

/// The evaluation forward written with burn's own layers, as `Vit::forward` was before it had a
/// compute type: the f32 model must give exactly this.
fn plain_forward(vit: &Vit<B>, images: Tensor<B, 4>) -> Tensor<B, 2> {
    let mut x = vit
        .patch_embed
        .proj
        .forward(images)
        .flatten::<3>(2, 3)
        .swap_dims(1, 2)
        + vit.pos_embed.val();
    let [batch, tokens, dim] = x.dims();
    for block in &vit.blocks {
        let attn = &block.attn;
        let heads = attn.num_heads;
        let head_dim = dim / heads;
        let qkv = attn
            .qkv
            .forward(block.norm1.forward(x.clone()))
            .reshape([batch, tokens, 3, heads, head_dim])
            .permute([2, 0, 3, 1, 4]);
        let [q, k, v]: [Tensor<B, 4>; 3] = qkv
            .chunk(3, 0)
            .into_iter()
            .map(|t| t.reshape([batch, heads, tokens, head_dim]))
            .collect::<Vec<_>>()
            .try_into()
            .unwrap();
        let scale = (head_dim as f64).powf(-0.5);
        let weights = softmax(q.matmul(k.swap_dims(2, 3)).mul_scalar(scale), 3);
        let out = weights
            .matmul(v)
            .swap_dims(1, 2)
            .reshape([batch, tokens, dim]);
        x = x.clone() + attn.proj.forward(out);
        let mlp = &block.mlp;
        let hidden = mlp
            .fc1
            .forward(block.norm2.forward(x.clone()))
            .clamp(0.0, 6.0);
        x = x.clone() + mlp.fc2.forward(hidden);
    }
    let head = &vit.feature;
    let x = head.fc0.forward(vit.norm.forward(x).flatten::<2>(1, 2));
    head.bn3.forward(head.fc2.forward(head.bn1.forward(x)))
}

#[test]
fn f32_is_the_plain_model_bit_for_bit() {
    let vit = model::<B>(ComputeDType::F32);
    let output = vit.forward(images());
    output
        .into_data()
        .assert_eq(&plain_forward(&vit, images()).into_data(), true);
}

#[test]
fn half_forwards_are_close_to_f32_and_return_f32() {
    let reference = model::<B>(ComputeDType::F32).forward(images());
    // Measured on the fixture (relative L2 error, evaluation mode): bf16 4.2e-3, f16 7.9e-4.
    for (dtype, bound) in [(ComputeDType::Bf16, 1e-2), (ComputeDType::F16, 2e-3)] {
        let output = model::<B>(dtype).forward(images());
        assert_eq!(output.dtype(), DType::F32, "{dtype:?}");
        assert_eq!(output.dims(), [3, 512]);
        let error = relative_error(output, reference.clone());
        assert!(
            error < bound,
            "{dtype:?}: relative error {error} >= {bound}"
        );
    }
}

/// Every float parameter in visiting order: its dtype, and its gradient when it has one.
struct Parameters<'a, Bk: AutodiffBackend> {
    grads: Option<&'a Bk::Gradients>,
    found: Vec<(DType, Option<Tensor<Bk::InnerBackend, 1>>)>,
}

impl<Bk: AutodiffBackend> ModuleVisitor<Bk> for Parameters<'_, Bk> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<Bk, D>>) {
        let grad = self
            .grads
            .and_then(|grads| param.grad(grads))
            .map(|g| g.reshape([-1]));
        self.found.push((param.val().dtype(), grad));
    }
}

fn parameters<Bk: AutodiffBackend>(
    vit: &Vit<Bk>,
    grads: Option<&Bk::Gradients>,
) -> Vec<(DType, Option<Tensor<Bk::InnerBackend, 1>>)> {
    let mut visitor = Parameters {
        grads,
        found: vec![],
    };
    vit.visit(&mut visitor);
    visitor.found
}

/// Eight face-sized images, each a sine of another frequency. The gradient comparison needs a
/// batch whose samples differ: the training-mode BatchNorms of the head normalise over the batch,
/// and on the fixture's three similar images they amplify the half types' rounding tenfold
/// (measured: bf16 training forward 7e-2 from f32, against 5e-3 here).
fn varied_images() -> Tensor<T, 4> {
    let device = Default::default();
    let pixels = 3 * 112 * 112;
    let index = Tensor::<T, 1, Int>::arange(0..8 * pixels, &device)
        .float()
        .reshape([8, pixels as usize]);
    let frequency = Tensor::<T, 1, Int>::arange(0..8, &device)
        .float()
        .mul_scalar(0.13)
        .add_scalar(0.37)
        .reshape([8, 1]);
    (index * frequency).sin().reshape([8, 3, 112, 112])
}

/// A training forward (batch statistics in the BatchNorms) and the backward of a fixed
/// projection of the embeddings, as the training loop's surrogate `Σ e ⊙ ∂L/∂e`.
fn backward(vit: &Vit<T>) -> <T as AutodiffBackend>::Gradients {
    let embeddings = vit.forward(varied_images());
    let [batch, features] = embeddings.dims();
    let direction = Tensor::<T, 1, Int>::arange(0..(batch * features) as i64, &Default::default())
        .float()
        .mul_scalar(0.731)
        .sin()
        .reshape([batch, features]);
    (embeddings * direction).sum().backward()
}

#[test]
fn half_gradients_are_f32_and_close_to_f32_gradients() {
    let reference = model::<T>(ComputeDType::F32);
    let grads = backward(&reference);
    let expected = parameters(&reference, Some(&grads));
    let norm = |g: &Tensor<B, 1>| g.clone().powf_scalar(2.0).sum().into_scalar().sqrt();
    let total = expected
        .iter()
        .filter_map(|(_, g)| g.as_ref().map(|g| norm(g).powi(2)))
        .sum::<f32>()
        .sqrt();
    // Measured (relative L2 error of all gradients as one vector; largest of one parameter):
    // bf16 8.8e-3 and 9.1e-2 (a bias, a sum with cancellation), f16 1.9e-3 and 2.6e-2.
    for (dtype, global_bound, bound) in [
        (ComputeDType::Bf16, 2e-2, 0.2),
        (ComputeDType::F16, 5e-3, 6e-2),
    ] {
        let vit = model::<T>(dtype);
        let grads = backward(&vit);
        let found = parameters(&vit, Some(&grads));
        assert_eq!(found.len(), expected.len());
        let (mut worst, mut squared_error) = (0.0f32, 0.0f32);
        for (i, ((_, grad), (_, want))) in found.into_iter().zip(&expected).enumerate() {
            let (Some(grad), Some(want)) = (grad, want) else {
                // Only the mask token, unused without masking, has no gradient.
                assert!(want.is_none(), "{dtype:?}: parameter {i} lost its gradient");
                continue;
            };
            assert_eq!(grad.dtype(), DType::F32, "{dtype:?}: parameter {i}");
            squared_error += norm(&(grad.clone() - want.clone())).powi(2);
            // The final LayerNorm's and bn1's biases shift every sample alike, which the next
            // training-mode BatchNorm removes: their gradients are rounding noise in any type.
            if norm(want) < 1e-6 * total {
                continue;
            }
            let error = relative_error(grad, want.clone());
            assert!(error.is_finite(), "{dtype:?}: parameter {i}");
            worst = worst.max(error);
        }
        let global = squared_error.sqrt() / total;
        assert!(global < global_bound, "{dtype:?}: gradient error {global}");
        assert!(
            worst < bound,
            "{dtype:?}: a parameter's gradient error {worst}"
        );
    }
}

#[test]
fn parameters_stay_f32_through_a_half_precision_step() {
    let mut vit = model::<T>(ComputeDType::Bf16);
    let before: Tensor<B, 2> = vit.feature.fc0.weight.val().inner();
    let grads = GradientsParams::from_grads(backward(&vit), &vit);
    let mut optimizer = AdamWConfig::new().init::<T, Vit<T>>();
    vit = optimizer.step(1e-3, vit, grads);

    let after = vit.feature.fc0.weight.val().inner();
    assert!(
        relative_error(after, before) > 0.0,
        "the step changed nothing"
    );
    let dtypes: Vec<DType> = parameters(&vit, None).into_iter().map(|(d, _)| d).collect();
    assert!(!dtypes.is_empty());
    assert!(dtypes.iter().all(|&d| d == DType::F32), "{dtypes:?}");
    // The inference model and a forward on random input are f32 as well.
    let valid = vit.valid();
    let x = Tensor::<B, 4>::random([2, 3, 112, 112], Distribution::Default, &Default::default());
    let output = valid.forward(x);
    assert_eq!(output.dtype(), DType::F32);
    assert!(output.is_finite().all().into_scalar());
}
