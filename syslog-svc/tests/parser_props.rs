//! Property tests: the parser against garbage and against
//! well-formed messages it must read back exactly; the TCP framing against arbitrary
//! chunking. These run in the normal suite; `fuzz/` has the coverage-guided versions.

use bytes::BytesMut;
use chrono::{FixedOffset, TimeZone, Utc};
use proptest::prelude::*;
use syslog_svc::framing::Decoder;
use syslog_svc::parse::{Format, ParseContext, parse};
use syslog_svc::record::{Meta, Transport, write_line};
use syslog_svc::traceparent;

fn ctx() -> ParseContext {
    ParseContext {
        now: Utc
            .with_ymd_and_hms(2026, 11, 25, 12, 0, 0)
            .single()
            .expect("date"),
        rfc3164_offset: FixedOffset::east_opt(0).expect("offset"),
    }
}

/// Whatever the bytes, a JSON line comes out: one object, one trailing newline.
fn line_for(bytes: &[u8]) -> serde_json::Value {
    let text = String::from_utf8_lossy(bytes);
    let p = parse(&text, &ctx());
    let meta = Meta {
        received: std::time::SystemTime::now(),
        source: "127.0.0.1:1".parse().expect("addr"),
        transport: Transport::Tcp,
        truncated: false,
        invalid_utf8: false,
    };
    let mut out = Vec::new();
    write_line(&mut out, &meta, &p, traceparent::extract(&p), None);
    assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
    assert_eq!(out.last(), Some(&b'\n'));
    serde_json::from_slice(&out).expect("valid JSON")
}

