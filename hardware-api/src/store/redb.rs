//! The embedded engine: redb (pure-Rust, copy-on-write B-trees, ACID).
//!
//! Layout, all in one database file:
//! - `hardware`: id → prost-encoded `Hardware`
//! - `by_name` / `by_mac` / `by_ip`: unique indexes → id
//! - `events`: revision → prost-encoded change event (the watch log, trimmed to the
//!   configured retention)
//! - `meta`: the store revision and how far the event log was trimmed; `info`: store id.
//!
//! Writes go through one writer thread that takes every write waiting in its queue and
//! commits them in one transaction (group commit): one fsync serves many concurrent
//! writers, so a bulk import is not limited to one machine per disk flush. Each write
//! in a batch still checks its conflicts against everything before it — including
//! earlier writes of the same batch — before it changes anything, so one write that is
//! refused leaves the others untouched.
//!
//! Reads of records (get, list, count) never open a redb transaction: they are answered
//! by a [`ReadIndex`] loaded from the file at start and updated by the writer thread
//! with each committed transaction's events, before it acknowledges the writes. Only
//! the watch log (`events_since`) is read from the file. A point read costs a hash
//! lookup and a clone instead of a read transaction, four table opens, two B-tree walks
//! and a decode (≈ 25 µs of the registry's CPU per GetHardware over gRPC on the 2-core
//! benchmark machine; see `bench/README.md`).

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, mpsc};
use std::time::SystemTime;

use bytes::Bytes;
use ironboot_proto::MacAddr;
use ironboot_proto::pb::{EventType, Hardware, UpdateOutcome};
use prost::Message;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use tokio::sync::broadcast;

use super::index::ReadIndex;
use super::{Event, HardwareStore, Lookup, Page, StoreError, WriteOp, WriteOutcome};
use crate::selector::Selector;
use crate::validate::ValidHardware;

const HARDWARE: TableDefinition<&str, &[u8]> = TableDefinition::new("hardware");
const BY_NAME: TableDefinition<&str, &str> = TableDefinition::new("by_name");
const BY_MAC: TableDefinition<[u8; 6], &str> = TableDefinition::new("by_mac");
const BY_IP: TableDefinition<u32, &str> = TableDefinition::new("by_ip");
const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const INFO: TableDefinition<&str, &str> = TableDefinition::new("info");

const REVISION: &str = "revision";
const TRIMMED_THROUGH: &str = "events_trimmed_through";
const STORE_ID: &str = "store_id";

/// At most this many queued writes go into one transaction.
const MAX_BATCH: usize = 256;

impl From<redb::Error> for StoreError {
    fn from(e: redb::Error) -> Self {
        StoreError::Backend(e.to_string())
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self { StoreError::from(redb::Error::from(e)) }
        }
    )*};
}
from_redb!(
    redb::StorageError,
    redb::TableError,
    redb::TransactionError,
    redb::CommitError,
    redb::DatabaseError
);

type Reply = mpsc::SyncSender<Result<WriteOutcome, StoreError>>;

struct Shared {
    db: Database,
    /// Every committed record, for reads; written only by the writer thread.
    index: RwLock<ReadIndex>,
    revision: AtomicU64,
    events_tx: broadcast::Sender<Arc<Event>>,
    store_id: String,
}

pub struct RedbStore {
    shared: Arc<Shared>,
    writer: Mutex<Option<mpsc::Sender<(WriteOp, Reply)>>>,
    writer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl RedbStore {
    /// Opens (or creates) the store file `path`.
    pub fn open(path: &Path, event_retention: u64) -> Result<Self, StoreError> {
        let db = Database::create(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Backend(format!(
                "{} is already open in another process (is another hardware-api running on this data directory?)",
                path.display()
            )),
            e => StoreError::Backend(format!("cannot open {}: {e}", path.display())),
        })?;
        Self::init(db, event_retention)
    }

    /// A store that lives only in memory (tests, demos): same engine, no file.
    pub fn in_memory(event_retention: u64) -> Result<Self, StoreError> {
        let db = Database::builder().create_with_backend(redb::backends::InMemoryBackend::new())?;
        Self::init(db, event_retention)
    }

