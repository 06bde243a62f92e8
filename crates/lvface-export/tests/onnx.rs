//! The exported graph, run by tract-onnx (a pure-Rust ONNX runtime), against burn's model and
//! PyTorch's reference outputs; and the rules of insightface's MFR checker.

mod common;

use burn::module::RunningState;
use burn::prelude::*;
use burn::tensor::Distribution;
use common::{fixture, micro_config, read_tensor, values, B};
use lvface_export::{
    check_mfr, export_onnx, ExportError, ExportOptions, MfrLimits, INPUT_NAME, OUTPUT_NAME,
};
use lvface_vit::{Vit, VitConfig};
use tract_onnx::prelude::{tvec, Framework, InferenceModelExt};

/// Runs the ONNX `model` on `input` (`[n, 3, s, s]`) with its symbolic batch left symbolic.
fn run_onnx(model: &[u8], input: &[f32], shape: [usize; 4]) -> (Vec<usize>, Vec<f32>) {
    let plan = tract_onnx::onnx()
        .model_for_read(&mut &model[..])
        .expect("tract should read the exported model")
        .into_optimized()
        .expect("tract should type and optimise the graph")
        .into_runnable()
        .unwrap();
    let tensor = tract_onnx::prelude::Tensor::from_shape(&shape, input).unwrap();
    let outputs = plan.run(tvec!(tensor.into())).unwrap();
    assert_eq!(outputs.len(), 1, "one output");
    let view = outputs[0].to_array_view::<f32>().unwrap();
    (view.shape().to_vec(), view.iter().copied().collect())
}

/// Deterministic pseudo-random images in [-1, 1].
fn images(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n * 3 * 112 * 112)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// The fixture's backbone (random PyTorch weights with non-trivial BatchNorm statistics).
fn micro_model() -> Vit<B> {
    micro_config()
        .init::<B>(&Default::default())
        .load_weights(fixture("weights.pt"))
        .unwrap()
}

#[test]
fn onnx_of_the_parity_weights_gives_pytorch_embeddings() {
    let bytes = export_onnx(&micro_model(), &micro_config(), &ExportOptions::default()).unwrap();
    let input: Tensor<B, 4> = read_tensor("io.safetensors", "input");
    let expected = values(read_tensor::<2>("io.safetensors", "output"));
    let (shape, output) = run_onnx(&bytes, &values(input), [3, 3, 112, 112]);
    assert_eq!(shape, [3, 512]);
    let diff = max_abs_diff(&output, &expected);
    assert!(diff <= 1e-4, "max abs difference to PyTorch {diff} > 1e-4");
}

#[test]
fn onnx_of_a_tiny_vit_matches_burn() {
    // 4 heads of width 8, an MLP ratio of 2, 32-d embeddings, and BatchNorm statistics away
    // from their initial 0 and 1, so that every parameter of the graph matters.
    let config = VitConfig {
        embed_dim: 32,
        depth: 2,
        num_heads: 4,
        mlp_ratio: 2,
        num_features: 32,
        drop_path_rate: 0.0,
        mask_ratio: 0.0,
        ..VitConfig::vit_t()
    };
    let device = Default::default();
    let mut vit = config.init::<B>(&device);
    for bn in [&mut vit.feature.bn1, &mut vit.feature.bn3] {
        let [n] = bn.running_mean.value().dims();
        bn.running_mean =
            RunningState::new(Tensor::random([n], Distribution::Normal(0.0, 0.1), &device));
        bn.running_var = RunningState::new(Tensor::random(
            [n],
            Distribution::Uniform(0.5, 2.0),
            &device,
        ));
    }
    let pixels = images(4, 7);
    let input = Tensor::<B, 1>::from_floats(pixels.as_slice(), &device).reshape([4, 3, 112, 112]);
    let expected = values(vit.forward(input));

    let bytes = export_onnx(&vit, &config, &ExportOptions::default()).unwrap();
    let (shape, output) = run_onnx(&bytes, &pixels, [4, 3, 112, 112]);
    assert_eq!(shape, [4, 32]);
    let diff = max_abs_diff(&output, &expected);
    assert!(diff <= 1e-4, "max abs difference to burn {diff} > 1e-4");
}

#[test]
fn export_passes_the_mfr_checker_rules() {
    let bytes = export_onnx(&micro_model(), &micro_config(), &ExportOptions::default()).unwrap();
    let report = check_mfr(&bytes, &MfrLimits::CFAT).unwrap();
    assert_eq!(report.input_shape, [None, Some(3), Some(112), Some(112)]);
    assert_eq!(report.feature_dim, 512);
    assert!(report.nodes >= 8, "{} nodes", report.nodes);
    // The checker then feeds (pixel - 127.5) / 127.5, the graph's own convention.
    assert!(!report.normalizes_itself);

    // A batch of 32 gives finite values (the checker's NaN/Inf test), and the batch is dynamic:
    // the same file runs 32 images and 1.
    let (shape, output) = run_onnx(&bytes, &images(32, 1), [32, 3, 112, 112]);
    assert_eq!(shape, [32, 512]);
    assert!(output.iter().all(|v| v.is_finite()));
    let (shape, _) = run_onnx(&bytes, &images(1, 2), [1, 3, 112, 112]);
    assert_eq!(shape, [1, 512]);

    let model = <lvface_export::proto::ModelProto as prost::Message>::decode(&bytes[..]).unwrap();
    assert_eq!(model.opset_import[0].version, 17);
    let graph = model.graph.unwrap();
    assert_eq!(graph.input[0].name, INPUT_NAME);
    assert_eq!(graph.output[0].name, OUTPUT_NAME);
    assert!(graph
        .initializer
        .iter()
        .any(|t| t.name == "feature.0.weight"));
    assert!(graph
        .initializer
        .iter()
        .any(|t| t.name == "blocks.1.attn.qkv.weight_t"));
}

#[test]
fn wrong_opset_or_configuration_is_an_error() {
    let vit = micro_model();
    let options = ExportOptions { opset: 13 };
    assert!(matches!(
        export_onnx(&vit, &micro_config(), &options),
        Err(ExportError::UnsupportedOpset(13))
    ));
    let deeper = VitConfig {
        depth: 3,
        ..micro_config()
    };
    let message = export_onnx(&vit, &deeper, &ExportOptions::default())
        .unwrap_err()
        .to_string();
    assert!(message.contains("depth"), "{message}");
}
