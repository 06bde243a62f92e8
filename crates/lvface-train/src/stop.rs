//! Stopping a run from outside, and explaining a run that stopped because a rank was lost.
//!
//! Schedulers send SIGTERM some time before they kill a job (Slurm's `--signal`, Kubernetes'
//! grace period); an interactive user presses Ctrl-C. Both ask the run to stop at the next step
//! boundary with a checkpoint. Ranks may receive the signal at different steps (or only one of
//! them may), so the ranks agree at every step boundary whether any of them was asked, and all
//! stop at the same step.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use anyhow::Result;
use burn::prelude::*;
use lvface_pfc::{Collective, PfcError};

use crate::checkpoint;

/// The exit status of a run stopped by SIGTERM or SIGINT after its checkpoint was written:
/// 128 + 15, what shells report for a process ended by SIGTERM, but from a normal exit.
pub const STOPPED_EXIT_CODE: i32 = 143;

/// Set when the process is asked to stop; read at every step boundary.
pub fn stop_requested() -> &'static Arc<AtomicBool> {
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    FLAG.get_or_init(|| Arc::new(AtomicBool::new(false)))
}

/// Makes SIGTERM and SIGINT set [`stop_requested`] instead of ending the process; a second one
/// ends it at once (exit status 130 or 143, no checkpoint).
pub fn stop_on_signals() -> std::io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let flag = stop_requested();
    for (signal, status) in [(SIGTERM, 143), (SIGINT, 130)] {
        // Registered first, so that it sees the flag as it was before this signal set it.
        signal_hook::flag::register_conditional_shutdown(signal, status, Arc::clone(flag))?;
        signal_hook::flag::register(signal, Arc::clone(flag))?;
    }
    Ok(())
}

/// Whether any rank was asked to stop. One all-reduce of one number; none with a single rank.
pub(crate) fn any_rank_asked_to_stop<B: Backend, C: Collective<B>>(
    comm: &C,
    device: &B::Device,
) -> Result<bool> {
    let asked = stop_requested().load(Ordering::SeqCst);
    if comm.world_size() == 1 {
        return Ok(asked);
    }
    let flag = Tensor::<B, 1>::from_floats([f32::from(u8::from(asked))], device);
    let asked = comm.all_reduce_sum(flag)?.into_scalar().elem::<f32>();
    Ok(asked > 0.0)
}

/// `err`, met at `step` (counted from 1), with what to do next: when a rank of the group is gone,
/// which rank, and the checkpoint to resume every rank from.
pub(crate) fn at_step(err: anyhow::Error, step: u64, run_dir: &Path) -> anyhow::Error {
    let lost = err
        .chain()
        .find_map(|e| match e.downcast_ref::<PfcError>() {
            Some(PfcError::RankLost { lost, .. }) => Some(*lost),
            _ => None,
        });
    let Some(lost) = lost else {
        return err.context(format!("step {step}"));
    };
    let resume = match checkpoint::latest(run_dir) {
        Ok(Some(dir)) => format!(
            "resume from checkpoint {} by starting every rank again with --resume {}",
            dir.display(),
            run_dir.display()
        ),
        Ok(None) => "no checkpoint was written yet: start the run again".into(),
        Err(e) => format!("the latest checkpoint cannot be read: {e:#}"),
    };
    err.context(format!("step {step}: rank {lost} was lost; {resume}"))
}
