//! MACs that asked for an address but are not registered: counted, logged once per
//! interval each, and listed at the admin endpoint `/unregistered` so an operator can
//! register them. Bounded: the least recently seen are forgotten first.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use ironboot_proto::MacAddr;
use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct SeenMac {
    pub mac: String,
    pub count: u64,
    /// Seconds since the Unix epoch.
    pub first_seen: u64,
    pub last_seen: u64,
    pub vendor_class: String,
    pub arch: Option<u16>,
    pub ifindex: u32,
    #[serde(skip)]
    logged: Option<Instant>,
    #[serde(skip)]
    touched: Instant,
}

pub struct Seen {
    map: Mutex<HashMap<MacAddr, SeenMac>>,
    capacity: usize,
    log_every: Duration,
}

fn epoch() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Seen {
    pub fn new(capacity: usize, log_every: Duration) -> Self {
        Seen {
            map: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
            log_every,
        }
    }

    /// Records a sighting; returns true when it should be logged now (first time, or
    /// the interval has passed since it was last logged).
    pub fn record(
        &self,
        mac: MacAddr,
        vendor_class: &[u8],
        arch: Option<u16>,
        ifindex: u32,
    ) -> bool {
        let Ok(mut map) = self.map.lock() else {
            return false;
        };
        let now = Instant::now();
        if !map.contains_key(&mac)
            && map.len() >= self.capacity
            && let Some(oldest) = map.iter().min_by_key(|(_, e)| e.touched).map(|(k, _)| *k)
        {
            map.remove(&oldest);
        }
        let e = map.entry(mac).or_insert_with(|| SeenMac {
            mac: mac.to_string(),
            count: 0,
            first_seen: epoch(),
            last_seen: 0,
            vendor_class: String::new(),
            arch: None,
            ifindex,
            logged: None,
            touched: now,
        });
        e.count += 1;
        e.last_seen = epoch();
        e.touched = now;
        e.ifindex = ifindex;
        e.vendor_class =
            String::from_utf8_lossy(&vendor_class[..vendor_class.len().min(64)]).into_owned();
        e.arch = arch.or(e.arch);
        let due = e.logged.is_none_or(|t| t.elapsed() >= self.log_every);
        if due {
            e.logged = Some(now);
        }
        due
    }

    /// Forgets a MAC (it was registered).
    pub fn forget(&self, mac: &MacAddr) {
        if let Ok(mut m) = self.map.lock() {
            m.remove(mac);
        }
    }

    pub fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Most recently seen first.
    pub fn list(&self) -> Vec<SeenMac> {
        let mut v: Vec<SeenMac> = self
            .map
            .lock()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        v.sort_by_key(|e| std::cmp::Reverse(e.touched));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_once_per_interval_and_stays_bounded() {
        let s = Seen::new(2, Duration::from_secs(3600));
        let a = MacAddr([2, 0, 0, 0, 0, 1]);
        assert!(s.record(a, b"PXEClient", Some(7), 1));
        assert!(!s.record(a, b"PXEClient", Some(7), 1));
        assert_eq!(s.list()[0].count, 2);
        s.record(MacAddr([2, 0, 0, 0, 0, 2]), b"", None, 1);
        s.record(MacAddr([2, 0, 0, 0, 0, 3]), b"", None, 1);
        assert_eq!(s.len(), 2);
        assert!(
            s.list().iter().all(|e| e.mac != a.to_string()),
            "the least recently seen is evicted"
        );
    }
}
