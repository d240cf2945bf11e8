//! OpenTelemetry span export over OTLP/gRPC.
//!
//! The exporter runs on a small runtime of its own (one thread, `otel-export`), not on
//! the service's: its gRPC channel then works whatever runtime — or none — the service
//! uses, and flushing at shutdown never waits on a runtime that is itself shutting down.
//! Spans are batched (the SDK's batch processor on its own thread; OTEL_BSP_* variables
//! tune it) so a request never waits for the collector, and a collector that is down
//! costs dropped spans, not memory.
//!
//! Only the spans of ironboot's own crates are exported: the gRPC, HTTP and exporter
//! libraries underneath stay out, so an export error never turns into spans to export.

use std::sync::OnceLock;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Subscriber;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::registry::LookupSpan;

/// The crates whose spans are exported (tracing targets are crate paths).
pub const EXPORTED_TARGETS: &[&str] = &[
    "dhcp_svc",
    "tftp_svc",
    "ipxe_http_svc",
    "syslog_svc",
    "hardware_api",
    "hwctl",
    "ironboot_proto",
    "ironboot_telemetry",
    "bootfiles",
];

/// How long one export call may take before the batch is given up.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// A running span exporter.
pub struct Exporter {
    provider: SdkTracerProvider,
    service: String,
    endpoint: String,
}

impl Exporter {
    /// Connects (lazily) to `endpoint` and starts the batch processor. Fails only on an
    /// endpoint that cannot be used; a collector that is not up yet is retried by the
    /// channel and costs dropped batches meanwhile.
    pub fn start(endpoint: &str, service: &str) -> Result<Exporter, String> {
        let endpoint = endpoint.trim();
        let uri: http::Uri = endpoint
            .parse()
            .map_err(|e| format!("OTLP endpoint {endpoint:?} is not a URL: {e}"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => {
                return Err(format!(
                    "OTLP endpoint {endpoint:?}: scheme {other:?} is not supported; use http:// to a collector (or a local collector sidecar that forwards over TLS)"
                ));
            }
            None => {
                return Err(format!(
                    "OTLP endpoint {endpoint:?} needs a scheme, e.g. http://{endpoint}"
                ));
            }
        }
        if uri.host().is_none() {
            return Err(format!("OTLP endpoint {endpoint:?} has no host"));
        }
        let rt = runtime().map_err(|e| format!("cannot start the exporter thread: {e}"))?;
        let _enter = rt.enter();
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .with_timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|e| format!("OTLP exporter for {endpoint:?}: {e}"))?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource(service))
            .build();
        Ok(Exporter {
            provider,
            service: service.to_string(),
            endpoint: endpoint.to_string(),
        })
    }

    /// The collector this exporter sends to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The `tracing` layer that turns ironboot's spans into OpenTelemetry spans.
    pub fn layer<S>(&self) -> impl Layer<S> + Send + Sync + 'static
    where
        S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
    {
        let targets = EXPORTED_TARGETS.iter().fold(Targets::new(), |t, name| {
            t.with_target(*name, LevelFilter::INFO)
        });
        tracing_opentelemetry::layer()
            .with_tracer(self.provider.tracer(self.service.clone()))
            .with_threads(false)
            .with_location(false)
            .with_filter(targets)
    }

    /// Exports what is queued and stops. Safe to call from inside or outside a runtime:
    /// the batch thread and the exporter's own runtime do the work.
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            eprintln!(
                "{}: flushing trace spans to {} failed: {e}",
                self.service, self.endpoint
            );
        }
    }
}

/// service.name (OTEL_SERVICE_NAME wins when set), service.namespace, service.version,
/// host.name, and whatever OTEL_RESOURCE_ATTRIBUTES adds.
fn resource(service: &str) -> Resource {
    let mut b = Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none_or(|v| v.is_empty()) {
        b = b.with_service_name(service.to_string());
    }
    let mut attrs = vec![
        KeyValue::new("service.namespace", "ironboot"),
        KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
    ];
    if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        attrs.push(KeyValue::new("host.name", host.trim().to_string()));
    }
    b.with_attributes(attrs).build()
}

/// The exporter's runtime, started on first use.
fn runtime() -> std::io::Result<&'static tokio::runtime::Runtime> {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    if let Some(rt) = RT.get() {
        return Ok(rt);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("otel-export")
        .enable_all()
        .build()?;
    Ok(RT.get_or_init(|| rt))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unusable_endpoints_are_explained() {
        let err = |e: &str| Exporter::start(e, "test").err().unwrap_or_default();
        assert!(
            err("collector:4317").contains("needs a scheme"),
            "{}",
            err("collector:4317")
        );
        assert!(err("https://collector:4317").contains("not supported"));
        assert!(
            err("http://").contains("not a URL") || err("http://").contains("no host"),
            "{}",
            err("http://")
        );
        assert!(err("not a url at all").contains("not a URL"));
    }

    #[test]
    fn a_collector_that_is_down_does_not_stop_the_service() {
        // Nothing listens on port 9 (discard) of loopback: start succeeds (the channel
        // connects lazily), export fails quietly, shutdown returns within its timeout.
        let e = Exporter::start("http://127.0.0.1:9", "test").expect("lazy connect");
        assert_eq!(e.endpoint(), "http://127.0.0.1:9");
        let t = std::time::Instant::now();
        e.shutdown();
        assert!(t.elapsed() < EXPORT_TIMEOUT * 3, "{:?}", t.elapsed());
    }
}
