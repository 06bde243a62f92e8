//! The sharded step against the single-device lvface-loss computation on the same data, with
//! in-process peers for world sizes 1 to 4 (uneven shards included).

mod common;

use burn::prelude::*;
use common::{assert_close, labels, matrix, rank_rows, to_vec, Inner, B};
use lvface_loss::{
    CombinedMargin, CombinedMarginConfig, GradientMode, PrototypeBank, PrototypeBankConfig,
    StableStageConfig,
};
use lvface_pfc::{
    broadcast_bytes, run_local_peers,
    scaling::{step_traffic, StepShape},
    ClassShard, Collective, PartialFcConfig, PfcError, ShardLoss, ShardSoftmax,
};

const DIM: usize = 8;
const BATCH: usize = 3;
const CLASSES: usize = 10;
const TOL: f32 = 1e-5;

struct Reference {
    loss: f32,
    embedding_grad: Vec<f32>,
    centre_grad: Vec<f32>,
}

/// Loss and gradients of one device holding everything.
fn reference(
    world: usize,
    margin: CombinedMargin,
    stable: Option<(StableStageConfig, &PrototypeBank<B>)>,
) -> Reference {
    let n = world * BATCH;
    let x = Tensor::<B, 2>::from_inner(matrix(1, n, DIM)).require_grad();
    let w = Tensor::<B, 2>::from_inner(matrix(2, CLASSES, DIM)).require_grad();
    let y = Tensor::<B, 1, Int>::from_data(
        TensorData::new(labels(3, n, CLASSES), [n]),
        &Default::default(),
    );
    let loss = match stable {
        None => margin.forward(x.clone(), w.clone(), y),
        Some((config, bank)) => config.init().forward(x.clone(), w.clone(), y, bank),
    };
    let value = loss.clone().into_scalar();
    let grads = loss.backward();
    Reference {
        loss: value,
        embedding_grad: to_vec(x.grad(&grads).unwrap()),
        centre_grad: to_vec(w.grad(&grads).unwrap()),
    }
}

struct Sharded {
    losses: Vec<f32>,
    embedding_grad: Vec<f32>,
    centre_grad: Vec<f32>,
}

fn bank(classes: std::ops::Range<usize>) -> PrototypeBank<B> {
    let all = matrix::<B>(4, CLASSES, DIM);
    let lengths = Tensor::<B, 1>::from_data(
        TensorData::new(
            (0..CLASSES).map(|c| 0.3 + 0.07 * c as f32).collect(),
            [CLASSES],
        ),
        &Default::default(),
    );
    let n = classes.len();
    PrototypeBank::from_tensors(
        PrototypeBankConfig::default(),
        all.slice([classes.clone(), 0..DIM]),
        lengths.slice(classes).reshape([n]),
    )
}

fn sharded(
    world: usize,
    margin: CombinedMargin,
    stable: Option<StableStageConfig>,
    softmax: ShardSoftmax,
) -> Sharded {
    let n = world * BATCH;
    let x = to_vec(matrix::<Inner>(1, n, DIM));
    let w = matrix::<Inner>(2, CLASSES, DIM);
    let y = labels(3, n, CLASSES);
    let outs = run_local_peers::<Inner, _, _>(world, &[Default::default()], |comm| {
        let rank = comm.rank();
        let pfc = PartialFcConfig {
            softmax,
            ..Default::default()
        }
        .init(rank, world, CLASSES)
        .unwrap();
        let range = pfc.shard().range();
        let mine = rank_rows::<Inner>(&x, rank, BATCH, DIM);
        let shard_bank = bank(range.clone());
        let loss = match stable {
            None => ShardLoss::Margin(margin),
            Some(config) => ShardLoss::Stable {
                loss: config.init(),
                bank: &shard_bank,
            },
        };
        let centres = w.clone().slice([range, 0..DIM]);
        let step = pfc
            .step::<B, _>(
                mine,
                &y[rank * BATCH..(rank + 1) * BATCH],
                centres,
                loss,
                0,
                &comm,
            )
            .unwrap();
        (
            step.loss,
            to_vec(step.embedding_grad),
            to_vec(step.centre_grad),
        )
    })
    .unwrap();
    Sharded {
        losses: outs.iter().map(|o| o.0).collect(),
        embedding_grad: outs.iter().flat_map(|o| o.1.clone()).collect(),
        centre_grad: outs.iter().flat_map(|o| o.2.clone()).collect(),
    }
}

