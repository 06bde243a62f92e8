//! [`Collective`]: the communication a sharded step needs, reduced to one primitive.
//!
//! burn-collective offers all-reduce (sum, mean) everywhere, and broadcast and reduce only between
//! peers of one process. Everything else is composed here from an all-reduce sum, so one
//! implementation of [`Collective::all_reduce_sum`] gives the whole interface, locally and across
//! nodes alike. What each composed operation costs, in elements handed to the all-reduce per rank
//! (a ring all-reduce of `n` elements sends about `2·n·(W-1)/W` of them per rank):
//!
//! | operation | all-reduce payload per rank |
//! |---|---|
//! | `all_reduce_sum(t)` | `len(t)` |
//! | `all_gather(t)`, `t` of `n` elements | `W·n` (each rank fills its slot, zeros elsewhere) |
//! | `all_reduce_max(t)` | `W·len(t)` (an all-gather, then a local max) |
//! | `broadcast(t, root)` | `len(t)` (the root sends its tensor, the others zeros) |
//! | `barrier()` | 1 |
//!
//! Adding zeros is exact in floating point, so the composed all-gather and broadcast return the
//! senders' values bit for bit.

use std::sync::atomic::{AtomicU64, Ordering};

use burn::prelude::*;

use crate::error::{PfcError, Result};

/// Counts of what went through the all-reduce primitive.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// All-reduce calls.
    pub calls: u64,
    /// Elements handed to the all-reduce, summed over calls.
    pub elements: u64,
}

/// A counter implementations bump in [`Collective::all_reduce_sum`].
#[derive(Debug, Default)]
pub struct TrafficCounter {
    calls: AtomicU64,
    elements: AtomicU64,
}

impl TrafficCounter {
    /// Records one all-reduce of `elements` elements.
    pub fn record(&self, elements: usize) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.elements.fetch_add(elements as u64, Ordering::Relaxed);
    }

    /// The counts so far.
    pub fn get(&self) -> Traffic {
        Traffic {
            calls: self.calls.load(Ordering::Relaxed),
            elements: self.elements.load(Ordering::Relaxed),
        }
    }
}

/// The collective operations of one rank among `world_size`. Every rank must issue the same
/// operations in the same order with tensors of the same shape.
pub trait Collective<B: Backend> {
    /// This rank, in `0..world_size`.
    fn rank(&self) -> usize;

    /// The number of ranks.
    fn world_size(&self) -> usize;

    /// The element-wise sum over ranks, returned to every rank.
    fn all_reduce_sum<const D: usize>(&self, tensor: Tensor<B, D>) -> Result<Tensor<B, D>>;

    /// What went through [`all_reduce_sum`](Self::all_reduce_sum) so far.
    fn traffic(&self) -> Traffic;

    /// Every rank's tensor, concatenated along the first dimension in rank order.
    ///
    /// # Shapes
    /// - tensor: `[n, ...]`, the same on every rank
    /// - output: `[world_size · n, ...]`
    fn all_gather<const D: usize>(&self, tensor: Tensor<B, D>) -> Result<Tensor<B, D>> {
        let world = self.world_size();
        if world == 1 {
            return Ok(tensor);
        }
        let mut dims = tensor.dims();
        let n = dims[0];
        dims[0] = n * world;
        let device = tensor.device();
        let slots = Tensor::<B, D>::zeros(dims, &device);
        let mut ranges: [std::ops::Range<usize>; D] = dims.map(|d| 0..d);
        ranges[0] = self.rank() * n..(self.rank() + 1) * n;
        self.all_reduce_sum(slots.slice_assign(ranges, tensor))
    }

    /// The element-wise maximum over ranks.
    fn all_reduce_max<const D: usize>(&self, tensor: Tensor<B, D>) -> Result<Tensor<B, D>> {
        let world = self.world_size();
        if world == 1 {
            return Ok(tensor);
        }
        let dims = tensor.dims();
        let gathered: Tensor<B, 2> = self.all_gather(tensor.reshape([1, -1]))?;
        Ok(gathered.max_dim(0).reshape(dims))
    }

    /// The root's tensor on every rank. Every rank passes a tensor of the same shape; only the
    /// root's values matter.
    fn broadcast<const D: usize>(&self, tensor: Tensor<B, D>, root: usize) -> Result<Tensor<B, D>> {
        if self.world_size() == 1 {
            return Ok(tensor);
        }
        let tensor = if self.rank() == root {
            tensor
        } else {
            tensor.zeros_like()
        };
        self.all_reduce_sum(tensor)
    }

    /// Returns once every rank has called it.
    fn barrier(&self, device: &B::Device) -> Result<()> {
        if self.world_size() > 1 {
            self.all_reduce_sum(Tensor::<B, 1>::zeros([1], device))?;
        }
        Ok(())
    }
}

/// The root's `bytes` on every rank (a NCCL unique id, for one): every rank passes a slice of
/// the same length; only the root's values matter. The bytes travel as f32 values in `0..=255`,
/// which an all-reduce sum with zeros carries exactly.
pub fn broadcast_bytes<B: Backend, C: Collective<B>>(
    comm: &C,
    bytes: &[u8],
    root: usize,
    device: &B::Device,
) -> Result<Vec<u8>> {
    let values: Vec<f32> = bytes.iter().map(|&b| f32::from(b)).collect();
    let tensor = Tensor::<B, 1>::from_data(TensorData::new(values, [bytes.len()]), device);
    let shared = comm.broadcast(tensor, root)?.into_data().convert::<f32>();
    let shared = shared.as_slice::<f32>().map_err(|e| PfcError::Collective {
        op: "broadcast",
        rank: comm.rank(),
        reason: format!("{e:?}"),
    })?;
    shared
        .iter()
        .map(|&v| match v {
            v if (0.0..=255.0).contains(&v) && v.fract() == 0.0 => Ok(v as u8),
            v => Err(PfcError::Collective {
                op: "broadcast",
                rank: comm.rank(),
                reason: format!("a broadcast byte arrived as {v}: the ranks passed different lengths or out of step"),
            }),
        })
        .collect()
}

/// The single-rank collective: every operation returns its input.
#[derive(Debug, Default)]
pub struct Solo {
    traffic: TrafficCounter,
}

impl Solo {
    /// A world of one.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<B: Backend> Collective<B> for Solo {
    fn rank(&self) -> usize {
        0
    }

    fn world_size(&self) -> usize {
        1
    }

    fn all_reduce_sum<const D: usize>(&self, tensor: Tensor<B, D>) -> Result<Tensor<B, D>> {
        Ok(tensor)
    }

    fn traffic(&self) -> Traffic {
        self.traffic.get()
    }
}
