//! Registry metrics: every `hardware.v1` call by method and gRPC status code, its
//! latency by method, and the store's size (read when `/metrics` is scraped). Names and
//! meanings are in the README's Metrics section.
//!
//! [`Metered`] wraps the service rather than living in each handler, so the handlers stay
//! as they are; the per-(method, code) counter handles are registered once, since a
//! labelled `counter!` looks the series up on every call.

use std::sync::{Arc, Weak};
use std::time::Instant;

use ironboot_proto::pb::hardware_service_server::HardwareService;
use ironboot_proto::pb::{
    CreateHardwareRequest, CreateHardwareResponse, DeleteHardwareRequest, DeleteHardwareResponse,
    GetHardwareRequest, GetHardwareResponse, ListHardwareRequest, ListHardwareResponse,
    UpdateHardwareRequest, UpdateHardwareResponse, WatchHardwareRequest,
};
use metrics::{
    Counter, Histogram, Unit, counter, describe_counter, describe_gauge, describe_histogram,
    histogram,
};
use tonic::{Code, Request, Response, Status};

use crate::store::HardwareStore;

pub const RPCS: &str = "registry_rpcs_total";
pub const RPC_DURATION: &str = "registry_rpc_duration_seconds";
pub const STORE_RECORDS: &str = "registry_store_records";
pub const STORE_REVISION: &str = "registry_store_revision";

/// The `method` label values, in [`Method`] order.
const METHODS: [&str; 6] = [
    "CreateHardware",
    "UpdateHardware",
    "DeleteHardware",
    "GetHardware",
    "ListHardware",
    "WatchHardware",
];

#[derive(Clone, Copy)]
enum Method {
    Create,
    Update,
    Delete,
    Get,
    List,
    Watch,
}

/// The `code` label: the canonical gRPC status code names, indexed by code number.
const CODES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// Registers the descriptions (`# HELP`) of the registry's own metrics.
pub fn describe() {
    describe_counter!(
        RPCS,
        "hardware.v1 calls answered, by method and gRPC status code (WatchHardware: the code the stream started with)."
    );
    describe_histogram!(
        RPC_DURATION,
        Unit::Seconds,
        "Time to answer a hardware.v1 call, by method (WatchHardware: until the stream starts)."
    );
    describe_gauge!(
        STORE_RECORDS,
        "Hardware records in the registry's store (read at scrape time)."
    );
    describe_gauge!(
        STORE_REVISION,
        "The registry store's current revision (read at scrape time)."
    );
}

/// Sets the store gauges on every scrape, for as long as the store lives.
pub fn watch_store(store: Weak<dyn HardwareStore>) {
    ironboot_telemetry::metrics::on_scrape(move || {
        let Some(store) = store.upgrade() else {
            return false;
        };
        if let Ok(n) = store.count() {
            metrics::gauge!(STORE_RECORDS).set(n as f64);
        }
        metrics::gauge!(STORE_REVISION).set(store.revision() as f64);
        true
    });
}

struct Handles {
    calls: Vec<[Counter; 17]>,
    durations: Vec<Histogram>,
}

/// A `HardwareService` that counts and times every call of the one it wraps.
pub struct Metered<S> {
    inner: S,
    handles: Arc<Handles>,
}

impl<S> Metered<S> {
    /// Registers the metric handles: call after the recorder is installed
    /// (`ironboot_telemetry::metrics::init_metrics`), or they are no-ops.
    pub fn new(inner: S) -> Self {
        let calls = METHODS
            .iter()
            .map(|m| CODES.map(|c| counter!(RPCS, "method" => *m, "code" => c)))
            .collect();
        let durations = METHODS
            .iter()
            .map(|m| histogram!(RPC_DURATION, "method" => *m))
            .collect();
        Metered {
            inner,
            handles: Arc::new(Handles { calls, durations }),
        }
    }

    fn record<T>(&self, method: Method, started: Instant, result: &Result<T, Status>) {
        let code = match result {
            Ok(_) => Code::Ok,
            Err(s) => s.code(),
        };
        let m = method as usize;
        self.handles.durations[m].record(started.elapsed().as_secs_f64());
        match self.handles.calls[m].get(code as usize) {
            Some(c) => c.increment(1),
            None => counter!(RPCS, "method" => METHODS[m], "code" => "UNKNOWN").increment(1),
        }
    }
}

impl Metered<crate::service::Registry> {
    /// [`crate::service::Registry::get_hardware_encoded`], counted as GetHardware.
    pub async fn get_hardware_encoded(
        &self,
        req: Request<GetHardwareRequest>,
    ) -> Result<Response<crate::encoded_get::EncodedGetHardwareResponse>, Status> {
        let t = Instant::now();
        let r = self.inner.get_hardware_encoded(req).await;
        self.record(Method::Get, t, &r);
        r
    }
}

#[tonic::async_trait]
impl<S: HardwareService> HardwareService for Metered<S> {
    async fn create_hardware(
        &self,
        req: Request<CreateHardwareRequest>,
    ) -> Result<Response<CreateHardwareResponse>, Status> {
        let t = Instant::now();
        let r = self.inner.create_hardware(req).await;
        self.record(Method::Create, t, &r);
        r
    }

    async fn update_hardware(
        &self,
        req: Request<UpdateHardwareRequest>,
    ) -> Result<Response<UpdateHardwareResponse>, Status> {
        let t = Instant::now();
        let r = self.inner.update_hardware(req).await;
        self.record(Method::Update, t, &r);
        r
    }

    async fn delete_hardware(
        &self,
        req: Request<DeleteHardwareRequest>,
    ) -> Result<Response<DeleteHardwareResponse>, Status> {
        let t = Instant::now();
        let r = self.inner.delete_hardware(req).await;
        self.record(Method::Delete, t, &r);
        r
    }

    async fn get_hardware(
        &self,
        req: Request<GetHardwareRequest>,
    ) -> Result<Response<GetHardwareResponse>, Status> {
        let t = Instant::now();
        let r = self.inner.get_hardware(req).await;
        self.record(Method::Get, t, &r);
        r
    }

    async fn list_hardware(
        &self,
        req: Request<ListHardwareRequest>,
    ) -> Result<Response<ListHardwareResponse>, Status> {
        let t = Instant::now();
        let r = self.inner.list_hardware(req).await;
        self.record(Method::List, t, &r);
        r
    }

    type WatchHardwareStream = S::WatchHardwareStream;

    async fn watch_hardware(
        &self,
        req: Request<WatchHardwareRequest>,
    ) -> Result<Response<Self::WatchHardwareStream>, Status> {
        let t = Instant::now();
        let r = self.inner.watch_hardware(req).await;
        self.record(Method::Watch, t, &r);
        r
    }
}
