//! TCP receiver (RFC 6587): one task per connection, framing decided per message.
//!
//! Bounded: at most `max_connections` at once (more are accepted and closed at once,
//! counted), each with a read buffer of at most one message plus a read chunk, and an
//! idle timeout. Reading waits when the queue is full, so a fast TCP sender is slowed by
//! TCP flow control instead of losing messages or growing memory.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

use crate::framing::{Decoder, Frame};
use crate::queue::{Entry, Sender};
use crate::record::Transport;
use crate::stats::Stats;

/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 64 * 1024;

#[derive(Clone, Copy, Debug)]
pub struct TcpLimits {
    pub max_connections: usize,
    pub idle_timeout: Duration,
    pub max_message: usize,
}

/// Accepts connections until `stop` turns true; connections end with it too.
pub async fn serve(
    listener: TcpListener,
    tx: Sender,
    stats: Arc<Stats>,
    limits: TcpLimits,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: pause rather than spin.
                tracing::warn!(error = %e, "accepting a syslog TCP connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            stats.tcp_rejected.inc();
            drop(stream);
            continue;
        };
        stats.tcp_accepted.inc();
        let (tx, stats, stop) = (tx.clone(), stats.clone(), stop.clone());
        tokio::spawn(async move {
            stats.tcp_connections.increment(1.0);
            connection(stream, peer, &tx, &stats, limits, stop).await;
            stats.tcp_connections.decrement(1.0);
            drop(permit);
        });
    }
}

async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    tx: &Sender,
    stats: &Stats,
    limits: TcpLimits,
    mut stop: watch::Receiver<bool>,
) {
    let mut decoder = Decoder::new(limits.max_message);
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    loop {
        buf.reserve(READ_CHUNK);
        let read = tokio::select! {
            r = tokio::time::timeout(limits.idle_timeout, stream.read_buf(&mut buf)) => r,
            _ = stop.wait_for(|s| *s) => return,
        };
        let n = match read {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "syslog TCP read failed");
                0
            }
            Err(_) => {
                tracing::debug!(%peer, "syslog TCP connection idle; closing");
                0
            }
        };
        let eof = n == 0;
        let now = SystemTime::now();
        // Everything this read completed goes to the queue as one batch.
        let mut batch = Vec::new();
        while let Some(frame) = decoder.decode(&mut buf) {
            collect(frame, peer, now, stats, &mut batch);
        }
        if eof && let Some(frame) = decoder.finish(&mut buf) {
            collect(frame, peer, now, stats, &mut batch);
        }
        if tx.push_batch(batch).await.is_err() || eof {
            return;
        }
    }
}

fn collect(
    frame: Frame,
    peer: SocketAddr,
    received: SystemTime,
    stats: &Stats,
    batch: &mut Vec<Entry>,
) {
    stats.received_tcp.inc();
    if frame.data.is_empty() {
        stats.dropped_empty.inc();
        return;
    }
    // Copy out of the shared read buffer: a queued frame must not pin a whole 64 KiB
    // chunk, or the queue's byte budget would understate memory.
    batch.push(Entry {
        received,
        source: peer,
        transport: Transport::Tcp,
        data: Bytes::copy_from_slice(&frame.data),
        truncated: frame.truncated,
    });
}
