//! The JSON line written for every message — the service's output contract.
//!
//! One object per line, fields in a fixed order, absent fields omitted (not `null`), so
//! `jq`, Loki/Promtail, Vector or Fluent Bit can take the stream as it is:
//!
//! | field | when | value |
//! | --- | --- | --- |
//! | `received` | always | receive time, RFC 3339 UTC with microseconds |
//! | `transport` | always | `udp` or `tcp` |
//! | `source` | always | sender `IP:port` |
//! | `facility`, `severity` | always | names (`user`, `notice`, …; rsyslog's spelling) |
//! | `format` | always | `rfc5424`, `rfc3164` or `raw` |
//! | `timestamp` | sender gave one | the sender's time, RFC 3339 (3164 stamps: year guessed, zone configured) |
//! | `hostname`, `app`, `procid`, `msgid` | present | strings |
//! | `structured_data` | present | `{"SD-ID": {"name": "value"}}`; a repeated name gives an array of its values |
//! | `message` | always | the text (may be empty) |
//! | `traceparent` | found and valid | W3C traceparent |
//! | `machine` | source IP registered | `{"id", "name", "mac"}` (the interface that owns the IP) |
//! | `parse_error` | header unreadable | why the message is `raw` |
//! | `invalid_utf8` | bytes were not UTF-8 | `true`; bad sequences became U+FFFD |
//! | `truncated` | longer than the limit (TCP) | `true`; the text is its beginning |

use std::io::Write;
use std::net::SocketAddr;
use std::time::SystemTime;

use chrono::SecondsFormat;

use crate::parse::{Parsed, SdElement, facility_name, severity_name};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }
}

/// What the receiver knows about a message besides its text.
#[derive(Clone, Copy, Debug)]
pub struct Meta {
    pub received: SystemTime,
    pub source: SocketAddr,
    pub transport: Transport,
    pub truncated: bool,
    pub invalid_utf8: bool,
}

/// The registered machine a message came from.
#[derive(Clone, Copy, Debug)]
pub struct Identity<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub mac: &'a str,
}

/// Appends one JSON line (with its `\n`) to `out`.
pub fn write_line(out: &mut Vec<u8>, meta: &Meta, p: &Parsed<'_>, traceparent: Option<&str>, machine: Option<&Identity<'_>>) {
    out.extend_from_slice(b"{\"received\":\"");
    let _ = write!(out, "{}", humantime::format_rfc3339_micros(meta.received));
    out.extend_from_slice(b"\",\"transport\":\"");
    out.extend_from_slice(meta.transport.as_str().as_bytes());
    out.extend_from_slice(b"\",\"source\":\"");
    let _ = write!(out, "{}", meta.source);
    out.extend_from_slice(b"\",\"facility\":\"");
    out.extend_from_slice(facility_name(p.facility).as_bytes());
    out.extend_from_slice(b"\",\"severity\":\"");
    out.extend_from_slice(severity_name(p.severity).as_bytes());
    out.extend_from_slice(b"\",\"format\":\"");
    out.extend_from_slice(p.format.as_str().as_bytes());
    out.push(b'"');
    if let Some(ts) = p.timestamp {
        field(out, "timestamp", &ts.to_rfc3339_opts(SecondsFormat::AutoSi, true));
    }
    opt_field(out, "hostname", p.hostname);
    opt_field(out, "app", p.app);
    opt_field(out, "procid", p.procid.as_deref());
    opt_field(out, "msgid", p.msgid);
    if !p.structured_data.is_empty() {
        out.extend_from_slice(b",\"structured_data\":");
        write_sd(out, &p.structured_data);
    }
    field(out, "message", p.message);
    opt_field(out, "traceparent", traceparent);
    if let Some(m) = machine {
        out.extend_from_slice(b",\"machine\":{\"id\":");
        string(out, m.id);
        out.extend_from_slice(b",\"name\":");
        string(out, m.name);
        out.extend_from_slice(b",\"mac\":");
        string(out, m.mac);
        out.push(b'}');
    }
    opt_field(out, "parse_error", p.issue.map(|i| i.as_str()));
    if meta.invalid_utf8 {
        out.extend_from_slice(b",\"invalid_utf8\":true");
    }
    if meta.truncated {
        out.extend_from_slice(b",\"truncated\":true");
    }
    out.extend_from_slice(b"}\n");
}

