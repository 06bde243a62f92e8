//! The run's optimizer: burn's AdamW over the backbone, and AdamW over the centre shard that
//! moves only the rows a step sampled.
//!
//! In the early phase only sampled centres move (`docs/losses.md`). Running one AdamW over the
//! whole shard and putting the unsampled rows back afterwards kept a second copy of the shard
//! alive through the step (2 GB at 1 M classes, D = 512) plus AdamW's full-size temporaries.
//! [`CentreAdamW`] instead decays the moments of every row in place (what AdamW does with a zero
//! gradient), and computes new values for the sampled rows only. For those rows the arithmetic
//! is burn's `AdamW`, operation for operation, so the result is the same to the bit (tested
//! against burn's AdamW followed by putting the unsampled rows back).

use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamW, AdamWConfig, AdaptiveMomentumState, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::IndexingUpdateOp;

use crate::config::OptimConfig;
use crate::model::TrainModel;

/// burn's AdamW over the backbone (the centres get no gradient through it).
pub type BackboneOptim<B> = OptimizerAdaptor<AdamW, TrainModel<B>, B>;

/// The optimizer of a run.
pub struct Optim<B: AutodiffBackend> {
    /// AdamW over the backbone's parameters.
    pub backbone: BackboneOptim<B>,
    /// AdamW over this rank's centre shard.
    pub centres: CentreAdamW<B::InnerBackend>,
}

/// AdamW with the run's betas, epsilon and decoupled weight decay (the learning rate is given
/// per step), for the backbone and the centre shard alike.
pub fn init_optimizer<B: AutodiffBackend>(config: &OptimConfig) -> Optim<B> {
    let hyper = AdamWHyper {
        beta_1: config.beta1 as f32,
        beta_2: config.beta2 as f32,
        epsilon: config.epsilon as f32,
        weight_decay: config.weight_decay as f32,
    };
    Optim {
        backbone: AdamWConfig::new()
            .with_beta_1(hyper.beta_1)
            .with_beta_2(hyper.beta_2)
            .with_epsilon(hyper.epsilon)
            .with_weight_decay(hyper.weight_decay)
            .init(),
        centres: CentreAdamW { hyper, state: None },
    }
}

impl<B: AutodiffBackend> Optim<B> {
    /// One step: `grads` (the backbone's) through burn's AdamW at `backbone_lr`, `centre_grad`
    /// through [`CentreAdamW`] on the rows `taken` at `centre_lr`.
    ///
    /// # Shapes
    /// - centre_grad: `[num_local, dim]`, zero on rows not taken
    /// - taken: `num_local`
    pub fn step(
        &mut self,
        backbone_lr: f64,
        centre_lr: f64,
        model: TrainModel<B>,
        grads: GradientsParams,
        centre_grad: Tensor<B::InnerBackend, 2>,
        taken: &[bool],
    ) -> TrainModel<B> {
        let model = self.backbone.step(backbone_lr, model, grads);
        let centres = model.centres.val().inner();
        let centres = self.centres.step(centre_lr, centres, centre_grad, taken);
        model.with_centres(Tensor::from_inner(centres))
    }
}

/// AdamW's constants.
#[derive(Debug, Clone, Copy)]
struct AdamWHyper {
    beta_1: f32,
    beta_2: f32,
    epsilon: f32,
    weight_decay: f32,
}

/// AdamW over a centre shard that writes new values into the rows a step took only.
pub struct CentreAdamW<B: Backend> {
    hyper: AdamWHyper,
    state: Option<AdaptiveMomentumState<B, 2>>,
}

impl<B: Backend> CentreAdamW<B> {
    /// The moments and step count (`None` before the first step).
    pub fn state(&self) -> Option<&AdaptiveMomentumState<B, 2>> {
        self.state.as_ref()
    }

    /// Replaces the moments and step count (a checkpoint's).
    pub fn set_state(&mut self, state: Option<AdaptiveMomentumState<B, 2>>) {
        self.state = state;
    }

