//! The `hardware.v1.HardwareService` gRPC handlers: authorise, validate, call the store,
//! and turn its answers into the gRPC codes DESIGN.md promises.

use std::net::Ipv4Addr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use ironboot_proto::MacAddr;
use ironboot_proto::pb::hardware_service_server::HardwareService;
use ironboot_proto::pb::{
    CreateHardwareRequest, CreateHardwareResponse, DeleteHardwareRequest, DeleteHardwareResponse,
    EventType, GetHardwareRequest, GetHardwareResponse, ListHardwareRequest, ListHardwareResponse,
    UpdateHardwareRequest, UpdateHardwareResponse, UpdateOutcome, WatchHardwareRequest,
    WatchHardwareResponse, delete_hardware_request, get_hardware_request,
};
use tokio::sync::{broadcast, mpsc, watch};
use tonic::{Request, Response, Status};

use crate::auth::{Role, Tokens};
use crate::encoded_get::EncodedGetHardwareResponse;
use crate::selector::Selector;
use crate::store::{Event, HardwareStore, Lookup, StoreError, WriteOp, WriteOutcome};
use crate::validate::validate;

pub const DEFAULT_PAGE_SIZE: usize = 500;
pub const MAX_PAGE_SIZE: usize = 5000;
/// Events read from the log per round while a watcher catches up.
const BACKLOG_CHUNK: usize = 1000;

pub struct Registry {
    store: Arc<dyn HardwareStore>,
    tokens: Tokens,
    shutdown: watch::Receiver<bool>,
    bookmark_every: Duration,
}

impl Registry {
    pub fn new(
        store: Arc<dyn HardwareStore>,
        tokens: Tokens,
        shutdown: watch::Receiver<bool>,
        bookmark_every: Duration,
    ) -> Self {
        Registry {
            store,
            tokens,
            shutdown,
            bookmark_every,
        }
    }

    fn authorize<T>(&self, req: &Request<T>, role: Role) -> Result<String, Status> {
        self.tokens.authorize(req.metadata(), role)
    }

    /// GetHardware as the server answers it: the stored encoding of the record, sent as
    /// it is (`crate::encoded_get`). Same checks and codes as the decoded
    /// [`HardwareService::get_hardware`].
    pub async fn get_hardware_encoded(
        &self,
        req: Request<GetHardwareRequest>,
    ) -> Result<Response<EncodedGetHardwareResponse>, Status> {
        let key = self.read_key(req)?;
        // A read of the in-memory index: cheaper inline than a hop to the blocking pool.
        let hardware = self
            .store
            .get_encoded(&key)
            .map_err(store_status)?
            .ok_or_else(|| not_found(&key))?;
        Ok(Response::new(EncodedGetHardwareResponse { hardware }))
    }

    /// The record a GetHardware asks for, from a caller allowed to read.
    fn read_key(&self, req: Request<GetHardwareRequest>) -> Result<Lookup, Status> {
        self.authorize(&req, Role::Read)?;
        parse_lookup(req.into_inner().key)
    }

    async fn write(&self, op: WriteOp) -> Result<WriteOutcome, Status> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.write(op))
            .await
            .map_err(|e| Status::internal(format!("write task failed: {e}")))?
            .map_err(store_status)
    }
}

/// Maps store answers to the codes clients act on.
pub fn store_status(e: StoreError) -> Status {
    let msg = e.to_string();
    match e {
        StoreError::NotFound(_) => Status::not_found(msg),
        StoreError::Conflict { .. } => Status::already_exists(msg),
        StoreError::StaleRevision { .. } => Status::aborted(msg),
        StoreError::Compacted { .. } | StoreError::FutureRevision { .. } => {
            Status::out_of_range(msg)
        }
        StoreError::Backend(_) => Status::unavailable(msg),
    }
}

fn not_found(key: &Lookup) -> Status {
    Status::not_found(format!("no hardware {key}"))
}

fn parse_lookup(key: Option<get_hardware_request::Key>) -> Result<Lookup, Status> {
    use get_hardware_request::Key;
    match key {
        Some(Key::Id(id)) if !id.is_empty() => Ok(Lookup::Id(id)),
        Some(Key::Name(n)) if !n.is_empty() => Ok(Lookup::Name(n.trim().to_string())),
        Some(Key::Mac(m)) => MacAddr::parse(&m)
            .map(Lookup::Mac)
            .map_err(|e| Status::invalid_argument(format!("mac: {e}"))),
        Some(Key::Ip(ip)) => ip
            .trim()
            .parse::<Ipv4Addr>()
            .map(Lookup::Ip)
            .map_err(|_| Status::invalid_argument(format!("ip {ip:?}: not an IPv4 address"))),
        _ => Err(Status::invalid_argument(
            "key: give one of id, name, mac or ip",
        )),
    }
}

