//! Behaviour of the backbone: sizes, training-only randomness, configuration and weight errors.

mod common;

use std::path::PathBuf;

use burn::backend::Autodiff;
use burn::module::AutodiffModule;
use burn::prelude::*;
use common::{fixture, micro_config, scratch, B};
use lvface_vit::{VitConfig, VitError};

/// Parameter counts measured on insightface's PyTorch model.
#[test]
fn parameter_counts_match_insightface() {
    let device = Default::default();
    for (config, millions) in [
        (VitConfig::vit_t(), 19.14),
        (VitConfig::vit_s(), 76.02),
        (VitConfig::vit_b(), 113.83),
        (VitConfig::vit_l_dp005_mask_005(), 255.68),
        (VitConfig::vit_h(), 756.39),
    ] {
        let count = config.init::<B>(&device).num_trainable_params() as f64 / 1e6;
        let rounded = (count * 100.0).round() / 100.0;
        assert_eq!(rounded, millions, "{config:?}: {count:.4} M");
    }
}

/// A fixed batch: the backend's generator is shared by tests running in parallel.
fn images(batch: usize) -> Tensor<B, 4> {
    let n = (batch * 3 * 112 * 112) as i64;
    Tensor::<B, 1, Int>::arange(0..n, &Default::default())
        .float()
        .mul_scalar(0.37)
        .sin()
        .reshape([batch, 3, 112, 112])
}

#[test]
fn evaluation_is_deterministic_even_with_masking_and_drop_path_configured() {
    let config = VitConfig {
        drop_path_rate: 0.5,
        mask_ratio: 0.5,
        ..micro_config()
    };
    let model = config.init::<B>(&Default::default());
    let x = images(2);
    let a = model.forward(x.clone());
    let b = model.forward(x);
    a.into_data().assert_eq(&b.into_data(), true);
}

#[test]
fn training_masks_tokens_and_drops_paths() {
    type T = Autodiff<B>;
    let device = Default::default();
    let noisy_config = VitConfig {
        mask_ratio: 0.5,
        drop_path_rate: 0.5,
        ..micro_config()
    };
    assert_eq!(noisy_config.kept_tokens(), 72);
    let plain = micro_config()
        .init::<T>(&device)
        .load_weights(fixture("weights.pt"))
        .unwrap();
    let noisy = noisy_config
        .init::<T>(&device)
        .load_weights(fixture("weights.pt"))
        .unwrap();

    // Evaluation first: a training forward moves the BatchNorm running statistics.
    let a = plain.valid().forward(images(4));
    let b = noisy.valid().forward(images(4));
    a.into_data()
        .assert_approx_eq::<f32>(&b.into_data(), Default::default());

    // In training both use batch statistics: only masking and dropped paths differ.
    let x: Tensor<T, 4> = Tensor::from_data(images(4).into_data(), &device);
    let a: Vec<f32> = plain.forward(x.clone()).into_data().to_vec().unwrap();
    let b: Vec<f32> = noisy.forward(x).into_data().to_vec().unwrap();
    let diff = a
        .iter()
        .zip(&b)
        .map(|(p, q)| (p - q).abs())
        .fold(0.0, f32::max);
    assert!(
        diff > 1e-2,
        "training-time randomness changed nothing: {diff}"
    );
}

#[test]
fn drop_path_rates_rise_linearly() {
    let config = VitConfig {
        depth: 5,
        drop_path_rate: 0.2,
        ..micro_config()
    };
    let model = config.init::<B>(&Default::default());
    let rates: Vec<f64> = model.blocks.iter().map(|b| b.drop_path).collect();
    let expected = [0.0, 0.05, 0.1, 0.15, 0.2];
    for (rate, want) in rates.iter().zip(expected) {
        assert!((rate - want).abs() < 1e-12, "{rates:?}");
    }
}

#[test]
fn gradient_checkpointing_gives_the_same_gradients() {
    use burn::backend::autodiff::checkpoint::strategy::BalancedCheckpointing;
    type Plain = Autodiff<B>;
    type Checkpointed = Autodiff<B, BalancedCheckpointing>;
    let device = Default::default();
    let config = micro_config();
    let model = config
        .init::<Plain>(&device)
        .load_weights(fixture("weights.pt"))
        .unwrap();
    let ckpt = config
        .init::<Checkpointed>(&device)
        .load_weights(fixture("weights.pt"))
        .unwrap();
    let x = images(2).into_data();

    let grads = model
        .forward(Tensor::from_data(x.clone(), &device))
        .powf_scalar(2.0)
        .mean()
        .backward();
    let g1 = model.pos_embed.grad(&grads).unwrap();
    let grads = ckpt
        .forward(Tensor::from_data(x, &device))
        .powf_scalar(2.0)
        .mean()
        .backward();
    let g2 = ckpt.pos_embed.grad(&grads).unwrap();
    g1.into_data()
        .assert_approx_eq::<f32>(&g2.into_data(), Default::default());
}