    fn init(db: Database, event_retention: u64) -> Result<Self, StoreError> {
        let txn = db.begin_write()?;
        let (revision, store_id) = {
            // Create every table so readers never meet a missing one.
            txn.open_table(HARDWARE)?;
            txn.open_table(BY_NAME)?;
            txn.open_table(BY_MAC)?;
            txn.open_table(BY_IP)?;
            txn.open_table(EVENTS)?;
            let meta = txn.open_table(META)?;
            let revision = meta.get(REVISION)?.map(|g| g.value()).unwrap_or(0);
            let mut info = txn.open_table(INFO)?;
            let existing = info.get(STORE_ID)?.map(|g| g.value().to_string());
            let store_id = match existing {
                Some(id) => id,
                None => {
                    let id = uuid::Uuid::new_v4().to_string();
                    info.insert(STORE_ID, id.as_str())?;
                    id
                }
            };
            (revision, store_id)
        };
        txn.commit()?;
        let index = RwLock::new(load_index(&db, revision)?);
        let (events_tx, _) = broadcast::channel(4096);
        let shared = Arc::new(Shared {
            db,
            index,
            revision: AtomicU64::new(revision),
            events_tx,
            store_id,
        });
        let (tx, rx) = mpsc::channel::<(WriteOp, Reply)>();
        let writer_shared = shared.clone();
        let handle = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer_loop(&writer_shared, rx, event_retention.max(1)))
            .map_err(|e| StoreError::Backend(format!("cannot start the writer thread: {e}")))?;
        Ok(RedbStore {
            shared,
            writer: Mutex::new(Some(tx)),
            writer_thread: Mutex::new(Some(handle)),
        })
    }

    /// Stops taking writes and waits for the writer to finish what it has.
    pub fn close(&self) {
        self.writer.lock().map(|mut w| w.take()).ok();
        if let Some(h) = self.writer_thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = h.join();
        }
    }
}

impl Drop for RedbStore {
    fn drop(&mut self) {
        self.close();
    }
}

/// Decodes every stored record into a fresh read index.
fn load_index(db: &Database, revision: u64) -> Result<ReadIndex, StoreError> {
    let txn = db.begin_read()?;
    let table = txn.open_table(HARDWARE)?;
    let mut records = Vec::with_capacity(usize::try_from(table.len()?).unwrap_or(0));
    for entry in table.iter()? {
        let (_, v) = entry?;
        records.push(decode(v.value())?);
    }
    Ok(ReadIndex::new(records, revision))
}

impl Shared {
    /// The read index. A poisoned lock is still consistent: the writer changes it only
    /// through `ReadIndex::apply`, which does not panic half-way on valid events.
    fn index(&self) -> RwLockReadGuard<'_, ReadIndex> {
        self.index.read().unwrap_or_else(PoisonError::into_inner)
    }
}

fn now() -> prost_types::Timestamp {
    prost_types::Timestamp::from(SystemTime::now())
}

fn decode(bytes: &[u8]) -> Result<Hardware, StoreError> {
    Hardware::decode(bytes).map_err(|e| StoreError::Backend(format!("corrupt record: {e}")))
}

fn ip_key(ip: Ipv4Addr) -> u32 {
    u32::from(ip)
}

/// The part of a record a client controls; equal content means "nothing to write".
fn content(hw: &Hardware) -> Hardware {
    Hardware {
        id: String::new(),
        revision: 0,
        created_at: None,
        updated_at: None,
        ..hw.clone()
    }
}

