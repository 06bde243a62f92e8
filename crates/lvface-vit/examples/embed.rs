//! Builds a preset, optionally loads weights, embeds a batch of seeded random images and prints
//! the parameter count, the embedding norms and the images per second on Flex (the CPU).
//!
//! ```sh
//! cargo run --release -p lvface-vit --example embed -- vit_t [BATCH] [WEIGHTS.safetensors|.pt]
//! ```
// An example reports on stdout.
#![allow(clippy::print_stdout)]

use std::time::Instant;

use burn::backend::Flex;
use burn::prelude::*;
use burn::tensor::Distribution;
use lvface_vit::VitConfig;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let preset = args.first().map_or("vit_t", String::as_str);
    let batch: usize = match args.get(1) {
        Some(batch) => batch
            .parse()
            .map_err(|_| format!("BATCH must be a whole number, not {batch:?}"))?,
        None => 8,
    };
    let weights = args.get(2);

    let device = Default::default();
    let config = VitConfig::preset(preset)?;
    let mut model = config.init::<Flex>(&device);
    if let Some(path) = &weights {
        model = model.load_weights(path)?;
    }
    println!(
        "{preset}: {} parameters, {} tokens of width {}, {} blocks, weights {}",
        model.num_trainable_params(),
        config.num_patches(),
        config.embed_dim,
        config.depth,
        weights.map_or("random", String::as_str)
    );

    let images = Tensor::<Flex, 4>::random(
        [batch, 3, 112, 112],
        Distribution::Uniform(-1.0, 1.0),
        &device,
    );
    let _ = model.forward(images.clone()); // warm-up: first-call allocations
    let start = Instant::now();
    let embeddings = model.forward(images);
    let norms: Vec<f32> = embeddings
        .powf_scalar(2.0)
        .sum_dim(1)
        .sqrt()
        .into_data()
        .to_vec()?;
    let seconds = start.elapsed().as_secs_f64();
    println!("embedding norms: {norms:.3?}");
    println!(
        "{batch} images in {seconds:.3} s: {:.1} images/s",
        batch as f64 / seconds
    );
    Ok(())
}
