//! Rendered scripts, kept per machine so a boot storm does not render the same template
//! thousands of times.
//!
//! A script depends on the machine's record, the interface, the authority the client
//! used, the service's flags and the templates — all fixed for a given record revision
//! and process — and on one per-request value, the `traceparent`. So the cache keeps the
//! output split at the traceparent, and a hit is one allocation and a few copies
//! instead of building a context and running the template (about half of a script
//! request's CPU time otherwise).
//!
//! The split is proven, not assumed: on a miss the script is rendered with the request's
//! traceparent and once more with another random one; only if substituting one for the
//! other in the first output yields exactly the second (an operator template that
//! slices or transforms the traceparent would not) is the split cached. A record change
//! bumps its revision, and an entry is only used for the revision it was rendered from.
//! At most `capacity` entries are kept; when full the cache is emptied and refilled
//! (counted), which is cheap and keeps the bound simple.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Arc, RwLock};

use ironboot_proto::MacAddr;
use ironboot_proto::pb::Hardware;

/// One cached script: `segments` joined by the traceparent.
#[derive(Debug)]
pub struct Entry {
    id: String,
    revision: u64,
    mac: MacAddr,
    authority: String,
    pub kind: &'static str,
    segments: Vec<String>,
    len: usize,
}

impl Entry {
    /// The script with `traceparent` in its places.
    pub fn assemble(&self, traceparent: &str) -> String {
        let mut out = String::with_capacity(
            self.len + traceparent.len() * self.segments.len().saturating_sub(1),
        );
        for (i, s) in self.segments.iter().enumerate() {
            if i > 0 {
                out.push_str(traceparent);
            }
            out.push_str(s);
        }
        out
    }
}

/// The split of `out_a` at `a`, if replacing `a` by `b` gives exactly `out_b`.
pub fn split_at_traceparent(out_a: &str, a: &str, out_b: &str, b: &str) -> Option<Vec<String>> {
    if a.is_empty() || a == b {
        return None;
    }
    let segments: Vec<String> = out_a.split(a).map(str::to_string).collect();
    (segments.join(b) == out_b).then_some(segments)
}

pub struct ScriptCache {
    map: RwLock<HashMap<u64, Arc<Entry>>>,
    hasher: std::collections::hash_map::RandomState,
    capacity: usize,
}

impl ScriptCache {
    pub fn new(capacity: usize) -> ScriptCache {
        ScriptCache {
            map: RwLock::new(HashMap::new()),
            hasher: Default::default(),
            capacity,
        }
    }

    fn key(&self, id: &str, mac: MacAddr, authority: &str) -> u64 {
        let mut h = self.hasher.build_hasher();
        id.hash(&mut h);
        mac.hash(&mut h);
        authority.hash(&mut h);
        h.finish()
    }

    /// The cached script of this record revision, interface and authority.
    pub fn get(&self, hw: &Hardware, mac: MacAddr, authority: &str) -> Option<Arc<Entry>> {
        if self.capacity == 0 {
            return None;
        }
        let k = self.key(&hw.id, mac, authority);
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        map.get(&k)
            .filter(|e| {
                e.revision == hw.revision
                    && e.mac == mac
                    && e.id == hw.id
                    && e.authority == authority
            })
            .cloned()
    }

    /// Stores a proven split (see [`split_at_traceparent`]).
    pub fn insert(
        &self,
        hw: &Hardware,
        mac: MacAddr,
        authority: &str,
        kind: &'static str,
        segments: Vec<String>,
    ) {
        if self.capacity == 0 {
            return;
        }
        let k = self.key(&hw.id, mac, authority);
        let len = segments.iter().map(String::len).sum();
        let entry = Arc::new(Entry {
            id: hw.id.clone(),
            revision: hw.revision,
            mac,
            authority: authority.to_string(),
            kind,
            segments,
            len,
        });
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        if map.len() >= self.capacity && !map.contains_key(&k) {
            map.clear();
            metrics::counter!("ipxe_script_cache_flushes_total").increment(1);
        }
        map.insert(k, entry);
        metrics::gauge!("ipxe_script_cache_entries").set(map.len() as f64);
    }

    pub fn len(&self) -> usize {
        self.map.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "00-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-aaaaaaaaaaaaaaaa-01";
    const B: &str = "00-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-bbbbbbbbbbbbbbbb-01";

    fn hw(id: &str, revision: u64) -> Hardware {
        Hardware {
            id: id.into(),
            revision,
            ..Default::default()
        }
    }

    #[test]
    fn proven_splits_only() {
        let segs =
            split_at_traceparent(&format!("x {A} y {A}"), A, &format!("x {B} y {B}"), B).unwrap();
        assert_eq!(segs, ["x ", " y ", ""]);
        // A template that transforms the value: not cacheable.
        assert!(
            split_at_traceparent(
                &format!("x {A} {}", &A[3..10]),
                A,
                &format!("x {B} {}", &B[3..10]),
                B
            )
            .is_none()
        );
        assert!(split_at_traceparent("no traceparent", A, "no traceparent", B).is_some());
        assert!(split_at_traceparent("a", A, "b", B).is_none());
    }

    #[test]
    fn hits_only_for_the_same_revision_mac_and_authority() {
        let c = ScriptCache::new(10);
        let mac = MacAddr([2, 0, 0, 0, 0, 1]);
        c.insert(
            &hw("id1", 5),
            mac,
            "h:1",
            "installer",
            vec!["a ".into(), " b".into()],
        );
        let e = c.get(&hw("id1", 5), mac, "h:1").unwrap();
        assert_eq!(e.assemble("TP"), "a TP b");
        assert!(
            c.get(&hw("id1", 6), mac, "h:1").is_none(),
            "a newer revision renders again"
        );
        assert!(c.get(&hw("id1", 5), mac, "h:2").is_none());
        assert!(
            c.get(&hw("id1", 5), MacAddr([2, 0, 0, 0, 0, 2]), "h:1")
                .is_none()
        );
        c.insert(&hw("id1", 6), mac, "h:1", "installer", vec!["new".into()]);
        assert_eq!(c.len(), 1, "the new revision replaces the old entry");
    }

    #[test]
    fn bounded() {
        let c = ScriptCache::new(3);
        let mac = MacAddr([2, 0, 0, 0, 0, 1]);
        for i in 0..10 {
            c.insert(
                &hw(&format!("id{i}"), 1),
                mac,
                "h",
                "installer",
                vec!["s".into()],
            );
            assert!(c.len() <= 3);
        }
        let off = ScriptCache::new(0);
        off.insert(&hw("x", 1), mac, "h", "installer", vec!["s".into()]);
        assert!(off.get(&hw("x", 1), mac, "h").is_none());
    }
}
