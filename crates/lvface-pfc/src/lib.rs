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
//! ```
//! use burn::backend::{Autodiff, Flex};
//! use burn::nn::LinearConfig;
//! use burn::optim::GradientsParams;
//! use burn::prelude::*;
//! use burn::tensor::Distribution;
//! use lvface_loss::CombinedMarginConfig;
//! use lvface_pfc::{all_reduce_gradients, PartialFcConfig, ShardLoss, Solo};
//!
//! type B = Autodiff<Flex>;
//! let device = Default::default();
//! let comm = Solo::new(); // or a BurnCollective of several ranks
//! let (rank, world_size, classes) = (0, 1, 1000);
//! let pfc = PartialFcConfig { sample_rate: 0.3, ..Default::default() }.init(rank, world_size, classes)?;
//! let backbone = LinearConfig::new(32, 16).init::<B>(&device); // stands in for the ViT
//! let centres = Tensor::<B, 2>::random([pfc.shard().num_local(), 16], Distribution::Normal(0.0, 0.01), &device);
//!
//! let images = Tensor::<B, 2>::random([8, 32], Distribution::Default, &device);
//! let labels: Vec<i64> = (0..8).map(|i| i * 100).collect();
//! let embeddings = backbone.forward(images); // [8, 16], this rank's batch
//! let margin = ShardLoss::Margin(CombinedMarginConfig::arcface(0.5).init());
//! let out = pfc.step::<B, _>(embeddings.clone().inner(), &labels, centres.inner(), margin, 0, &comm)?;
//! assert!(out.loss.is_finite());
//! assert_eq!(out.centre_grad.dims(), [1000, 16]);
//!
//! let grads = (embeddings * Tensor::from_inner(out.embedding_grad)).sum().backward();
//! let grads = GradientsParams::from_grads(grads, &backbone);
//! let grads = all_reduce_gradients(grads, &backbone, &comm)?; // summed over ranks
//! assert!(grads.get::<Flex, 2>(backbone.weight.id).is_some());
//! # Ok::<(), lvface_pfc::PfcError>(())
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
pub use collective::{broadcast_bytes, Collective, Solo, Traffic, TrafficCounter};
pub use data_parallel::all_reduce_gradients;
pub use error::{PfcError, Result};
pub use partial_fc::{
    PartialFc, PartialFcConfig, ShardLoss, ShardSoftmax, ShardStep, CONSTANT_SHIFT_LIMIT,
    MAX_CLASSES,
};
pub use peers::{run_local_peers, run_peers};
pub use run_token::{RunToken, MIN_TOKEN_BYTES};
pub use shard::ClassShard;
