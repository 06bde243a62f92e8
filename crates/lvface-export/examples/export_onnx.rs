//! Writes a ViT preset as ONNX and prints what insightface's MFR checker would see in it.
//! Without weights the model is randomly initialised, which is enough to look at the graph.
//!
//! ```sh
//! cargo run --release -p lvface-export --example export_onnx -- vit_t model.onnx [WEIGHTS]
//! ```
// An example reports on stdout.
#![allow(clippy::print_stdout)]

use burn::backend::Flex;
use lvface_export::{check_mfr, export_onnx, ExportOptions, MfrLimits};
use lvface_vit::VitConfig;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let preset = args.first().map_or("vit_t", String::as_str);
    let out = args.get(1).map_or("model.onnx", String::as_str);

    let config = VitConfig::preset(preset)?;
    let mut vit = config.init::<Flex>(&Default::default());
    if let Some(weights) = args.get(2) {
        vit = vit.load_weights(weights)?;
    }
    let bytes = export_onnx(&vit, &config, &ExportOptions::default())?;
    let report = check_mfr(&bytes, &MfrLimits::CFAT)?;
    std::fs::write(out, &bytes)?;
    println!(
        "wrote {out}: {} bytes, {} nodes, {} initializers",
        report.size_bytes, report.nodes, report.initializers
    );
    println!(
        "input {:?}, embedding width {}",
        report.input_shape, report.feature_dim
    );
    println!("{report:#?}");
    Ok(())
}