fn hex_encode(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn hex_decode(s: &str) -> Option<String> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchHardwareResponse, Status>> + Send>>;

#[tonic::async_trait]
impl HardwareService for Registry {
    async fn create_hardware(
        &self,
        req: Request<CreateHardwareRequest>,
    ) -> Result<Response<CreateHardwareResponse>, Status> {
        let who = self.authorize(&req, Role::Write)?;
        let req = req.into_inner();
        let hw = req
            .hardware
            .ok_or_else(|| Status::invalid_argument("hardware: required"))?;
        let valid =
            validate(hw).map_err(|e| Status::invalid_argument(format!("invalid hardware: {e}")))?;
        let name = valid.hardware.name.clone();
        let out = self
            .write(WriteOp::Create {
                hardware: valid,
                validate_only: req.validate_only,
            })
            .await?;
        let WriteOutcome::Written(hardware, _) = out else {
            return Err(Status::internal("store answered a create with a delete"));
        };
        if !req.validate_only {
            tracing::info!(%name, id = %hardware.id, revision = hardware.revision, token = %who, "hardware created");
        }
        Ok(Response::new(CreateHardwareResponse {
            hardware: Some(hardware),
        }))
    }

    async fn update_hardware(
        &self,
        req: Request<UpdateHardwareRequest>,
    ) -> Result<Response<UpdateHardwareResponse>, Status> {
        let who = self.authorize(&req, Role::Write)?;
        let req = req.into_inner();
        let hw = req
            .hardware
            .ok_or_else(|| Status::invalid_argument("hardware: required"))?;
        let valid =
            validate(hw).map_err(|e| Status::invalid_argument(format!("invalid hardware: {e}")))?;
        let name = valid.hardware.name.clone();
        let out = self
            .write(WriteOp::Update {
                hardware: valid,
                expected_revision: req.expected_revision,
                allow_missing: req.allow_missing,
                validate_only: req.validate_only,
            })
            .await?;
        let WriteOutcome::Written(hardware, outcome) = out else {
            return Err(Status::internal("store answered an update with a delete"));
        };
        if !req.validate_only && outcome != UpdateOutcome::Unchanged {
            tracing::info!(%name, id = %hardware.id, revision = hardware.revision, outcome = outcome.as_str_name(), token = %who, "hardware written");
        }
        Ok(Response::new(UpdateHardwareResponse {
            hardware: Some(hardware),
            outcome: outcome as i32,
        }))
    }

    async fn delete_hardware(
        &self,
        req: Request<DeleteHardwareRequest>,
    ) -> Result<Response<DeleteHardwareResponse>, Status> {
        let who = self.authorize(&req, Role::Write)?;
        let req = req.into_inner();
        let key = match req.key {
            Some(delete_hardware_request::Key::Id(id)) if !id.is_empty() => Lookup::Id(id),
            Some(delete_hardware_request::Key::Name(n)) if !n.is_empty() => Lookup::Name(n),
            _ => return Err(Status::invalid_argument("key: give id or name")),
        };
        let out = self
            .write(WriteOp::Delete {
                key,
                expected_revision: req.expected_revision,
            })
            .await?;
        let WriteOutcome::Deleted { hardware, revision } = out else {
            return Err(Status::internal("store answered a delete with a write"));
        };
        tracing::info!(name = %hardware.name, id = %hardware.id, revision, token = %who, "hardware deleted");
        Ok(Response::new(DeleteHardwareResponse {
            hardware: Some(hardware),
            revision,
        }))
    }

    /// The server routes GetHardware to [`Registry::get_hardware_encoded`]; this decoded
    /// form serves in-process callers of the trait.
    async fn get_hardware(
        &self,
        req: Request<GetHardwareRequest>,
    ) -> Result<Response<GetHardwareResponse>, Status> {
        let key = self.read_key(req)?;
        let hardware = self
            .store
            .get(&key)
            .map_err(store_status)?
            .ok_or_else(|| not_found(&key))?;
        Ok(Response::new(GetHardwareResponse {
            hardware: Some(hardware),
        }))
    }

    async fn list_hardware(
        &self,
        req: Request<ListHardwareRequest>,
    ) -> Result<Response<ListHardwareResponse>, Status> {
        self.authorize(&req, Role::Read)?;
        let req = req.into_inner();
        let selector = Selector::parse(&req.label_selector).map_err(Status::invalid_argument)?;
        let limit = match req.page_size as usize {
            0 => DEFAULT_PAGE_SIZE,
            n => n.min(MAX_PAGE_SIZE),
        };
        let after = if req.page_token.is_empty() {
            None
        } else {
            Some(hex_decode(&req.page_token).ok_or_else(|| {
                Status::invalid_argument("page_token: not a token this server issued")
            })?)
        };
        let store = self.store.clone();
        let page =
            tokio::task::spawn_blocking(move || store.list(after.as_deref(), limit, &selector))
                .await
                .map_err(|e| Status::internal(format!("list task failed: {e}")))?
                .map_err(store_status)?;
        Ok(Response::new(ListHardwareResponse {
            hardware: page.hardware,
            next_page_token: page
                .next_after
                .as_deref()
                .map(hex_encode)
                .unwrap_or_default(),
            revision: page.revision,
            store_id: self.store.store_id().to_string(),
        }))
    }

    type WatchHardwareStream = WatchStream;

    async fn watch_hardware(
        &self,
        req: Request<WatchHardwareRequest>,
    ) -> Result<Response<Self::WatchHardwareStream>, Status> {
        self.authorize(&req, Role::Read)?;
        let req = req.into_inner();
        if !req.store_id.is_empty() && req.store_id != self.store.store_id() {
            return Err(Status::out_of_range(format!(
                "store {} is not this registry's store ({}); list again",
                req.store_id,
                self.store.store_id()
            )));
        }
        // Subscribe before reading the log: anything committed from here on arrives
        // live, anything before is in the log; the overlap is skipped by revision.
        let live = self.store.subscribe();
        let start = req.since_revision.unwrap_or_else(|| self.store.revision());
        let store = self.store.clone();
        let first = tokio::task::spawn_blocking(move || store.events_since(start, BACKLOG_CHUNK))
            .await
            .map_err(|e| Status::internal(format!("watch task failed: {e}")))?
            .map_err(store_status)?;
        let (tx, rx) = mpsc::channel(256);
        let feeder = Feeder {
            store: self.store.clone(),
            tx,
            last_sent: start,
            shutdown: self.shutdown.clone(),
            bookmark_every: self.bookmark_every,
        };
        tokio::spawn(feeder.run(first, live));
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

/// Feeds one watcher: the backlog from the log, then live events, with bookmarks.
struct Feeder {
    store: Arc<dyn HardwareStore>,
    tx: mpsc::Sender<Result<WatchHardwareResponse, Status>>,
    last_sent: u64,
    shutdown: watch::Receiver<bool>,
    bookmark_every: Duration,
}

impl Feeder {
    async fn run(mut self, mut chunk: Vec<Event>, mut live: broadcast::Receiver<Arc<Event>>) {
        // Catch up from the log.
        loop {
            let full = chunk.len() == BACKLOG_CHUNK;
            for ev in chunk {
                if !self.send(ev).await {
                    return;
                }
            }
            if !full {
                break;
            }
            match self.read_log().await {
                Some(next) => chunk = next,
                None => return,
            }
        }
        if !self.bookmark().await {
            return;
        }
        let mut ticker = tokio::time::interval(self.bookmark_every);
        ticker.tick().await;
        loop {
            tokio::select! {
                ev = live.recv() => match ev {
                    Ok(ev) => {
                        if ev.revision > self.last_sent && !self.send((*ev).clone()).await {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        // This watcher fell behind the live channel: replay from the log.
                        loop {
                            let Some(events) = self.read_log().await else { return };
                            let done = events.len() < BACKLOG_CHUNK;
                            for ev in events {
                                if !self.send(ev).await {
                                    return;
                                }
                            }
                            if done {
                                break;
                            }
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = ticker.tick() => {
                    if !self.bookmark().await {
                        return;
                    }
                }
                _ = self.shutdown.changed() => {
                    let _ = self.tx.send(Err(Status::unavailable("registry shutting down"))).await;
                    return;
                }
                _ = self.tx.closed() => return,
            }
        }
    }

    /// Reads the next chunk of the log; on failure tells the client and returns None.
    async fn read_log(&mut self) -> Option<Vec<Event>> {
        let store = self.store.clone();
        let since = self.last_sent;
        let res =
            tokio::task::spawn_blocking(move || store.events_since(since, BACKLOG_CHUNK)).await;
        match res {
            Ok(Ok(events)) => Some(events),
            Ok(Err(e)) => {
                let _ = self.tx.send(Err(store_status(e))).await;
                None
            }
            Err(e) => {
                let _ = self
                    .tx
                    .send(Err(Status::internal(format!("watch task failed: {e}"))))
                    .await;
                None
            }
        }
    }

    async fn send(&mut self, ev: Event) -> bool {
        self.last_sent = self.last_sent.max(ev.revision);
        self.tx.send(Ok(ev)).await.is_ok()
    }

    async fn bookmark(&mut self) -> bool {
        let ev = WatchHardwareResponse {
            r#type: EventType::Bookmark as i32,
            hardware: None,
            revision: self.last_sent,
        };
        self.tx.send(Ok(ev)).await.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip() {
        for s in ["", "machine-1", "a.b.c"] {
            assert_eq!(hex_decode(&hex_encode(s)).as_deref(), Some(s));
        }
        assert_eq!(hex_decode("zz"), None);
        assert_eq!(hex_decode("abc"), None);
    }
}
