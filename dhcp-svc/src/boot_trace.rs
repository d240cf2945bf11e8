//! Which trace a netboot packet belongs to: one trace per boot, across the firmware's
//! DHCP exchange and iPXE's own DHCP exchange that follows it.
//!
//! A boot talks to dhcp-svc twice: the firmware (PXE or UEFI HTTP boot) gets the iPXE
//! binary, then iPXE asks again and gets its script URL. Nothing in iPXE's packets
//! carries the first trace, so the link is kept here, per MAC: each netboot reply
//! records its span's context, and the next packet of the same boot continues it.
//!
//! - A firmware packet starts a new trace, unless it continues the exchange the last
//!   reply belonged to (same `xid`: the REQUEST after our OFFER, a retransmission).
//!   A machine that reboots starts over.
//! - An iPXE packet continues the last recorded context of that MAC, if it is recent
//!   (`ttl`); otherwise it starts a new trace (iPXE started from a USB stick, or a boot
//!   through another DHCP server).
//!
//! Bounded: at most `capacity` MACs; expired entries go first, then arbitrary ones.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ironboot_telemetry::TraceParent;

/// How long an iPXE exchange may follow the firmware's and still join its trace.
pub const DEFAULT_TTL: Duration = Duration::from_secs(600);

/// MACs remembered at most.
pub const DEFAULT_CAPACITY: usize = 65_536;

const SHARDS: usize = 16;

#[derive(Clone, Copy, Debug)]
struct Entry {
    context: TraceParent,
    xid: u32,
    at: Instant,
}

/// The per-MAC memory of the last netboot reply's trace context.
pub struct BootTraces {
    shards: Vec<Mutex<HashMap<[u8; 6], Entry>>>,
    per_shard: usize,
    ttl: Duration,
}

impl Default for BootTraces {
    fn default() -> Self {
        BootTraces::new(DEFAULT_CAPACITY, DEFAULT_TTL)
    }
}

impl BootTraces {
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        BootTraces {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
            ttl,
        }
    }

    fn shard(&self, mac: &[u8; 6]) -> &Mutex<HashMap<[u8; 6], Entry>> {
        &self.shards[usize::from(mac[5] ^ mac[4]) % SHARDS]
    }

    /// The parent of this packet's span: None means "start a new trace".
    pub fn parent(&self, mac: [u8; 6], xid: u32, ipxe: bool, now: Instant) -> Option<TraceParent> {
        let shard = self.shard(&mac).lock().ok()?;
        let e = shard.get(&mac)?;
        let fresh = now.saturating_duration_since(e.at) <= self.ttl;
        (fresh && (ipxe || e.xid == xid)).then_some(e.context)
    }

    /// Remembers the context a reply handed to `mac`.
    pub fn record(&self, mac: [u8; 6], xid: u32, context: TraceParent, now: Instant) {
        let Ok(mut shard) = self.shard(&mac).lock() else {
            return;
        };
        if shard.len() >= self.per_shard && !shard.contains_key(&mac) {
            let ttl = self.ttl;
            shard.retain(|_, e| now.saturating_duration_since(e.at) <= ttl);
            if shard.len() >= self.per_shard
                && let Some(victim) = shard.keys().next().copied()
            {
                shard.remove(&victim);
            }
        }
        shard.insert(
            mac,
            Entry {
                context,
                xid,
                at: now,
            },
        );
    }

    /// MACs remembered now.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map(|m| m.len()).unwrap_or(0))
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x52, 0x54, 0, 0xee, 0x0d, 0x0b];

    #[test]
    fn firmware_then_ipxe_is_one_trace() {
        let t = BootTraces::default();
        let now = Instant::now();
        assert_eq!(
            t.parent(MAC, 7, false, now),
            None,
            "a first DISCOVER starts a trace"
        );
        let offer = TraceParent::new_root();
        t.record(MAC, 7, offer, now);
        assert_eq!(
            t.parent(MAC, 7, false, now),
            Some(offer),
            "the REQUEST of the same exchange continues it"
        );
        let ack = offer.new_child();
        t.record(MAC, 7, ack, now);
        let later = now + Duration::from_secs(20);
        assert_eq!(
            t.parent(MAC, 99, true, later),
            Some(ack),
            "iPXE's DHCP continues the firmware's"
        );
        assert_eq!(
            t.parent(MAC, 99, false, later),
            None,
            "firmware with a new xid is a new boot"
        );
    }

    #[test]
    fn stale_entries_start_over() {
        let t = BootTraces::new(16, Duration::from_secs(60));
        let now = Instant::now();
        t.record(MAC, 1, TraceParent::new_root(), now);
        assert_eq!(t.parent(MAC, 2, true, now + Duration::from_secs(61)), None);
        assert_eq!(t.parent(MAC, 1, false, now + Duration::from_secs(61)), None);
    }

    #[test]
    fn bounded() {
        let t = BootTraces::new(32, Duration::from_secs(60));
        let now = Instant::now();
        for i in 0..10_000u32 {
            let b = i.to_be_bytes();
            t.record(
                [2, 0, b[0], b[1], b[2], b[3]],
                i,
                TraceParent::new_root(),
                now,
            );
        }
        assert!(t.len() <= 32, "{}", t.len());
        let last = 9_999u32.to_be_bytes();
        assert!(
            t.parent(
                [2, 0, last[0], last[1], last[2], last[3]],
                9_999,
                false,
                now
            )
            .is_some(),
            "the newest entry is kept"
        );
    }
}
