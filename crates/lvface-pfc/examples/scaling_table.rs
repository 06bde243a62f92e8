//! Prints the per-rank memory and traffic of a sharded step at WebFace42M scale (the table of
//! `docs/scaling.md`), from `lvface_pfc::scaling`.
//!
//! `cargo run -p lvface-pfc --example scaling_table`
#![allow(clippy::print_stdout)]

use lvface_pfc::scaling::{ring_bytes_sent, shard_memory, step_traffic, StepShape};

fn main() {
    println!(
        "| GPUs | sample rate | classes/rank | sampled/rank | centres+grad+AdamW | logits etc. | total/rank | all-reduce payload/step | ring bytes sent/step |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for world in [8, 64] {
        for rate in [0.3, 1.0] {
            let shape = StepShape {
                world_size: world,
                batch: 384,
                dim: 512,
                num_classes: 2_059_906,
                sample_rate: rate,
                prototypes: false,
                row_maximum: false,
                curricular_face: false,
            };
            let m = shard_memory(shape);
            let t = step_traffic(shape);
            let gb = |b: u64| format!("{:.2} GB", b as f64 / 1e9);
            println!(
                "| {world} | {rate} | {} | {} | {} | {} | {} | {:.1} M floats | {:.0} MB |",
                m.num_local,
                m.num_sampled,
                gb(m.parameters),
                gb(m.activations),
                gb(m.total()),
                t.elements as f64 / 1e6,
                ring_bytes_sent(t.elements, world) as f64 / 1e6
            );
        }
    }
    let stable = shard_memory(StepShape {
        world_size: 64,
        batch: 384,
        dim: 512,
        num_classes: 2_059_906,
        sample_rate: 1.0,
        prototypes: true,
        row_maximum: false,
        curricular_face: false,
    });
    println!(
        "\nstable stage, 64 GPUs: prototype bank {:.3} GB per rank",
        stable.bank as f64 / 1e9
    );
}
