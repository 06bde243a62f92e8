//! [`BurnCollective`]: [`Collective`] on burn-collective with in-process peers (one thread per
//! device), or on a TCP ring between processes (one process per device, on one node or several),
//! and [`Launch`], the torchrun-style environment that describes the latter.
//!
//! Between processes the all-reduce does not use burn-collective: its global mode (WebSocket,
//! through its orchestrator) stalls in the second all-reduce of every run with 0.21 (see
//! `tcp_ring.rs` and `docs/distributed.md`).

use std::marker::PhantomData;
use std::sync::Mutex;

use burn::prelude::*;
use burn::tensor::TensorPrimitive;
use burn_collective::{
    all_reduce, finish_collective, register, AllReduceStrategy, CollectiveConfig, PeerId,
    ReduceOperation,
};

use crate::collective::{Collective, Traffic, TrafficCounter};
use crate::error::{PfcError, Result};
use crate::run_token::{is_loopback, RunToken};
use crate::tcp_ring::{RingConfig, RingFault, TcpRing, JOIN_TIMEOUT};

/// One rank of a group: a burn-collective peer ([`local`](Self::local)) or one process of a TCP
/// ring ([`global`](Self::global)). Dropping it leaves the group.
///
/// burn-collective keeps one server per backend type in the process, so a process takes part in
/// one local group per backend at a time.
#[derive(Debug)]
pub struct BurnCollective<B: Backend> {
    peer: PeerId,
    rank: usize,
    world: usize,
    traffic: TrafficCounter,
    /// The connections of a global group; `None` for burn-collective peers.
    ring: Option<Mutex<TcpRing>>,
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