fn check(world: usize, margin: CombinedMargin, stable: Option<StableStageConfig>) {
    let full_bank = bank(0..CLASSES);
    let want = reference(world, margin, stable.map(|c| (c, &full_bank)));
    // The blockwise softmax only computes the combined margin; the stable stage is always
    // materialised.
    let modes: &[ShardSoftmax] = match stable {
        None => &[ShardSoftmax::Materialised, ShardSoftmax::Blockwise],
        Some(_) => &[ShardSoftmax::Materialised],
    };
    for &softmax in modes {
        let got = sharded(world, margin, stable, softmax);
        for loss in &got.losses {
            assert_close(
                &format!("W={world} {softmax:?} loss"),
                &[*loss],
                &[want.loss],
                TOL,
            );
        }
        assert_close(
            &format!("W={world} {softmax:?} embedding gradient"),
            &got.embedding_grad,
            &want.embedding_grad,
            TOL,
        );
        assert_close(
            &format!("W={world} {softmax:?} centre gradient"),
            &got.centre_grad,
            &want.centre_grad,
            TOL,
        );
    }
}

#[test]
fn arcface_straight_and_exact_equal_one_device_for_1_to_4_ranks() {
    for gradient in [GradientMode::Straight, GradientMode::Exact] {
        let margin = CombinedMarginConfig::arcface(0.5)
            .with_gradient(gradient)
            .init();
        for world in 1..=4 {
            check(world, margin, None);
        }
    }
}

#[test]
fn cosface_and_sphereface_style_margins_equal_one_device() {
    for config in [
        CombinedMarginConfig::cosface(0.4),
        CombinedMarginConfig::combined(1.2, 0.1, 0.05).with_gradient(GradientMode::Exact),
    ] {
        for world in [2, 3] {
            check(world, config.init(), None);
        }
    }
}

#[test]
fn stable_stage_with_bank_shards_equals_one_device() {
    for prototype_weight in [0.0, 1.0] {
        let config = StableStageConfig {
            margin: CombinedMarginConfig::arcface(0.5),
            prototype_weight,
            expectation_weighting: true,
        };
        for world in [1, 3, 4] {
            check(world, config.margin.init(), Some(config));
        }
    }
}

#[test]
fn sampling_keeps_positives_and_equals_the_loss_over_the_sampled_classes() {
    const WORLD: usize = 3;
    const MANY: usize = 40;
    let n = WORLD * BATCH;
    let margin = CombinedMarginConfig::arcface(0.5).init();
    let x = to_vec(matrix::<Inner>(11, n, DIM));
    let w = matrix::<Inner>(12, MANY, DIM);
    let y = labels(13, n, MANY);
    let config = PartialFcConfig {
        sample_rate: 0.4,
        seed: 7,
        ..Default::default()
    };
    let outs = run_local_peers::<Inner, _, _>(WORLD, &[Default::default()], |comm| {
        let rank = comm.rank();
        let pfc = config.init(rank, WORLD, MANY).unwrap();
        let range = pfc.shard().range();
        let mine = rank_rows::<Inner>(&x, rank, BATCH, DIM);
        let step = pfc
            .step::<B, _>(
                mine,
                &y[rank * BATCH..(rank + 1) * BATCH],
                w.clone().slice([range.clone(), 0..DIM]),
                ShardLoss::Margin(margin),
                5,
                &comm,
            )
            .unwrap();
        let global: Vec<i64> = step
            .sampled
            .index
            .iter()
            .map(|&c| c + range.start as i64)
            .collect();
        (step.loss, global, step.local_labels.clone(), pfc.shard())
    })
    .unwrap();

    let mut union = Vec::new();
    for (_, sampled, local_labels, shard) in &outs {
        let positives: std::collections::BTreeSet<i64> = local_labels
            .iter()
            .filter(|&&l| l >= 0)
            .map(|&l| l + shard.class_start() as i64)
            .collect();
        for p in &positives {
            assert!(
                sampled.contains(p),
                "positive {p} dropped on rank {}",
                shard.rank
            );
        }
        let budget = (0.4 * shard.num_local() as f64) as usize;
        assert_eq!(
            sampled.len(),
            budget.max(positives.len()),
            "rank {}",
            shard.rank
        );
        assert!(sampled.windows(2).all(|p| p[0] < p[1]));
        assert!(sampled
            .iter()
            .all(|c| shard.range().contains(&(*c as usize))));
        union.extend(sampled.iter().copied());
    }
    // Over 3 ranks of 14, 13, 13 classes: int(0.4 · n) each unless the positives are more.
    assert!(union.len() < MANY, "sampling kept every class");

    let device = Default::default();
    let index =
        Tensor::<B, 1, Int>::from_data(TensorData::new(union.clone(), [union.len()]), &device);
    let remapped: Vec<i64> = y
        .iter()
        .map(|c| union.binary_search(c).unwrap() as i64)
        .collect();
    let want = margin
        .forward(
            Tensor::<B, 2>::from_data(TensorData::new(x.clone(), [n, DIM]), &device),
            Tensor::<B, 2>::from_inner(w).select(0, index),
            Tensor::from_data(TensorData::new(remapped, [n]), &device),
        )
        .into_scalar();
    for (loss, ..) in &outs {
        assert_close("sampled loss", &[*loss], &[want], TOL);
    }
}

