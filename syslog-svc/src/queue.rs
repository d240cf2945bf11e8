//! The fixed-capacity queue between the receivers and the writer.
//!
//! Receiving must never wait on output (a slow disk or a stalled stdout pipe would make
//! the kernel drop datagrams silently), so they are decoupled by this queue, bounded
//! twice: in messages and in bytes (a message may be 64 KiB, so a count alone does not
//! bound memory). When it is full:
//! - UDP messages are dropped and counted (`syslog_dropped_total{reason="queue_full"}`);
//!   a UDP sender cannot be slowed down anyway.
//! - TCP readers wait for room, which stops them reading their socket, which makes TCP
//!   flow control slow the sender down: no loss, and still no memory growth.
//!
//! Messages travel in batches (a UDP receiver hands over everything one `recvmmsg`
//! returned, a TCP reader everything one read decoded): one channel operation and at most
//! one wake-up of the writer per batch, not per message. Both bounds are kept by two
//! atomic counters, reserved per batch, so the channel itself is unbounded.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

use bytes::Bytes;
use tokio::sync::{Notify, mpsc};

use crate::record::Transport;
use crate::stats::Stats;

/// One received message, not yet parsed.
#[derive(Debug)]
pub struct Entry {
    pub received: SystemTime,
    pub source: SocketAddr,
    pub transport: Transport,
    pub data: Bytes,
    pub truncated: bool,
}

/// Bookkeeping bytes per entry on top of its data, so a flood of tiny messages is also
/// bounded by the byte budget.
const ENTRY_OVERHEAD: usize = 96;

fn cost(e: &Entry) -> usize {
    e.data.len() + ENTRY_OVERHEAD
}

struct Shared {
    /// Messages sent and not yet taken by the writer (what a bounded channel counts).
    messages: AtomicUsize,
    max_messages: usize,
    /// Bytes sent and not yet released by the writer (after processing).
    bytes: AtomicUsize,
    max_bytes: usize,
    space: Notify,
    stats: Arc<Stats>,
}

/// The receivers' end; clone freely (the writer stops when every clone is gone).
#[derive(Clone)]
pub struct Sender {
    tx: mpsc::UnboundedSender<Vec<Entry>>,
    shared: Arc<Shared>,
}

/// The writer's end.
pub struct Receiver {
    rx: mpsc::UnboundedReceiver<Vec<Entry>>,
    shared: Arc<Shared>,
    /// Batches taken off the channel, reused.
    batches: Vec<Vec<Entry>>,
}

/// A queue holding at most `capacity` messages and about `max_bytes` bytes.
pub fn bounded(capacity: usize, max_bytes: usize, stats: Arc<Stats>) -> (Sender, Receiver) {
    let (tx, rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        messages: AtomicUsize::new(0),
        max_messages: capacity.max(1),
        bytes: AtomicUsize::new(0),
        max_bytes: max_bytes.max(1),
        space: Notify::new(),
        stats,
    });
    (
        Sender {
            tx,
            shared: shared.clone(),
        },
        Receiver {
            rx,
            shared,
            batches: Vec::new(),
        },
    )
}

impl Shared {
    /// Reserves `n` messages and `c` bytes of the budget. An empty queue always admits,
    /// so a message (or a TCP read's batch) larger than the whole budget is not refused
    /// forever.
    fn reserve(&self, n: usize, c: usize) -> bool {
        let prev_n = self.messages.fetch_add(n, Ordering::AcqRel);
        let prev_c = self.bytes.fetch_add(c, Ordering::AcqRel);
        if prev_c == 0 || (prev_n + n <= self.max_messages && prev_c + c <= self.max_bytes) {
            return true;
        }
        self.unreserve(n, c);
        false
    }

    fn unreserve(&self, n: usize, c: usize) {
        self.messages.fetch_sub(n, Ordering::AcqRel);
        self.bytes.fetch_sub(c, Ordering::AcqRel);
    }
}

impl Sender {
    /// Enqueues without waiting; a full queue drops the message and counts it. Returns
    /// false when dropped or when the writer has stopped.
    pub fn try_push(&self, e: Entry) -> bool {
        self.try_push_batch(vec![e]) == 1
    }

    /// Enqueues a batch without waiting (UDP): the entries that fit are sent as one batch,
    /// the rest dropped and counted. Returns how many were enqueued.
    pub fn try_push_batch(&self, mut batch: Vec<Entry>) -> usize {
        if batch.is_empty() {
            return 0;
        }
        let total: usize = batch.iter().map(cost).sum();
        let (mut n, mut c) = (batch.len(), total);
        // Usually everything fits in one reservation; when not, keep the longest prefix
        // that does (at least one entry when the queue is empty).
        while n > 0 && !self.shared.reserve(n, c) {
            n -= 1;
            c -= cost(&batch[n]);
        }
        let dropped = batch.len() - n;
        if dropped > 0 {
            self.shared.stats.dropped_queue_full.add(dropped as u64);
            batch.truncate(n);
        }
        if n == 0 {
            return 0;
        }
        match self.tx.send(batch) {
            Ok(()) => n,
            Err(_) => {
                self.shared.unreserve(n, c);
                0
            }
        }
    }

