//! CurricularFace, AdaFace and the stable stage with sampling, sharded, against one device
//! holding everything: the same loss and gradients over two steps, and the same running
//! statistics on every rank.

mod common;

use burn::prelude::*;
use common::{assert_close, labels, matrix, rank_rows, to_vec, Inner, B};
use lvface_loss::{
    AdaFace, AdaFaceConfig, CombinedMarginConfig, CurricularFace, CurricularFaceConfig,
    PrototypeBank, PrototypeBankConfig, StableStageConfig,
};
use lvface_pfc::{
    run_local_peers,
    scaling::{step_traffic, StepShape},
    Collective, PartialFcConfig, ShardLoss,
};

const DIM: usize = 8;
const BATCH: usize = 3;
const CLASSES: usize = 10;
const TOL: f32 = 1e-5;
const STEPS: u64 = 2;

/// The loss and the gradients of one step.
#[derive(Debug, Clone)]
struct StepResult {
    loss: f32,
    embedding_grad: Vec<f32>,
    centre_grad: Vec<f32>,
}

/// Step `step`'s batch of the whole world: embeddings `[n, DIM]` and labels.
fn batch(step: u64, n: usize) -> (Vec<f32>, Vec<i64>) {
    (
        to_vec(matrix::<Inner>(100 + step, n, DIM)),
        labels(200 + step, n, CLASSES),
    )
}

fn centres() -> Tensor<Inner, 2> {
    matrix(2, CLASSES, DIM)
}

/// The margin losses that keep statistics, as one device runs them.
enum OneDevice {
    Curricular(CurricularFace),
    Ada(AdaFace),
}

impl OneDevice {
    fn step(&mut self, x: &[f32], y: &[i64]) -> StepResult {
        let n = y.len();
        let device = Default::default();
        let x = Tensor::<B, 2>::from_data(TensorData::new(x.to_vec(), [n, DIM]), &device)
            .require_grad();
        let w = Tensor::<B, 2>::from_inner(centres()).require_grad();
        let y = Tensor::<B, 1, Int>::from_data(TensorData::new(y.to_vec(), [n]), &device);
        let loss = match self {
            Self::Curricular(loss) => loss.forward(x.clone(), w.clone(), y),
            Self::Ada(loss) => loss.forward(x.clone(), w.clone(), y),
        };
        let value = loss.clone().into_scalar();
        let grads = loss.backward();
        StepResult {
            loss: value,
            embedding_grad: to_vec(x.grad(&grads).unwrap()),
            centre_grad: to_vec(w.grad(&grads).unwrap()),
        }
    }

    fn statistics(&self) -> Vec<f64> {
        match self {
            Self::Curricular(loss) => vec![loss.t()],
            Self::Ada(loss) => vec![loss.norm_mean, loss.norm_std],
        }
    }
}

/// Every rank's results of `STEPS` steps (the centre gradients of the shards in rank order),
/// and every rank's statistics after them.
fn sharded(world: usize, fresh: fn() -> OneDevice) -> (Vec<StepResult>, Vec<Vec<f64>>) {
    let n = world * BATCH;
    let outs = run_local_peers::<Inner, _, _>(world, &[Default::default()], |comm| {
        let rank = comm.rank();
        let pfc = PartialFcConfig::default()
            .init(rank, world, CLASSES)
            .unwrap();
        let range = pfc.shard().range();
        let mut state = fresh();
        let mut results = Vec::new();
        for step in 0..STEPS {
            let (x, y) = batch(step, n);
            let loss = match &mut state {
                OneDevice::Curricular(loss) => ShardLoss::CurricularFace(loss),
                OneDevice::Ada(loss) => ShardLoss::AdaFace(loss),
            };
            let out = pfc
                .step::<B, _>(
                    rank_rows::<Inner>(&x, rank, BATCH, DIM),
                    &y[rank * BATCH..(rank + 1) * BATCH],
                    centres().slice([range.clone(), 0..DIM]),
                    loss,
                    step,
                    &comm,
                )
                .unwrap();
            results.push((
                out.loss,
                to_vec(out.embedding_grad),
                to_vec(out.centre_grad),
            ));
        }
        (results, state.statistics())
    })
    .unwrap();
    let steps = (0..STEPS as usize)
        .map(|s| StepResult {
            loss: outs[0].0[s].0,
            embedding_grad: outs.iter().flat_map(|o| o.0[s].1.clone()).collect(),
            centre_grad: outs.iter().flat_map(|o| o.0[s].2.clone()).collect(),
        })
        .collect();
    for (rank, out) in outs.iter().enumerate() {
        for s in 0..STEPS as usize {
            assert_eq!(out.0[s].0, outs[0].0[s].0, "rank {rank}, step {s}: loss");
        }
    }
    (steps, outs.into_iter().map(|o| o.1).collect())
}

