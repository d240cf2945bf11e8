//! Finding the W3C `traceparent` a booting machine carries, so one boot's log lines join
//! the trace that DHCP, the binary fetch and the script started.
//!
//! ipxe-http-svc puts `traceparent=…` on the kernel command line; an installer can log it
//! as an RFC 5424 structured-data parameter (`[trace traceparent="…"]`, any SD-ID) or in
//! its text (`… traceparent=00-…`). Only a well-formed value is reported: a mangled one is
//! worse than none, because it would join the wrong trace or none at all.

use crate::parse::Parsed;

/// Length of a version-00 traceparent: `00-<32 hex>-<16 hex>-<2 hex>`.
const LEN: usize = 55;

/// The traceparent from structured data first (it is explicit), then from the text.
pub fn extract<'a>(p: &'a Parsed<'a>) -> Option<&'a str> {
    for e in &p.structured_data {
        for (k, v) in &e.params {
            if k.eq_ignore_ascii_case("traceparent") && is_valid(v) {
                return Some(v.as_ref());
            }
        }
    }
    from_text(p.message)
}

/// `traceparent=VALUE` or `traceparent="VALUE"` anywhere in the text.
pub fn from_text(text: &str) -> Option<&str> {
    const KEY: &str = "traceparent=";
    let mut from = 0;
    // Each `=` (a memchr search), then look back for the key: far cheaper per message
    // than a substring search, and most lines have no `=`.
    while let Some(eq) = text.get(from..).and_then(|t| t.find('=')).map(|p| from + p) {
        if !text.as_bytes()[..=eq].ends_with(KEY.as_bytes()) {
            from = eq + 1;
            continue;
        }
        let start = eq + 1;
        let start = if text.as_bytes().get(start) == Some(&b'"') {
            start + 1
        } else {
            start
        };
        if let Some(v) = text.get(start..start + LEN) {
            let ends_cleanly = text
                .as_bytes()
                .get(start + LEN)
                .is_none_or(|b| !b.is_ascii_alphanumeric());
            if ends_cleanly && is_valid(v) {
                return Some(v);
            }
        }
        from = start;
    }
    None
}

/// When spans are exported: one span for a line that names its boot's trace, as a child
/// of the span that handed the traceparent out (the `auto.ipxe` request), so a trace
/// backend shows the installer's log lines inside the boot. Lines without a traceparent
/// cost nothing here.
pub fn record_span(
    traceparent: &str,
    p: &Parsed<'_>,
    machine: Option<&crate::record::Identity<'_>>,
) {
    if !ironboot_telemetry::trace::exporting() {
        return;
    }
    let span = tracing::info_span!(
        "syslog message",
        severity = p.severity,
        facility = p.facility,
        app = p.app.unwrap_or(""),
        hostname = p.hostname.unwrap_or(""),
        mac = machine.map(|m| m.mac).unwrap_or(""),
        machine = machine.map(|m| m.name).unwrap_or(""),
    );
    ironboot_telemetry::trace::set_parent(
        &span,
        ironboot_telemetry::TraceParent::parse(traceparent),
    );
    span.in_scope(|| {});
}

/// W3C Trace Context §3.2, version 00 (the one shared parser): lowercase hex, trace-id
/// and parent-id not all zeros.
pub fn is_valid(v: &str) -> bool {
    ironboot_telemetry::TraceParent::parse(v).is_some_and(|t| t.is_valid())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn text_forms() {
        assert_eq!(
            from_text(&format!("booting traceparent={TP} now")),
            Some(TP)
        );
        assert_eq!(from_text(&format!("x traceparent=\"{TP}\"")), Some(TP));
        assert_eq!(
            from_text(&format!("traceparent=bad traceparent={TP}")),
            Some(TP)
        );
        assert_eq!(from_text(&format!("traceparent={TP}ff")), None);
        assert_eq!(from_text("traceparent="), None);
        assert_eq!(from_text("traceparent=é"), None);
    }

    #[test]
    fn validity() {
        assert!(is_valid(TP));
        assert!(!is_valid(&TP.to_uppercase()));
        assert!(!is_valid(
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01"
        ));
        assert!(!is_valid(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"
        ));
        assert!(!is_valid(
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        ));
    }
}
