//! The writer thread: takes batches off the queue, parses, attributes, writes the JSON
//! line and keeps it in the machine's ring.
//!
//! One dedicated OS thread, not a tokio task: it does blocking file I/O, and keeping it
//! off the runtime means a slow disk never delays the sockets. Attribution is a read of
//! the watch-backed cache (`by_ip`) — never a registry call per message, so a flood of
//! unknown sources costs no registry load.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};

use chrono::{FixedOffset, Utc};
use ironboot_proto::cache::HardwareCache;
use ironboot_proto::pb::Hardware;

use crate::output::Output;
use crate::parse::{ParseContext, parse, trim_message};
use crate::queue::{Entry, Receiver};
use crate::record::{Identity, Meta, write_line};
use crate::stats::Stats;
use crate::store::Store;

/// Most queue batches taken at once (a UDP batch holds up to 64 messages).
const BATCH: usize = 16;

/// Counters gathered over one batch and added once (each add is two atomic operations).
#[derive(Default)]
struct Counts {
    written: u64,
    empty: u64,
    invalid_utf8: u64,
    truncated: u64,
    parse_errors: u64,
    unattributed: u64,
    rotations: u64,
    output_errors: u64,
}

/// The last source address looked up in the cache, for the rest of the batch: the
/// machine and the index of its interface that owns the address. A batch is
/// milliseconds of traffic, mostly from few senders.
#[derive(Default)]
struct LastSource {
    ip: Option<IpAddr>,
    found: Option<(Arc<Hardware>, Option<usize>)>,
}

/// From this many messages on, a batch is parsed and rendered in two halves, the second on
/// a helper thread, and written in order: on a shared machine one thread gets a fraction
/// of a core, and the writer was what limited the lossless rate.
const PARALLEL_MIN: usize = 256;

/// One rendered part of a batch: its lines (ending at `ends`), ring lines and counts.
#[derive(Default)]
struct Part {
    buf: Vec<u8>,
    ends: Vec<usize>,
    ring: Vec<RingLine>,
    counts: Counts,
}

/// A line for a machine's ring, pushed when the batch is done (one store lock per batch).
struct RingLine {
    hw: Arc<Hardware>,
    received: std::time::SystemTime,
    json: Box<str>,
}

pub struct Writer {
    pub rx: Receiver,
    pub cache: HardwareCache,
    pub output: Output,
    pub store: Arc<Mutex<Store>>,
    pub stats: Arc<Stats>,
    pub rfc3164_offset: FixedOffset,
}

/// The IPv4 address a source is registered under (IPv4-mapped IPv6 included).
pub fn source_ipv4(ip: IpAddr) -> Option<Ipv4Addr> {
    match ip {
        IpAddr::V4(v4) => Some(v4),
        IpAddr::V6(v6) => v6.to_ipv4_mapped(),
    }
}

/// The index of the interface that holds `ip` (the record may have several; the first
/// when none does): its MAC is the one reported.
fn interface_index(hw: &Hardware, ip: Ipv4Addr) -> Option<usize> {
    hw.interfaces
        .iter()
        .position(|i| {
            i.dhcp
                .as_ref()
                .is_some_and(|d| d.ip.parse::<Ipv4Addr>().ok() == Some(ip))
        })
        .or(if hw.interfaces.is_empty() {
            None
        } else {
            Some(0)
        })
}

impl Writer {
    /// Runs until every queue sender is gone and the queue is drained.
    pub fn run(mut self) {
        let mut batch: Vec<Entry> = Vec::with_capacity(BATCH);
        let (mut first, mut second) = (Part::default(), Part::default());
        loop {
            if self.rx.blocking_recv_many(&mut batch, BATCH) == 0 {
                break;
            }
            let ctx = ParseContext {
                now: Utc::now(),
                rfc3164_offset: self.rfc3164_offset,
            };
            let released: usize = batch.iter().map(Receiver::cost).sum();
            let half = if batch.len() >= PARALLEL_MIN {
                batch.len() / 2
            } else {
                batch.len()
            };
            let (a, b) = batch.split_at(half);
            let cache = &self.cache;
            std::thread::scope(|scope| {
                let helper = if b.is_empty() {
                    None
                } else {
                    // The helper owns the part while it renders (if it cannot start, only
                    // reused buffers are lost).
                    let mut part = std::mem::take(&mut second);
                    std::thread::Builder::new()
                        .name("syslog-render".into())
                        .spawn_scoped(scope, move || {
                            render(cache, b, &ctx, &mut part);
                            part
                        })
                        .ok()
                };
                render(cache, a, &ctx, &mut first);
                match helper {
                    Some(h) => match h.join() {
                        Ok(part) => second = part,
                        Err(panic) => std::panic::resume_unwind(panic),
                    },
                    // No helper thread (none wanted, or it could not start): render here.
                    None if !b.is_empty() => render(cache, b, &ctx, &mut second),
                    None => {}
                }
            });
            batch.clear();
            for part in [&mut first, &mut second] {
                self.write_part(part);
            }
            self.rx.release(released);
            self.stats.queue_depth.set(self.rx.len() as f64);
            if self.rx.is_empty() {
                self.flush();
            }
        }
        self.flush();
    }

