//! Golden tests of the parser and the JSON line: each case is a message as a real sender
//! (or a hostile one) writes it, and the exact object we must write for it. The
//! `received`, `transport` and `source` fields are fixed by the harness.

use std::time::SystemTime;

use chrono::{FixedOffset, TimeZone, Utc};
use serde_json::{Value, json};
use syslog_svc::parse::{ParseContext, parse};
use syslog_svc::record::{Identity, Meta, Transport, write_line};
use syslog_svc::traceparent;

fn render(input: &[u8]) -> Value {
    let (text, invalid_utf8) = match std::str::from_utf8(input) {
        Ok(s) => (std::borrow::Cow::Borrowed(s), false),
        Err(_) => (String::from_utf8_lossy(input), true),
    };
    let ctx = ParseContext {
        now: Utc
            .with_ymd_and_hms(2026, 11, 25, 12, 0, 0)
            .single()
            .expect("date"),
        rfc3164_offset: FixedOffset::east_opt(0).expect("offset"),
    };
    let p = parse(&text, &ctx);
    let meta = Meta {
        received: SystemTime::UNIX_EPOCH,
        source: "10.0.0.5:514".parse().expect("addr"),
        transport: Transport::Udp,
        truncated: false,
        invalid_utf8,
    };
    let mut out = Vec::new();
    let id = Identity {
        id: "hw-1",
        name: "node1",
        mac: "52:54:00:00:00:01",
    };
    write_line(&mut out, &meta, &p, traceparent::extract(&p), Some(&id));
    let mut v: Value = serde_json::from_slice(&out).expect("valid JSON");
    let o = v.as_object_mut().expect("object");
    for k in ["received", "transport", "source", "machine"] {
        o.remove(k);
    }
    v
}