    /// Joins a group of one process per rank described by `launch`: rank 0 runs the rendezvous
    /// on `MASTER_PORT`, every rank listens on [`Launch::data_port`] and connects to the next
    /// rank of a ring over TCP. Blocks until every rank has joined (at most 5 minutes).
    ///
    /// The all-reduce copies the tensor to the host, sums it around the ring in f32 and copies
    /// the result back to `device`'s backend.
    pub fn global(launch: &Launch, device: B::Device) -> Result<Self> {
        if launch.world_size == 1 {
            return Self::local(0, 1, device);
        }
        let config = RingConfig {
            rank: launch.rank,
            world: launch.world_size,
            master_addr: launch.master_addr.clone(),
            master_port: launch.master_port,
            node_addr: launch.node_addr.clone(),
            data_port: launch.data_port(),
            bind_addr: launch.bind_addr.clone(),
            token: launch.token.clone(),
            timeout: JOIN_TIMEOUT,
        };
        let ring = TcpRing::join(&config).map_err(|e| {
            PfcError::Launch(format!(
                "rank {} of {} cannot join the group at {}:{}: {e}",
                launch.rank, launch.world_size, launch.master_addr, launch.master_port
            ))
        })?;
        Ok(Self {
            peer: PeerId::from(launch.rank),
            rank: launch.rank,
            world: launch.world_size,
            traffic: TrafficCounter::default(),
            ring: Some(Mutex::new(ring)),
            _backend: PhantomData,
        })
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
            ring: None,
            _backend: PhantomData,
        })
    }

    /// The element-wise sum over the ranks of a TCP ring, through host memory in f32.
    fn ring_all_reduce_sum<const D: usize>(
        &self,
        ring: &Mutex<TcpRing>,
        tensor: Tensor<B, D>,
    ) -> Result<Tensor<B, D>> {
        let dims = tensor.dims();
        let device = tensor.device();
        let dtype = tensor.dtype();
        let failed = |reason: String| PfcError::Collective {
            op: "all_reduce",
            rank: self.rank,
            reason,
        };
        let mut values = tensor
            .into_data()
            .convert::<f32>()
            .into_vec::<f32>()
            .map_err(|e| failed(format!("{e:?}")))?;
        ring.lock()
            .map_err(|_| failed("an earlier all-reduce panicked".into()))?
            .all_reduce_sum(&mut values)
            .map_err(|fault| match fault {
                RingFault::Lost { rank, how } => PfcError::RankLost {
                    op: "all_reduce",
                    rank: self.rank,
                    lost: rank,
                    how,
                },
                failed_elsewhere @ RingFault::Failed { .. } => failed(failed_elsewhere.to_string()),
            })?;
        let len = values.len();
        let data = TensorData::new(values, [len]);
        Ok(Tensor::<B, 1>::from_data(data, (&device, dtype)).reshape(dims))
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
        if let Some(ring) = &self.ring {
            return self.ring_all_reduce_sum(ring, tensor);
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
        // A ring closes its sockets as it drops.
        if self.ring.is_none() {
            // Leaving can only fail if the group is already gone; nothing is left to release
            // then.
            let _ = finish_collective::<B>(self.peer);
        }
    }
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
    /// `MASTER_ADDR`: the host of rank 0, where the rendezvous listens.
    pub master_addr: String,
    /// `MASTER_PORT`: the rendezvous' port; rank `r` receives its ring traffic on
    /// `MASTER_PORT + 1 + r`.
    pub master_port: u16,
    /// `LVFACE_NODE_ADDR`: the address other nodes reach this one at. It defaults to
    /// `MASTER_ADDR` when every rank runs on one node (`LOCAL_WORLD_SIZE == WORLD_SIZE`).
    pub node_addr: String,
    /// `LVFACE_BIND_ADDR`: the address this process listens on, when it is not the one the
    /// others reach it at (behind NAT, in a container: `0.0.0.0`). Unset: rank 0's rendezvous
    /// listens on `MASTER_ADDR`, every rank's ring port on `node_addr`.
    pub bind_addr: Option<String>,
    /// `LVFACE_RUN_TOKEN` or `LVFACE_RUN_TOKEN_FILE`: the secret every rank proves it holds.
    /// Required unless every address is a loopback one.
    pub token: RunToken,
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
        let bind_addr = var("LVFACE_BIND_ADDR");
        let token = RunToken::from_vars(&var)?;
        let listens = [Some(&master_addr), Some(&node_addr), bind_addr.as_ref()];
        if world_size > 1 && !token.is_set() && !listens.iter().flatten().all(|h| is_loopback(h)) {
            return Err(PfcError::Launch(format!(
                "the ranks listen on {} (not loopback only), where any machine that reaches \
                 it could join the run: give every rank the same secret in LVFACE_RUN_TOKEN \
                 (for example `export LVFACE_RUN_TOKEN=$(openssl rand -hex 16)` where the job \
                 is submitted), or in a file named by LVFACE_RUN_TOKEN_FILE",
                bind_addr.as_ref().unwrap_or(&node_addr)
            )));
        }
        Ok(Some(Self {
            rank,
            world_size,
            local_rank,
            master_addr,
            master_port,
            node_addr,
            bind_addr,
            token,
        }))
    }

    /// The port this rank receives its ring traffic on (from the previous rank).
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
    fn global_ranks_in_threads_sum_keeping_shape_and_dtype() {
        use burn::backend::Flex;
        use burn::tensor::DType;
        let world = 3;
        let port = 24_000 + (std::process::id() % 1_000) as u16 * 7;
        let results = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..world)
                .map(|rank| {
                    scope.spawn(move || {
                        let launch = launch(&[
                            ("WORLD_SIZE", &world.to_string()),
                            ("RANK", &rank.to_string()),
                            ("MASTER_PORT", &port.to_string()),
                        ])
                        .unwrap()
                        .unwrap();
                        let device = Default::default();
                        let comm = BurnCollective::<Flex>::global(&launch, device).unwrap();
                        let values: Vec<f32> = (0..6).map(|i| (rank * 10 + i) as f32).collect();
                        let data = TensorData::new(values, [2, 3]);
                        let single = Tensor::<Flex, 2>::from_data(data.clone(), &device);
                        let half = Tensor::<Flex, 2>::from_data(data, (&device, DType::F16));
                        let single = comm.all_reduce_sum(single).unwrap();
                        let half = comm.all_reduce_sum(half).unwrap();
                        assert_eq!(comm.traffic().calls, 2);
                        (single.dims(), half.dtype(), to_f32(single), to_f32(half))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .collect::<Vec<_>>()
        });
        let want: Vec<f32> = (0..6).map(|i| (30 + 3 * i) as f32).collect();
        for (dims, half_dtype, single, half) in results {
            assert_eq!(dims, [2, 3]);
            assert_eq!(half_dtype, DType::F16);
            assert_eq!(single, want);
            assert_eq!(half, want);
        }
    }

    fn to_f32<BB: Backend>(tensor: Tensor<BB, 2>) -> Vec<f32> {
        tensor.into_data().convert::<f32>().into_vec().unwrap()
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
            ("LVFACE_RUN_TOKEN", "0123456789abcdef0123"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(got.token, RunToken::new("0123456789abcdef0123").unwrap());
        assert_eq!(got.bind_addr, None);
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

    /// Ports that other machines can reach need the run's token; loopback ones do not.
    #[test]
    fn a_run_reachable_from_other_machines_needs_a_token() {
        let across = [
            ("WORLD_SIZE", "2"),
            ("RANK", "0"),
            ("MASTER_ADDR", "10.0.0.1"),
        ];
        let err = launch(&across).unwrap_err().to_string();
        assert!(err.contains("LVFACE_RUN_TOKEN"), "{err}");
        let local = [("WORLD_SIZE", "2"), ("RANK", "0")];
        assert!(!launch(&local).unwrap().unwrap().token.is_set());
        let mut open = local.to_vec();
        open.push(("LVFACE_BIND_ADDR", "0.0.0.0"));
        let err = launch(&open).unwrap_err().to_string();
        assert!(err.contains("0.0.0.0"), "{err}");
        open.push(("LVFACE_RUN_TOKEN", "0123456789abcdef"));
        let got = launch(&open).unwrap().unwrap();
        assert_eq!(got.bind_addr.as_deref(), Some("0.0.0.0"));
        assert!(got.token.is_set());
        // One rank alone has no ports at all.
        let alone = [
            ("WORLD_SIZE", "1"),
            ("RANK", "0"),
            ("MASTER_ADDR", "10.0.0.1"),
        ];
        assert!(launch(&alone).unwrap().is_some());
    }
}