fn check(what: &str, fresh: fn() -> OneDevice) {
    for world in 1..=4 {
        let mut one = fresh();
        let want: Vec<StepResult> = (0..STEPS)
            .map(|step| {
                let (x, y) = batch(step, world * BATCH);
                one.step(&x, &y)
            })
            .collect();
        let (got, statistics) = sharded(world, fresh);
        for (s, (got, want)) in got.iter().zip(&want).enumerate() {
            let at = format!("{what}, W={world}, step {s}");
            assert_close(&format!("{at}: loss"), &[got.loss], &[want.loss], TOL);
            assert_close(
                &format!("{at}: embedding gradient"),
                &got.embedding_grad,
                &want.embedding_grad,
                TOL,
            );
            assert_close(
                &format!("{at}: centre gradient"),
                &got.centre_grad,
                &want.centre_grad,
                TOL,
            );
        }
        for (rank, stats) in statistics.iter().enumerate() {
            assert_eq!(
                stats,
                &one.statistics(),
                "{what}, W={world}: rank {rank}'s statistics"
            );
        }
    }
}

fn curricular() -> OneDevice {
    OneDevice::Curricular(
        CurricularFaceConfig {
            // A fast `t`, so that the second step's modulation differs visibly from the first.
            t_momentum: 0.5,
            ..Default::default()
        }
        .init(),
    )
}

fn ada() -> OneDevice {
    OneDevice::Ada(
        AdaFaceConfig {
            t_alpha: 0.5,
            ..Default::default()
        }
        .init(),
    )
}

#[test]
fn curricular_face_shards_equal_one_device_and_keep_its_t() {
    // The test means something only if some negative is hard (above cos(θ_y + m)), so that
    // the modulation, which needs every row's target from another shard, acts.
    let (x, y) = batch(0, 4 * BATCH);
    let unit = |v: &[f32]| {
        let n = v.iter().map(|a| a * a).sum::<f32>().sqrt();
        v.iter().map(|a| a / n).collect::<Vec<f32>>()
    };
    let w = to_vec(centres());
    let hard = x.chunks(DIM).zip(&y).any(|(row, &label)| {
        let r = unit(row);
        let cos: Vec<f32> = w
            .chunks(DIM)
            .map(|c| unit(c).iter().zip(&r).map(|(a, b)| a * b).sum())
            .collect();
        let threshold = (cos[label as usize].acos() + 0.5).cos();
        cos.iter()
            .enumerate()
            .any(|(j, &c)| j != label as usize && c > threshold)
    });
    assert!(hard, "no hard negative in the test data");
    check("CurricularFace", curricular);
}

#[test]
fn ada_face_shards_equal_one_device_and_keep_its_norm_statistics() {
    check("AdaFace", ada);
}

