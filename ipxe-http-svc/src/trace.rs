//! Each request's span and the W3C trace context it continues.
//!
//! A request names its parent in one of three ways: a `traceparent` header (any HTTP
//! client), `?traceparent=…` in the URL (the `auto.ipxe` URL dhcp-svc hands iPXE), or a
//! Smee-style `-00-…` suffix on a binary's name (the boot file dhcp-svc hands firmware).
//! The request middleware opens one span per request as that parent's child and leaves
//! the span's own context on the request ([`RequestTrace`]); the installer script puts
//! that value on the kernel command line, so the booted OS continues the same trace.

use axum::extract::Request;
use bootfiles::TraceParent;
use ironboot_telemetry::trace::continue_trace;

/// The trace context of the request's own span.
#[derive(Clone, Copy, Debug)]
pub struct RequestTrace(pub TraceParent);

/// The parent the request names, header first, then query, then path suffix.
pub fn incoming(req: &Request) -> Option<TraceParent> {
    ironboot_telemetry::trace::from_headers(req.headers())
        .or_else(|| req.uri().query().and_then(from_query))
        .or_else(|| bootfiles::suffix_traceparent(req.uri().path()))
        .filter(TraceParent::is_valid)
}

/// `traceparent=<value>` among `&`-separated query parameters (no percent-decoding is
/// needed: a well-formed value is hex and dashes only).
pub fn from_query(query: &str) -> Option<TraceParent> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix("traceparent="))
        .and_then(TraceParent::parse)
}

/// Opens the span of `req`, continuing the parent it names, and records the span's own
/// context on the request for the handlers. Scrapes and probes (`/metrics`, `/healthz`)
/// get none.
pub fn start(req: &mut Request) -> tracing::Span {
    if matches!(req.uri().path(), "/metrics" | "/healthz") {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(
        "http request",
        method = %req.method(),
        path = %req.uri().path(),
        route = tracing::field::Empty,
        status = tracing::field::Empty,
    );
    let own = continue_trace(&span, incoming(req));
    req.extensions_mut().insert(RequestTrace(own));
    span
}

/// The trace context of this request's span (a fresh trace if the middleware did not run).
pub fn of(req: &Request) -> TraceParent {
    req.extensions()
        .get::<RequestTrace>()
        .map(|t| t.0)
        .unwrap_or_else(TraceParent::new_root)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TP: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    fn req(uri: &str, header: Option<&str>) -> Request {
        let mut b = axum::http::Request::builder().uri(uri);
        if let Some(h) = header {
            b = b.header("traceparent", h);
        }
        b.body(axum::body::Body::empty()).unwrap()
    }

    #[test]
    fn parent_from_header_query_or_suffix() {
        let want = TraceParent::parse(TP);
        assert_eq!(incoming(&req("/auto.ipxe", Some(TP))), want);
        assert_eq!(
            incoming(&req(
                &format!("/52:54:00:00:00:01/auto.ipxe?x=1&traceparent={TP}"),
                None
            )),
            want
        );
        assert_eq!(incoming(&req(&format!("/ipxe/ipxe.efi-{TP}"), None)), want);
        assert_eq!(incoming(&req("/auto.ipxe?traceparent=garbage", None)), None);
        assert_eq!(
            incoming(&req(
                "/auto.ipxe",
                Some("00-00000000000000000000000000000000-b7ad6b7169203331-01")
            )),
            None
        );
    }

    #[test]
    fn the_request_span_continues_the_parent() {
        let mut r = req("/auto.ipxe", Some(TP));
        let _span = start(&mut r);
        let own = of(&r);
        assert_eq!(own.trace_id, TraceParent::parse(TP).unwrap().trace_id);
        assert_ne!(own.header(), TP);
        let mut fresh = req("/auto.ipxe", None);
        let _span = start(&mut fresh);
        assert!(of(&fresh).is_valid());
        assert_ne!(of(&fresh).trace_id, own.trace_id);
    }
}
