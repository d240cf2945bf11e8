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

/// Most messages taken off the queue at once.
const BATCH: usize = 1024;

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

/// The MAC of the interface that holds `ip` (the record may have several).
fn interface_mac(hw: &Hardware, ip: Ipv4Addr) -> &str {
    hw.interfaces
        .iter()
        .find(|i| i.dhcp.as_ref().is_some_and(|d| d.ip.parse::<Ipv4Addr>().ok() == Some(ip)))
        .or(hw.interfaces.first())
        .map(|i| i.mac.as_str())
        .unwrap_or("")
}

impl Writer {
    /// Runs until every queue sender is gone and the queue is drained.
    pub fn run(mut self) {
        let mut batch: Vec<Entry> = Vec::with_capacity(BATCH);
        let mut line: Vec<u8> = Vec::with_capacity(4096);
        loop {
            if self.rx.blocking_recv_many(&mut batch, BATCH) == 0 {
                break;
            }
            let ctx = ParseContext { now: Utc::now(), rfc3164_offset: self.rfc3164_offset };
            let mut released = 0;
            let mut written = 0;
            for e in batch.drain(..) {
                released += Receiver::cost(&e);
                if self.handle(&e, &ctx, &mut line) {
                    written += 1;
                }
            }
            self.stats.written.add(written);
            self.rx.release(released);
            self.stats.queue_depth.set(self.rx.len() as f64);
            if self.rx.is_empty() {
                self.flush();
            }
        }
        self.flush();
    }

    fn flush(&mut self) {
        if let Err(e) = self.output.flush() {
            self.stats.output_errors.inc();
            tracing::warn!(error = %e, "flushing syslog output failed");
        }
    }

    /// Returns whether a line was written.
    fn handle(&mut self, e: &Entry, ctx: &ParseContext, line: &mut Vec<u8>) -> bool {
        let (text, invalid_utf8) = match std::str::from_utf8(&e.data) {
            Ok(s) => (Cow::Borrowed(s), false),
            Err(_) => (String::from_utf8_lossy(&e.data), true),
        };
        if trim_message(&text).is_empty() {
            self.stats.dropped_empty.inc();
            return false;
        }
        if invalid_utf8 {
            self.stats.invalid_utf8.inc();
        }
        if e.truncated {
            self.stats.truncated.inc();
        }
        let p = parse(&text, ctx);
        if p.issue.is_some() {
            self.stats.parse_errors.inc();
        } else {
            self.stats.parsed.inc();
        }
        let ip = source_ipv4(e.source.ip());
        let hw = ip.and_then(|ip| self.cache.by_ip(ip));
        let identity = match (&hw, ip) {
            (Some(hw), Some(ip)) => Some(Identity { id: &hw.id, name: &hw.name, mac: interface_mac(hw, ip) }),
            _ => {
                self.stats.unattributed.inc();
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
        line.clear();
        write_line(line, &meta, &p, crate::traceparent::extract(&p), identity.as_ref());
        match self.output.write_line(line) {
            Ok(rotated) => {
                if rotated {
                    self.stats.rotations.inc();
                }
            }
            Err(err) => {
                // Keep going: the ring still serves the operator, and the next write
                // retries the file.
                self.stats.output_errors.inc();
                tracing::warn!(error = %err, "writing a syslog line failed");
            }
        }
        if let Some(hw) = &hw {
            let json = std::str::from_utf8(&line[..line.len() - 1]).unwrap_or("");
            let mut store = self.store.lock().unwrap_or_else(|p| p.into_inner());
            let before = store.evicted();
            store.push(hw, e.received, json);
            self.stats.store_evicted_machines.add(store.evicted() - before);
            self.stats.store_machines.set(store.machines() as f64);
        }
        true
    }
}
