//! [`run_local_peers`]: `N` in-process ranks, one thread each, on one machine; [`run_peers`]:
//! the same with any transport.

use std::sync::Mutex;

use burn::prelude::*;

use crate::burn_collective::BurnCollective;
use crate::error::Result;

/// burn-collective has one server per backend type per process, and NCCL one communicator per
/// device and group: groups must not overlap.
static GROUP: Mutex<()> = Mutex::new(());

/// Runs `body` on `world` ranks, rank `r` on `devices[r % devices.len()]`, each with its own
/// [`BurnCollective`], and returns their results in rank order. Groups started from several
/// threads run one after the other.
///
/// # Panics
/// If `devices` is empty, or a rank panics.
pub fn run_local_peers<B, T, F>(world: usize, devices: &[B::Device], body: F) -> Result<Vec<T>>
where
    B: Backend,
    T: Send,
    F: Fn(BurnCollective<B>) -> T + Sync,
{
    run_peers(
        world,
        devices,
        |rank, device| BurnCollective::<B>::local(rank, world, device),
        body,
    )
}

/// [`run_local_peers`] with the collective of each rank made by `join(rank, device)`, called on
/// that rank's thread: every rank joins at once, as transports that block until the whole
/// group is there (burn-collective, NCCL) need.
///
/// # Panics
/// If `devices` is empty, or a rank panics.
pub fn run_peers<D, C, T, J, F>(world: usize, devices: &[D], join: J, body: F) -> Result<Vec<T>>
where
    D: Clone + Send + Sync,
    T: Send,
    J: Fn(usize, D) -> Result<C> + Sync,
    F: Fn(C) -> T + Sync,
{
    assert!(!devices.is_empty(), "no device to run peers on");
    let _group = GROUP
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..world)
            .map(|rank| {
                let device = devices[rank % devices.len()].clone();
                let (join, body) = (&join, &body);
                scope.spawn(move || Ok(body(join(rank, device)?)))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a peer panicked"))
            .collect()
    })
}
