//! [`EpochIter`]: a loader's batches of one epoch, put back in order as the workers finish them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::batch::Batch;
use crate::error::{DataError, Result};

/// The batches of one epoch on one rank, in order; dropping it stops the workers.
pub struct EpochIter {
    rx: Option<Receiver<(usize, Result<Batch>)>>,
    pending: BTreeMap<usize, Result<Batch>>,
    next: usize,
    total: usize,
    workers: Vec<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

impl EpochIter {
    /// The iterator over the `total` batches that `workers` send on `rx`, in any order.
    pub(crate) fn new(
        rx: Receiver<(usize, Result<Batch>)>,
        total: usize,
        workers: Vec<JoinHandle<()>>,
        stop: Arc<AtomicBool>,
    ) -> Self {
        Self {
            rx: Some(rx),
            pending: BTreeMap::new(),
            next: 0,
            total,
            workers,
            stop,
        }
    }

    /// Number of batches this epoch yields in all.
    pub fn total(&self) -> usize {
        self.total
    }
}

impl Iterator for EpochIter {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Result<Batch>> {
        if self.next >= self.total {
            return None;
        }
        let rx = self.rx.as_ref()?;
        let batch = loop {
            if let Some(batch) = self.pending.remove(&self.next) {
                break batch;
            }
            match rx.recv() {
                Ok((b, batch)) => {
                    self.pending.insert(b, batch);
                }
                // Every worker is gone with batches still owed: say so rather than end early.
                Err(_) => {
                    let error = DataError::Loader {
                        reason: format!(
                            "the workers stopped before batch {} of {}",
                            self.next, self.total
                        ),
                    };
                    self.next = self.total;
                    return Some(Err(error));
                }
            }
        };
        self.next += 1;
        if batch.is_err() {
            // After an error the epoch ends: later batches would be out of step with the error.
            self.next = self.total;
        }
        Some(batch)
    }
}

impl Drop for EpochIter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Dropping the receiver unblocks workers waiting to send.
        self.rx = None;
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}
