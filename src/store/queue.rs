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

/// How many times a task-based writer lets the runtime run its other ready tasks before
/// it closes a batch (`take_ready`). Three instances on two PostgreSQL shards, 64 users:
/// 8 and 32 gave 13,800 and 13,400 payments/s, none 11,500-12,500 (BENCHMARKS.md).
pub const READY_YIELDS_MAX: usize = 8;

/// `take_queued`, then up to `READY_YIELDS_MAX` times: yield to the runtime and take
/// what the handlers that ran meanwhile queued. Requests already being handled join
/// this batch instead of waiting a whole commit for the next one: with several API
/// instances per shard each writer sees a fraction of the load, and PostgreSQL's cost
/// is mostly per batch (a third of the batch size cost 30% of the throughput). No timer:
/// an idle server commits a lone write at once.
pub async fn take_ready<T>(rx: &mut mpsc::Receiver<T>, batch: &mut Vec<T>, max: usize) {
    take_queued(rx, batch, max);
    for _ in 0..READY_YIELDS_MAX {
        if batch.len() >= max {
            break;
        }
        tokio::task::yield_now().await;
        take_queued(rx, batch, max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One write queued, and a handler task that is ready to run and queues its write
    /// once polled (as one woken by its request's bytes does).
    async fn one_queued_one_on_its_way() -> mpsc::Receiver<u32> {
        let (tx, rx) = mpsc::channel(16);
        tx.send(1).await.unwrap();
        tokio::spawn(async move {
            tx.send(2).await.unwrap();
        });
        rx
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_write_from_a_task_already_ready_joins_the_batch() {
        let mut rx = one_queued_one_on_its_way().await;
        let mut batch = Vec::new();
        take_ready(&mut rx, &mut batch, 16).await;
        assert_eq!(batch, [1, 2]);

        // Without the yields the batch closes before the handler runs.
        let mut rx = one_queued_one_on_its_way().await;
        let mut batch = Vec::new();
        take_queued(&mut rx, &mut batch, 16);
        assert_eq!(batch, [1]);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_full_batch_closes_at_its_bound() {
        let mut rx = one_queued_one_on_its_way().await;
        let mut batch = Vec::new();
        take_ready(&mut rx, &mut batch, 1).await;
        assert_eq!(batch, [1]);
        tokio::task::yield_now().await;
        assert_eq!(
            rx.try_recv().ok(),
            Some(2),
            "left queued for the next batch"
        );
    }
}