#[test]
#[should_panic(expected = "vit.num_heads must divide embed_dim = 64, got 7")]
fn init_refuses_an_invalid_config() {
    VitConfig {
        num_heads: 7,
        ..micro_config()
    }
    .init::<B>(&Default::default());
}

fn load_error(config: VitConfig, path: &std::path::Path) -> String {
    match config.init::<B>(&Default::default()).load_weights(path) {
        Ok(_) => panic!("loading {} should fail", path.display()),
        Err(err) => err.to_string(),
    }
}

#[test]
fn wrong_shapes_and_missing_keys_are_listed() {
    // A deeper, wider model than the file: extra blocks are missing, every width is wrong.
    let message = load_error(
        VitConfig {
            depth: 3,
            ..micro_config()
        },
        &fixture("weights.pt"),
    );
    assert!(
        message.contains("missing: blocks.2.attn.qkv.weight"),
        "{message}"
    );

    let message = load_error(
        VitConfig {
            embed_dim: 32,
            ..micro_config()
        },
        &fixture("weights.safetensors"),
    );
    assert!(
        message.contains("wrong:") && message.contains("pos_embed"),
        "{message}"
    );
}

#[test]
fn unexpected_keys_are_listed() {
    // The file has two blocks; a one-block model leaves the second block's keys unused.
    let message = load_error(
        VitConfig {
            depth: 1,
            ..micro_config()
        },
        &fixture("weights.pt"),
    );
    assert!(
        message.contains("unexpected: blocks.1.mlp.fc1.weight"),
        "{message}"
    );
    assert!(!message.contains("num_batches_tracked"), "{message}");
}

#[test]
fn files_that_are_not_state_dicts_are_clear_errors() {
    let dir = scratch("not-a-state-dict");
    for name in ["garbage.pt", "garbage.safetensors"] {
        let path = dir.join(name);
        std::fs::write(&path, b"this is not a tensor file").unwrap();
        let err = micro_config()
            .init::<B>(&Default::default())
            .load_weights(&path)
            .unwrap_err();
        assert!(
            matches!(err, VitError::UnreadableWeights { .. }),
            "{name}: {err}"
        );
        assert!(err.to_string().contains(name), "{err}");
    }
    let err = micro_config()
        .init::<B>(&Default::default())
        .load_weights(dir.join("w.onnx"));
    assert!(matches!(err, Err(VitError::UnsupportedFormat { .. })));
    let missing = micro_config()
        .init::<B>(&Default::default())
        .load_weights(dir.join("none.pt"));
    assert!(missing.unwrap_err().to_string().contains("none.pt"));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn saving_never_leaves_a_partial_file() {
    let dir = scratch("atomic-save");
    let path = dir.join("vit.safetensors");
    let model = micro_config().init::<B>(&Default::default());
    model.save_weights(&path).unwrap();
    model.save_weights(&path).unwrap(); // overwriting an existing file works
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("vit.safetensors")]);
    assert!(model.save_weights(dir.join("vit.pt")).is_err());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn integer_weights_are_refused_naming_the_tensor() {
    // Found by the `import_safetensors` fuzz target: a float parameter given U32 data made
    // burn panic ("Expected float dtype, got U32"). Same bytes, only the header's dtype changed.
    let mut bytes = std::fs::read(fixture("weights.safetensors")).unwrap();
    let entry = br#""norm.weight":{"dtype":"F32""#;
    let at = bytes
        .windows(entry.len())
        .position(|w| w == entry)
        .expect("the fixture's header lists norm.weight as F32");
    bytes[at + entry.len() - 4] = b'U';
    let path = std::env::temp_dir().join(format!("lvface-u32-{}.safetensors", std::process::id()));
    std::fs::write(&path, &bytes).unwrap();
    let message = load_error(micro_config(), &path);
    std::fs::remove_file(&path).unwrap();
    assert!(
        message.contains("`norm.weight`")
            && message.contains("U32")
            && message.contains("lvface-u32"),
        "{message}"
    );
}

#[test]
fn a_pt_tensor_with_an_empty_dimension_is_refused_naming_the_tensor() {
    // Found by the `import_pt` fuzz target (the input is kept as the fixture): `mask_token` of
    // shape [0, 1, 8] over a one-element storage made burn's tensor constructor panic inside
    // burn-store's reader.
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fuzz/empty-dim-mask-token.pt");
    let tiny = VitConfig {
        image_size: 4,
        patch_size: 2,
        embed_dim: 8,
        depth: 1,
        num_heads: 8,
        mlp_ratio: 2,
        num_features: 8,
        ..micro_config()
    };
    let message = load_error(tiny, &path);
    assert!(
        message.contains("`mask_token`") && message.contains("[0, 1, 8]"),
        "{message}"
    );
}