#[test]
fn unequal_batch_sizes_are_refused_on_every_rank() {
    let margin = CombinedMarginConfig::arcface(0.5).init();
    let outs = run_local_peers::<Inner, _, _>(2, &[Default::default()], |comm| {
        let rank = comm.rank();
        let batch = 2 + rank;
        let pfc = PartialFcConfig::default().init(rank, 2, CLASSES).unwrap();
        let range = pfc.shard().range();
        pfc.step::<B, _>(
            matrix(20 + rank as u64, batch, DIM),
            &vec![0; batch],
            matrix::<Inner>(2, CLASSES, DIM).slice([range, 0..DIM]),
            ShardLoss::Margin(margin),
            0,
            &comm,
        )
        .map(|s| s.loss)
    })
    .unwrap();
    for out in outs {
        match out {
            Err(PfcError::Mismatch { what, .. }) => {
                assert!(
                    what.contains("same batch size") && what.contains("[2.0, 3.0]"),
                    "{what}"
                )
            }
            other => panic!("expected a batch-size error, got {other:?}"),
        }
    }
}

#[test]
fn recorded_traffic_matches_the_scaling_arithmetic() {
    for (world, stable) in [(1, false), (2, false), (3, true)] {
        let margin = CombinedMarginConfig::arcface(0.5).init();
        let config = StableStageConfig::default();
        let traffic = run_local_peers::<Inner, _, _>(world, &[Default::default()], |comm| {
            let rank = comm.rank();
            let pfc = PartialFcConfig::default()
                .init(rank, world, CLASSES)
                .unwrap();
            let range = pfc.shard().range();
            let shard_bank = bank(range.clone());
            let loss = if stable {
                ShardLoss::Stable {
                    loss: config.init(),
                    bank: &shard_bank,
                }
            } else {
                ShardLoss::Margin(margin)
            };
            pfc.step::<B, _>(
                matrix(30, BATCH, DIM),
                &[1, 2, 3],
                matrix::<Inner>(2, CLASSES, DIM).slice([range, 0..DIM]),
                loss,
                0,
                &comm,
            )
            .unwrap();
            comm.traffic()
        })
        .unwrap();
        let expected = step_traffic(StepShape {
            world_size: world,
            batch: BATCH,
            dim: DIM,
            num_classes: CLASSES,
            sample_rate: 1.0,
            prototypes: stable,
            row_maximum: false,
            curricular_face: false,
        });
        for t in traffic {
            assert_eq!(t, expected, "world {world}, stable {stable}");
        }
    }
}

#[test]
fn shard_arithmetic_is_insightfaces() {
    // C = 10 over W = 4: 3, 3, 2, 2 from classes 0, 3, 6, 8.
    let shards: Vec<(usize, usize)> = ClassShard::all(4, 10)
        .iter()
        .map(|s| (s.class_start(), s.num_local()))
        .collect();
    assert_eq!(shards, [(0, 3), (3, 3), (6, 2), (8, 2)]);
}

