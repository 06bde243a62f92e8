//! The blockwise margin softmax against the materialised composition (`CombinedMargin::forward`
//! and burn's autodiff, itself checked by finite differences in `gradient_check.rs`), against
//! its own finite differences, and split over shards as a sharded classifier uses it.

mod common;

use burn::backend::Flex;
use burn::prelude::*;
use common::{finite_differences, max_rel_err, noise, values, B};
use lvface_loss::{
    BlockwiseMarginSoftmax, Columns, CombinedMarginConfig, GradientMode, MarginGuard,
    NegativeSamplerConfig, NormalizedRows,
};

const BATCH: usize = 6;
const DIM: usize = 16;
const CLASSES: usize = 23;
/// Row 2 has no label here; rows 0 and 4 share a class.
const LABELS: [i64; BATCH] = [5, 0, -1, 22, 5, 11];

fn matrix<Bk: Backend>(values: &[f64], rows: usize) -> Tensor<Bk, 2> {
    let data: Vec<f32> = values.iter().map(|&v| v as f32).collect();
    Tensor::from_data(TensorData::new(data, [rows, DIM]), &Default::default())
}

/// Embeddings, and centres of which some align with the rows' classes (so that targets
/// dominate, as in training).
fn inputs() -> (Vec<f64>, Vec<f64>) {
    let x = noise(BATCH * DIM, 11);
    let mut w = noise(CLASSES * DIM, 12);
    for (i, &y) in LABELS.iter().enumerate() {
        if y >= 0 && i != 4 {
            for d in 0..DIM {
                w[y as usize * DIM + d] += 2.0 * x[i * DIM + d];
            }
        }
    }
    (x, w)
}

struct Expected {
    loss: f64,
    x_grad: Vec<f64>,
    w_grad: Vec<f64>,
}

fn materialised(config: CombinedMarginConfig, columns: Option<&[i64]>, labels: &[i64]) -> Expected {
    let (x, w) = inputs();
    let xt = matrix::<B>(&x, BATCH).require_grad();
    let wt = matrix::<B>(&w, CLASSES).require_grad();
    let selected = match columns {
        None => wt.clone(),
        Some(rows) => wt.clone().select(
            0,
            Tensor::from_data(
                TensorData::new(rows.to_vec(), [rows.len()]),
                &Default::default(),
            ),
        ),
    };
    let y = Tensor::from_data(
        TensorData::new(labels.to_vec(), [BATCH]),
        &Default::default(),
    );
    let loss = config.init().forward(xt.clone(), selected, y);
    let value = values(loss.clone())[0];
    let grads = loss.backward();
    Expected {
        loss: value,
        x_grad: values(xt.grad(&grads).unwrap()),
        w_grad: values(wt.grad(&grads).unwrap()),
    }
}

fn assert_close(what: &str, got: &[f64], expected: &[f64], tol: f64) {
    let largest = expected.iter().fold(0.0f64, |a, v| a.max(v.abs()));
    assert!(largest > 1e-3, "{what}: the gradient should not vanish");
    let err = max_rel_err(got, expected, largest * 1e-3);
    assert!(
        err < tol,
        "{what}: relative error {err}\n{got:?}\n{expected:?}"
    );
}

fn margins() -> Vec<CombinedMarginConfig> {
    vec![
        CombinedMarginConfig::arcface(0.5),
        CombinedMarginConfig::cosface(0.4),
        CombinedMarginConfig::arcface(0.5).with_gradient(GradientMode::Exact),
        CombinedMarginConfig::combined(2.0, 0.1, 0.1)
            .with_gradient(GradientMode::Exact)
            .with_guard(MarginGuard::Continuous),
        CombinedMarginConfig::combined(1.0, 0.5, 0.0).with_guard(MarginGuard::ArcFace),
        // Above s = 87 an unshifted exp would underflow; the online maximum handles it.
        CombinedMarginConfig {
            s: 120.0,
            ..CombinedMarginConfig::arcface(0.5)
        },
    ]
}

#[test]
fn matches_the_materialised_loss_and_its_autodiff_gradients() {
    let (x, w) = inputs();
    for config in margins() {
        let expected = materialised(config, None, &LABELS);
        for block in [1, 4, 7, CLASSES, 100] {
            let softmax = BlockwiseMarginSoftmax::with_block(config.init(), block);
            let (loss, gx, gw) = softmax.loss_and_gradients(
                matrix::<Flex>(&x, BATCH),
                matrix::<Flex>(&w, CLASSES),
                &LABELS,
            );
            let what = format!("{config:?}, blocks of {block}");
            assert!(
                (f64::from(loss) - expected.loss).abs() < 1e-5 * expected.loss.abs().max(1.0),
                "{what}: loss {loss} vs {}",
                expected.loss
            );
            assert_close(
                &format!("{what}: embeddings"),
                &values(gx),
                &expected.x_grad,
                1e-4,
            );
            assert_close(
                &format!("{what}: centres"),
                &values(gw),
                &expected.w_grad,
                1e-4,
            );
        }
    }
}

