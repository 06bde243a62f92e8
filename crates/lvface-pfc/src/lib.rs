//! The sharded classification layer of lvface: Partial FC across devices, processes and nodes,
//! and the data-parallel gradient exchange of the backbone.
//!
//! - [`Collective`]: rank, world size, all-gather, all-reduce (sum, max), broadcast, barrier,
//!   all composed from one all-reduce sum; [`BurnCollective`] runs it on burn-collective with
//!   in-process peers ([`run_local_peers`]), or on a TCP ring with one process per device
//!   ([`Launch`], torchrun's environment), [`Solo`] on one device.
//! - [`PartialFc`]: each rank's shard of class centres ([`ClassShard`], insightface's
//!   arithmetic), negative-class sampling per shard, and the softmax cross-entropy distributed
//!   over shards, giving each rank the gradient of its embeddings and of its centre shard.
//! - [`all_reduce_gradients`]: the backbone's gradients summed over ranks.
//! - [`checkpoint`]: one file per shard plus a manifest, re-sharded on load.
//!
//! Communication per step and memory per rank are in `docs/distributed.md` and
//! `docs/scaling.md`; [`scaling`] computes them.
//!
//! ```ignore
//! let pfc = PartialFcConfig { sample_rate: 0.3, seed: 2048 }.init(comm.rank(), comm.world_size(), classes)?;
//! let embeddings = backbone.forward(images);                    // [b, 512], this rank's batch
//! let out = pfc.step::<B, _>(embeddings.clone().inner(), &labels, centres.val().inner(),
//!                            ShardLoss::Margin(margin), step, &comm)?;
//! let grads = (embeddings * Tensor::from_inner(out.embedding_grad)).sum().backward();
//! let grads = all_reduce_gradients(GradientsParams::from_grads(grads, &backbone), &backbone, &comm)?;
//! ```

mod burn_collective;
pub mod checkpoint;
mod collective;
mod data_parallel;
mod error;
mod partial_fc;
mod peers;
mod rendezvous;
mod run_token;
pub mod scaling;
mod shard;
mod tcp_ring;

pub use burn_collective::{BurnCollective, Launch};
pub use collective::{Collective, Solo, Traffic, TrafficCounter};
pub use data_parallel::all_reduce_gradients;
pub use error::{PfcError, Result};
pub use partial_fc::{
    PartialFc, PartialFcConfig, ShardLoss, ShardStep, CONSTANT_SHIFT_LIMIT, MAX_CLASSES,
};
pub use peers::run_local_peers;
pub use run_token::{RunToken, MIN_TOKEN_BYTES};
pub use shard::ClassShard;
