//! The read side of a store: every record decoded once and kept in memory, reachable by
//! id, name, MAC and IP, so a read is a hash lookup and a clone — no database
//! transaction, no B-tree walk, no decoding.
//!
//! The index holds no truth of its own. The engine checks uniqueness, counts revisions
//! and writes the change log in its transactions; after a transaction commits, and
//! before its writes are acknowledged, it hands the transaction's change events to
//! [`ReadIndex::apply`]. So a read that starts after an acknowledged write sees that
//! write, and a page of a listing carries the revision its contents are at.
//!
//! Records are shared (`Arc`) between the key maps: one copy per record, whatever the
//! number of keys that reach it. Each is also kept encoded (protobuf), made once when the
//! record is written, so that GetHardware sends it without cloning or encoding it again
//! (`crate::encoded_get`).

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::ops::{Bound, Deref};
use std::sync::Arc;

use bytes::Bytes;
use ironboot_proto::MacAddr;
use ironboot_proto::pb::{EventType, Hardware};
use prost::Message;

use super::{Event, Lookup};
use crate::selector::Selector;

/// One record as the index keeps it: decoded, and its protobuf encoding.
#[derive(Debug, PartialEq)]
pub struct Entry {
    hardware: Hardware,
    encoded: Bytes,
}

impl Entry {
    pub fn new(hardware: Hardware) -> Self {
        let encoded = Bytes::from(hardware.encode_to_vec());
        Entry { hardware, encoded }
    }

    /// The record's protobuf encoding (a `Hardware` message), shared, not copied.
    pub fn encoded(&self) -> Bytes {
        self.encoded.clone()
    }
}

impl Deref for Entry {
    type Target = Hardware;
    fn deref(&self) -> &Hardware {
        &self.hardware
    }
}

/// One page of records, shared with the index (clone them outside any lock).
#[derive(Debug, Default)]
pub struct IndexPage {
    pub hardware: Vec<Arc<Entry>>,
    /// Name to continue after, if there is more.
    pub next_after: Option<String>,
    pub revision: u64,
}

#[derive(Debug, Default)]
pub struct ReadIndex {
    revision: u64,
    by_id: HashMap<String, Arc<Entry>>,
    /// Ordered: listings page through names.
    by_name: BTreeMap<String, Arc<Entry>>,
    by_mac: HashMap<MacAddr, Arc<Entry>>,
    by_ip: HashMap<Ipv4Addr, Arc<Entry>>,
}

/// The MACs and reserved IPv4 addresses a stored record is found by. Stored records
/// were validated, so every MAC parses; an interface without a reservation has no IP.
fn keys(hw: &Hardware) -> impl Iterator<Item = (Option<MacAddr>, Option<Ipv4Addr>)> + '_ {
    hw.interfaces.iter().map(|iface| {
        let mac = MacAddr::parse(&iface.mac).ok();
        let ip = iface
            .dhcp
            .as_ref()
            .and_then(|d| d.ip.parse::<Ipv4Addr>().ok());
        (mac, ip)
    })
}

impl ReadIndex {
    /// The index of `records`, the whole content of a store at `revision`.
    pub fn new(records: impl IntoIterator<Item = Hardware>, revision: u64) -> Self {
        let mut index = ReadIndex {
            revision,
            ..Default::default()
        };
        for hw in records {
            index.put(hw);
        }
        index
    }

