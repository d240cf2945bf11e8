//! Metric names and the few helpers that record them, so names are spelled once.
//!
//! - `http_requests_total{route,status}`: every answered request.
//! - `http_request_duration_seconds{route}`: time to the response head.
//! - `http_response_body_bytes_total{route}`: declared body bytes sent (Content-Length).
//! - `ipxe_scripts_rendered_total{kind}`: installer, custom_url, custom_contents.
//! - `ipxe_script_render_errors_total`: a template failed at request time (500).
//! - `http_refused_total{route,reason}`: unknown, disabled, pxe_not_allowed,
//!   registry_unavailable, bad_mac, bad_path.
//! - `http_connections_active`, `http_connection_limit_reached_total`,
//!   `http_idle_timeouts_total`, `http_accept_errors_total`.
//! - `http_sendfile_bytes_total`: binary bytes sent zero-copy; `ipxe_zero_copy_bytes`:
//!   memfd bytes held for that; `ipxe_script_cache_entries`,
//!   `ipxe_script_cache_flushes_total`.

use std::collections::HashMap;
use std::sync::{OnceLock, RwLock};
use std::time::Duration;

pub const REQUESTS: &str = "http_requests_total";
pub const DURATION: &str = "http_request_duration_seconds";
pub const BODY_BYTES: &str = "http_response_body_bytes_total";
pub const SCRIPTS: &str = "ipxe_scripts_rendered_total";
pub const SCRIPT_ERRORS: &str = "ipxe_script_render_errors_total";
pub const REFUSED: &str = "http_refused_total";
pub const CONNECTIONS: &str = "http_connections_active";
pub const CONNECTION_LIMIT: &str = "http_connection_limit_reached_total";
pub const IDLE_TIMEOUTS: &str = "http_idle_timeouts_total";
pub const ACCEPT_ERRORS: &str = "http_accept_errors_total";
pub const SENDFILE_BYTES: &str = "http_sendfile_bytes_total";

/// Registers every description (`# HELP`); call once the recorder is installed.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        REQUESTS,
        "HTTP requests answered, by route and status code."
    );
    describe_histogram!(
        DURATION,
        Unit::Seconds,
        "Time to the response head, by route."
    );
    describe_counter!(
        BODY_BYTES,
        Unit::Bytes,
        "Declared response body bytes (Content-Length), by route."
    );
    describe_counter!(
        SCRIPTS,
        "iPXE scripts rendered, by kind (installer, custom_url, custom_contents)."
    );
    describe_counter!(
        SCRIPT_ERRORS,
        "iPXE script templates that failed at request time (answered 500)."
    );
    describe_counter!(
        REFUSED,
        "Requests refused, by route and reason (unknown, disabled, pxe_not_allowed, registry_unavailable, bad_mac, bad_path)."
    );
    describe_gauge!(CONNECTIONS, "Open HTTP connections.");
    describe_counter!(
        CONNECTION_LIMIT,
        "Connections refused because --max-connections were open."
    );
    describe_counter!(
        IDLE_TIMEOUTS,
        "Connections closed for idling past --idle-timeout."
    );
    describe_counter!(ACCEPT_ERRORS, "Errors accepting connections.");
    describe_counter!(
        SENDFILE_BYTES,
        Unit::Bytes,
        "Binary bytes sent zero-copy (sendfile)."
    );
    describe_gauge!(
        "ipxe_zero_copy_bytes",
        Unit::Bytes,
        "Bytes held in sealed in-memory files for zero-copy sends."
    );
    describe_gauge!(
        "ipxe_script_cache_entries",
        "Rendered scripts held in the script cache."
    );
    describe_counter!(
        "ipxe_script_cache_flushes_total",
        "Times the script cache was emptied because it was full."
    );
    bootfiles::Catalogue::describe_metrics();
}

/// Status codes as static label values (no allocation per request).
fn status_label(status: u16) -> &'static str {
    match status {
        200 => "200",
        206 => "206",
        304 => "304",
        400 => "400",
        403 => "403",
        404 => "404",
        405 => "405",
        416 => "416",
        500 => "500",
        503 => "503",
        s if s < 200 => "1xx",
        s if s < 300 => "2xx",
        s if s < 400 => "3xx",
        s if s < 500 => "4xx",
        _ => "5xx",
    }
}

/// Handles of the per-request metrics of one (route, status), registered once: the
/// macros build a key and look it up in the registry on every call, which showed up in
/// profiles of script requests.
#[derive(Clone)]
struct RequestHandles {
    requests: metrics::Counter,
    duration: metrics::Histogram,
    bytes: metrics::Counter,
}

type HandleMap = HashMap<(&'static str, &'static str), RequestHandles>;

fn handles(route: &'static str, status: &'static str) -> RequestHandles {
    static MAP: OnceLock<RwLock<HandleMap>> = OnceLock::new();
    let map = MAP.get_or_init(Default::default);
    if let Some(h) = map
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .get(&(route, status))
    {
        return h.clone();
    }
    let h = RequestHandles {
        requests: metrics::counter!(REQUESTS, "route" => route, "status" => status),
        duration: metrics::histogram!(DURATION, "route" => route),
        bytes: metrics::counter!(BODY_BYTES, "route" => route),
    };
    // Routes and status labels are static strings from small fixed sets: bounded.
    map.write()
        .unwrap_or_else(|p| p.into_inner())
        .insert((route, status), h.clone());
    h
}

pub fn request(route: &'static str, status: u16, elapsed: Duration, body_bytes: Option<u64>) {
    let h = handles(route, status_label(status));
    h.requests.increment(1);
    h.duration.record(elapsed.as_secs_f64());
    if let Some(n) = body_bytes {
        h.bytes.increment(n);
    }
}

pub fn script_rendered(kind: &'static str) {
    metrics::counter!(SCRIPTS, "kind" => kind).increment(1);
}

pub fn script_error() {
    metrics::counter!(SCRIPT_ERRORS).increment(1);
}

pub fn refused(route: &'static str, reason: &'static str) {
    metrics::counter!(REFUSED, "route" => route, "reason" => reason).increment(1);
}

pub fn connection_opened() {
    metrics::gauge!(CONNECTIONS).increment(1.0);
}

pub fn connection_closed() {
    metrics::gauge!(CONNECTIONS).decrement(1.0);
}

pub fn connection_limit_reached() {
    metrics::counter!(CONNECTION_LIMIT).increment(1);
}

pub fn idle_timeout() {
    metrics::counter!(IDLE_TIMEOUTS).increment(1);
}

pub fn accept_error() {
    metrics::counter!(ACCEPT_ERRORS).increment(1);
}

pub fn sendfile_bytes(n: u64) {
    metrics::counter!(SENDFILE_BYTES).increment(n);
}
