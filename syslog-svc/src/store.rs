//! The recent log of each registered machine, for `GET /machines/<mac>/logs`.
//!
//! An operator looking at a failed boot wants the last few hundred lines of *that*
//! machine, now, without a log pipeline. So every attributed line is also kept here, in
//! memory, bounded at every level:
//! - per machine: a ring of at most `messages` lines and `bytes` bytes (oldest dropped);
//! - overall: at most `machines` machines and `total_bytes` bytes — past either, the
//!   machine that logged least recently is evicted whole.
//!
//! Machines are keyed by their registry id, and found by any of their MACs, so a
//! machine that boots from another NIC keeps one log. The MACs are those of the record
//! when the machine last logged (a deleted machine's log stays queryable until evicted).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::SystemTime;

use ironboot_proto::MacAddr;
use ironboot_proto::pb::Hardware;

#[derive(Clone, Copy, Debug)]
pub struct StoreLimits {
    pub messages: usize,
    pub bytes: usize,
    pub machines: usize,
    pub total_bytes: usize,
}

struct Line {
    received: SystemTime,
    json: Box<str>,
}

struct MachineLog {
    name: String,
    revision: u64,
    macs: Vec<MacAddr>,
    ring: VecDeque<Line>,
    bytes: usize,
    last_seq: u64,
}

/// What a query returns.
#[derive(Debug, PartialEq, Eq)]
pub struct MachineLines {
    pub id: String,
    pub name: String,
    /// Oldest first.
    pub lines: Vec<Box<str>>,
}

#[derive(Debug, PartialEq, Eq, serde::Serialize)]
pub struct MachineSummary {
    pub id: String,
    pub name: String,
    pub macs: Vec<String>,
    pub messages: usize,
}

pub struct Store {
    limits: StoreLimits,
    machines: HashMap<String, MachineLog>,
    by_mac: HashMap<MacAddr, String>,
    total_bytes: usize,
    seq: u64,
    evicted: u64,
}

/// Per-line bookkeeping counted against the byte limits.
const LINE_OVERHEAD: usize = 48;

impl Store {
    pub fn new(limits: StoreLimits) -> Self {
        Store {
            limits,
            machines: HashMap::new(),
            by_mac: HashMap::new(),
            total_bytes: 0,
            seq: 0,
            evicted: 0,
        }
    }

    pub fn machines(&self) -> usize {
        self.machines.len()
    }

    pub fn total_bytes(&self) -> usize {
        self.total_bytes
    }

    /// Machines evicted whole since the start.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Records `json` (one output line, without its newline) for the machine `hw`.
    pub fn push(&mut self, hw: &Arc<Hardware>, received: SystemTime, json: &str) {
        self.push_owned(hw, received, json.into());
    }

    /// As [`push`](Self::push), taking the line already copied.
    pub fn push_owned(&mut self, hw: &Arc<Hardware>, received: SystemTime, json: Box<str>) {
        if self.limits.messages == 0 || self.limits.machines == 0 {
            return;
        }
        self.seq += 1;
        let seq = self.seq;
        let cost = json.len() + LINE_OVERHEAD;
        if !self.machines.contains_key(&hw.id) {
            self.machines.insert(
                hw.id.clone(),
                MachineLog {
                    name: String::new(),
                    revision: u64::MAX,
                    macs: Vec::new(),
                    ring: VecDeque::new(),
                    bytes: 0,
                    last_seq: 0,
                },
            );
        }
        let Some(log) = self.machines.get_mut(&hw.id) else {
            return;
        };
        if log.revision != hw.revision {
            // New machine, or its record changed: refresh its name and MAC index.
            for m in &log.macs {
                if self.by_mac.get(m) == Some(&hw.id) {
                    self.by_mac.remove(m);
                }
            }
            log.name = hw.name.clone();
            log.revision = hw.revision;
            log.macs = hw
                .interfaces
                .iter()
                .filter_map(|i| MacAddr::parse(&i.mac).ok())
                .collect();
            for m in &log.macs {
                self.by_mac.insert(*m, hw.id.clone());
            }
        }
        log.ring.push_back(Line { received, json });
        log.bytes += cost;
        log.last_seq = seq;
        self.total_bytes += cost;
        // The newest line always stays, even if it alone is over the byte limit.
        while log.ring.len() > 1
            && (log.ring.len() > self.limits.messages || log.bytes > self.limits.bytes)
        {
            if let Some(old) = log.ring.pop_front() {
                let c = old.json.len() + LINE_OVERHEAD;
                log.bytes -= c;
                self.total_bytes -= c;
            }
        }
        while self.machines.len() > 1
            && (self.machines.len() > self.limits.machines
                || self.total_bytes > self.limits.total_bytes)
        {
            self.evict_oldest(&hw.id);
        }
    }

