//! Where hardware records live.
//!
//! [`HardwareStore`] is what the gRPC service needs from storage; engines sit side by
//! side behind it. Today there is one engine, [`redb::RedbStore`] — embedded, ACID,
//! pure Rust — used with a file (durable, the default) or with memory (tests, demos).
//! A future engine (e.g. PostgreSQL for a replicated registry) implements the same
//! trait and the same guarantees:
//!
//! - name, MAC and IP uniqueness are checked in the transaction that writes;
//! - every change gets the next store revision, and the change event is written in
//!   that same transaction, so watchers can resume after a restart;
//! - a write is acknowledged only once it is durable.

pub mod index;
pub mod redb;

use std::net::Ipv4Addr;
use std::sync::Arc;

use bytes::Bytes;
use ironboot_proto::MacAddr;
use ironboot_proto::pb::{Hardware, UpdateOutcome, WatchHardwareResponse};
use tokio::sync::broadcast;

use crate::selector::Selector;
use crate::validate::ValidHardware;

/// A change event as stored and streamed (type, record, revision).
pub type Event = WatchHardwareResponse;

/// How a caller names one record for reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Id(String),
    Name(String),
    Mac(MacAddr),
    Ip(Ipv4Addr),
}

impl std::fmt::Display for Lookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Lookup::Id(id) => write!(f, "with id {id:?}"),
            Lookup::Name(n) => write!(f, "named {n:?}"),
            Lookup::Mac(m) => write!(f, "with MAC {m}"),
            Lookup::Ip(ip) => write!(f, "with IP {ip}"),
        }
    }
}

/// A write the store performs atomically.
#[derive(Debug, Clone)]
pub enum WriteOp {
    Create {
        hardware: ValidHardware,
        validate_only: bool,
    },
    /// Replace the record with the same id (or, without id, the same name).
    Update {
        hardware: ValidHardware,
        expected_revision: u64,
        allow_missing: bool,
        validate_only: bool,
    },
    Delete {
        key: Lookup,
        expected_revision: u64,
    },
}

/// What a successful write did.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteOutcome {
    Written(Hardware, UpdateOutcome),
    Deleted { hardware: Hardware, revision: u64 },
}

/// One page of a listing.
#[derive(Debug, Clone)]
pub struct Page {
    pub hardware: Vec<Hardware>,
    /// Name to continue after, if there is more.
    pub next_after: Option<String>,
    pub revision: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("no hardware {0}")]
    NotFound(String),
    /// `what` reads like `MAC 52:54:00:ee:0d:0b` or `name "machine1"`.
    #[error("{what} is already used by hardware {holder:?}")]
    Conflict { what: String, holder: String },
    #[error("hardware {name:?} is at revision {actual}, not {expected}: read it again and retry")]
    StaleRevision {
        name: String,
        expected: u64,
        actual: u64,
    },
    #[error(
        "revision {requested} is older than the oldest change this registry keeps (it keeps changes after {kept_after}); list again"
    )]
    Compacted { requested: u64, kept_after: u64 },
    #[error("revision {requested} is newer than this store's revision {current}; list again")]
    FutureRevision { requested: u64, current: u64 },
    #[error("storage failure: {0}")]
    Backend(String),
}

pub trait HardwareStore: Send + Sync + 'static {
    /// Performs a write and blocks until it is durable (or refused).
    fn write(&self, op: WriteOp) -> Result<WriteOutcome, StoreError>;
    fn get(&self, key: &Lookup) -> Result<Option<Hardware>, StoreError>;
    /// The record's protobuf encoding (a `Hardware` message): what GetHardware sends.
    /// Engines that keep records encoded hand them out without encoding each time.
    fn get_encoded(&self, key: &Lookup) -> Result<Option<Bytes>, StoreError> {
        Ok(self
            .get(key)?
            .map(|hw| Bytes::from(prost::Message::encode_to_vec(&hw))))
    }
    /// Up to `limit` records ordered by name, starting after `after`, that match.
    fn list(
        &self,
        after: Option<&str>,
        limit: usize,
        selector: &Selector,
    ) -> Result<Page, StoreError>;
    /// Stored events with revision greater than `since`, oldest first, at most `limit`.
    fn events_since(&self, since: u64, limit: usize) -> Result<Vec<Event>, StoreError>;
    /// Every event, as soon as it is durable, in revision order.
    fn subscribe(&self) -> broadcast::Receiver<Arc<Event>>;
    fn revision(&self) -> u64;
    /// Identifies this store (a UUID made when it was created).
    fn store_id(&self) -> &str;
    fn count(&self) -> Result<u64, StoreError>;
}
