//! [`BurnCollective`]: [`Collective`] on burn-collective, with in-process peers (one thread per
//! device) or one process per device across nodes (WebSocket, through burn-collective's global
//! orchestrator), and [`Launch`], the torchrun-style environment that describes the latter.

use std::marker::PhantomData;
use std::str::FromStr;

use burn::prelude::*;
use burn::tensor::TensorPrimitive;
use burn_collective::{
    all_reduce, finish_collective, register, AllReduceStrategy, CollectiveConfig, PeerId,
    ReduceOperation,
};

use crate::collective::{Collective, Traffic, TrafficCounter};
use crate::error::{PfcError, Result};

/// One rank of a burn-collective group. Dropping it leaves the group.
///
/// burn-collective keeps one server per backend type in the process, so a process takes part in
/// one group per backend at a time.
#[derive(Debug)]
pub struct BurnCollective<B: Backend> {
    peer: PeerId,
    rank: usize,
    world: usize,
    traffic: TrafficCounter,
    _backend: PhantomData<B>,
}

impl<B: Backend> BurnCollective<B> {
    /// Joins a group of `world` peers in this process as `rank`. Blocks until all of them have
    /// joined, so call it from each peer's thread.
    pub fn local(rank: usize, world: usize, device: B::Device) -> Result<Self> {
        if rank >= world {
            return Err(PfcError::invalid(
                "rank",
                format!("must be below the world size {world}"),
                rank,
            ));
        }
        let config = CollectiveConfig::default()
            .with_num_devices(world)
            .with_local_all_reduce_strategy(AllReduceStrategy::Tree(2));
        Self::join(rank, world, device, config)
    }

    /// Joins a group of one process per rank described by `launch` (the orchestrator is started
    /// by rank 0). Blocks until every rank has joined.
    pub fn global(launch: &Launch, device: B::Device) -> Result<Self> {
        if launch.world_size == 1 {
            return Self::local(0, 1, device);
        }
        if launch.rank == 0 {
            start_orchestrator(launch.master_port)?;
        }
        let address = |host: &str, port: u16| {
            burn_communication::Address::from_str(&format!("ws://{host}:{port}"))
                .map_err(|e| PfcError::Launch(format!("bad address {host}:{port}: {e}")))
        };
        let config = CollectiveConfig::default()
            .with_num_devices(1)
            .with_num_nodes(launch.world_size as u32)
            .with_global_address(address(&launch.master_addr, launch.master_port)?)
            .with_node_address(address(&launch.node_addr, launch.data_port())?)
            .with_data_service_port(launch.data_port())
            .with_global_all_reduce_strategy(AllReduceStrategy::Ring);
        Self::join(launch.rank, launch.world_size, device, config)
    }

    fn join(
        rank: usize,
        world: usize,
        device: B::Device,
        config: CollectiveConfig,
    ) -> Result<Self> {
        let peer = PeerId::from(rank);
        register::<B>(peer, device, config).map_err(|e| PfcError::Collective {
            op: "register",
            rank,
            reason: format!("{e:?}"),
        })?;
        Ok(Self {
            peer,
            rank,
            world,
            traffic: TrafficCounter::default(),
            _backend: PhantomData,
        })
    }
}

impl<B: Backend> Collective<B> for BurnCollective<B> {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.world
    }

    fn all_reduce_sum<const D: usize>(&self, tensor: Tensor<B, D>) -> Result<Tensor<B, D>> {
        let dims = tensor.dims();
        let len = tensor.shape().num_elements();
        self.traffic.record(len);
        if self.world == 1 {
            return Ok(tensor);
        }
        // A ring all-reduce splits its tensor in one piece per rank: flatten, and pad tensors
        // shorter than the world.
        let padded = len.max(self.world);
        let mut flat = tensor.reshape([len]);
        if padded > len {
            let device = flat.device();
            flat = Tensor::cat(vec![flat, Tensor::zeros([padded - len], &device)], 0);
        }
        let primitive = flat.into_primitive().tensor();
        let reduced = all_reduce::<B>(self.peer, primitive, ReduceOperation::Sum).map_err(|e| {
            PfcError::Collective {
                op: "all_reduce",
                rank: self.rank,
                reason: format!("{e:?}"),
            }
        })?;
        let flat = Tensor::<B, 1>::from_primitive(TensorPrimitive::Float(reduced));
        Ok(flat.slice(0..len).reshape(dims))
    }

    fn traffic(&self) -> Traffic {
        self.traffic.get()
    }
}

impl<B: Backend> Drop for BurnCollective<B> {
    fn drop(&mut self) {
        // Leaving can only fail if the group is already gone; nothing is left to release then.
        let _ = finish_collective::<B>(self.peer);
    }
}

fn start_orchestrator(port: u16) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| PfcError::Launch(format!("cannot start the orchestrator's runtime: {e}")))?;
    std::thread::Builder::new()
        .name("lvface-orchestrator".into())
        .spawn(move || runtime.block_on(burn_collective::start_global_orchestrator(port)))
        .map_err(|e| PfcError::Launch(format!("cannot start the orchestrator thread: {e}")))?;
    Ok(())
}

