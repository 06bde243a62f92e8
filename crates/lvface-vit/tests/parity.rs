//! The backbone against insightface's, computed in PyTorch (fixture `vit-parity`).

mod common;

use burn::prelude::*;
use common::{fixture, micro_config, read_tensor, scratch, B};

fn assert_matches_reference(model: lvface_vit::Vit<B>) {
    let input: Tensor<B, 4> = read_tensor("io.safetensors", "input");
    let expected: Tensor<B, 2> = read_tensor("io.safetensors", "output");
    let output = model.forward(input);
    assert_eq!(output.dims(), [3, 512]);
    let diff: f32 = (output - expected).abs().max().into_scalar();
    assert!(diff <= 1e-4, "max abs difference {diff} > 1e-4");
}

#[test]
fn safetensors_weights_give_reference_embeddings() {
    let model = micro_config().init::<B>(&Default::default());
    assert_matches_reference(model.load_weights(fixture("weights.safetensors")).unwrap());
}

#[test]
fn pytorch_weights_give_reference_embeddings() {
    let model = micro_config().init::<B>(&Default::default());
    assert_matches_reference(model.load_weights(fixture("weights.pt")).unwrap());
}

#[test]
fn saved_weights_round_trip_with_insightface_names() {
    let device = Default::default();
    let model = micro_config()
        .init::<B>(&device)
        .load_weights(fixture("weights.pt"))
        .unwrap();
    let dir = scratch("round-trip");
    let path = dir.join("vit.safetensors");
    model.save_weights(&path).unwrap();

    // Same names and layouts as the PyTorch file: every fixture key but num_batches_tracked.
    let mut ours = burn_store::SafetensorsStore::from_file(&path);
    let mut theirs = burn_store::SafetensorsStore::from_file(fixture("weights.safetensors"));
    use burn_store::ModuleStore;
    let our_keys: Vec<String> = ours.keys().unwrap();
    let mut their_keys: Vec<String> = theirs.keys().unwrap();
    their_keys.retain(|k| !k.ends_with("num_batches_tracked"));
    let mut our_sorted = our_keys.clone();
    our_sorted.sort();
    their_keys.sort();
    assert_eq!(our_sorted, their_keys);
    for key in [
        "feature.0.weight",
        "blocks.1.attn.qkv.weight",
        "feature.3.running_var",
    ] {
        let a = ours.get_snapshot(key).unwrap().unwrap().to_data().unwrap();
        let b = theirs
            .get_snapshot(key)
            .unwrap()
            .unwrap()
            .to_data()
            .unwrap();
        a.assert_eq(&b, true);
    }

    let reloaded = micro_config()
        .init::<B>(&device)
        .load_weights(&path)
        .unwrap();
    assert_matches_reference(reloaded);
    std::fs::remove_dir_all(dir).unwrap();
}