    /// The batch's attributed lines into the machines' rings, under one lock.
    fn keep(&self, ring: &mut Vec<RingLine>) {
        if ring.is_empty() {
            return;
        }
        let mut store = self.store.lock().unwrap_or_else(|p| p.into_inner());
        let before = store.evicted();
        for l in ring.drain(..) {
            store.push_owned(&l.hw, l.received, l.json);
        }
        self.stats
            .store_evicted_machines
            .add(store.evicted() - before);
        self.stats.store_machines.set(store.machines() as f64);
    }

    fn count(&self, c: &Counts) {
        let s = &self.stats;
        s.dropped_empty.add(c.empty);
        s.invalid_utf8.add(c.invalid_utf8);
        s.truncated.add(c.truncated);
        s.parse_errors.add(c.parse_errors);
        // Every written message was parsed; those without an issue parsed cleanly.
        s.parsed.add(c.written - c.parse_errors);
        s.unattributed.add(c.unattributed);
        s.rotations.add(c.rotations);
        s.output_errors.add(c.output_errors);
        // Last, so that a reader who sees `written` reach N also sees every other count
        // of those N messages (the metrics test waits on it).
        s.written.add(c.written);
    }

    fn flush(&mut self) {
        if let Err(e) = self.output.flush() {
            self.stats.output_errors.inc();
            tracing::warn!(error = %e, "flushing syslog output failed");
        }
    }

    /// Writes a rendered part's lines in order, keeps its ring lines, counts; empties it.
    fn write_part(&mut self, part: &mut Part) {
        let mut start = 0;
        for &end in &part.ends {
            match self.output.write_line(&part.buf[start..end]) {
                Ok(rotated) => part.counts.rotations += u64::from(rotated),
                Err(err) => {
                    // Keep going: the ring still serves the operator, and the next write
                    // retries the file.
                    part.counts.output_errors += 1;
                    tracing::warn!(error = %err, "writing a syslog line failed");
                }
            }
            start = end;
        }
        self.keep(&mut part.ring);
        self.count(&part.counts);
        part.buf.clear();
        part.ends.clear();
        part.counts = Counts::default();
    }
}

/// Parses, attributes and renders `entries` into `part` (no output: that stays in order
/// on the writer thread).
fn render(cache: &HardwareCache, entries: &[Entry], ctx: &ParseContext, part: &mut Part) {
    let mut last = LastSource::default();
    for e in entries {
        render_one(cache, e, ctx, part, &mut last);
    }
}

/// One message: parsed, attributed and its line appended to `part`.
fn render_one(
    cache: &HardwareCache,
    e: &Entry,
    ctx: &ParseContext,
    part: &mut Part,
    last: &mut LastSource,
) {
    let counts = &mut part.counts;
    {
        let (text, invalid_utf8) = match std::str::from_utf8(&e.data) {
            Ok(s) => (Cow::Borrowed(s), false),
            Err(_) => (String::from_utf8_lossy(&e.data), true),
        };
        if trim_message(&text).is_empty() {
            counts.empty += 1;
            return;
        }
        counts.invalid_utf8 += u64::from(invalid_utf8);
        counts.truncated += u64::from(e.truncated);
        let p = parse(&text, ctx);
        counts.parse_errors += u64::from(p.issue.is_some());
        let source_ip = e.source.ip();
        if last.ip != Some(source_ip) {
            let ip = source_ipv4(source_ip);
            last.ip = Some(source_ip);
            last.found = ip.and_then(|ip| {
                cache
                    .by_ip(ip)
                    .map(|hw| (hw.clone(), interface_index(&hw, ip)))
            });
        }
        let hw = last.found.as_ref().map(|(hw, _)| hw);
        let identity = match &last.found {
            Some((hw, iface)) => Some(Identity {
                id: &hw.id,
                name: &hw.name,
                mac: iface.map(|i| hw.interfaces[i].mac.as_str()).unwrap_or(""),
            }),
            None => {
                counts.unattributed += 1;
                None
            }
        };
        let meta = Meta {
            received: e.received,
            source: e.source,
            transport: e.transport,
            truncated: e.truncated,
            invalid_utf8,
        };
        let start = part.buf.len();
        let traceparent = crate::traceparent::extract(&p);
        if let Some(tp) = traceparent {
            crate::traceparent::record_span(tp, &p, identity.as_ref());
        }
        write_line(&mut part.buf, &meta, &p, traceparent, identity.as_ref());
        part.ends.push(part.buf.len());
        counts.written += 1;
        if let Some(hw) = hw {
            let json = std::str::from_utf8(&part.buf[start..part.buf.len() - 1]).unwrap_or("");
            part.ring.push(RingLine {
                hw: hw.clone(),
                received: e.received,
                json: json.into(),
            });
        }
    }
}