/// Text shaped like syslog, so the generator reaches deep into both grammars.
fn syslogish() -> impl Strategy<Value = String> {
    let pieces = prop::collection::vec(
        prop_oneof![
            Just("<13>".to_string()),
            Just("<191>".to_string()),
            Just("1 ".to_string()),
            Just("- ".to_string()),
            Just("2026-11-25T10:00:00Z ".to_string()),
            Just("2026-02-30T10:00:00+25:00 ".to_string()),
            Just("Nov 25 12:00:00 ".to_string()),
            Just("Feb 30 99:99:99.1234567890 ".to_string()),
            Just("Dec  1 2026 00:00:00: ".to_string()),
            Just("[".to_string()),
            Just("]".to_string()),
            Just("=\"".to_string()),
            Just("\\".to_string()),
            Just("\"".to_string()),
            Just("x@1 a=\"b\"".to_string()),
            Just("app[12]: ".to_string()),
            Just("host ".to_string()),
            Just(":".to_string()),
            Just("traceparent=00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_string()),
            Just("\u{feff}".to_string()),
            Just("é".to_string()),
            Just("\0".to_string()),
            "[ -~]{0,8}",
            any::<char>().prop_map(|c| c.to_string()),
        ],
        0..24,
    );
    pieces.prop_map(|v| v.concat())
}

/// Header fields and SD names: PRINTUSASCII without space, `=`, `[`, `]`, `"` (colons
/// included: a hostname may end in one). Not starting with `-`, so never NIL.
fn token() -> impl Strategy<Value = String> {
    "[!-~&&[^ \\[\\]=\"-]][!-~&&[^ \\[\\]=\"]]{0,15}"
}

fn sd_value() -> impl Strategy<Value = String> {
    "[ -~é]{0,12}"
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace(']', "\\]")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn any_bytes_give_a_json_line(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        line_for(&bytes);
    }

    #[test]
    fn syslog_shaped_garbage_gives_a_json_line(s in syslogish()) {
        let v = line_for(s.as_bytes());
        prop_assert!(v["message"].is_string());
    }

    /// Well-formed RFC 5424 comes back field for field.
    #[test]
    fn rfc5424_round_trip(
        pri in 0u8..=191,
        host in token(), app in token(), procid in token(), msgid in token(),
        sd in prop::collection::vec((token(), prop::collection::vec((token(), sd_value()), 1..4)), 0..3),
        msg in "[ -~é]{0,40}",
    ) {
        // Distinct SD-IDs and parameter names, as RFC 5424 requires.
        let mut seen = std::collections::HashSet::new();
        let sd: Vec<_> = sd.into_iter().filter(|(id, _)| seen.insert(id.clone())).map(|(id, ps)| {
            let mut names = std::collections::HashSet::new();
            (id, ps.into_iter().filter(|(n, _)| names.insert(n.clone())).collect::<Vec<_>>())
        }).collect();
        let sd_text = if sd.is_empty() { "-".to_string() } else {
            sd.iter().map(|(id, ps)| format!("[{id}{}]", ps.iter().map(|(n, v)| format!(" {n}=\"{}\"", escape(v))).collect::<String>())).collect()
        };
        let text = format!("<{pri}>1 2026-11-25T10:00:00.123Z {host} {app} {procid} {msgid} {sd_text} {msg}");
        let p = parse(&text, &ctx());
        prop_assert_eq!(p.format, Format::Rfc5424, "{}", text);
        prop_assert_eq!((p.facility, p.severity), (pri >> 3, pri & 7));
        prop_assert_eq!(p.hostname, Some(host.as_str()));
        prop_assert_eq!(p.app, Some(app.as_str()));
        prop_assert_eq!(p.msgid, Some(msgid.as_str()));
        // PROCID is a string (RFC 5424 §6.2.6): `0042` stays `0042`.
        prop_assert_eq!(p.procid.as_deref(), Some(procid.as_str()));
        let got: Vec<(String, Vec<(String, String)>)> = p.structured_data.iter()
            .map(|e| (e.id.to_string(), e.params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()))
            .collect();
        prop_assert_eq!(got, sd);
        prop_assert_eq!(p.message, msg.as_str());
    }

    /// RFC 3164 with and without timestamp and hostname, tag with and without pid.
    #[test]
    fn rfc3164_round_trip(
        pri in 0u8..=191,
        ts in prop::option::of((0usize..12, 1u32..=28, 0u32..24, 0u32..60, 0u32..60)),
        host in prop::option::of("[a-z][a-z0-9.-]{0,20}"),
        app in "[a-zA-Z][a-zA-Z0-9_.-]{0,20}",
        pid in prop::option::of(1u32..100000),
        msg in "[!-~][ -~]{0,40}",
    ) {
        const M: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
        let stamp = ts.map(|(m, d, h, mi, s)| format!("{} {d:>2} {h:02}:{mi:02}:{s:02} ", M[m])).unwrap_or_default();
        let hostpart = host.as_ref().map(|h| format!("{h} ")).unwrap_or_default();
        let tag = match pid { Some(p) => format!("{app}[{p}]:"), None => format!("{app}:") };
        let text = format!("<{pri}>{stamp}{hostpart}{tag} {msg}");
        let p = parse(&text, &ctx());
        prop_assert_eq!(p.format, Format::Rfc3164, "{}", text);
        prop_assert_eq!(p.timestamp.is_some(), ts.is_some());
        prop_assert_eq!(p.hostname, host.as_deref());
        prop_assert_eq!(p.app, Some(app.as_str()));
        let want_pid = pid.map(|p| p.to_string());
        prop_assert_eq!(p.procid.as_deref(), want_pid.as_deref());
        prop_assert_eq!(p.message, msg.as_str());
    }

    /// Frames come out the same however the stream is cut into reads, and the buffer
    /// never holds more than one message plus a chunk.
    #[test]
    fn framing_is_chunking_independent(
        frames in prop::collection::vec((any::<bool>(), prop::collection::vec(any::<u8>(), 0..300)), 0..20),
        chunk in 1usize..200,
        max in 1usize..400,
    ) {
        let mut stream = Vec::new();
        let mut want = Vec::new();
        for (counted, data) in &frames {
            if *counted {
                stream.extend_from_slice(format!("{} ", data.len()).as_bytes());
                stream.extend_from_slice(data);
                want.push((data[..data.len().min(max)].to_vec(), data.len() > max));
            } else {
                // LF framing: payloads without LF that do not look like a length prefix.
                let mut d: Vec<u8> = data.iter().copied().filter(|&b| b != b'\n').collect();
                d.insert(0, b'<');
                stream.extend_from_slice(&d);
                stream.push(b'\n');
                want.push((d[..d.len().min(max)].to_vec(), d.len() > max));
            }
        }
        let mut dec = Decoder::new(max);
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for c in stream.chunks(chunk) {
            buf.extend_from_slice(c);
            while let Some(f) = dec.decode(&mut buf) {
                got.push((f.data.to_vec(), f.truncated));
            }
            prop_assert!(buf.len() <= dec.buffer_limit() + chunk);
        }
        if let Some(f) = dec.finish(&mut buf) {
            got.push((f.data.to_vec(), f.truncated));
        }
        prop_assert_eq!(got, want);
    }

    #[test]
    fn framing_survives_garbage(bytes in prop::collection::vec(any::<u8>(), 0..2000), chunk in 1usize..300, max in 1usize..500) {
        let mut dec = Decoder::new(max);
        let mut buf = BytesMut::new();
        for c in bytes.chunks(chunk) {
            buf.extend_from_slice(c);
            while let Some(f) = dec.decode(&mut buf) {
                prop_assert!(f.data.len() <= max);
            }
            prop_assert!(buf.len() <= dec.buffer_limit() + chunk);
        }
        let _ = dec.finish(&mut buf);
    }
}
