//! Data parallelism for the backbone: every rank holds the same backbone, and after each
//! backward the gradients are summed over ranks, so every rank takes the same optimizer step.
//!
//! Sum, not mean: the sharded loss is already the mean over the gathered batch of `W·b`
//! samples, so each rank's backbone gradient is its share of the global gradient, and their sum
//! is what one device with batch `W·b` would compute.
//!
//! The gradients travel as one flat buffer per step (one all-reduce instead of one per
//! parameter), in the module's visiting order, which is the same on every rank.

use burn::module::{AutodiffModule, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

use crate::collective::Collective;
use crate::error::Result;

/// Sums `grads` (of `module`'s parameters) over every rank.
pub fn all_reduce_gradients<B, M, C>(
    grads: GradientsParams,
    module: &M,
    comm: &C,
) -> Result<GradientsParams>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    C: Collective<B::InnerBackend>,
{
    if comm.world_size() == 1 {
        return Ok(grads);
    }
    let mut flatten = Flatten::<B> {
        grads,
        pieces: Vec::new(),
        slots: Vec::new(),
    };
    module.visit(&mut flatten);
    let Flatten {
        mut grads,
        pieces,
        slots,
    } = flatten;
    if pieces.is_empty() {
        return Ok(grads);
    }
    let summed = comm.all_reduce_sum(Tensor::cat(pieces, 0))?;
    let mut restore = Restore::<B> {
        grads: &mut grads,
        flat: summed,
        slots,
        next: 0,
        offset: 0,
    };
    module.visit(&mut restore);
    Ok(grads)
}

struct Flatten<B: AutodiffBackend> {
    grads: GradientsParams,
    pieces: Vec<Tensor<B::InnerBackend, 1>>,
    slots: Vec<(ParamId, usize)>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Flatten<B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(grad) = self.grads.remove::<B::InnerBackend, D>(param.id) {
            let len = grad.shape().num_elements();
            self.pieces.push(grad.reshape([len]));
            self.slots.push((param.id, len));
        }
    }
}

struct Restore<'a, B: AutodiffBackend> {
    grads: &'a mut GradientsParams,
    flat: Tensor<B::InnerBackend, 1>,
    slots: Vec<(ParamId, usize)>,
    next: usize,
    offset: usize,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Restore<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let Some(&(id, len)) = self.slots.get(self.next) else {
            return;
        };
        if id != param.id {
            return;
        }
        let dims = param.val().dims();
        let grad = self
            .flat
            .clone()
            .slice(self.offset..self.offset + len)
            .reshape(dims);
        self.grads.register::<B::InnerBackend, D>(id, grad);
        self.next += 1;
        self.offset += len;
    }
}
