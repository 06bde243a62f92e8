//! What the two weights targets share: the input written to a file of the format's extension
//! (the loaders take paths), the configuration read off its shapes, and the weights loaded into
//! it and written as lvface's file.

use std::path::PathBuf;
use std::sync::OnceLock;

use burn::backend::Flex;
use lvface_export::{import_weights, infer_config};
use lvface_vit::VitConfig;

fn folder() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("lvface-fuzz-weights-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("the scratch folder should be writable");
        dir
    })
}

/// The ViT of the seeds: 4-pixel images in 2-pixel patches (4 tokens), width 8, one block.
pub fn seed_config() -> VitConfig {
    VitConfig {
        image_size: 4,
        patch_size: 2,
        embed_dim: 8,
        depth: 1,
        num_heads: 8,
        mlp_ratio: 2,
        num_features: 8,
        drop_path_rate: 0.0,
        mask_ratio: 0.0,
        ..VitConfig::vit_t()
    }
}

/// Small enough to build for every input; larger ones are only inferred.
fn small(c: &VitConfig) -> bool {
    c.embed_dim <= 64
        && c.depth <= 2
        && c.mlp_ratio <= 4
        && c.num_features <= 64
        && c.image_size <= 224
        && c.image_size / c.patch_size <= 8
}

pub fn run(data: &[u8], extension: &str) {
    let dir = folder();
    let source = dir.join(format!("fuzz.{extension}"));
    std::fs::write(&source, data).expect("the input should be writable");
    let config = match infer_config(&source) {
        Ok(inferred) if small(&inferred.config) => inferred.config,
        Ok(_) => return,
        // Shapes that name no ViT may still hold weights of the seeds' one.
        Err(_) => seed_config(),
    };
    let dest = dir.join("imported.safetensors");
    let _ = import_weights::<Flex>(&source, &dest, &config, &Default::default());
}
