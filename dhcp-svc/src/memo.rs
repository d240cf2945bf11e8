//! A worker's memory of worked-out reservations: parsing a record's address strings and
//! encoding its network options cost more than the rest of a decision, yet change only
//! when the record does. One slot per MAC hash, direct-mapped: bounded, no eviction
//! bookkeeping, a collision just overwrites.
//!
//! A slot is valid for the exact record version it was made from: the registry cache
//! hands out a new `Arc<Hardware>` whenever a record changes, and the slot holds a clone
//! of the one it was made from, so pointer equality means "same version" (the old
//! allocation cannot be reused while the slot keeps it alive).

use std::sync::Arc;

use ironboot_proto::MacAddr;
use ironboot_proto::pb::Hardware;

use crate::decide::{Reservation, Settings};

struct Slot {
    mac: [u8; 6],
    hw: Arc<Hardware>,
    reservation: Option<Reservation>,
}

pub struct ReservationMemo {
    slots: Vec<Option<Box<Slot>>>,
    /// `64 - log2(slots.len())`: the index is the top bits of the hash.
    shift: u32,
}

impl ReservationMemo {
    /// Room for `capacity` MACs (rounded up to a power of two).
    pub fn new(capacity: usize) -> Self {
        let n = capacity.max(1).next_power_of_two();
        ReservationMemo { slots: (0..n).map(|_| None).collect(), shift: 64 - n.trailing_zeros() }
    }

    /// `Reservation::of(hw, mac, s)`, worked out only when this MAC's slot does not hold
    /// it for this very record version. `s` must be the same settings on every call.
    pub fn get(&mut self, mac: [u8; 6], hw: &Arc<Hardware>, s: &Settings) -> Option<&Reservation> {
        let i = self.index(mac);
        let slot = &mut self.slots[i];
        let fresh = matches!(slot, Some(x) if x.mac == mac && Arc::ptr_eq(&x.hw, hw));
        if !fresh {
            *slot = Some(Box::new(Slot { mac, hw: hw.clone(), reservation: Reservation::of(hw, &MacAddr(mac), s) }));
        }
        slot.as_ref().and_then(|x| x.reservation.as_ref())
    }

    fn index(&self, mac: [u8; 6]) -> usize {
        let mut k = [0u8; 8];
        k[..6].copy_from_slice(&mac);
        // Fibonacci hashing: the multiply carries every byte into the top bits, which
        // are the index (the low bits would ignore the MAC's last bytes).
        u64::from_le_bytes(k).wrapping_mul(0x9E37_79B9_7F4A_7C15).checked_shr(self.shift).unwrap_or(0) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::Mode;
    use crate::netboot::{BootFiles, Endpoints};
    use ironboot_proto::pb::{Dhcp, Interface};

    fn settings() -> Settings {
        Settings {
            mode: Mode::Reservation,
            default_lease_secs: 3600,
            syslog_server: None,
            ipxe_user_classes: vec![],
            boot_files: BootFiles::default(),
            endpoints: Endpoints { http: String::new() },
            trace_context: false,
        }
    }

    fn record(mac: &str, ip: &str) -> Arc<Hardware> {
        Arc::new(Hardware {
            name: "m".into(),
            interfaces: vec![Interface {
                mac: mac.into(),
                dhcp: Some(Dhcp { ip: ip.into(), netmask: "255.255.255.0".into(), ..Default::default() }),
                netboot: None,
            }],
            ..Default::default()
        })
    }

    #[test]
    fn consecutive_macs_spread_over_the_slots() {
        let memo = ReservationMemo::new(16384);
        let mut used = std::collections::HashSet::new();
        for i in 1u32..=10_000 {
            let b = i.to_be_bytes();
            used.insert(memo.index([0x52, 0x54, 0x0b, b[1], b[2], b[3]]));
        }
        // Uniform hashing would fill about 7,500 distinct slots.
        assert!(used.len() > 7_000, "{} slots used", used.len());
    }

    #[test]
    fn a_changed_record_is_worked_out_again_and_collisions_overwrite() {
        let s = settings();
        let mac = [0x52, 0x54, 0, 0, 0, 1];
        let other = [0x52, 0x54, 0, 0, 0, 2];
        // One slot: every MAC collides.
        let mut memo = ReservationMemo::new(1);
        let v1 = record("52:54:00:00:00:01", "10.0.0.10");
        assert_eq!(memo.get(mac, &v1, &s).map(|r| r.ip), Some("10.0.0.10".parse().unwrap()));
        // Same content, new version (a new Arc): not mistaken for the old one.
        let v2 = record("52:54:00:00:00:01", "10.0.0.11");
        assert_eq!(memo.get(mac, &v2, &s).map(|r| r.ip), Some("10.0.0.11".parse().unwrap()));
        let o = record("52:54:00:00:00:02", "not an address");
        assert!(memo.get(other, &o, &s).is_none());
        assert_eq!(memo.get(mac, &v2, &s).map(|r| r.ip), Some("10.0.0.11".parse().unwrap()));
        // A record without this MAC's interface has no reservation for it.
        assert!(memo.get(other, &v2, &s).is_none());
    }
}
