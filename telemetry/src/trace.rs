//! One trace per boot: the W3C trace context every service reads from what a machine
//! sends and hands on in what it answers, and the spans that continue it.
//!
//! A boot crosses services only through what the machine carries: the boot-file name
//! DHCP hands out (`<file>-00-<trace>-<span>-<flags>`, Smee's suffix), the `auto.ipxe`
//! URL (`?traceparent=…`), the kernel command line (`traceparent=…`) and the syslog lines
//! the installer sends, plus gRPC metadata towards the registry. [`TraceParent`] is that
//! value; [`continue_trace`] makes a `tracing` span its child and returns the context to
//! hand on.
//!
//! With an OTLP endpoint configured ([`crate::init_logging`]) the spans are real
//! OpenTelemetry spans and are exported. Without one, ids are still made and passed on
//! (a fresh span id under the caller's trace id), so one boot's log lines share a trace
//! id in every service even when no collector runs.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Whether the OpenTelemetry layer is installed (set once by `init_logging`).
static EXPORTING: AtomicBool = AtomicBool::new(false);

pub(crate) fn set_exporting(on: bool) {
    EXPORTING.store(on, Ordering::Relaxed);
}

/// True when spans are exported: worth creating spans that only a trace backend reads.
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// A W3C trace context (`traceparent`, version 00).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub flags: u8,
}

/// Length of `00-<32 hex>-<16 hex>-<2 hex>`.
pub const TRACEPARENT_LEN: usize = 55;

/// Length of the binary form ([`TraceParent::to_bytes`]): version, ids, flags.
pub const TRACEPARENT_BYTES: usize = 26;

impl TraceParent {
    /// A new trace: random non-zero ids, sampled.
    pub fn new_root() -> TraceParent {
        TraceParent {
            trace_id: nonzero(),
            span_id: nonzero(),
            flags: 1,
        }
    }

    /// A new span id under this trace, with the same sampling decision.
    pub fn new_child(&self) -> TraceParent {
        TraceParent {
            trace_id: self.trace_id,
            span_id: nonzero(),
            flags: self.flags,
        }
    }

    /// All-zero ids are invalid in W3C trace context: such a value may be stripped from a
    /// path but never becomes a parent.
    pub fn is_valid(&self) -> bool {
        self.trace_id != [0; 16] && self.span_id != [0; 8]
    }

    /// Parses `00-<32 hex>-<16 hex>-<2 hex>` exactly (lowercase hex, version 00, no
    /// surrounding text). All-zero ids parse but are not [valid](Self::is_valid).
    pub fn parse(s: &str) -> Option<TraceParent> {
        let b = s.as_bytes();
        if b.len() != TRACEPARENT_LEN || &b[..3] != b"00-" || b[35] != b'-' || b[52] != b'-' {
            return None;
        }
        Some(TraceParent {
            trace_id: hex_bytes(&b[3..35])?,
            span_id: hex_bytes(&b[36..52])?,
            flags: hex_bytes::<1>(&b[53..55])?[0],
        })
    }

    /// A `traceparent` header value as clients send it: [`parse`](Self::parse) after
    /// trimming surrounding whitespace.
    pub fn from_header(value: &str) -> Option<TraceParent> {
        Self::parse(value.trim())
    }

    /// The header value, built without `fmt` (this runs once per boot reply).
    pub fn header(&self) -> String {
        let mut out = String::with_capacity(TRACEPARENT_LEN);
        self.write_to(&mut out);
        out
    }

    /// Appends the header value to `out`.
    pub fn write_to(&self, out: &mut String) {
        fn hex(out: &mut String, bytes: &[u8]) {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            for b in bytes {
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 15)]));
            }
        }
        out.push_str("00-");
        hex(out, &self.trace_id);
        out.push('-');
        hex(out, &self.span_id);
        out.push('-');
        hex(out, &[self.flags]);
    }

    /// The binary form Smee puts in DHCP option 43 sub-option 69: version byte 0, trace
    /// id, span id, flags.
    pub fn to_bytes(&self) -> [u8; TRACEPARENT_BYTES] {
        let mut b = [0u8; TRACEPARENT_BYTES];
        b[1..17].copy_from_slice(&self.trace_id);
        b[17..25].copy_from_slice(&self.span_id);
        b[25] = self.flags;
        b
    }

    /// The OpenTelemetry span context of this value, as a remote parent.
    pub fn span_context(&self) -> SpanContext {
        SpanContext::new(
            TraceId::from_bytes(self.trace_id),
            SpanId::from_bytes(self.span_id),
            TraceFlags::new(self.flags),
            true,
            TraceState::default(),
        )
    }

    fn from_span_context(sc: &SpanContext) -> Option<TraceParent> {
        sc.is_valid().then(|| TraceParent {
            trace_id: sc.trace_id().to_bytes(),
            span_id: sc.span_id().to_bytes(),
            flags: sc.trace_flags().to_u8(),
        })
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.header())
    }
}

