//! One optimizer step against insightface's train_v2 computed in PyTorch
//! (`benches/reference/train_step_parity.py`, fixture in `tests/fixtures/train-step/`): from the
//! same backbone weights, centres and micro-batches, every class sampled, the step (forward,
//! ArcFace margin, cross-entropy, backward, the micro-batches' gradients summed, clip at 5,
//! AdamW over backbone and centres) ends in the same parameters and BatchNorm statistics within
//! 1e-4 and the same loss within 1e-5 relative, for one and for two micro-batches; on Flex, and
//! with the `wgpu` feature on burn's wgpu backend (cubecl's kernels and autodiff over them)
//! within the same bounds.

#![allow(clippy::print_stderr)] // The measured differences are printed for the record.

use std::path::{Path, PathBuf};

use burn::backend::{Autodiff, Flex};
use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use lvface_data::Batch;
use lvface_loss::{CombinedMarginConfig, Phase, PrototypeBankConfig};
use lvface_pfc::{PartialFcConfig, Solo};
use lvface_vit::Vit;
use safetensors::SafeTensors;

use super::{Outcome, StepPlan};
use crate::checkpoint::MarginState;
use crate::config::{Accumulate, Experiment, TrainConfig};
use crate::model::TrainModel;
use crate::optim::init_optimizer;

const CLASSES: usize = 12;
/// Parameters and statistics agree within 1e-4 absolute (AdamW's first step moves a weight by
/// up to `lr` = 1e-3).
const TOL: f32 = 1e-4;
/// The loss (about 35 at s = 64) within this relative bound: 1.1e-7 measured on Flex, up to
/// 6.7e-6 on lavapipe, whose Vulkan `exp` and `log` may be a few ulp off (Vulkan allows
/// 3 + 2|x| ulp).
const LOSS_REL_TOL: f64 = 1e-5;

fn fixture(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/train-step")
        .join(file)
}

/// Every f32 tensor of a safetensors file, by name.
fn read_f32(file: &str, name: &str) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(fixture(file)).unwrap();
    let tensors = SafeTensors::deserialize(&bytes).unwrap();
    let view = tensors.tensor(name).unwrap();
    let values = view
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    (view.shape().to_vec(), values)
}

fn read_i64(file: &str, name: &str) -> Vec<i64> {
    let bytes = std::fs::read(fixture(file)).unwrap();
    let tensors = SafeTensors::deserialize(&bytes).unwrap();
    let view = tensors.tensor(name).unwrap();
    view.data()
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

/// The script's model: width 16, depth 2, 2 heads, 112 px, patch 9, no drop path or masking;
/// AdamW lr 1e-3, weight decay 0.1, no warm-up, clip 5, gradients summed.
fn config() -> TrainConfig {
    let sets = [
        "vit.image_size=112",
        "vit.patch_size=9",
        "vit.num_features=512",
        "vit.embed_dim=16",
        "vit.depth=2",
        "vit.num_heads=2",
        "vit.drop_path_rate=0.0",
        "vit.mask_ratio=0.0",
        "vit.grad_checkpoint=false",
        "optim.lr=1e-3",
        "optim.weight_decay=0.1",
        "optim.clip_norm=5.0",
        "optim.accumulate=\"sum\"",
    ];
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    TrainConfig::load(&Experiment::Default, &sets).unwrap()
}

fn floats<Bk: Backend, const D: usize>(t: Tensor<Bk, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec().unwrap()
}

/// Every parameter of a backbone (the BatchNorms' running statistics are compared on their
/// own), but the two whose gradient is zero by construction, returned apart: the final
/// LayerNorm's bias and the first head BatchNorm's shift. Each adds the same vector to every
/// sample, which the next training-mode BatchNorm subtracts again with the batch mean, so their
/// gradients are rounding noise. AdamW's first step moves a weight by `lr·g/(|g| + ε)`, which
/// for such `g` is noise of up to `lr`, in PyTorch as here; they are checked to stay within it.
fn parameters<B: Backend>(vit: &Vit<B>) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
    struct Collect(Vec<Vec<f32>>);
    impl<B: Backend> ModuleVisitor<B> for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            self.0.push(floats(param.val()));
        }
    }
    let mut collect = Collect(Vec::new());
    vit.patch_embed.visit(&mut collect);
    vit.pos_embed.visit(&mut collect);
    vit.mask_token.visit(&mut collect);
    for block in &vit.blocks {
        block.visit(&mut collect);
    }
    vit.norm.gamma.visit(&mut collect);
    let head = &vit.feature;
    head.fc0.visit(&mut collect);
    head.bn1.gamma.visit(&mut collect);
    head.fc2.visit(&mut collect);
    head.bn3.gamma.visit(&mut collect);
    head.bn3.beta.visit(&mut collect);
    let norm_bias = vit.norm.beta.as_ref().expect("LayerNorm with bias");
    let zero_gradient = vec![floats(norm_bias.val()), floats(head.bn1.beta.val())];
    (collect.0, zero_gradient)
}

/// Within [`TOL`] absolute, element by element; returns the largest difference.
fn assert_close(what: &str, got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let worst = got
        .iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs())
        .fold(0f32, f32::max);
    assert!(worst <= TOL, "{what}: off by {worst}");
    worst
}

fn start_backbone<B: Backend>(config: &TrainConfig, device: &B::Device) -> Vit<B> {
    config
        .vit
        .init::<B>(device)
        .load_weights(fixture("start.safetensors"))
        .unwrap()
}

