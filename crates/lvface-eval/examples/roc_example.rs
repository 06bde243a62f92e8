//! Renders the example ROC plot of `docs/eval.md` from seeded synthetic scores:
//! `cargo run -p lvface-eval --example roc_example -- docs/img` writes `roc-example.png` and
//! `roc-example.svg` there and prints the TAR@FAR lines.

// An example reports what it wrote on stdout.
#![allow(clippy::print_stdout)]

use std::path::PathBuf;

use lvface_eval::{tar_at_far, tar_line, RocCurve, RocPlot, RocSeries, IJB_FARS};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Cosine-like scores: genuine ~ N(mu, 0.1), impostor ~ N(0, 0.1), as a trained model gives.
fn scores(
    rng: &mut ChaCha8Rng,
    genuine: usize,
    impostors: usize,
    mu: f64,
) -> (Vec<f64>, Vec<bool>) {
    let mut normal = |m: f64, s: f64| {
        let (u, v): (f64, f64) = (rng.random::<f64>().max(1e-300), rng.random());
        m + s * (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    };
    let mut s = Vec::with_capacity(genuine + impostors);
    let mut l = Vec::with_capacity(genuine + impostors);
    for _ in 0..genuine {
        s.push(normal(mu, 0.1));
        l.push(true);
    }
    for _ in 0..impostors {
        s.push(normal(0.0, 0.1));
        l.push(false);
    }
    (s, l)
}

fn main() -> lvface_eval::Result<()> {
    let out = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "docs/img".into()));
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let (s1, l1) = scores(&mut rng, 5_000, 1_000_000, 0.55);
    let (s2, l2) = scores(&mut rng, 5_000, 1_000_000, 0.42);
    let a = RocCurve::new(&s1, &l1)?;
    let b = RocCurve::new(&s2, &l2)?;
    println!("{}", tar_line("model-a", &tar_at_far(&s1, &l1, &IJB_FARS)?));
    println!("{}", tar_line("model-b", &tar_at_far(&s2, &l2, &IJB_FARS)?));
    let series = [
        RocSeries {
            label: "model A",
            roc: &a,
        },
        RocSeries {
            label: "model B",
            roc: &b,
        },
    ];
    let plot = RocPlot::new("ROC on synthetic pairs (1M impostors)");
    plot.write_png(&out.join("roc-example.png"), &series)?;
    plot.write_svg(&out.join("roc-example.svg"), &series)?;
    println!("wrote {}", out.join("roc-example.{png,svg}").display());
    Ok(())
}