    /// The store revision the index reflects.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub fn get(&self, key: &Lookup) -> Option<Arc<Entry>> {
        match key {
            Lookup::Id(id) => self.by_id.get(id.as_str()),
            Lookup::Name(name) => self.by_name.get(name.as_str()),
            Lookup::Mac(mac) => self.by_mac.get(mac),
            Lookup::Ip(ip) => self.by_ip.get(ip),
        }
        .cloned()
    }

    /// Up to `limit` records ordered by name, starting after `after`, that match.
    /// `next_after` is the last name looked at when more records follow it.
    pub fn page(&self, after: Option<&str>, limit: usize, selector: &Selector) -> IndexPage {
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut page = IndexPage {
            revision: self.revision,
            ..Default::default()
        };
        let mut last = None;
        for (name, hw) in self.by_name.range::<str, _>((start, Bound::Unbounded)) {
            if page.hardware.len() == limit {
                page.next_after = last;
                break;
            }
            last = Some(name.clone());
            if selector.matches(&hw.labels) {
                page.hardware.push(hw.clone());
            }
        }
        page
    }

    /// Applies one committed transaction: its change events, in order, and the store
    /// revision after it.
    pub fn apply<'e>(&mut self, events: impl IntoIterator<Item = &'e Event>, revision: u64) {
        for ev in events {
            let Some(hw) = &ev.hardware else { continue };
            match EventType::try_from(ev.r#type) {
                Ok(EventType::Added | EventType::Modified) => self.put(hw.clone()),
                Ok(EventType::Deleted) => self.remove(&hw.id),
                _ => {}
            }
        }
        self.revision = revision;
    }

    /// Adds a record, or replaces the one with its id (whose keys it may have changed).
    fn put(&mut self, hw: Hardware) {
        self.remove(&hw.id);
        let hw = Arc::new(Entry::new(hw));
        for (mac, ip) in keys(&hw) {
            if let Some(mac) = mac {
                self.by_mac.insert(mac, hw.clone());
            }
            if let Some(ip) = ip {
                self.by_ip.insert(ip, hw.clone());
            }
        }
        self.by_name.insert(hw.name.clone(), hw.clone());
        self.by_id.insert(hw.id.clone(), hw);
    }

    /// Removes the record with `id` and every key that still leads to it.
    fn remove(&mut self, id: &str) {
        let Some(old) = self.by_id.remove(id) else {
            return;
        };
        let is_old = |held: &Arc<Entry>| Arc::ptr_eq(held, &old);
        if self.by_name.get(old.name.as_str()).is_some_and(is_old) {
            self.by_name.remove(old.name.as_str());
        }
        for (mac, ip) in keys(&old) {
            if let Some(mac) = mac
                && self.by_mac.get(&mac).is_some_and(is_old)
            {
                self.by_mac.remove(&mac);
            }
            if let Some(ip) = ip
                && self.by_ip.get(&ip).is_some_and(is_old)
            {
                self.by_ip.remove(&ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ironboot_proto::pb::{Dhcp, Interface};

    fn hw(id: &str, name: &str, mac: &str, ip: &str) -> Hardware {
        Hardware {
            id: id.into(),
            name: name.into(),
            interfaces: vec![Interface {
                mac: mac.into(),
                dhcp: Some(Dhcp {
                    ip: ip.into(),
                    ..Default::default()
                }),
                netboot: None,
            }],
            ..Default::default()
        }
    }

    fn event(kind: EventType, hw: Hardware, revision: u64) -> Event {
        Event {
            r#type: kind as i32,
            hardware: Some(hw),
            revision,
        }
    }

    fn mac(s: &str) -> Lookup {
        Lookup::Mac(MacAddr::parse(s).unwrap())
    }

    fn ip(s: &str) -> Lookup {
        Lookup::Ip(s.parse().unwrap())
    }

    fn name_of(index: &ReadIndex, key: &Lookup) -> Option<String> {
        index.get(key).map(|h| h.name.clone())
    }

    #[test]
    fn finds_by_every_key() {
        let index = ReadIndex::new([hw("id-a", "a", "52:54:00:00:00:01", "10.0.0.1")], 4);
        assert_eq!(index.revision(), 4);
        for key in [
            Lookup::Id("id-a".into()),
            Lookup::Name("a".into()),
            mac("52:54:00:00:00:01"),
            ip("10.0.0.1"),
        ] {
            assert_eq!(name_of(&index, &key).as_deref(), Some("a"), "{key}");
        }
        assert_eq!(index.get(&ip("10.0.0.2")), None);
        assert_eq!(index.get(&Lookup::Id("a".into())), None);
    }

    #[test]
    fn keeps_each_record_encoded() {
        let record = hw("id-a", "a", "52:54:00:00:00:01", "10.0.0.1");
        let mut index = ReadIndex::new([record.clone()], 1);
        let entry = index.get(&Lookup::Id("id-a".into())).unwrap();
        assert_eq!(Hardware::decode(entry.encoded()).unwrap(), record);
        // A modified record is encoded anew.
        let moved = hw("id-a", "a", "52:54:00:00:00:01", "10.0.0.7");
        index.apply(&[event(EventType::Modified, moved.clone(), 2)], 2);
        let entry = index.get(&mac("52:54:00:00:00:01")).unwrap();
        assert_eq!(Hardware::decode(entry.encoded()).unwrap(), moved);
    }

    #[test]
    fn modified_records_move_their_keys() {
        let mut index = ReadIndex::new([hw("id-a", "a", "52:54:00:00:00:01", "10.0.0.1")], 1);
        let moved = hw("id-a", "a2", "52:54:00:00:00:09", "");
        index.apply(&[event(EventType::Modified, moved, 2)], 2);
        assert_eq!(index.get(&mac("52:54:00:00:00:01")), None);
        assert_eq!(index.get(&ip("10.0.0.1")), None);
        assert_eq!(index.get(&Lookup::Name("a".into())), None);
        assert_eq!(
            name_of(&index, &mac("52:54:00:00:00:09")).as_deref(),
            Some("a2")
        );
        assert_eq!((index.len(), index.revision()), (1, 2));
    }

    #[test]
    fn a_key_freed_and_taken_in_one_transaction_goes_to_the_new_holder() {
        let mut index = ReadIndex::new([hw("id-a", "a", "52:54:00:00:00:01", "10.0.0.1")], 1);
        let events = [
            event(
                EventType::Modified,
                hw("id-a", "a", "52:54:00:00:00:02", "10.0.0.2"),
                2,
            ),
            event(
                EventType::Added,
                hw("id-b", "b", "52:54:00:00:00:01", "10.0.0.1"),
                3,
            ),
        ];
        index.apply(&events, 3);
        assert_eq!(
            name_of(&index, &mac("52:54:00:00:00:01")).as_deref(),
            Some("b")
        );
        assert_eq!(name_of(&index, &ip("10.0.0.2")).as_deref(), Some("a"));
        // Deleting b leaves a's keys alone.
        index.apply(
            &[event(
                EventType::Deleted,
                hw("id-b", "b", "52:54:00:00:00:01", "10.0.0.1"),
                4,
            )],
            4,
        );
        assert_eq!(index.get(&mac("52:54:00:00:00:01")), None);
        assert_eq!(
            name_of(&index, &mac("52:54:00:00:00:02")).as_deref(),
            Some("a")
        );
        assert_eq!(index.len(), 1);
    }

    #[test]
    fn pages_follow_names_and_the_selector() {
        let records = (0..5).map(|i| {
            let mut h = hw(
                &format!("id{i}"),
                &format!("m{i}"),
                &format!("52:54:00:00:01:{i:02x}"),
                "",
            );
            h.labels.insert("even".into(), (i % 2 == 0).to_string());
            h
        });
        let index = ReadIndex::new(records, 5);
        let all = Selector::default();
        let names = |p: &IndexPage| {
            p.hardware
                .iter()
                .map(|h| h.name.clone())
                .collect::<Vec<_>>()
        };
        let p1 = index.page(None, 2, &all);
        assert_eq!(
            (names(&p1), p1.next_after.as_deref(), p1.revision),
            (vec!["m0".into(), "m1".into()], Some("m1"), 5)
        );
        let p3 = index.page(Some("m3"), 2, &all);
        assert_eq!((names(&p3), p3.next_after), (vec!["m4".to_string()], None));
        let even = index.page(None, 10, &Selector::parse("even=true").unwrap());
        assert_eq!(names(&even), ["m0", "m2", "m4"]);
    }
}