fn run_step<B: AutodiffBackend>(micro: usize, device: &B::Device) -> (TrainModel<B>, Vec<f64>) {
    let config = config();
    let (_, centres) = read_f32("data.safetensors", "centres.start");
    let centres = Tensor::<B, 2>::from_data(TensorData::new(centres, [CLASSES, 512]), device);
    let model = TrainModel::new(start_backbone(&config, device), CLASSES, 512, device)
        .with_centres(centres);
    let mut optim = init_optimizer::<B>(&config.optim);
    let mut bank = PrototypeBankConfig::default().init::<B>(CLASSES, 512, device);
    let mut margins = MarginState::default();
    let (shape, pixels) = read_f32("data.safetensors", "images");
    let labels = read_i64("data.safetensors", "labels");
    let per_batch = pixels.len() / shape[0];
    let batches: Vec<Batch> = (0..micro)
        .map(|i| Batch {
            pixels: pixels[i * per_batch..(i + 1) * per_batch].to_vec(),
            shape: [shape[1], shape[2], shape[3], shape[4]],
            labels: labels[i * shape[1]..(i + 1) * shape[1]].to_vec(),
            indices: (0..shape[1]).collect(),
        })
        .collect();
    let comm = Solo::new();
    let plan = StepPlan {
        pfc: PartialFcConfig {
            sample_rate: 1.0,
            seed: 0,
            ..Default::default()
        }
        .init(0, 1, CLASSES)
        .unwrap(),
        phase: Phase {
            margin: CombinedMarginConfig::arcface(0.5),
            ..Phase::default()
        },
        loss: &config.loss,
        finetune: &config.finetune,
        clip_norm: config.optim.clip_norm,
        accumulate: Accumulate::Sum,
        seed: 0,
        comm: &comm,
    };
    let (model, outcome) = plan
        .run(
            model,
            &mut optim,
            &mut bank,
            &mut margins,
            &batches,
            0,
            config.optim.lr,
        )
        .unwrap();
    let Outcome::Done { loss, .. } = outcome else {
        panic!("the step was not finite");
    };
    // The step logs the mean of its micro-batches' losses.
    (model, vec![loss])
}

#[test]
fn one_step_equals_insightface_train_v2_for_one_and_two_micro_batches() {
    assert_step_equals_train_v2::<Autodiff<Flex>>(&Default::default());
}

/// The same step on burn's wgpu backend, on whatever adapter the machine has (lavapipe in CI):
/// f32 throughout, so the bound is the CPU's.
#[cfg(feature = "wgpu")]
#[test]
fn one_step_on_wgpu_equals_insightface_train_v2() {
    assert_step_equals_train_v2::<Autodiff<burn::backend::Wgpu>>(&Default::default());
}

fn assert_step_equals_train_v2<B: AutodiffBackend>(device: &B::Device) {
    let config = config();
    for micro in [1, 2] {
        let (model, loss) = run_step::<B>(micro, device);
        let (_, want_losses) = read_f32("data.safetensors", &format!("loss.k{micro}"));
        let want_loss = want_losses.iter().sum::<f32>() / micro as f32;
        let mut worst = 0f32;
        let loss_error = (loss[0] - f64::from(want_loss)).abs() / f64::from(want_loss);
        assert!(
            loss_error <= LOSS_REL_TOL,
            "k={micro}: loss {} against PyTorch's {want_loss}",
            loss[0]
        );

        let expected = start_backbone::<B>(&config, device)
            .load_weights(fixture(&format!("k{micro}.safetensors")))
            .unwrap();
        let (before, before_noise) = parameters(&start_backbone::<B>(&config, device));
        let (got, got_noise) = parameters(&model.backbone);
        let (want, _) = parameters(&expected);
        assert_eq!(got.len(), want.len());
        for (g, b) in got_noise.iter().zip(&before_noise) {
            let moved = g
                .iter()
                .zip(b)
                .map(|(g, b)| (g - b).abs())
                .fold(0f32, f32::max);
            assert!(
                moved <= 1.01e-3,
                "k={micro}: a zero-gradient parameter moved by {moved}"
            );
        }
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            worst = worst.max(assert_close(
                &format!("k={micro}: backbone parameter {i}"),
                g,
                w,
            ));
        }
        // Every parameter moved but the mask token, which masking off leaves without a
        // gradient (AdamW skips it in both): a step that changed nothing would pass trivially.
        let still = want.iter().zip(&before).filter(|(w, b)| w == b).count();
        assert_eq!(still, 1, "k={micro}: parameters PyTorch left as they were");
        for (name, got, want) in [
            (
                "feature.1.running_mean",
                &model.backbone.feature.bn1.running_mean,
                &expected.feature.bn1.running_mean,
            ),
            (
                "feature.1.running_var",
                &model.backbone.feature.bn1.running_var,
                &expected.feature.bn1.running_var,
            ),
            (
                "feature.3.running_mean",
                &model.backbone.feature.bn3.running_mean,
                &expected.feature.bn3.running_mean,
            ),
            (
                "feature.3.running_var",
                &model.backbone.feature.bn3.running_var,
                &expected.feature.bn3.running_var,
            ),
        ] {
            worst = worst.max(assert_close(
                &format!("k={micro}: {name}"),
                &floats(got.value_sync()),
                &floats(want.value_sync()),
            ));
        }
        let (_, want_centres) = read_f32("data.safetensors", &format!("centres.k{micro}"));
        worst = worst.max(assert_close(
            &format!("k={micro}: centres"),
            &floats(model.centres.val()),
            &want_centres,
        ));
        eprintln!(
            "{}, k={micro}: largest difference from PyTorch {worst:e}, loss off by \
             {loss_error:e} (relative)",
            B::name(device)
        );
    }
}
