//! The W3C trace context of a request, handed to the installer as `traceparent=` so the
//! booted OS can continue the boot's trace.
//!
//! Until the telemetry crate exports real spans, the request's span is modelled here: a
//! child of the caller's `traceparent` header when it sends a valid one (same trace id,
//! new span id, its sampled flag), otherwise the root of a fresh sampled trace. Either
//! way the value is well-formed and non-zero, so whatever parses it downstream accepts it.

use bootfiles::TraceParent;

/// Non-zero random bytes (all-zero ids are invalid in W3C trace context).
fn nonzero<const N: usize>() -> [u8; N] {
    loop {
        let b: [u8; N] = rand::random();
        if b != [0; N] {
            return b;
        }
    }
}

/// `tp` as a header value, the same text as its `Display` without going through
/// `fmt` byte by byte (this runs once per script request).
pub fn header(tp: &TraceParent) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = Vec::with_capacity(55);
    out.extend_from_slice(b"00-");
    let hex = |bytes: &[u8], out: &mut Vec<u8>| {
        for b in bytes {
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 15)]);
        }
    };
    hex(&tp.trace_id, &mut out);
    out.push(b'-');
    hex(&tp.span_id, &mut out);
    out.push(b'-');
    hex(&[tp.flags], &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// The span of this request.
pub fn request_span(incoming: Option<&str>) -> TraceParent {
    match incoming.and_then(TraceParent::from_header).filter(TraceParent::is_valid) {
        Some(parent) => TraceParent { trace_id: parent.trace_id, span_id: nonzero(), flags: parent.flags },
        None => TraceParent { trace_id: nonzero(), span_id: nonzero(), flags: 1 },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_of_a_valid_parent() {
        let parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";
        let s = request_span(Some(parent));
        assert_eq!(s.to_string()[..36], parent[..36], "same trace id");
        assert_ne!(&s.to_string()[36..52], &parent[36..52], "new span id");
        assert_eq!(s.flags, 0, "sampling decision kept");
    }

    #[test]
    fn header_matches_display() {
        for _ in 0..100 {
            let t = request_span(None);
            assert_eq!(header(&t), t.to_string());
        }
        let t = TraceParent { trace_id: [0xab; 16], span_id: [0x01; 8], flags: 0 };
        assert_eq!(header(&t), t.to_string());
    }

    #[test]
    fn fresh_root_otherwise() {
        for h in [None, Some("garbage"), Some("00-00000000000000000000000000000000-b7ad6b7169203331-01")] {
            let s = request_span(h);
            assert!(s.is_valid());
            assert_eq!(s.flags, 1);
            assert!(TraceParent::from_header(&s.to_string()).is_some());
        }
        assert_ne!(request_span(None).trace_id, request_span(None).trace_id);
    }
}