    /// Enqueues, waiting for room. Errors only when the writer has stopped.
    pub async fn push(&self, e: Entry) -> Result<(), Closed> {
        self.push_batch(vec![e]).await
    }

    /// Enqueues a batch as one, waiting for room for all of it (TCP: one read's frames).
    /// Errors only when the writer has stopped.
    pub async fn push_batch(&self, batch: Vec<Entry>) -> Result<(), Closed> {
        if batch.is_empty() {
            return Ok(());
        }
        let (n, c) = (batch.len(), batch.iter().map(cost).sum());
        loop {
            let notified = self.shared.space.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.shared.reserve(n, c) {
                break;
            }
            if self.tx.is_closed() {
                return Err(Closed);
            }
            notified.await;
        }
        self.tx.send(batch).map_err(|_| {
            self.shared.unreserve(n, c);
            Closed
        })
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the writer has stopped")]
pub struct Closed;

impl Receiver {
    /// Blocks (writer thread) until at least one message is queued; moves up to `limit`
    /// into `batch`. Returns 0 when every sender is gone and the queue is drained.
    /// `limit` counts the senders' batches; a UDP batch holds up to 64 messages.
    pub fn blocking_recv_many(&mut self, batch: &mut Vec<Entry>, limit: usize) -> usize {
        if self.rx.blocking_recv_many(&mut self.batches, limit) == 0 {
            return 0;
        }
        let before = batch.len();
        for mut b in self.batches.drain(..) {
            batch.append(&mut b);
        }
        let taken = batch.len() - before;
        self.shared.messages.fetch_sub(taken, Ordering::AcqRel);
        taken
    }

    /// Gives back the budget of processed entries and wakes waiting TCP readers.
    pub fn release(&self, bytes: usize) {
        if bytes > 0 {
            let left = self
                .shared
                .bytes
                .fetch_sub(bytes, Ordering::AcqRel)
                .saturating_sub(bytes);
            self.shared.stats.queue_bytes.set(left as f64);
            self.shared.space.notify_waiters();
        }
    }

    /// Messages queued and not yet taken.
    pub fn len(&self) -> usize {
        self.shared.messages.load(Ordering::Acquire)
    }

    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }

    /// The budget an entry holds until [`release`](Self::release).
    pub fn cost(e: &Entry) -> usize {
        cost(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: usize) -> Entry {
        Entry {
            received: SystemTime::now(),
            source: "127.0.0.1:1".parse().expect("addr"),
            transport: Transport::Udp,
            data: Bytes::from(vec![b'x'; n]),
            truncated: false,
        }
    }

    #[test]
    fn bounded_by_count_and_bytes() {
        let stats = Arc::new(Stats::new());
        let (tx, _rx) = bounded(4, 1_000_000, stats.clone());
        let ok = (0..10).filter(|_| tx.try_push(entry(10))).count();
        assert_eq!(ok, 4);
        assert_eq!(stats.dropped_queue_full.get(), 6);

        let stats = Arc::new(Stats::new());
        let (tx, _rx) = bounded(1000, 10_000, stats.clone());
        let ok = (0..10).filter(|_| tx.try_push(entry(4000))).count();
        assert_eq!(ok, 2, "two 4 KB entries fit in 10 KB");
        // A message bigger than the whole budget still passes an empty queue.
        let (tx, _rx) = bounded(1000, 10, stats.clone());
        assert!(tx.try_push(entry(100)));
        assert!(!tx.try_push(entry(1)));
    }

    #[tokio::test]
    async fn tcp_push_waits_for_room() {
        let stats = Arc::new(Stats::new());
        let (tx, mut rx) = bounded(1, 1_000_000, stats.clone());
        tx.push(entry(1)).await.expect("first");
        let tx2 = tx.clone();
        let waiter = tokio::spawn(async move { tx2.push(entry(1)).await });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "second push must wait");
        let got = tokio::task::spawn_blocking(move || {
            let mut b = Vec::new();
            let n = rx.blocking_recv_many(&mut b, 10);
            let c: usize = b.iter().map(Receiver::cost).sum();
            rx.release(c);
            (n, rx)
        })
        .await
        .expect("join");
        assert_eq!(got.0, 1);
        waiter.await.expect("join").expect("second push");
        assert_eq!(stats.dropped_queue_full.get(), 0);
    }
}