#[test]
fn scales_above_the_constant_shift_limit_subtract_the_all_reduced_maximum() {
    // At initialisation, in 512 dimensions, every cosine is within about ±0.15 of 0. With
    // s = 120 the constant shift would give each term e^{120·(c - 1)} < e^-100, which f32 keeps
    // at best as a subnormal with a few bits of precision, and zero for most rows (below
    // e^-103.3): a loss and a gradient of nothing. Above s = 80 the step shifts each row by its
    // all-reduced maximum instead, and equals the one-device softmax.
    const WIDE: usize = 512;
    const S: f64 = 120.0;
    let margin = CombinedMarginConfig {
        s: S,
        ..CombinedMarginConfig::arcface(0.5)
    };
    let stable = StableStageConfig {
        margin,
        prototype_weight: 1.0,
        expectation_weighting: true,
    };
    let world = 2;
    let n = world * BATCH;
    let x = to_vec(matrix::<Inner>(41, n, WIDE));
    let w = matrix::<Inner>(42, CLASSES, WIDE);
    let p = matrix::<Inner>(43, CLASSES, WIDE);
    let y = labels(44, n, CLASSES);
    let lengths: Vec<f32> = (0..CLASSES).map(|c| 0.5 + 0.05 * c as f32).collect();
    let bank_of = |range: std::ops::Range<usize>| {
        let k = range.len();
        PrototypeBank::<B>::from_tensors(
            PrototypeBankConfig::default(),
            Tensor::from_inner(p.clone().slice([range.clone(), 0..WIDE])),
            Tensor::from_data(
                TensorData::new(lengths[range].to_vec(), [k]),
                &Default::default(),
            ),
        )
    };

    // The constant shift's largest term of each row, by hand: zero or subnormal everywhere.
    let w_rows = to_vec(w.clone());
    let unit = |v: &[f32]| {
        let n = v.iter().map(|a| (a * a) as f64).sum::<f64>().sqrt();
        v.iter().map(|a| *a as f64 / n).collect::<Vec<f64>>()
    };
    for row in x.chunks(WIDE) {
        let xr = unit(row);
        let largest = w_rows
            .chunks(WIDE)
            .map(|c| unit(c).iter().zip(&xr).map(|(a, b)| a * b).sum::<f64>())
            .fold(f64::MIN, f64::max);
        let term = ((S * (largest - 1.0)) as f32).exp();
        assert!(term < f32::MIN_POSITIVE, "cosine {largest}: term {term}");
    }

    for with_prototypes in [false, true] {
        let device = Default::default();
        let xt = Tensor::<B, 2>::from_data(TensorData::new(x.clone(), [n, WIDE]), &device)
            .require_grad();
        let wt = Tensor::<B, 2>::from_inner(w.clone()).require_grad();
        let yt = Tensor::<B, 1, Int>::from_data(TensorData::new(y.clone(), [n]), &device);
        let full_bank = bank_of(0..CLASSES);
        let loss = if with_prototypes {
            stable
                .init()
                .forward(xt.clone(), wt.clone(), yt, &full_bank)
        } else {
            margin.init().forward(xt.clone(), wt.clone(), yt)
        };
        let want_loss = loss.clone().into_scalar();
        let grads = loss.backward();
        let want_x = to_vec(xt.grad(&grads).unwrap());
        let want_w = to_vec(wt.grad(&grads).unwrap());
        assert!(want_loss.is_finite() && want_loss > 0.0, "{want_loss}");

        let outs = run_local_peers::<Inner, _, _>(world, &[Default::default()], |comm| {
            let rank = comm.rank();
            let pfc = PartialFcConfig::default()
                .init(rank, world, CLASSES)
                .unwrap();
            let range = pfc.shard().range();
            let shard_bank = bank_of(range.clone());
            let loss = if with_prototypes {
                ShardLoss::Stable {
                    loss: stable.init(),
                    bank: &shard_bank,
                }
            } else {
                ShardLoss::Margin(margin.init())
            };
            let step = pfc
                .step::<B, _>(
                    rank_rows::<Inner>(&x, rank, BATCH, WIDE),
                    &y[rank * BATCH..(rank + 1) * BATCH],
                    w.clone().slice([range, 0..WIDE]),
                    loss,
                    0,
                    &comm,
                )
                .unwrap();
            (
                step.loss,
                to_vec(step.embedding_grad),
                to_vec(step.centre_grad),
            )
        })
        .unwrap();
        let what = format!("s = {S}, prototypes {with_prototypes}");
        for (loss, ..) in &outs {
            assert_close(&format!("{what}: loss"), &[*loss], &[want_loss], TOL);
        }
        let got_x: Vec<f32> = outs.iter().flat_map(|o| o.1.clone()).collect();
        let got_w: Vec<f32> = outs.iter().flat_map(|o| o.2.clone()).collect();
        assert_close(&format!("{what}: embedding gradient"), &got_x, &want_x, TOL);
        assert_close(&format!("{what}: centre gradient"), &got_w, &want_w, TOL);
    }
}

#[test]
fn broadcast_bytes_carries_the_roots_bytes_exactly_from_any_root() {
    // What carries a NCCL unique id to the other ranks: every byte value, from every root.
    let id: Vec<u8> = (0..=255u8).rev().collect();
    for world in 1..=3 {
        for root in 0..world {
            let got = run_local_peers::<Inner, _, _>(world, &[Default::default()], |comm| {
                let mine = if comm.rank() == root {
                    id.clone()
                } else {
                    vec![7; id.len()]
                };
                broadcast_bytes::<Inner, _>(&comm, &mine, root, &Default::default()).unwrap()
            })
            .unwrap();
            for (rank, bytes) in got.iter().enumerate() {
                assert_eq!(bytes, &id, "world {world}, root {root}: rank {rank}");
            }
        }
    }
}