    /// Updates the moments of every row and the values of the rows `taken`.
    ///
    /// # Shapes
    /// - centres, grad: `[num_local, dim]`
    /// - taken: `num_local`
    pub fn step(
        &mut self,
        lr: f64,
        centres: Tensor<B, 2>,
        grad: Tensor<B, 2>,
        taken: &[bool],
    ) -> Tensor<B, 2> {
        let h = self.hyper;
        let device = centres.device();
        let rows: Vec<i64> = (0..taken.len() as i64)
            .filter(|&i| taken[i as usize])
            .collect();
        let all = rows.len() == taken.len();
        let index =
            Tensor::<B, 1, Int>::from_data(TensorData::new(rows.clone(), [rows.len()]), &device);
        let pick = |t: Tensor<B, 2>| if all { t } else { t.select(0, index.clone()) };
        // Spread rows-sized values over the shard by adding them to its decayed moments.
        let put = |full: Tensor<B, 2>, part: Tensor<B, 2>| {
            if all {
                full + part
            } else {
                full.select_assign(0, index.clone(), part, IndexingUpdateOp::Add)
            }
        };
        let grad_rows = pick(grad);
        let m_add = grad_rows.clone().mul_scalar(1.0 - h.beta_1);
        let v_add = grad_rows.square().mul_scalar(1.0 - h.beta_2);
        let (moment_1, moment_2, time) = match self.state.take() {
            Some(s) => (
                put(s.moment_1.mul_scalar(h.beta_1), m_add),
                put(s.moment_2.mul_scalar(h.beta_2), v_add),
                s.time + 1,
            ),
            // burn's first step sets the moments to the scaled gradient, zero on other rows.
            None if all => (m_add, v_add, 1),
            None => {
                let zeros = || Tensor::<B, 2>::zeros(centres.dims(), &device);
                (put(zeros(), m_add), put(zeros(), v_add), 1)
            }
        };
        let t = time as i32;
        let m_hat = pick(moment_1.clone()).div_scalar(1f32 - h.beta_1.powi(t));
        let v_hat = pick(moment_2.clone()).div_scalar(1f32 - h.beta_2.powi(t));
        let delta = m_hat.div(v_hat.sqrt().add_scalar(h.epsilon));
        let decay_rate = lr * h.weight_decay as f64;
        let current = pick(centres.clone());
        let decayed = if decay_rate == 0.0 {
            current.clone()
        } else {
            current.clone().mul_scalar(1.0 - decay_rate)
        };
        let updated = decayed - delta.mul_scalar(lr);
        self.state = Some(AdaptiveMomentumState::new(time, moment_1, moment_2));
        if all {
            return updated;
        }
        // x + (-x) is exactly 0 and 0 + y exactly y: the rows get `updated` to the bit.
        centres
            .select_assign(0, index.clone(), current.neg(), IndexingUpdateOp::Add)
            .select_assign(0, index, updated, IndexingUpdateOp::Add)
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::{Autodiff, Flex};
    use burn::module::Param;
    use burn::tensor::Distribution;

    use super::*;

    type B = Autodiff<Flex>;

    #[derive(Module, Debug)]
    struct Centres<B: Backend> {
        w: Param<Tensor<B, 2>>,
    }

    fn bits(t: Tensor<Flex, 2>) -> Vec<u32> {
        t.into_data()
            .to_vec::<f32>()
            .unwrap()
            .into_iter()
            .map(f32::to_bits)
            .collect()
    }

    /// The rule this optimizer replaces: burn's AdamW over the whole shard, then the rows not
    /// taken put back to their values before the step.
    #[test]
    fn taken_rows_move_as_burns_adamw_moves_them_and_the_others_stay_to_the_bit() {
        let device = Default::default();
        let (rows, dim, lr) = (13, 6, 0.01);
        let hyper = AdamWHyper {
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-8,
            weight_decay: 0.05,
        };
        let mut reference: OptimizerAdaptor<AdamW, Centres<B>, B> = AdamWConfig::new()
            .with_beta_1(hyper.beta_1)
            .with_beta_2(hyper.beta_2)
            .with_epsilon(hyper.epsilon)
            .with_weight_decay(hyper.weight_decay)
            .init();
        let mut ours = CentreAdamW::<Flex> { hyper, state: None };
        let start = Tensor::<B, 2>::random([rows, dim], Distribution::Normal(0.0, 0.1), &device);
        let mut model = Centres {
            w: Param::from_tensor(start.clone()),
        };
        let mut w = start.inner();
        // Sparse first steps (zero moments on the other rows), a step taking every row, a step
        // taking none.
        for step in 0..6usize {
            let taken: Vec<bool> = (0..rows)
                .map(|r| step == 3 || (step != 4 && (r * 7 + step) % 3 == 0))
                .collect();
            let mask: Vec<f32> = taken.iter().map(|&t| f32::from(u8::from(t))).collect();
            let mask = Tensor::<Flex, 1>::from_floats(mask.as_slice(), &device).reshape([rows, 1]);
            let grad =
                Tensor::<Flex, 2>::random([rows, dim], Distribution::Normal(0.0, 1.0), &device)
                    * mask;

            let before = model.w.val();
            let mut grads = GradientsParams::new();
            grads.register::<Flex, 2>(model.w.id, grad.clone());
            model = reference.step(lr, model, grads);
            let not_taken: Vec<bool> = taken.iter().map(|t| !t).collect();
            let keep = Tensor::<B, 1, Bool>::from_data(TensorData::new(not_taken, [rows]), &device)
                .reshape([rows, 1])
                .expand([rows, dim]);
            let restored = model.w.val().mask_where(keep, before);
            model.w = Param::initialized(model.w.id, restored.clone().detach().require_grad());

            w = ours.step(lr, w, grad, &taken);
            assert_eq!(bits(w.clone()), bits(restored.inner()), "step {step}");
        }
        assert_eq!(ours.state().map(|s| s.time), Some(6));
    }
}