fn writer_loop(shared: &Shared, rx: mpsc::Receiver<(WriteOp, Reply)>, retention: u64) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let ops: Vec<WriteOp> = batch.iter().map(|(op, _)| op.clone()).collect();
        match apply_batch(shared, &ops, retention) {
            Ok((results, events, revision)) => {
                // Committed: make it readable before anyone hears of it (revision,
                // watchers, the writers' acknowledgements).
                if !events.is_empty() {
                    shared
                        .index
                        .write()
                        .unwrap_or_else(PoisonError::into_inner)
                        .apply(&events, revision);
                }
                shared.revision.store(revision, Ordering::Release);
                for ev in events {
                    // No receivers is fine: nobody is watching.
                    let _ = shared.events_tx.send(Arc::new(ev));
                }
                for ((_, reply), res) in batch.into_iter().zip(results) {
                    let _ = reply.send(res);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, writes = batch.len(), "store transaction failed; writes refused");
                for (_, reply) in batch {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

struct Tables<'t> {
    hardware: redb::Table<'t, &'static str, &'static [u8]>,
    by_name: redb::Table<'t, &'static str, &'static str>,
    by_mac: redb::Table<'t, [u8; 6], &'static str>,
    by_ip: redb::Table<'t, u32, &'static str>,
    events: redb::Table<'t, u64, &'static [u8]>,
}

type BatchResult = (Vec<Result<WriteOutcome, StoreError>>, Vec<Event>, u64);

fn apply_batch(
    shared: &Shared,
    ops: &[WriteOp],
    retention: u64,
) -> Result<BatchResult, StoreError> {
    let txn = shared.db.begin_write()?;
    let mut results = Vec::with_capacity(ops.len());
    let mut events = Vec::new();
    let revision;
    {
        let mut meta = txn.open_table(META)?;
        let mut rev = meta.get(REVISION)?.map(|g| g.value()).unwrap_or(0);
        let mut t = Tables {
            hardware: txn.open_table(HARDWARE)?,
            by_name: txn.open_table(BY_NAME)?,
            by_mac: txn.open_table(BY_MAC)?,
            by_ip: txn.open_table(BY_IP)?,
            events: txn.open_table(EVENTS)?,
        };
        for op in ops {
            match apply_one(&mut t, op, rev + 1)? {
                Ok((outcome, event)) => {
                    if let Some(ev) = event {
                        rev += 1;
                        t.events.insert(rev, ev.encode_to_vec().as_slice())?;
                        events.push(ev);
                    }
                    results.push(Ok(outcome));
                }
                Err(refused) => results.push(Err(refused)),
            }
        }
        meta.insert(REVISION, rev)?;
        // Trim the watch log to the retention window.
        let mut trimmed = meta.get(TRIMMED_THROUGH)?.map(|g| g.value()).unwrap_or(0);
        if rev.saturating_sub(trimmed) > retention {
            let keep_from = rev - retention + 1;
            loop {
                let first = t.events.first()?.map(|(k, _)| k.value());
                match first {
                    Some(k) if k < keep_from => {
                        t.events.remove(k)?;
                        trimmed = k;
                    }
                    _ => break,
                }
            }
            trimmed = trimmed.max(keep_from - 1);
            meta.insert(TRIMMED_THROUGH, trimmed)?;
        }
        revision = rev;
    }
    if !events.is_empty() {
        txn.commit()?;
    } else {
        // Only validations and refusals: nothing to make durable.
        txn.abort()?;
    }
    Ok((results, events, revision))
}

/// Outer error: the transaction failed. Inner error: this one write is refused.
type OneResult = Result<Result<(WriteOutcome, Option<Event>), StoreError>, StoreError>;

fn apply_one(t: &mut Tables<'_>, op: &WriteOp, next_rev: u64) -> OneResult {
    match op {
        WriteOp::Create {
            hardware,
            validate_only,
        } => {
            if let Err(e) = check_free(t, hardware, None)? {
                return Ok(Err(e));
            }
            if *validate_only {
                return Ok(Ok((
                    WriteOutcome::Written(hardware.hardware.clone(), UpdateOutcome::Created),
                    None,
                )));
            }
            Ok(Ok(insert_new(t, hardware, next_rev)?))
        }
        WriteOp::Update {
            hardware,
            expected_revision,
            allow_missing,
            validate_only,
        } => {
            let hw = &hardware.hardware;
            let existing = if hw.id.is_empty() {
                find(t, &Lookup::Name(hw.name.clone()))?
            } else {
                find(t, &Lookup::Id(hw.id.clone()))?
            };
            let Some(old) = existing else {
                if !hw.id.is_empty() {
                    return Ok(Err(StoreError::NotFound(format!(
                        "with id {:?} (ids are assigned by the registry)",
                        hw.id
                    ))));
                }
                if !*allow_missing {
                    return Ok(Err(StoreError::NotFound(format!("named {:?}", hw.name))));
                }
                if let Err(e) = check_free(t, hardware, None)? {
                    return Ok(Err(e));
                }
                if *validate_only {
                    return Ok(Ok((
                        WriteOutcome::Written(hw.clone(), UpdateOutcome::Created),
                        None,
                    )));
                }
                return Ok(Ok(insert_new(t, hardware, next_rev)?));
            };
            if *expected_revision != 0 && *expected_revision != old.revision {
                return Ok(Err(StoreError::StaleRevision {
                    name: old.name.clone(),
                    expected: *expected_revision,
                    actual: old.revision,
                }));
            }
            if content(&old) == content(hw) {
                return Ok(Ok((
                    WriteOutcome::Written(old, UpdateOutcome::Unchanged),
                    None,
                )));
            }
            if let Err(e) = check_free(t, hardware, Some(&old.id))? {
                return Ok(Err(e));
            }
            if *validate_only {
                return Ok(Ok((
                    WriteOutcome::Written(hw.clone(), UpdateOutcome::Updated),
                    None,
                )));
            }
            remove_indexes(t, &old)?;
            let new = Hardware {
                id: old.id.clone(),
                revision: next_rev,
                created_at: old.created_at,
                updated_at: Some(now()),
                ..hw.clone()
            };
            write_record(t, &new, hardware)?;
            let ev = Event {
                r#type: EventType::Modified as i32,
                hardware: Some(new.clone()),
                revision: next_rev,
            };
            Ok(Ok((
                WriteOutcome::Written(new, UpdateOutcome::Updated),
                Some(ev),
            )))
        }
        WriteOp::Delete {
            key,
            expected_revision,
        } => {
            let Some(old) = find(t, key)? else {
                return Ok(Err(StoreError::NotFound(key.to_string())));
            };
            if *expected_revision != 0 && *expected_revision != old.revision {
                return Ok(Err(StoreError::StaleRevision {
                    name: old.name.clone(),
                    expected: *expected_revision,
                    actual: old.revision,
                }));
            }
            remove_indexes(t, &old)?;
            t.hardware.remove(old.id.as_str())?;
            let ev = Event {
                r#type: EventType::Deleted as i32,
                hardware: Some(old.clone()),
                revision: next_rev,
            };
            Ok(Ok((
                WriteOutcome::Deleted {
                    hardware: old,
                    revision: next_rev,
                },
                Some(ev),
            )))
        }
    }
}

fn insert_new(
    t: &mut Tables<'_>,
    hardware: &ValidHardware,
    rev: u64,
) -> Result<(WriteOutcome, Option<Event>), StoreError> {
    let ts = now();
    let new = Hardware {
        id: uuid::Uuid::new_v4().to_string(),
        revision: rev,
        created_at: Some(ts),
        updated_at: Some(ts),
        ..hardware.hardware.clone()
    };
    write_record(t, &new, hardware)?;
    let ev = Event {
        r#type: EventType::Added as i32,
        hardware: Some(new.clone()),
        revision: rev,
    };
    Ok((WriteOutcome::Written(new, UpdateOutcome::Created), Some(ev)))
}

fn write_record(t: &mut Tables<'_>, hw: &Hardware, keys: &ValidHardware) -> Result<(), StoreError> {
    let id = hw.id.as_str();
    t.hardware.insert(id, hw.encode_to_vec().as_slice())?;
    t.by_name.insert(hw.name.as_str(), id)?;
    for mac in &keys.macs {
        t.by_mac.insert(mac.0, id)?;
    }
    for ip in &keys.ips {
        t.by_ip.insert(ip_key(*ip), id)?;
    }
    Ok(())
}

fn remove_indexes(t: &mut Tables<'_>, old: &Hardware) -> Result<(), StoreError> {
    t.by_name.remove(old.name.as_str())?;
    for iface in &old.interfaces {
        if let Ok(mac) = MacAddr::parse(&iface.mac) {
            t.by_mac.remove(mac.0)?;
        }
        if let Some(ip) = iface
            .dhcp
            .as_ref()
            .and_then(|d| d.ip.parse::<Ipv4Addr>().ok())
        {
            t.by_ip.remove(ip_key(ip))?;
        }
    }
    Ok(())
}

/// Refuses a record whose name, MACs or IPs belong to another record than `own_id`.
fn check_free(
    t: &Tables<'_>,
    hw: &ValidHardware,
    own_id: Option<&str>,
) -> Result<Result<(), StoreError>, StoreError> {
    let holder_name = |id: &str| -> Result<String, StoreError> {
        Ok(match t.hardware.get(id)? {
            Some(v) => decode(v.value())?.name,
            None => id.to_string(),
        })
    };
    let taken = |holder: &str| own_id != Some(holder);
    if let Some(g) = t.by_name.get(hw.hardware.name.as_str())? {
        let holder = g.value().to_string();
        if taken(&holder) {
            return Ok(Err(StoreError::Conflict {
                what: format!("name {:?}", hw.hardware.name),
                holder: holder_name(&holder)?,
            }));
        }
    }
    for mac in &hw.macs {
        if let Some(g) = t.by_mac.get(mac.0)? {
            let holder = g.value().to_string();
            if taken(&holder) {
                return Ok(Err(StoreError::Conflict {
                    what: format!("MAC {mac}"),
                    holder: holder_name(&holder)?,
                }));
            }
        }
    }
    for ip in &hw.ips {
        if let Some(g) = t.by_ip.get(ip_key(*ip))? {
            let holder = g.value().to_string();
            if taken(&holder) {
                return Ok(Err(StoreError::Conflict {
                    what: format!("IP {ip}"),
                    holder: holder_name(&holder)?,
                }));
            }
        }
    }
    Ok(Ok(()))
}

/// Finds a record through the right index table of the write transaction.
fn find(t: &Tables<'_>, key: &Lookup) -> Result<Option<Hardware>, StoreError> {
    let id = match key {
        Lookup::Id(id) => id.clone(),
        Lookup::Name(n) => match t.by_name.get(n.as_str())? {
            Some(g) => g.value().to_string(),
            None => return Ok(None),
        },
        Lookup::Mac(m) => match t.by_mac.get(m.0)? {
            Some(g) => g.value().to_string(),
            None => return Ok(None),
        },
        Lookup::Ip(ip) => match t.by_ip.get(ip_key(*ip))? {
            Some(g) => g.value().to_string(),
            None => return Ok(None),
        },
    };
    match t.hardware.get(id.as_str())? {
        Some(v) => Ok(Some(decode(v.value())?)),
        None => Ok(None),
    }
}

impl HardwareStore for RedbStore {
    fn write(&self, op: WriteOp) -> Result<WriteOutcome, StoreError> {
        let (tx, rx) = mpsc::sync_channel(1);
        let sender = self
            .writer
            .lock()
            .map_err(|_| StoreError::Backend("writer lock poisoned".into()))?
            .clone()
            .ok_or_else(|| StoreError::Backend("the store is closed".into()))?;
        sender
            .send((op, tx))
            .map_err(|_| StoreError::Backend("the store writer has stopped".into()))?;
        rx.recv()
            .map_err(|_| StoreError::Backend("the store writer has stopped".into()))?
    }

    fn get(&self, key: &Lookup) -> Result<Option<Hardware>, StoreError> {
        // Take the shared record under the lock, copy it after releasing the lock.
        let found = self.shared.index().get(key);
        Ok(found.map(|hw| Hardware::clone(&hw)))
    }

    fn get_encoded(&self, key: &Lookup) -> Result<Option<Bytes>, StoreError> {
        Ok(self.shared.index().get(key).map(|entry| entry.encoded()))
    }

    fn list(
        &self,
        after: Option<&str>,
        limit: usize,
        selector: &Selector,
    ) -> Result<Page, StoreError> {
        let page = self.shared.index().page(after, limit, selector);
        Ok(Page {
            hardware: page.hardware.iter().map(|hw| Hardware::clone(hw)).collect(),
            next_after: page.next_after,
            revision: page.revision,
        })
    }

    fn events_since(&self, since: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        let txn = self.shared.db.begin_read()?;
        let meta = txn.open_table(META)?;
        let current = meta.get(REVISION)?.map(|g| g.value()).unwrap_or(0);
        let trimmed = meta.get(TRIMMED_THROUGH)?.map(|g| g.value()).unwrap_or(0);
        if since > current {
            return Err(StoreError::FutureRevision {
                requested: since,
                current,
            });
        }
        if since < trimmed {
            return Err(StoreError::Compacted {
                requested: since,
                kept_after: trimmed,
            });
        }
        let events = txn.open_table(EVENTS)?;
        let mut out = Vec::new();
        for entry in events.range(since + 1..)? {
            let (_, v) = entry.map_err(StoreError::from)?;
            out.push(
                Event::decode(v.value())
                    .map_err(|e| StoreError::Backend(format!("corrupt event: {e}")))?,
            );
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.shared.events_tx.subscribe()
    }

    fn revision(&self) -> u64 {
        self.shared.revision.load(Ordering::Acquire)
    }

    fn store_id(&self) -> &str {
        &self.shared.store_id
    }

    fn count(&self) -> Result<u64, StoreError> {
        Ok(self.shared.index().len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::validate;
    use ironboot_proto::pb::{Dhcp, Interface};

    fn hw(name: &str, mac: &str, ip: &str) -> ValidHardware {
        validate(Hardware {
            name: name.into(),
            interfaces: vec![Interface {
                mac: mac.into(),
                dhcp: Some(Dhcp {
                    ip: ip.into(),
                    netmask: "255.255.255.0".into(),
                    ..Default::default()
                }),
                netboot: None,
            }],
            ..Default::default()
        })
        .unwrap()
    }

    fn create(s: &RedbStore, h: ValidHardware) -> Result<Hardware, StoreError> {
        match s.write(WriteOp::Create {
            hardware: h,
            validate_only: false,
        })? {
            WriteOutcome::Written(hw, _) => Ok(hw),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn create_get_by_every_key() {
        let s = RedbStore::in_memory(100).unwrap();
        let a = create(&s, hw("a", "52:54:00:00:00:01", "10.0.0.1")).unwrap();
        assert_eq!(a.revision, 1);
        assert_eq!(s.revision(), 1);
        for key in [
            Lookup::Id(a.id.clone()),
            Lookup::Name("a".into()),
            Lookup::Mac(MacAddr::parse("52:54:00:00:00:01").unwrap()),
            Lookup::Ip("10.0.0.1".parse().unwrap()),
        ] {
            assert_eq!(s.get(&key).unwrap().as_ref(), Some(&a), "{key}");
        }
        assert_eq!(s.get(&Lookup::Name("b".into())).unwrap(), None);
    }

    #[test]
    fn conflicts_name_the_holder_and_change_nothing() {
        let s = RedbStore::in_memory(100).unwrap();
        create(&s, hw("a", "52:54:00:00:00:01", "10.0.0.1")).unwrap();
        let e = create(&s, hw("b", "52:54:00:00:00:01", "10.0.0.2")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "MAC 52:54:00:00:00:01 is already used by hardware \"a\""
        );
        let e = create(&s, hw("b", "52:54:00:00:00:02", "10.0.0.1")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "IP 10.0.0.1 is already used by hardware \"a\""
        );
        let e = create(&s, hw("a", "52:54:00:00:00:03", "10.0.0.3")).unwrap_err();
        assert!(matches!(e, StoreError::Conflict { .. }));
        assert_eq!(s.revision(), 1);
        assert_eq!(s.count().unwrap(), 1);
        assert!(
            s.get(&Lookup::Mac(MacAddr::parse("52:54:00:00:00:02").unwrap()))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn update_moves_indexes_checks_revision_and_skips_no_ops() {
        let s = RedbStore::in_memory(100).unwrap();
        let a = create(&s, hw("a", "52:54:00:00:00:01", "10.0.0.1")).unwrap();
        let mut moved = hw("a", "52:54:00:00:00:09", "10.0.0.9");
        let stale = WriteOp::Update {
            hardware: moved.clone(),
            expected_revision: 7,
            allow_missing: false,
            validate_only: false,
        };
        assert!(matches!(
            s.write(stale),
            Err(StoreError::StaleRevision { actual: 1, .. })
        ));
        moved.hardware.id = a.id.clone();
        let op = WriteOp::Update {
            hardware: moved.clone(),
            expected_revision: 1,
            allow_missing: false,
            validate_only: false,
        };
        let WriteOutcome::Written(b, UpdateOutcome::Updated) = s.write(op.clone()).unwrap() else {
            panic!()
        };
        assert_eq!((b.id.as_str(), b.revision), (a.id.as_str(), 2));
        assert!(
            s.get(&Lookup::Mac(MacAddr::parse("52:54:00:00:00:01").unwrap()))
                .unwrap()
                .is_none()
        );
        assert!(
            s.get(&Lookup::Ip("10.0.0.9".parse().unwrap()))
                .unwrap()
                .is_some()
        );
        // Same content again: nothing written, revision kept.
        let again = WriteOp::Update {
            hardware: moved,
            expected_revision: 0,
            allow_missing: false,
            validate_only: false,
        };
        let WriteOutcome::Written(c, UpdateOutcome::Unchanged) = s.write(again).unwrap() else {
            panic!()
        };
        assert_eq!(c.revision, 2);
        assert_eq!(s.revision(), 2);
    }

    #[test]
    fn upsert_and_delete_emit_events_in_order() {
        let s = RedbStore::in_memory(100).unwrap();
        let mut rx = s.subscribe();
        let op = WriteOp::Update {
            hardware: hw("a", "52:54:00:00:00:01", ""),
            expected_revision: 0,
            allow_missing: true,
            validate_only: false,
        };
        let WriteOutcome::Written(a, UpdateOutcome::Created) = s.write(op).unwrap() else {
            panic!()
        };
        s.write(WriteOp::Delete {
            key: Lookup::Id(a.id.clone()),
            expected_revision: 0,
        })
        .unwrap();
        assert!(matches!(
            s.write(WriteOp::Delete {
                key: Lookup::Id(a.id.clone()),
                expected_revision: 0
            }),
            Err(StoreError::NotFound(_))
        ));
        let evs = s.events_since(0, 10).unwrap();
        let kinds: Vec<_> = evs.iter().map(|e| (e.r#type, e.revision)).collect();
        assert_eq!(
            kinds,
            vec![(EventType::Added as i32, 1), (EventType::Deleted as i32, 2)]
        );
        assert_eq!(rx.try_recv().unwrap().revision, 1);
        assert_eq!(rx.try_recv().unwrap().revision, 2);
        assert!(matches!(
            s.events_since(5, 10),
            Err(StoreError::FutureRevision { .. })
        ));
    }

    #[test]
    fn event_log_is_trimmed_to_retention() {
        let s = RedbStore::in_memory(3).unwrap();
        for i in 1..=6u8 {
            create(
                &s,
                hw(&format!("m{i}"), &format!("52:54:00:00:00:{i:02x}"), ""),
            )
            .unwrap();
        }
        assert!(matches!(
            s.events_since(1, 10),
            Err(StoreError::Compacted { kept_after: 3, .. })
        ));
        let evs = s.events_since(3, 10).unwrap();
        assert_eq!(
            evs.iter().map(|e| e.revision).collect::<Vec<_>>(),
            vec![4, 5, 6]
        );
    }

    #[test]
    fn list_pages_by_name_with_selector() {
        let s = RedbStore::in_memory(100).unwrap();
        for i in 0..7u8 {
            let mut h = hw(&format!("m{i}"), &format!("52:54:00:00:01:{i:02x}"), "");
            h.hardware.labels.insert(
                "parity".into(),
                if i % 2 == 0 { "even" } else { "odd" }.into(),
            );
            create(&s, h).unwrap();
        }
        let all = Selector::default();
        let p1 = s.list(None, 3, &all).unwrap();
        assert_eq!(
            p1.hardware
                .iter()
                .map(|h| h.name.as_str())
                .collect::<Vec<_>>(),
            ["m0", "m1", "m2"]
        );
        let p2 = s.list(p1.next_after.as_deref(), 3, &all).unwrap();
        let p3 = s.list(p2.next_after.as_deref(), 3, &all).unwrap();
        assert_eq!(p3.hardware.len(), 1);
        assert_eq!(p3.next_after, None);
        let odd = s
            .list(None, 100, &Selector::parse("parity=odd").unwrap())
            .unwrap();
        assert_eq!(odd.hardware.len(), 3);
        assert_eq!(odd.revision, 7);
    }

    #[test]
    fn concurrent_creates_of_one_mac_have_one_winner() {
        let s = Arc::new(RedbStore::in_memory(1000).unwrap());
        let handles: Vec<_> = (0..16)
            .map(|i| {
                let s = s.clone();
                std::thread::spawn(move || {
                    create(&s, hw(&format!("racer{i}"), "52:54:00:aa:bb:cc", "")).is_ok()
                })
            })
            .collect();
        let wins = handles
            .into_iter()
            .filter(|_| true)
            .map(|h| h.join().unwrap())
            .filter(|w| *w)
            .count();
        assert_eq!(wins, 1);
        assert_eq!(s.count().unwrap(), 1);
    }

    #[test]
    fn survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hw.redb");
        let id;
        {
            let s = RedbStore::open(&path, 100).unwrap();
            id = create(&s, hw("a", "52:54:00:00:00:01", "10.0.0.1"))
                .unwrap()
                .id;
        }
        let s = RedbStore::open(&path, 100).unwrap();
        assert_eq!(s.revision(), 1);
        assert_eq!(s.get(&Lookup::Name("a".into())).unwrap().unwrap().id, id);
        let store_id = s.store_id().to_string();
        drop(s);
        assert_eq!(RedbStore::open(&path, 100).unwrap().store_id(), store_id);
    }
}