    /// Drops the machine that logged least recently (never `keep`, the one just written).
    fn evict_oldest(&mut self, keep: &str) {
        let Some(id) = self
            .machines
            .iter()
            .filter(|(id, _)| id.as_str() != keep)
            .min_by_key(|(_, l)| l.last_seq)
            .map(|(id, _)| id.clone())
        else {
            return;
        };
        if let Some(log) = self.machines.remove(&id) {
            self.total_bytes -= log.bytes;
            for m in &log.macs {
                if self.by_mac.get(m) == Some(&id) {
                    self.by_mac.remove(m);
                }
            }
            self.evicted += 1;
        }
    }

    /// The id of the machine whose log answers for `mac`.
    pub fn id_for(&self, mac: &MacAddr) -> Option<&str> {
        self.by_mac.get(mac).map(String::as_str)
    }

    /// The newest `limit` lines of machine `id` received at or after `since`, oldest first.
    pub fn query(&self, id: &str, since: Option<SystemTime>, limit: usize) -> Option<MachineLines> {
        let log = self.machines.get(id)?;
        let newer = log
            .ring
            .iter()
            .rev()
            .take_while(|l| since.is_none_or(|s| l.received >= s));
        let mut lines: Vec<Box<str>> = newer.take(limit).map(|l| l.json.clone()).collect();
        lines.reverse();
        Some(MachineLines {
            id: id.to_string(),
            name: log.name.clone(),
            lines,
        })
    }

    pub fn list(&self) -> Vec<MachineSummary> {
        let mut v: Vec<MachineSummary> = self
            .machines
            .iter()
            .map(|(id, l)| MachineSummary {
                id: id.clone(),
                name: l.name.clone(),
                macs: l.macs.iter().map(|m| m.to_string()).collect(),
                messages: l.ring.len(),
            })
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ironboot_proto::pb::Interface;
    use std::time::Duration;

    fn hw(n: u8) -> Arc<Hardware> {
        Arc::new(Hardware {
            id: format!("id{n}"),
            name: format!("m{n}"),
            revision: 1,
            interfaces: vec![Interface {
                mac: format!("52:54:00:00:00:{n:02x}"),
                ..Default::default()
            }],
            ..Default::default()
        })
    }

    fn mac(n: u8) -> MacAddr {
        MacAddr::parse(&format!("52:54:00:00:00:{n:02x}")).expect("mac")
    }

    #[test]
    fn ring_and_machine_bounds() {
        let mut s = Store::new(StoreLimits {
            messages: 3,
            bytes: 1 << 20,
            machines: 2,
            total_bytes: 1 << 20,
        });
        let t0 = SystemTime::UNIX_EPOCH;
        for i in 0..5u64 {
            s.push(&hw(1), t0 + Duration::from_secs(i), &format!("a{i}"));
        }
        let q = s
            .query(s.id_for(&mac(1)).expect("known"), None, 100)
            .expect("log");
        assert_eq!(
            q.lines,
            vec!["a2".into(), "a3".into(), "a4".into()] as Vec<Box<str>>
        );
        let q = s
            .query("id1", Some(t0 + Duration::from_secs(4)), 100)
            .expect("log");
        assert_eq!(q.lines.len(), 1);
        assert_eq!(
            s.query("id1", None, 2).expect("log").lines,
            vec!["a3".into(), "a4".into()] as Vec<Box<str>>
        );

        s.push(&hw(2), t0, "b");
        s.push(&hw(1), t0, "a5");
        s.push(&hw(3), t0, "c"); // evicts m2, the least recent
        assert_eq!(s.machines(), 2);
        assert!(s.id_for(&mac(2)).is_none());
        assert!(s.id_for(&mac(1)).is_some());
        assert_eq!(s.evicted(), 1);
    }

    #[test]
    fn byte_bounds() {
        let mut s = Store::new(StoreLimits {
            messages: 1000,
            bytes: 500,
            machines: 100,
            total_bytes: 1200,
        });
        let line = "x".repeat(100);
        for n in 0..10 {
            for _ in 0..10 {
                s.push(&hw(n), SystemTime::UNIX_EPOCH, &line);
            }
            assert!(s.total_bytes() <= 1200);
        }
        assert_eq!(
            s.query("id9", None, 100).expect("log").lines.len(),
            3,
            "500 bytes hold three 148-byte lines"
        );
        assert_eq!(s.machines(), 2);
    }
}