const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn cases() -> Vec<(&'static str, Vec<u8>, Value)> {
    vec![
        (
            "util-linux logger --rfc5424 with --sd-id",
            br#"<13>1 2026-11-25T12:18:26.176173+00:00 vm myapp - - [timeQuality tzKnown="1" isSynced="0"][zoo@123 tiger="hungry"] hello 5424"#.to_vec(),
            json!({"facility":"user","severity":"notice","format":"rfc5424","timestamp":"2026-11-25T12:18:26.176173Z","hostname":"vm","app":"myapp",
                   "structured_data":{"timeQuality":{"tzKnown":"1","isSynced":"0"},"zoo@123":{"tiger":"hungry"}},"message":"hello 5424"}),
        ),
        (
            "util-linux logger --rfc3164",
            b"<155>Nov 25 12:18:26 vm myapp: hello 3164".to_vec(),
            json!({"facility":"local3","severity":"err","format":"rfc3164","timestamp":"2026-11-25T12:18:26Z","hostname":"vm","app":"myapp","message":"hello 3164"}),
        ),
        (
            "logger --rfc5424=notq,notime,nohost: every header field nil",
            b"<13>1 - - root - - - bare 5424".to_vec(),
            json!({"facility":"user","severity":"notice","format":"rfc5424","app":"root","message":"bare 5424"}),
        ),
        (
            "busybox syslogd -R: no hostname, trailing newline",
            b"<28>Nov 25 12:18:26 bbtag: hello from busybox\n".to_vec(),
            json!({"facility":"daemon","severity":"warning","format":"rfc3164","timestamp":"2026-11-25T12:18:26Z","app":"bbtag","message":"hello from busybox"}),
        ),
        (
            "iPXE with a hostname: no timestamp",
            b"<14>node1.lab ipxe: Downloading http://10.0.0.1/vmlinuz... ok".to_vec(),
            json!({"facility":"user","severity":"info","format":"rfc3164","hostname":"node1.lab","app":"ipxe","message":"Downloading http://10.0.0.1/vmlinuz... ok"}),
        ),
        (
            "iPXE without a hostname (syslogs over TCP ends in LF)",
            b"<11>ipxe: Could not boot: No such file (http://ipxe.org/2d0c613b)\n".to_vec(),
            json!({"facility":"user","severity":"err","format":"rfc3164","app":"ipxe","message":"Could not boot: No such file (http://ipxe.org/2d0c613b)"}),
        ),
        (
            "3164 tag with pid, space-padded day, previous year not guessed in November",
            b"<86>Nov  5 01:02:03 host sshd[123]: Accepted publickey".to_vec(),
            json!({"facility":"authpriv","severity":"info","format":"rfc3164","timestamp":"2026-11-05T01:02:03Z","hostname":"host","app":"sshd","procid":"123","message":"Accepted publickey"}),
        ),
        (
            "3164 timestamp then text: the first word is the hostname (RFC 3164 order)",
            b"<13>Nov 25 12:00:00 hello world".to_vec(),
            json!({"facility":"user","severity":"notice","format":"rfc3164","timestamp":"2026-11-25T12:00:00Z","hostname":"hello","message":"world"}),
        ),
        (
            "3164 with an RFC 3339 stamp (rsyslog high-precision forwarding)",
            b"<13>2026-11-25T10:00:00.5+01:00 host app: m".to_vec(),
            json!({"facility":"user","severity":"notice","format":"rfc3164","timestamp":"2026-11-25T10:00:00.500+01:00","hostname":"host","app":"app","message":"m"}),
        ),
        (
            "kernel console line: no timestamp, no tag",
            b"<6>[    1.234567] Linux version 6.1.0".to_vec(),
            json!({"facility":"kern","severity":"info","format":"rfc3164","message":"[    1.234567] Linux version 6.1.0"}),
        ),
        (
            "Cisco style: fractional stamp with trailing colon, mnemonic is not a tag",
            b"<189>Nov 25 12:00:00.123: %SYS-5-CONFIG_I: Configured".to_vec(),
            json!({"facility":"local7","severity":"notice","format":"rfc3164","timestamp":"2026-11-25T12:00:00.123Z","message":"%SYS-5-CONFIG_I: Configured"}),
        ),
        (
            "a word with a colon after PRI is taken as the tag",
            b"<13>Error: disk full".to_vec(),
            json!({"facility":"user","severity":"notice","format":"rfc3164","app":"Error","message":"disk full"}),
        ),
        (
            "PRI only",
            b"<13>".to_vec(),
            json!({"facility":"user","severity":"notice","format":"rfc3164","message":""}),
        ),
        (
            "no PRI: raw, user.notice",
            b"just some text".to_vec(),
            json!({"facility":"user","severity":"notice","format":"raw","message":"just some text","parse_error":"missing PRI"}),
        ),
        (
            "PRI out of range",
            b"<192>x".to_vec(),
            json!({"facility":"user","severity":"notice","format":"raw","message":"<192>x","parse_error":"invalid PRI"}),
        ),
        (
            "PRI not a number",
            b"<abc>x".to_vec(),
            json!({"facility":"user","severity":"notice","format":"raw","message":"<abc>x","parse_error":"invalid PRI"}),
        ),
        (
            "5424 with a bad timestamp: raw, PRI kept",
            b"<11>1 2026-13-45T10:00:00Z h a p m - x".to_vec(),
            json!({"facility":"user","severity":"err","format":"raw","message":"1 2026-13-45T10:00:00Z h a p m - x","parse_error":"malformed RFC 5424 header"}),
        ),
        (
            "5424 missing its structured-data field",
            b"<13>1 - host app - - hello".to_vec(),
            json!({"facility":"user","severity":"notice","format":"raw","message":"1 - host app - - hello","parse_error":"malformed RFC 5424 header"}),
        ),
        (
            "5424 with BOM, procid and msgid, empty-valued param and escapes",
            "<165>1 2026-11-25T10:00:00Z h app 4711 ID47 [x a=\"q\\\"uote\\]br\\\\\" e=\"\"] \u{feff}text".as_bytes().to_vec(),
            json!({"facility":"local4","severity":"notice","format":"rfc5424","timestamp":"2026-11-25T10:00:00Z","hostname":"h","app":"app","procid":"4711","msgid":"ID47",
                   "structured_data":{"x":{"a":"q\"uote]br\\","e":""}},"message":"text"}),
        ),
        (
            "5424 with no message",
            b"<13>1 2026-11-25T10:00:00Z h a p m -".to_vec(),
            json!({"facility":"user","severity":"notice","format":"rfc5424","timestamp":"2026-11-25T10:00:00Z","hostname":"h","app":"a","procid":"p","msgid":"m","message":""}),
        ),
        (
            "traceparent in structured data",
            format!("<14>1 - node1 installer - - [trace@32473 traceparent=\"{TP}\"] step 3").into_bytes(),
            json!({"facility":"user","severity":"info","format":"rfc5424","hostname":"node1","app":"installer",
                   "structured_data":{"trace@32473":{"traceparent":TP}},"message":"step 3","traceparent":TP}),
        ),
        (
            "traceparent on a kernel command line logged as text",
            format!("<6>Nov 25 12:00:01 node1 kernel: Command line: console=ttyS0 traceparent={TP} quiet").into_bytes(),
            json!({"facility":"kern","severity":"info","format":"rfc3164","timestamp":"2026-11-25T12:00:01Z","hostname":"node1","app":"kernel",
                   "message":format!("Command line: console=ttyS0 traceparent={TP} quiet"),"traceparent":TP}),
        ),
        (
            "malformed traceparent is not reported",
            b"<14>ipxe: traceparent=00-xyz".to_vec(),
            json!({"facility":"user","severity":"info","format":"rfc3164","app":"ipxe","message":"traceparent=00-xyz"}),
        ),
        (
            "invalid UTF-8 is kept with replacement characters and flagged",
            b"<14>ipxe: caf\xe9 \xff\xfe".to_vec(),
            json!({"facility":"user","severity":"info","format":"rfc3164","app":"ipxe","message":"caf\u{fffd} \u{fffd}\u{fffd}","invalid_utf8":true}),
        ),
        (
            "CRLF and NUL terminators are stripped",
            b"<14>app: line\r\n\0".to_vec(),
            json!({"facility":"user","severity":"info","format":"rfc3164","app":"app","message":"line"}),
        ),
        (
            "control characters and quotes survive as JSON escapes",
            b"<14>app: a\"b\\c\x01\td".to_vec(),
            json!({"facility":"user","severity":"info","format":"rfc3164","app":"app","message":"a\"b\\c\u{1}\td"}),
        ),
    ]
}

#[test]
fn golden() {
    let mut failures = Vec::new();
    for (name, input, want) in cases() {
        let got = render(&input);
        if got != want {
            failures.push(format!(
                "{name}\n  input: {:?}\n  want:  {want}\n  got:   {got}",
                String::from_utf8_lossy(&input)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} golden case(s) differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