#[test]
fn sampled_columns_match_the_selected_centres() {
    let (x, w) = inputs();
    let sample = NegativeSamplerConfig {
        sample_rate: 0.4,
        seed: 3,
    }
    .init()
    .sample(&LABELS, CLASSES, 9);
    assert!(sample.index.len() < CLASSES);
    let config = CombinedMarginConfig::arcface(0.5);
    let expected = materialised(config, Some(&sample.index), &sample.labels);
    let softmax = BlockwiseMarginSoftmax::with_block(config.init(), 3);
    let unit = NormalizedRows::new(matrix::<Flex>(&x, BATCH));
    let centres = matrix::<Flex>(&w, CLASSES);
    let columns = Columns::Rows(&sample.index);
    let stats = softmax.row_statistics(&unit, &centres, columns, &sample.labels);
    let lse = stats.log_sum_exp();
    let labelled = sample.labels.iter().filter(|&&y| y >= 0).count();
    let loss: f64 = (0..BATCH)
        .filter(|&i| sample.labels[i] >= 0)
        .map(|i| f64::from(lse[i] - stats.target[i]))
        .sum::<f64>()
        / labelled as f64;
    assert!(
        (loss - expected.loss).abs() < 1e-5 * expected.loss,
        "{loss} vs {}",
        expected.loss
    );
    let weights: Vec<f32> = sample
        .labels
        .iter()
        .map(|&y| if y >= 0 { 1.0 / labelled as f32 } else { 0.0 })
        .collect();
    let grads = softmax.gradients(
        &unit,
        &centres,
        columns,
        &sample.labels,
        &stats.max,
        &stats.sum,
        &weights,
    );
    let gw = values(grads.centres);
    assert_close(
        "embeddings",
        &values(unit.backward(grads.unit_embeddings)),
        &expected.x_grad,
        1e-4,
    );
    assert_close("centres", &gw, &expected.w_grad, 1e-4);
    for c in (0..CLASSES as i64).filter(|c| !sample.index.contains(c)) {
        let row = &gw[c as usize * DIM..(c as usize + 1) * DIM];
        assert!(row.iter().all(|&g| g == 0.0), "class {c} was not sampled");
    }
}

/// Two shards of the classes, combined as a sharded classifier does: maxima all-reduced with
/// MAX, shifted sums and target logits with SUM, then each shard's gradients, summed over shards
/// for the embeddings.
#[test]
fn shards_combine_into_the_single_device_loss() {
    let (x, w) = inputs();
    let config = CombinedMarginConfig::arcface(0.5);
    let expected = materialised(config, None, &LABELS);
    let softmax = BlockwiseMarginSoftmax::with_block(config.init(), 5);
    let unit = NormalizedRows::new(matrix::<Flex>(&x, BATCH));
    let split = 10;
    let shards: Vec<(Tensor<Flex, 2>, Vec<i64>)> = [(0, split), (split, CLASSES)]
        .into_iter()
        .map(|(start, end)| {
            let centres = matrix::<Flex>(&w[start * DIM..end * DIM], end - start);
            let local = LABELS
                .iter()
                .map(|&y| {
                    if (start as i64..end as i64).contains(&y) {
                        y - start as i64
                    } else {
                        -1
                    }
                })
                .collect();
            (centres, local)
        })
        .collect();
    let stats: Vec<_> = shards
        .iter()
        .map(|(centres, local)| softmax.row_statistics(&unit, centres, Columns::All, local))
        .collect();
    let max: Vec<f32> = (0..BATCH)
        .map(|i| stats[0].max[i].max(stats[1].max[i]))
        .collect();
    let sums: Vec<Vec<f32>> = stats.iter().map(|s| s.exp_sum(&max)).collect();
    let denominators: Vec<f32> = (0..BATCH).map(|i| sums[0][i] + sums[1][i]).collect();
    let target: Vec<f32> = (0..BATCH)
        .map(|i| stats[0].target[i] + stats[1].target[i])
        .collect();
    let loss = (0..BATCH)
        .filter(|&i| LABELS[i] >= 0)
        .map(|i| f64::from(denominators[i].ln() + max[i] - target[i]))
        .sum::<f64>()
        / 5.0;
    assert!(
        (loss - expected.loss).abs() < 1e-5 * expected.loss,
        "{loss} vs {}",
        expected.loss
    );
    let weights: Vec<f32> = LABELS
        .iter()
        .map(|&y| if y >= 0 { 0.2 } else { 0.0 })
        .collect();
    let mut unit_grad = Tensor::<Flex, 2>::zeros([BATCH, DIM], &Default::default());
    let mut w_grad = Vec::new();
    for (centres, local) in &shards {
        let grads = softmax.gradients(
            &unit,
            centres,
            Columns::All,
            local,
            &max,
            &denominators,
            &weights,
        );
        unit_grad = unit_grad + grads.unit_embeddings;
        w_grad.extend(values(grads.centres));
    }
    assert_close(
        "embeddings",
        &values(unit.backward(unit_grad)),
        &expected.x_grad,
        1e-4,
    );
    assert_close("centres", &w_grad, &expected.w_grad, 1e-4);
}

