//! Any bytes a sender puts in a datagram: parsing and rendering must not panic, and the
//! JSON line must be one valid object.
#![no_main]

use libfuzzer_sys::fuzz_target;
use syslog_svc::parse::{ParseContext, parse};
use syslog_svc::record::{Meta, Transport, write_line};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let p = parse(&text, &ParseContext::utc_now());
    let meta = Meta {
        received: std::time::SystemTime::UNIX_EPOCH,
        source: std::net::SocketAddr::from(([127, 0, 0, 1], 514)),
        transport: Transport::Udp,
        truncated: false,
        invalid_utf8: false,
    };
    let mut out = Vec::new();
    write_line(&mut out, &meta, &p, syslog_svc::traceparent::extract(&p), None);
    assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
    let v: serde_json::Value = serde_json::from_slice(&out).expect("valid JSON");
    assert!(v.is_object());
});