/// A torchrun-style launch: one process per device, described by the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// `RANK`: this process among all.
    pub rank: usize,
    /// `WORLD_SIZE`: the number of processes.
    pub world_size: usize,
    /// `LOCAL_RANK`: this process among those of its node (it picks the GPU).
    pub local_rank: usize,
    /// `MASTER_ADDR`: the host of rank 0, where the orchestrator listens.
    pub master_addr: String,
    /// `MASTER_PORT`: the orchestrator's port; rank `r` serves its tensors on
    /// `MASTER_PORT + 1 + r`.
    pub master_port: u16,
    /// `LVFACE_NODE_ADDR`: the address other nodes reach this one at. It defaults to
    /// `MASTER_ADDR` when every rank runs on one node (`LOCAL_WORLD_SIZE == WORLD_SIZE`).
    pub node_addr: String,
}

impl Launch {
    /// Reads the launch from the process environment; `None` when `WORLD_SIZE` is not set.
    pub fn from_env() -> Result<Option<Self>> {
        Self::from_vars(|key| std::env::var(key).ok())
    }

    /// Reads the launch from `var` (a lookup of environment variables).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<Self>> {
        let Some(world) = var("WORLD_SIZE") else {
            return Ok(None);
        };
        let number = |key: &str, text: Option<String>| -> Result<usize> {
            let text = text.ok_or_else(|| PfcError::Launch(format!("{key} is not set")))?;
            text.trim().parse().map_err(|_| {
                PfcError::Launch(format!("{key} must be a whole number, got `{text}`"))
            })
        };
        let world_size = number("WORLD_SIZE", Some(world))?;
        let rank = number("RANK", var("RANK"))?;
        let local_rank = number(
            "LOCAL_RANK",
            var("LOCAL_RANK").or_else(|| Some(rank.to_string())),
        )?;
        let local_world = number(
            "LOCAL_WORLD_SIZE",
            var("LOCAL_WORLD_SIZE").or_else(|| Some(world_size.to_string())),
        )?;
        if world_size == 0 || rank >= world_size {
            return Err(PfcError::Launch(format!(
                "RANK={rank} must be below WORLD_SIZE={world_size}"
            )));
        }
        let master_addr = var("MASTER_ADDR").unwrap_or_else(|| "127.0.0.1".into());
        let port = number(
            "MASTER_PORT",
            var("MASTER_PORT").or_else(|| Some("29500".into())),
        )?;
        let master_port = u16::try_from(port)
            .ok()
            .filter(|p| (*p as usize) + world_size < u16::MAX as usize)
            .ok_or_else(|| {
                PfcError::Launch(format!(
                    "MASTER_PORT={port} leaves no room for {world_size} data ports above it"
                ))
            })?;
        let node_addr = match var("LVFACE_NODE_ADDR") {
            Some(addr) => addr,
            None if local_world == world_size => master_addr.clone(),
            None => {
                return Err(PfcError::Launch(
                    "ranks run on several nodes: set LVFACE_NODE_ADDR to the address other \
                     nodes reach this one at"
                        .into(),
                ));
            }
        };
        Ok(Some(Self {
            rank,
            world_size,
            local_rank,
            master_addr,
            master_port,
            node_addr,
        }))
    }

    /// The port this rank serves its tensors on.
    pub fn data_port(&self) -> u16 {
        self.master_port + 1 + self.rank as u16
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn launch(vars: &[(&str, &str)]) -> Result<Option<Launch>> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Launch::from_vars(|k| map.get(k).cloned())
    }

    #[test]
    fn reads_a_torchrun_environment() {
        let got = launch(&[
            ("WORLD_SIZE", "16"),
            ("RANK", "9"),
            ("LOCAL_RANK", "1"),
            ("LOCAL_WORLD_SIZE", "8"),
            ("MASTER_ADDR", "10.0.0.1"),
            ("MASTER_PORT", "29400"),
            ("LVFACE_NODE_ADDR", "10.0.0.2"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(got.rank, 9);
        assert_eq!(got.local_rank, 1);
        assert_eq!(got.world_size, 16);
        assert_eq!(got.data_port(), 29410);
        assert_eq!(got.node_addr, "10.0.0.2");
    }

    #[test]
    fn no_world_size_means_no_launch_and_bad_values_are_named() {
        assert_eq!(launch(&[]).unwrap(), None);
        let err = launch(&[("WORLD_SIZE", "2"), ("RANK", "2")]).unwrap_err();
        assert!(err.to_string().contains("RANK=2"), "{err}");
        let err = launch(&[("WORLD_SIZE", "two"), ("RANK", "0")]).unwrap_err();
        assert!(err.to_string().contains("WORLD_SIZE"), "{err}");
        let err = launch(&[("WORLD_SIZE", "2")]).unwrap_err();
        assert!(err.to_string().contains("RANK is not set"), "{err}");
        let err = launch(&[
            ("WORLD_SIZE", "4"),
            ("RANK", "0"),
            ("LOCAL_WORLD_SIZE", "2"),
        ])
        .unwrap_err();
        assert!(err.to_string().contains("LVFACE_NODE_ADDR"), "{err}");
    }
}