#[test]
fn curricular_face_traffic_matches_the_scaling_arithmetic() {
    for world in [1, 3] {
        let traffic = run_local_peers::<Inner, _, _>(world, &[Default::default()], |comm| {
            let rank = comm.rank();
            let pfc = PartialFcConfig::default()
                .init(rank, world, CLASSES)
                .unwrap();
            let range = pfc.shard().range();
            let mut loss = CurricularFaceConfig::default().init();
            pfc.step::<B, _>(
                matrix(30, BATCH, DIM),
                &[1, 2, 3],
                centres().slice([range, 0..DIM]),
                ShardLoss::CurricularFace(&mut loss),
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
            prototypes: false,
            row_maximum: true,
            curricular_face: true,
        });
        for t in traffic {
            assert_eq!(t, expected, "world {world}");
        }
    }
}

/// A bank over `classes` of the same prototypes and lengths whatever the shard.
fn bank_of(classes: &[i64]) -> PrototypeBank<B> {
    let device = Default::default();
    let all = matrix::<B>(4, CLASSES, DIM);
    let index =
        Tensor::<B, 1, Int>::from_data(TensorData::new(classes.to_vec(), [classes.len()]), &device);
    let lengths: Vec<f32> = classes.iter().map(|&c| 0.3 + 0.07 * c as f32).collect();
    PrototypeBank::from_tensors(
        PrototypeBankConfig::default(),
        all.select(0, index),
        Tensor::from_data(TensorData::new(lengths, [classes.len()]), &device),
    )
}

#[test]
fn the_stable_stage_with_sampling_equals_one_device_over_the_sampled_classes() {
    // Progressive Cluster Optimization's second step: prototypes and Partial FC together.
    let config = StableStageConfig {
        margin: CombinedMarginConfig::arcface(0.5),
        prototype_weight: 1.0,
        expectation_weighting: true,
    };
    let sampling = PartialFcConfig {
        sample_rate: 0.3,
        seed: 7,
        ..Default::default()
    };
    for world in [1, 2, 3] {
        let n = world * BATCH;
        let (x, y) = batch(9, n);
        let outs = run_local_peers::<Inner, _, _>(world, &[Default::default()], |comm| {
            let rank = comm.rank();
            let pfc = sampling.init(rank, world, CLASSES).unwrap();
            let range = pfc.shard().range();
            let own: Vec<i64> = range.clone().map(|c| c as i64).collect();
            let bank = bank_of(&own);
            let out = pfc
                .step::<B, _>(
                    rank_rows::<Inner>(&x, rank, BATCH, DIM),
                    &y[rank * BATCH..(rank + 1) * BATCH],
                    centres().slice([range.clone(), 0..DIM]),
                    ShardLoss::Stable {
                        loss: config.init(),
                        bank: &bank,
                    },
                    3,
                    &comm,
                )
                .unwrap();
            let sampled: Vec<i64> = out
                .sampled
                .index
                .iter()
                .map(|&c| c + range.start as i64)
                .collect();
            let centre_grad = to_vec(out.centre_grad);
            (out.loss, to_vec(out.embedding_grad), centre_grad, sampled)
        })
        .unwrap();
        let union: Vec<i64> = outs.iter().flat_map(|o| o.3.clone()).collect();
        assert!(
            union.len() < CLASSES,
            "W={world}: sampling kept every class"
        );

        // One device: the stable-stage loss over the sampled centres and a bank of those
        // classes, labels renumbered to the columns.
        let device = Default::default();
        let index =
            Tensor::<B, 1, Int>::from_data(TensorData::new(union.clone(), [union.len()]), &device);
        let xt =
            Tensor::<B, 2>::from_data(TensorData::new(x.clone(), [n, DIM]), &device).require_grad();
        let w = Tensor::<B, 2>::from_inner(centres()).require_grad();
        let remapped: Vec<i64> = y
            .iter()
            .map(|c| union.binary_search(c).unwrap() as i64)
            .collect();
        let loss = config.init().forward(
            xt.clone(),
            w.clone().select(0, index),
            Tensor::from_data(TensorData::new(remapped, [n]), &device),
            &bank_of(&union),
        );
        let want = loss.clone().into_scalar();
        let grads = loss.backward();
        let at = format!("stable stage with sampling, W={world}");
        for (loss, ..) in &outs {
            assert_close(&format!("{at}: loss"), &[*loss], &[want], TOL);
        }
        let got_x: Vec<f32> = outs.iter().flat_map(|o| o.1.clone()).collect();
        let got_w: Vec<f32> = outs.iter().flat_map(|o| o.2.clone()).collect();
        let want_w = to_vec(w.grad(&grads).unwrap());
        assert_close(
            &format!("{at}: embedding gradient"),
            &got_x,
            &to_vec(xt.grad(&grads).unwrap()),
            TOL,
        );
        assert_close(&format!("{at}: centre gradient"), &got_w, &want_w, TOL);
        // Classes left out get no gradient.
        for c in (0..CLASSES as i64).filter(|c| !union.contains(c)) {
            let row = &got_w[c as usize * DIM..(c as usize + 1) * DIM];
            assert!(row.iter().all(|&g| g == 0.0), "W={world}: class {c} moved");
        }
    }
}
