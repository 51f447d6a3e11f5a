//! A shard's write queue, as both stores' group-commit writers use it: the handlers'
//! side (a sender that closes on shutdown) and the writer's side (take a batch).

use super::StoreError;
use std::sync::Mutex;
use tokio::sync::mpsc;

/// The handlers' way into one shard's writer. Closing it lets the writer drain its
/// queue and stop.
pub struct WriterSlot<T>(Mutex<Option<mpsc::Sender<T>>>);

impl<T> WriterSlot<T> {
    pub fn new(sender: mpsc::Sender<T>) -> Self {
        WriterSlot(Mutex::new(Some(sender)))
    }

    /// Queue `job`, or refuse it at once when the queue is full: a caller told to come
    /// back in a second does better than one left waiting out the write timeout, and
    /// the queue's bound is then the bound on waiting callers too.
    pub fn send(&self, job: T) -> Result<(), StoreError> {
        let sender = self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| StoreError::Unavailable("shutting down".into()))?;
        sender.try_send(job).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                metrics::counter!("paytool_write_rejected_total", "reason" => "queue_full")
                    .increment(1);
                StoreError::Overloaded
            }
            mpsc::error::TrySendError::Closed(_) => {
                StoreError::Unavailable("the shard writer has stopped".into())
            }
        })
    }

    pub fn is_open(&self) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_some_and(|tx| !tx.is_closed())
    }

    pub fn close(&self) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}

/// After a batch's first job: take whatever else is queued, up to `max` jobs in all,
/// without waiting for more.
pub fn take_queued<T>(rx: &mut mpsc::Receiver<T>, batch: &mut Vec<T>, max: usize) {
    while batch.len() < max {
        match rx.try_recv() {
            Ok(job) => batch.push(job),
            Err(_) => break,
        }
    }
}