impl fmt::Debug for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.header())
    }
}

/// Makes `span` a child of `parent` (when given and valid) and returns the trace context
/// to hand on: `span`'s own, so whatever the machine fetches next becomes its child.
///
/// Call it right after creating the span, before entering it. When spans are not
/// exported (or `span` is disabled by the filter), the returned value is a fresh span id
/// under the parent's trace id, or a new trace when there is no parent.
pub fn continue_trace(span: &tracing::Span, parent: Option<TraceParent>) -> TraceParent {
    let parent = parent.filter(TraceParent::is_valid);
    if exporting() && !span.is_disabled() {
        set_parent(span, parent);
        if let Some(own) = TraceParent::from_span_context(span.context().span().span_context()) {
            return own;
        }
    }
    match parent {
        Some(p) => p.new_child(),
        None => TraceParent::new_root(),
    }
}

/// Makes `span` a child of `parent` when spans are exported: for a span that hands
/// nothing on (a binary fetch, a syslog line). Call it before entering the span.
pub fn set_parent(span: &tracing::Span, parent: Option<TraceParent>) {
    if let Some(p) = parent.filter(TraceParent::is_valid)
        && exporting()
    {
        let cx = opentelemetry::Context::new().with_remote_span_context(p.span_context());
        let _ = span.set_parent(cx);
    }
}

/// The trace context of the span the caller is in, to pass on in an outgoing request;
/// None when spans are not exported or the current span has none.
pub fn current() -> Option<TraceParent> {
    if !exporting() {
        return None;
    }
    TraceParent::from_span_context(tracing::Span::current().context().span().span_context())
}

/// Puts the current span's context into outgoing gRPC metadata (`traceparent`).
pub fn inject_grpc(metadata: &mut tonic::metadata::MetadataMap) {
    if let Some(tp) = current()
        && let Ok(v) = tp.header().parse()
    {
        metadata.insert("traceparent", v);
    }
}

/// The `traceparent` header of an incoming HTTP or gRPC request, if well-formed.
pub fn from_headers(headers: &http::HeaderMap) -> Option<TraceParent> {
    headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(TraceParent::from_header)
}

/// Non-zero random bytes (all-zero ids are invalid in W3C trace context).
fn nonzero<const N: usize>() -> [u8; N] {
    loop {
        let b: [u8; N] = rand::random();
        if b != [0; N] {
            return b;
        }
    }
}

/// Lowercase hex only, as W3C trace context requires.
fn hex_bytes<const N: usize>(s: &[u8]) -> Option<[u8; N]> {
    if s.len() != 2 * N {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (i, pair) in s.chunks_exact(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TP: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn parse_and_print_round_trip() {
        let tp = TraceParent::parse(TP).unwrap();
        assert_eq!(tp.trace_id[0], 0x0a);
        assert_eq!(tp.span_id[7], 0x31);
        assert_eq!(tp.flags, 1);
        assert_eq!(tp.header(), TP);
        assert_eq!(tp.to_string(), TP);
        assert_eq!(TraceParent::from_header(&format!(" {TP}\t")), Some(tp));
    }

    #[test]
    fn malformed_values_are_refused() {
        for bad in [
            "",
            &TP[1..],
            &TP.to_uppercase(),
            &TP.replacen("00-", "01-", 1),
            &TP.replace('-', "_"),
            &format!("{TP}0"),
            "00-0af7651916cd43dd8448eb211c80319g-b7ad6b7169203331-01",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad:?}");
        }
        let zero =
            TraceParent::parse("00-00000000000000000000000000000000-b7ad6b7169203331-01").unwrap();
        assert!(!zero.is_valid());
    }

    #[test]
    fn binary_form_for_dhcp() {
        let b = TraceParent::parse(TP).unwrap().to_bytes();
        assert_eq!(b[0], 0);
        assert_eq!(b[1], 0x0a);
        assert_eq!(b[24], 0x31);
        assert_eq!(b[25], 1);
    }

    #[test]
    fn without_export_a_child_keeps_the_trace_and_sampling() {
        let parent = TraceParent::parse(&TP.replace("-01", "-00")).unwrap();
        let span = tracing::info_span!("test");
        let child = continue_trace(&span, Some(parent));
        assert_eq!(child.trace_id, parent.trace_id);
        assert_ne!(child.span_id, parent.span_id);
        assert_eq!(child.flags, 0);
        let root = continue_trace(&span, None);
        assert!(root.is_valid() && root.trace_id != parent.trace_id && root.flags == 1);
        let invalid = TraceParent {
            trace_id: [0; 16],
            ..parent
        };
        assert_ne!(continue_trace(&span, Some(invalid)).trace_id, [0; 16]);
    }
}
