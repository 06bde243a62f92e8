//! What a run records of each step as it trains: one line of `metrics.jsonl` (rank 0), the
//! progress bar or lines (rank 0), the images per second since the last logged line, and the
//! loss history the run's summary returns. Every rank keeps a `StepLog`, so that the loop reads
//! the same on each; ranks other than 0 only keep the loss history.
// The run announces itself on stdout before the bar starts.
#![allow(clippy::print_stdout)]

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::Result;

use crate::progress::{Progress, ProgressOutput};
use crate::report;

/// The figures of one finished (or skipped) step.
pub(crate) struct StepFigures<'a> {
    /// Steps done, this one included.
    pub step: u64,
    /// The epoch the step belongs to.
    pub epoch: u64,
    /// The curriculum's phase index and its name (`early`, `stable`).
    pub phase: (usize, &'a str),
    /// The step's loss; NaN for a skipped step.
    pub loss: f64,
    /// The schedule's learning rate of the step.
    pub lr: f64,
    /// The backbone's gradient norm before clipping; NaN for a skipped step.
    pub grad_norm: f64,
    /// Images the step trained on, over all ranks.
    pub images: usize,
}

/// The per-step record of a run; see the module doc.
pub(crate) struct StepLog {
    metrics: Option<File>,
    progress: Progress,
    output: ProgressOutput,
    /// When the current images/s window started and the images since then.
    window: (Instant, usize),
    losses: Vec<(u64, f64)>,
    log_every: u64,
    stop_at: u64,
    lead: bool,
}

impl StepLog {
    /// Rank `lead`'s log of a run of `total_steps` resuming after `start_step` and going on to
    /// `stop_at`, with a plain line every `log_every` steps. The lead rank prints `announcement`
    /// before the bar appears and opens `metrics.jsonl` without the lines after `start_step`.
    pub(crate) fn open(
        run_dir: &Path,
        lead: bool,
        (start_step, stop_at, total_steps): (u64, u64, u64),
        log_every: u64,
        announcement: &str,
    ) -> Result<Self> {
        let metrics = if lead {
            Some(report::open_metrics(run_dir, start_step)?)
        } else {
            None
        };
        let progress = Progress::new(total_steps, start_step);
        if lead {
            println!("{announcement}");
        }
        // After the announcement, which the bar would otherwise sit above.
        let output = ProgressOutput::new(lead, total_steps, start_step);
        Ok(Self {
            metrics,
            progress,
            output,
            window: (Instant::now(), 0),
            losses: Vec::new(),
            log_every,
            stop_at,
            lead,
        })
    }

    /// Records a step: the loss history, the metrics line, the bar or (when due) a plain line.
    pub(crate) fn record(&mut self, figures: &StepFigures) -> Result<()> {
        let StepFigures {
            step,
            epoch,
            phase: (phase_index, phase_name),
            loss,
            lr,
            grad_norm,
            images,
        } = *figures;
        self.losses.push((step, loss));
        self.window.1 += images;
        let images_per_s = self.window.1 as f64 / self.window.0.elapsed().as_secs_f64().max(1e-9);
        if let Some(metrics) = self.metrics.as_mut() {
            writeln!(
                metrics,
                "{}",
                serde_json::json!({
                    "step": step, "epoch": epoch, "phase": phase_index,
                    "loss": finite_or_null(loss), "lr": lr,
                    "grad_norm": finite_or_null(grad_norm), "images_per_s": images_per_s,
                })
            )?;
        }
        let due = step % self.log_every == 0 || step == self.stop_at;
        if self.lead {
            let line =
                self.progress
                    .line(step, epoch, phase_name, loss, lr, grad_norm, images_per_s);
            self.output.show(&line, step, due);
        }
        if due {
            self.restart_window();
        }
        Ok(())
    }

    /// Starts a new images/s window, after time that was not training (a verification).
    pub(crate) fn restart_window(&mut self) {
        self.window = (Instant::now(), 0);
    }

    /// Runs `print` with the bar out of the way.
    pub(crate) fn suspend<R>(&self, print: impl FnOnce() -> R) -> R {
        self.output.suspend(print)
    }

    /// Writes out the metrics lines (at each epoch's end).
    pub(crate) fn flush(&mut self) -> Result<()> {
        if let Some(metrics) = self.metrics.as_mut() {
            metrics.flush()?;
        }
        Ok(())
    }

    /// Leaves the bar where it is for what the run prints after it; returns the loss history.
    pub(crate) fn finish(mut self) -> Result<Vec<(u64, f64)>> {
        self.flush()?;
        self.output.finish();
        Ok(self.losses)
    }
}

fn finite_or_null(value: f64) -> serde_json::Value {
    if value.is_finite() {
        value.into()
    } else {
        serde_json::Value::Null
    }
}
