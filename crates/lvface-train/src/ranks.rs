//! What the ranks of one run must agree on.
//!
//! A rank that fails alone (a corrupt image, a full disk) would leave the others waiting in
//! their next collective forever. [`agree`] turns every fallible step that precedes a collective
//! into one: each rank contributes a failure flag to an all-reduce, and when any rank failed,
//! every rank returns an error, so the whole run stops with the failing rank's message.

use std::sync::Mutex;

use anyhow::Result;
use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use lvface_pfc::Collective;

/// In-process ranks share the backend's random generator (Flex's is one per process): a rank
/// holds this while it seeds the generator and draws from it (initialisation, masking, drop
/// path), so that every draw depends on its seed alone and a run is reproducible.
pub(crate) static GENERATOR: Mutex<()> = Mutex::new(());

/// The error of a rank that stopped because another rank failed; the failing rank reports its
/// own error.
#[derive(Debug, thiserror::Error)]
#[error("rank {rank} stopped: {failed} other rank(s) failed")]
pub struct PeerFailed {
    /// This rank.
    pub rank: usize,
    /// How many ranks failed.
    pub failed: usize,
}

/// `result` on this rank, or an error on every rank when any rank's `result` is an error.
/// One all-reduce of one number; nothing with a single rank.
pub(crate) fn agree<T, B: Backend, C: Collective<B>>(
    comm: &C,
    device: &B::Device,
    result: Result<T>,
) -> Result<T> {
    if comm.world_size() == 1 {
        return result;
    }
    let flag = if result.is_err() { 1.0f32 } else { 0.0 };
    let failed = comm
        .all_reduce_sum(Tensor::<B, 1>::from_floats([flag], device))?
        .into_scalar()
        .elem::<f32>()
        .round() as usize;
    match result {
        Ok(_) if failed > 0 => Err(PeerFailed {
            rank: comm.rank(),
            failed,
        }
        .into()),
        other => other,
    }
}

/// The sum of `count` over the ranks, on every rank (exact below 2^24; counts of skipped
/// images stay far below). One all-reduce; nothing with a single rank.
pub(crate) fn total<B: Backend, C: Collective<B>>(
    comm: &C,
    device: &B::Device,
    count: usize,
) -> Result<usize> {
    if comm.world_size() == 1 {
        return Ok(count);
    }
    let sum = comm.all_reduce_sum(Tensor::<B, 1>::from_floats([count as f32], device))?;
    Ok(sum.into_scalar().elem::<f32>().round() as usize)
}

/// Rank 0's `result` on every rank: when rank 0 failed, every rank returns its error message,
/// word for word (flattened to one line), so that a launch whose ranks print their errors side by
/// side shows one reason. The other ranks' `result` is ignored. Two broadcasts (the message's
/// length, then its bytes) when rank 0 failed, one when it did not; nothing with a single rank.
pub(crate) fn lead_decides<B: Backend, C: Collective<B>>(
    comm: &C,
    device: &B::Device,
    result: Result<()>,
) -> Result<()> {
    if comm.world_size() == 1 {
        return result;
    }
    // A message far longer than any of ours is cut, so that its length stays exact in f32.
    const LONGEST: usize = 1 << 16;
    let (failed, mut message) = match (comm.rank(), result) {
        (0, Err(err)) => (true, format!("{err:#}").into_bytes()),
        _ => (false, Vec::new()),
    };
    message.truncate(LONGEST);
    // `len + 1`, so that an empty message still reads as a failure.
    let header = if failed { message.len() + 1 } else { 0 } as f32;
    let header = comm
        .broadcast(Tensor::<B, 1>::from_floats([header], device), 0)?
        .into_scalar()
        .elem::<f32>() as usize;
    let Some(len) = header.checked_sub(1) else {
        return Ok(());
    };
    if len > 0 {
        let bytes: Vec<f32> = if failed {
            message.iter().map(|&b| f32::from(b)).collect()
        } else {
            vec![0.0; len]
        };
        let bytes = comm
            .broadcast(
                Tensor::<B, 1>::from_data(TensorData::new(bytes, [len]), device),
                0,
            )?
            .into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .expect("float tensor");
        message = bytes.iter().map(|&b| b as u8).collect();
    }
    Err(anyhow::anyhow!("{}", String::from_utf8_lossy(&message)))
}

