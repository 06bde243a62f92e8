//! Prints the target logit `s·(cos(m1·θ + m2) − m3)` of ArcFace, CosFace, SphereFace-style and
//! insightface's combined margin against the angle θ between an embedding and its class centre,
//! next to the plain softmax's `s·cos θ`: the curves of the ArcFace paper's Figure 1, as a table.
//!
//! `cargo run -p lvface-loss --example margin_table`
// An example reports on stdout.
#![allow(clippy::print_stdout)]

use burn::backend::Flex;
use burn::prelude::*;
use lvface_loss::CombinedMarginConfig;

fn main() {
    let device = Default::default();
    let margins = [
        ("ArcFace m2=0.5", CombinedMarginConfig::arcface(0.5)),
        ("CosFace m3=0.4", CombinedMarginConfig::cosface(0.4)),
        ("m1=1.35", CombinedMarginConfig::combined(1.35, 0.0, 0.0)),
        (
            "combined 1,0.3,0.2",
            CombinedMarginConfig::combined(1.0, 0.3, 0.2),
        ),
    ];
    let degrees: Vec<f64> = (0..=9).map(|i| f64::from(i) * 10.0).collect();
    let cos: Vec<f32> = degrees
        .iter()
        .map(|d| d.to_radians().cos() as f32)
        .collect();
    let cos = Tensor::<Flex, 1>::from_floats(cos.as_slice(), &device);

    print!("| θ (degrees) | softmax s·cos θ |");
    for (name, _) in &margins {
        print!(" {name} |");
    }
    println!();
    println!("|---|---|{}", "---|".repeat(margins.len()));
    let columns: Vec<Vec<f32>> = margins
        .iter()
        .map(|(_, config)| {
            let target = config.init().target_cos(cos.clone()) * config.s;
            target.into_data().to_vec().expect("f32 logits")
        })
        .collect();
    let plain: Vec<f32> = (cos.clone() * margins[0].1.s)
        .into_data()
        .to_vec()
        .expect("f32 logits");
    for (row, d) in degrees.iter().enumerate() {
        print!("| {d:.0} | {:.2} |", plain[row]);
        for column in &columns {
            print!(" {:.2} |", column[row]);
        }
        println!();
    }
}
