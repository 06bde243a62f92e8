//! W ranks with batch b train like one device with batch W·b: a linear "backbone" feeding the
//! sharded classifier, gradients of the backbone summed over ranks, against one device.

mod common;

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::optim::GradientsParams;
use burn::prelude::*;
use common::{assert_close, labels, matrix, rank_rows, to_vec, Inner, B};
use lvface_loss::CombinedMarginConfig;
use lvface_pfc::{all_reduce_gradients, run_local_peers, Collective, PartialFcConfig, ShardLoss};

const IN: usize = 6;
const DIM: usize = 5;
const BATCH: usize = 4;
const CLASSES: usize = 7;

fn backbone() -> Linear<B> {
    // A fixed record, so every rank and the reference start from the same weights.
    let linear = LinearConfig::new(IN, DIM).init::<B>(&Default::default());
    let weight = Tensor::<B, 2>::from_inner(matrix(40, IN, DIM));
    let bias = Tensor::<B, 1>::from_inner(matrix::<Inner>(41, 1, DIM).reshape([DIM]));
    Linear {
        weight: linear.weight.map(|_| weight.require_grad()),
        bias: linear.bias.map(|b| b.map(|_| bias.require_grad())),
    }
}

fn grads_of(model: &Linear<B>, grads: &GradientsParams) -> Vec<f32> {
    let mut out = to_vec(grads.get::<Inner, 2>(model.weight.id).unwrap());
    out.extend(to_vec(
        grads
            .get::<Inner, 1>(model.bias.as_ref().unwrap().id)
            .unwrap(),
    ));
    out
}

#[test]
fn summed_backbone_gradients_equal_one_device_with_the_whole_batch() {
    let margin = CombinedMarginConfig::arcface(0.5).init();
    for world in [2, 3, 4] {
        let n = world * BATCH;
        let images = to_vec(matrix::<Inner>(42, n, IN));
        let y = labels(43, n, CLASSES);
        let centres = matrix::<Inner>(44, CLASSES, DIM);

        let model = backbone();
        let device = Default::default();
        let x = Tensor::<B, 2>::from_data(TensorData::new(images.clone(), [n, IN]), &device);
        let loss = margin.forward(
            model.forward(x),
            Tensor::from_inner(centres.clone()),
            Tensor::from_data(TensorData::new(y.clone(), [n]), &device),
        );
        let want = grads_of(
            &model,
            &GradientsParams::from_grads(loss.backward(), &model),
        );

        let got = run_local_peers::<Inner, _, _>(world, &[Default::default()], |comm| {
            let rank = comm.rank();
            let model = backbone();
            let pfc = PartialFcConfig::default()
                .init(rank, world, CLASSES)
                .unwrap();
            let range = pfc.shard().range();
            let mine = rank_rows::<B>(&images, rank, BATCH, IN);
            let embeddings = model.forward(mine);
            let step = pfc
                .step::<B, _>(
                    embeddings.clone().inner(),
                    &y[rank * BATCH..(rank + 1) * BATCH],
                    centres.clone().slice([range, 0..DIM]),
                    ShardLoss::Margin(margin),
                    0,
                    &comm,
                )
                .unwrap();
            let surrogate = (embeddings * Tensor::from_inner(step.embedding_grad)).sum();
            let grads = GradientsParams::from_grads(surrogate.backward(), &model);
            let grads = all_reduce_gradients(grads, &model, &comm).unwrap();
            grads_of(&model, &grads)
        })
        .unwrap();
        for (rank, g) in got.iter().enumerate() {
            assert_close(
                &format!("W={world} rank {rank} backbone gradient"),
                g,
                &want,
                1e-5,
            );
        }
    }
}

#[test]
fn a_single_rank_passes_gradients_through() {
    let model = backbone();
    let x = Tensor::<B, 2>::from_inner(matrix(45, 2, IN));
    let grads = GradientsParams::from_grads(model.forward(x).sum().backward(), &model);
    let before = grads_of(&model, &grads);
    let after = grads_of(
        &model,
        &all_reduce_gradients(grads, &model, &lvface_pfc::Solo::new()).unwrap(),
    );
    assert_eq!(before, after);
    assert_eq!(model.num_params(), IN * DIM + DIM);
}
