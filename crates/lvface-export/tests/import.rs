//! Import of insightface-named PyTorch backbones: the configuration from the shapes, and the
//! weights into lvface's file (fixture `vit-parity`, computed in PyTorch).

mod common;

use std::path::Path;

use burn::prelude::*;
use common::{fixture, micro_config, read_tensor, scratch, values, B};
use lvface_export::{import_weights, infer_config, ExportError};
use lvface_vit::VitConfig;

#[test]
fn the_parity_backbone_is_recognised_from_its_shapes() {
    for file in ["weights.pt", "weights.safetensors"] {
        let inferred = infer_config(&fixture(file)).unwrap();
        // vit_micro is no insightface preset: the shapes give the whole architecture.
        assert_eq!(inferred.preset, None, "{file}");
        assert_eq!(inferred.config, micro_config(), "{file}");
    }
}

#[test]
fn imported_weights_give_the_reference_embeddings() {
    let dir = scratch("import");
    let dest = dir.join("vit_micro.safetensors");
    let config = infer_config(&fixture("weights.pt")).unwrap().config;
    import_weights::<B>(&fixture("weights.pt"), &dest, &config, &Default::default()).unwrap();

    let model = config
        .init::<B>(&Default::default())
        .load_weights(&dest)
        .unwrap();
    let input: Tensor<B, 4> = read_tensor("io.safetensors", "input");
    let expected = values(read_tensor::<2>("io.safetensors", "output"));
    let output = values(model.forward(input));
    let diff = output
        .iter()
        .zip(&expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(diff <= 1e-4, "max abs difference {diff}");

    // A preset given by name whose shapes differ is refused, naming the mismatched keys.
    let message = import_weights::<B>(
        &fixture("weights.pt"),
        &dir.join("wrong.safetensors"),
        &VitConfig::vit_t(),
        &Default::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(message.contains("pos_embed"), "{message}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// Tensor names and shapes.
type Shapes = Vec<(&'static str, Vec<usize>)>;

/// A safetensors file with zero-filled f32 tensors of the given shapes.
fn write_safetensors(path: &Path, tensors: &[(&str, Vec<usize>)]) {
    let mut header = Vec::new();
    let mut offset = 0;
    for (name, shape) in tensors {
        let bytes = 4 * shape.iter().product::<usize>();
        header.push(format!(
            "\"{name}\":{{\"dtype\":\"F32\",\"shape\":{shape:?},\"data_offsets\":[{offset},{}]}}",
            offset + bytes
        ));
        offset += bytes;
    }
    let header = format!("{{{}}}", header.join(","));
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend(header.as_bytes());
    file.resize(file.len() + offset, 0);
    std::fs::write(path, file).unwrap();
}

#[test]
fn presets_are_named_from_shapes_alone() {
    let dir = scratch("presets");
    // vit_s: width 512, depth 12, MLP 2048, 512-d; the head's big Linear is not needed to tell.
    let path = dir.join("vit_s.safetensors");
    write_safetensors(
        &path,
        &[
            ("module.pos_embed", vec![1, 144, 512]),
            ("module.patch_embed.proj.weight", vec![512, 3, 9, 9]),
            ("module.blocks.0.mlp.fc1.weight", vec![2048, 512]),
            ("module.blocks.11.norm1.weight", vec![512]),
            ("module.feature.2.weight", vec![512, 512]),
        ],
    );
    let inferred = infer_config(&path).unwrap();
    assert_eq!(inferred.preset, Some("vit_s"));
    assert_eq!(inferred.config, VitConfig::vit_s());

    // Shapes that would divide by zero, and a key naming block 4,000,000,000: errors naming
    // what is wrong, before anything is built from them.
    let cases: [(&str, Shapes, &str); 3] = [
        (
            "zero-patch",
            vec![
                ("pos_embed", vec![1, 144, 512]),
                ("patch_embed.proj.weight", vec![512, 3, 0, 0]),
            ],
            "patch side must be positive",
        ),
        (
            "zero-width",
            vec![
                ("pos_embed", vec![1, 144, 0]),
                ("patch_embed.proj.weight", vec![0, 3, 9, 9]),
            ],
            "width, tokens and patch side must be positive",
        ),
        (
            "deep",
            vec![
                ("pos_embed", vec![1, 144, 512]),
                ("patch_embed.proj.weight", vec![512, 3, 9, 9]),
                ("blocks.4000000000.norm1.weight", vec![512]),
            ],
            "blocks.4000000000.norm1.weight names block 4000000000",
        ),
    ];
    for (name, tensors, expected) in cases {
        let path = dir.join(format!("{name}.safetensors"));
        write_safetensors(&path, &tensors);
        let err = infer_config(&path).unwrap_err().to_string();
        assert!(err.contains(expected), "{name}: {err}");
    }

    let path = dir.join("partial.safetensors");
    write_safetensors(&path, &[("pos_embed", vec![1, 144, 512])]);
    let err = infer_config(&path).unwrap_err();
    assert!(
        matches!(&err, ExportError::Infer { reason, .. } if reason.contains("patch_embed")),
        "{err}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}