/// In f32 (the host pass's precision), at s = 4: central differences with h = 1e-2 have a
/// truncation error about 1e-4 of the largest entry and a rounding error of about 2e-5 absolute
/// (f32's 1.2e-7 on a loss near 3, over 2h), so each entry is compared with the largest.
#[test]
fn gradients_match_finite_differences() {
    let (x, w) = inputs();
    for gradient in [GradientMode::Exact, GradientMode::Straight] {
        let config = CombinedMarginConfig {
            s: 4.0,
            m2: 0.0,
            m3: 0.3,
            ..CombinedMarginConfig::arcface(0.0)
        }
        .with_gradient(gradient);
        let softmax = BlockwiseMarginSoftmax::with_block(config.init(), 4);
        let loss = |x: &[f64], w: &[f64]| {
            let (loss, _, _) = softmax.loss_and_gradients(
                matrix::<Flex>(x, BATCH),
                matrix::<Flex>(w, CLASSES),
                &LABELS,
            );
            f64::from(loss)
        };
        let (_, gx, gw) = softmax.loss_and_gradients(
            matrix::<Flex>(&x, BATCH),
            matrix::<Flex>(&w, CLASSES),
            &LABELS,
        );
        // CosFace's margin is additive in the cosine, so its straight and exact gradients agree.
        let fx = finite_differences(&x, 1e-2, |x| loss(x, &w));
        let fw = finite_differences(&w, 1e-2, |w| loss(&x, w));
        for (what, got, expected) in [("embeddings", values(gx), fx), ("centres", values(gw), fw)] {
            let largest = expected.iter().fold(0.0f64, |a, v| a.max(v.abs()));
            assert!(largest > 1e-2, "{what}: the gradient should not vanish");
            let err = max_rel_err(&got, &expected, largest);
            assert!(
                err < 1e-3,
                "{gradient:?} {what}: error {err} of the largest entry"
            );
        }
    }
}

#[test]
fn kept_cosines_give_the_gradients_of_recomputed_ones_to_the_bit_and_the_budget_decides() {
    let (x, w) = inputs();
    let softmax = BlockwiseMarginSoftmax::with_block(CombinedMarginConfig::arcface(0.5).init(), 5);
    let unit = NormalizedRows::new(matrix::<Flex>(&x, BATCH));
    let centres = matrix::<Flex>(&w, CLASSES);
    let sample = NegativeSamplerConfig {
        sample_rate: 0.6,
        seed: 5,
    }
    .init()
    .sample(&LABELS, CLASSES, 2);
    let weights = vec![1.0 / BATCH as f32; BATCH];
    for columns in [Columns::All, Columns::Rows(&sample.index)] {
        let labels: &[i64] = match columns {
            Columns::All => &LABELS,
            Columns::Rows(_) => &sample.labels,
        };
        let (stats, kept) = softmax.row_statistics_and_cosines(&unit, &centres, columns, labels);
        assert!(kept.is_some(), "a few hundred bytes fit the default budget");
        assert_eq!(
            stats,
            softmax.row_statistics(&unit, &centres, columns, labels)
        );
        let args = (
            labels,
            stats.max.as_slice(),
            stats.sum.as_slice(),
            weights.as_slice(),
        );
        let from_kept = softmax.gradients_from(&unit, &centres, columns, args, kept);
        let recomputed = softmax.gradients_from(&unit, &centres, columns, args, None);
        assert_eq!(
            values(from_kept.unit_embeddings),
            values(recomputed.unit_embeddings)
        );
        assert_eq!(values(from_kept.centres), values(recomputed.centres));

        // Below the cosines' size, nothing is kept.
        let count = match columns {
            Columns::All => CLASSES,
            Columns::Rows(rows) => rows.len(),
        };
        let tight = softmax.with_cosine_budget(BATCH * count * 4 - 1);
        assert!(tight
            .row_statistics_and_cosines(&unit, &centres, columns, labels)
            .1
            .is_none());
        let exact = softmax.with_cosine_budget(BATCH * count * 4);
        assert!(exact
            .row_statistics_and_cosines(&unit, &centres, columns, labels)
            .1
            .is_some());
    }
}