fn string(out: &mut Vec<u8>, s: &str) {
    // Writing to a Vec cannot fail, and a &str always serializes.
    let _ = serde_json::to_writer(&mut *out, s);
}

fn field(out: &mut Vec<u8>, key: &str, value: &str) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
    string(out, value);
}

fn opt_field(out: &mut Vec<u8>, key: &str, value: Option<&str>) {
    if let Some(v) = value {
        field(out, key, v);
    }
}

/// `{"id": {"name": "value", "repeated": ["a", "b"]}}`. RFC 5424 forbids a repeated
/// SD-ID; if a sender repeats one anyway, its parameters are merged rather than
/// producing a JSON object with duplicate keys.
fn write_sd(out: &mut Vec<u8>, sd: &[SdElement<'_>]) {
    out.push(b'{');
    let mut first_id = true;
    for (i, e) in sd.iter().enumerate() {
        if sd[..i].iter().any(|prev| prev.id == e.id) {
            continue;
        }
        if !first_id {
            out.push(b',');
        }
        first_id = false;
        string(out, e.id);
        out.push(b':');
        out.push(b'{');
        let params: Vec<&(&str, std::borrow::Cow<'_, str>)> =
            sd[i..].iter().filter(|x| x.id == e.id).flat_map(|x| x.params.iter()).collect();
        let mut first_param = true;
        for (j, (name, _)) in params.iter().map(|p| (&p.0, &p.1)).enumerate() {
            if params[..j].iter().any(|q| q.0 == *name) {
                continue;
            }
            if !first_param {
                out.push(b',');
            }
            first_param = false;
            string(out, name);
            out.push(b':');
            let values: Vec<&str> = params[j..].iter().filter(|q| q.0 == *name).map(|q| q.1.as_ref()).collect();
            if let [one] = values.as_slice() {
                string(out, one);
            } else {
                out.push(b'[');
                for (k, v) in values.iter().enumerate() {
                    if k > 0 {
                        out.push(b',');
                    }
                    string(out, v);
                }
                out.push(b']');
            }
        }
        out.push(b'}');
    }
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{ParseContext, parse};

    fn line(text: &str, machine: Option<&Identity<'_>>) -> serde_json::Value {
        let p = parse(text, &ParseContext::utc_now());
        let meta = Meta {
            received: SystemTime::UNIX_EPOCH,
            source: "127.0.0.2:514".parse().expect("addr"),
            transport: Transport::Udp,
            truncated: false,
            invalid_utf8: false,
        };
        let mut out = Vec::new();
        write_line(&mut out, &meta, &p, crate::traceparent::extract(&p), machine);
        assert_eq!(out.last(), Some(&b'\n'));
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1, "one line");
        serde_json::from_slice(&out).expect("valid JSON")
    }

    #[test]
    fn sd_merging_and_repeats() {
        let v = line(r#"<13>1 - h a - - [x a="1" a="2" b="3"][y c="\"q\""][x d="4"] m"#, None);
        assert_eq!(v["structured_data"], serde_json::json!({"x": {"a": ["1", "2"], "b": "3", "d": "4"}, "y": {"c": "\"q\""}}));
    }

    #[test]
    fn fields_and_machine() {
        let id = Identity { id: "i", name: "m1", mac: "52:54:00:00:00:01" };
        let v = line("<165>1 2026-11-25T10:00:00.5+01:00 host app 12 ID1 - hi\nthere", Some(&id));
        assert_eq!(v["received"], "1970-01-01T00:00:00.000000Z");
        assert_eq!(v["facility"], "local4");
        assert_eq!(v["severity"], "notice");
        assert_eq!(v["timestamp"], "2026-11-25T10:00:00.500+01:00");
        assert_eq!(v["procid"], "12");
        assert_eq!(v["message"], "hi\nthere");
        assert_eq!(v["machine"]["name"], "m1");
        assert!(v.get("structured_data").is_none());
    }
}