/// The outcome of a run on several in-process ranks: rank 0's result, or the first error that
/// is a failure of its own (not a [`PeerFailed`]).
pub(crate) fn first_failure<T>(results: Vec<Result<T>>) -> Result<T> {
    let mut results: Vec<Result<T>> = results;
    if let Some(i) = results
        .iter()
        .position(|r| r.as_ref().is_err_and(|e| !e.is::<PeerFailed>()))
    {
        return results.swap_remove(i);
    }
    results.swap_remove(0)
}

/// An error on every rank when the ranks do not hold the same `module` (processes launched with
/// different configurations or checkpoints): a fingerprint of its weights, `(Σ w, Σ w²)`, is
/// gathered and compared.
///
/// The sums are taken on the host, in f64, in one order: on the GPU backends a whole-tensor sum
/// is an atomic add whose order changes from run to run, so two ranks holding the same bits
/// could print different fingerprints.
pub(crate) fn check_same_weights<B, M, C>(module: &M, comm: &C) -> Result<()>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    C: Collective<B::InnerBackend>,
{
    if comm.world_size() == 1 {
        return Ok(());
    }
    #[derive(Default)]
    struct Fingerprint {
        sum: f64,
        squares: f64,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for Fingerprint {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let values = param.val().inner().into_data().convert::<f32>();
            for &w in values.as_slice::<f32>().expect("converted to f32") {
                self.sum += f64::from(w);
                self.squares += f64::from(w) * f64::from(w);
            }
        }
    }
    // A module without parameters is the same everywhere.
    let Some(device) = module.devices().first().cloned() else {
        return Ok(());
    };
    let mut print = Fingerprint::default();
    module.visit(&mut print);
    let mine = Tensor::<B::InnerBackend, 1>::from_data(
        TensorData::new(vec![print.sum as f32, print.squares as f32], [2]),
        &device,
    );
    let all: Vec<f32> = comm
        .all_gather(mine)?
        .into_data()
        .convert::<f32>()
        .to_vec()
        .expect("float tensor");
    if let Some(rank) = (0..comm.world_size()).find(|r| all[2 * r..2 * r + 2] != all[..2]) {
        anyhow::bail!(
            "rank {rank} holds other backbone weights than rank 0 (fingerprints {:?} and {:?}); \
             every rank must start from the same configuration and checkpoint",
            &all[2 * rank..2 * rank + 2],
            &all[..2]
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use burn::backend::{Autodiff, Flex};
    use burn::nn::{Linear, LinearConfig};
    use lvface_pfc::run_local_peers;

    use super::*;

    type B = Autodiff<Flex>;

    /// A small module whose weights depend on `seed` only.
    fn module(seed: u64) -> Linear<B> {
        let device = Default::default();
        <B as Backend>::seed(&device, seed);
        LinearConfig::new(16, 8).init::<B>(&device)
    }

    #[test]
    fn ranks_with_the_same_weights_pass_and_a_rank_with_others_is_named() {
        // Made once, before the ranks start: seeding is per device, and the ranks share it.
        let (same, other) = (module(3), module(4));
        let results = run_local_peers::<Flex, _, _>(3, &[Default::default()], |comm| {
            check_same_weights::<B, _, _>(&same, &comm).map_err(|e| e.to_string())
        })
        .unwrap();
        assert!(results.iter().all(Result::is_ok), "{results:?}");

        let results = run_local_peers::<Flex, _, _>(3, &[Default::default()], |comm| {
            let mine = if comm.rank() == 2 { &other } else { &same };
            check_same_weights::<B, _, _>(mine, &comm).map_err(|e| e.to_string())
        })
        .unwrap();
        for result in results {
            let error = result.unwrap_err();
            assert!(
                error.starts_with("rank 2 holds other backbone weights than rank 0"),
                "{error}"
            );
        }
    }
}
