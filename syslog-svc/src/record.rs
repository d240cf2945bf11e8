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

use chrono::{DateTime, Datelike, FixedOffset, SecondsFormat, Timelike};

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
pub fn write_line(
    out: &mut Vec<u8>,
    meta: &Meta,
    p: &Parsed<'_>,
    traceparent: Option<&str>,
    machine: Option<&Identity<'_>>,
) {
    out.extend_from_slice(b"{\"received\":\"");
    received_stamp(out, meta.received);
    out.extend_from_slice(b"\",\"transport\":\"");
    out.extend_from_slice(meta.transport.as_str().as_bytes());
    out.extend_from_slice(b"\",\"source\":\"");
    source_addr(out, &meta.source);
    out.extend_from_slice(b"\",\"facility\":\"");
    out.extend_from_slice(facility_name(p.facility).as_bytes());
    out.extend_from_slice(b"\",\"severity\":\"");
    out.extend_from_slice(severity_name(p.severity).as_bytes());
    out.extend_from_slice(b"\",\"format\":\"");
    out.extend_from_slice(p.format.as_str().as_bytes());
    out.push(b'"');
    if let Some(ts) = p.timestamp {
        out.extend_from_slice(b",\"timestamp\":\"");
        sender_stamp(out, &ts);
        out.push(b'"');
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

// The per-message formatting below is written out by hand: through `fmt` (humantime,
// chrono, `SocketAddr`'s Display) it was a visible share of the writer's time. Each gives
// exactly what those give (the tests compare them over many values).

/// `n` as exactly `width` decimal digits (zero-padded; `n` must fit).
fn digits(out: &mut Vec<u8>, mut n: u32, width: usize) {
    let mut buf = [b'0'; 10];
    let width = width.min(buf.len());
    for d in buf[..width].iter_mut().rev() {
        *d = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out.extend_from_slice(&buf[..width]);
}

/// `n` in decimal, no padding.
fn decimal(out: &mut Vec<u8>, n: u32) {
    let width = n.checked_ilog10().unwrap_or(0) as usize + 1;
    digits(out, n, width);
}

thread_local! {
    /// The last second rendered by [`received_stamp`] and its `YYYY-MM-DDTHH:MM:SS`.
    static SECOND: std::cell::Cell<(u64, [u8; 19])> = const { std::cell::Cell::new((u64::MAX, [0; 19])) };
}

/// RFC 3339 UTC with microseconds, as `humantime::format_rfc3339_micros`. The date and
/// time of day are formatted once per second.
fn received_stamp(out: &mut Vec<u8>, t: SystemTime) {
    let Ok(d) = t.duration_since(SystemTime::UNIX_EPOCH) else {
        let _ = write!(out, "{}", humantime::format_rfc3339_micros(t));
        return;
    };
    let secs = d.as_secs();
    let (cached, mut prefix) = SECOND.get();
    if cached != secs {
        let Some(dt) = i64::try_from(secs)
            .ok()
            .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
            .filter(|dt| dt.year() <= 9999)
        else {
            let _ = write!(out, "{}", humantime::format_rfc3339_micros(t));
            return;
        };
        let mut v = Vec::with_capacity(19);
        date_time(
            &mut v,
            dt.year() as u32,
            dt.month(),
            dt.day(),
            dt.hour(),
            dt.minute(),
            dt.second(),
        );
        prefix.copy_from_slice(&v);
        SECOND.set((secs, prefix));
    }
    out.extend_from_slice(&prefix);
    out.push(b'.');
    digits(out, d.subsec_micros(), 6);
    out.push(b'Z');
}

/// `YYYY-MM-DDTHH:MM:SS`.
fn date_time(
    out: &mut Vec<u8>,
    year: u32,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
) {
    digits(out, year, 4);
    out.push(b'-');
    digits(out, month, 2);
    out.push(b'-');
    digits(out, day, 2);
    out.push(b'T');
    digits(out, hour, 2);
    out.push(b':');
    digits(out, minute, 2);
    out.push(b':');
    digits(out, second, 2);
}

/// As `DateTime::to_rfc3339_opts(SecondsFormat::AutoSi, true)`: a fraction of 0, 3, 6
/// or 9 digits, whichever shows it exactly, and `Z` for a zero offset.
fn sender_stamp(out: &mut Vec<u8>, ts: &DateTime<FixedOffset>) {
    // The local date and time, computed once (each accessor of a DateTime<FixedOffset>
    // would add the offset again).
    let local = ts.naive_local();
    let nanos = local.nanosecond();
    let offset = ts.offset().local_minus_utc();
    if !(0..=9999).contains(&local.year()) || nanos >= 1_000_000_000 || offset % 60 != 0 {
        // Years that need a sign or five digits, leap seconds, offsets with seconds:
        // chrono's own rendering.
        out.extend_from_slice(ts.to_rfc3339_opts(SecondsFormat::AutoSi, true).as_bytes());
        return;
    }
    date_time(
        out,
        local.year() as u32,
        local.month(),
        local.day(),
        local.hour(),
        local.minute(),
        local.second(),
    );
    if nanos == 0 {
    } else if nanos.is_multiple_of(1_000_000) {
        out.push(b'.');
        digits(out, nanos / 1_000_000, 3);
    } else if nanos.is_multiple_of(1_000) {
        out.push(b'.');
        digits(out, nanos / 1_000, 6);
    } else {
        out.push(b'.');
        digits(out, nanos, 9);
    }
    if offset == 0 {
        out.push(b'Z');
        return;
    }
    out.push(if offset < 0 { b'-' } else { b'+' });
    let abs = offset.unsigned_abs();
    digits(out, abs / 3600, 2);
    out.push(b':');
    digits(out, abs / 60 % 60, 2);
}

/// `IP:port` as `SocketAddr`'s Display (IPv4 by hand, IPv6 through Display).
fn source_addr(out: &mut Vec<u8>, a: &SocketAddr) {
    match a {
        SocketAddr::V4(v4) => {
            for (i, o) in v4.ip().octets().iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                decimal(out, u32::from(*o));
            }
            out.push(b':');
            decimal(out, u32::from(v4.port()));
        }
        SocketAddr::V6(_) => {
            let _ = write!(out, "{a}");
        }
    }
}

/// What JSON needs for each byte inside a string: 0 = itself, else the escape letter
/// (`u` = `\u00XX`). The same choice as `serde_json` (tested against it).
const ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = b'u';
        i += 1;
    }
    t[0x08] = b'b';
    t[0x09] = b't';
    t[0x0a] = b'n';
    t[0x0c] = b'f';
    t[0x0d] = b'r';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

/// A JSON string: runs that need no escaping are copied whole.
fn string(out: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    out.reserve(b.len() + 2);
    out.push(b'"');
    let mut start = 0;
    for (i, &c) in b.iter().enumerate() {
        let e = ESCAPE[c as usize];
        if e == 0 {
            continue;
        }
        out.extend_from_slice(&b[start..i]);
        start = i + 1;
        if e == b'u' {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(c >> 4) as usize],
                HEX[(c & 0xf) as usize],
            ]);
        } else {
            out.extend_from_slice(&[b'\\', e]);
        }
    }
    out.extend_from_slice(&b[start..]);
    out.push(b'"');
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
        let params: Vec<&(&str, std::borrow::Cow<'_, str>)> = sd[i..]
            .iter()
            .filter(|x| x.id == e.id)
            .flat_map(|x| x.params.iter())
            .collect();
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
            let values: Vec<&str> = params[j..]
                .iter()
                .filter(|q| q.0 == *name)
                .map(|q| q.1.as_ref())
                .collect();
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
        write_line(
            &mut out,
            &meta,
            &p,
            crate::traceparent::extract(&p),
            machine,
        );
        assert_eq!(out.last(), Some(&b'\n'));
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1, "one line");
        serde_json::from_slice(&out).expect("valid JSON")
    }

    #[test]
    fn sd_merging_and_repeats() {
        let v = line(
            r#"<13>1 - h a - - [x a="1" a="2" b="3"][y c="\"q\""][x d="4"] m"#,
            None,
        );
        assert_eq!(
            v["structured_data"],
            serde_json::json!({"x": {"a": ["1", "2"], "b": "3", "d": "4"}, "y": {"c": "\"q\""}})
        );
    }

    #[test]
    fn fields_and_machine() {
        let id = Identity {
            id: "i",
            name: "m1",
            mac: "52:54:00:00:00:01",
        };
        let v = line(
            "<165>1 2026-11-25T10:00:00.5+01:00 host app 12 ID1 - hi\nthere",
            Some(&id),
        );
        assert_eq!(v["received"], "1970-01-01T00:00:00.000000Z");
        assert_eq!(v["facility"], "local4");
        assert_eq!(v["severity"], "notice");
        assert_eq!(v["timestamp"], "2026-11-25T10:00:00.500+01:00");
        assert_eq!(v["procid"], "12");
        assert_eq!(v["message"], "hi\nthere");
        assert_eq!(v["machine"]["name"], "m1");
        assert!(v.get("structured_data").is_none());
    }

    #[test]
    fn hand_formatting_matches_fmt() {
        use chrono::TimeZone;
        use std::time::Duration;
        let mut out = Vec::new();
        // received: across seconds, days, leap years, microsecond edges.
        for secs in [
            0u64,
            59,
            86_399,
            951_782_400,
            1_764_072_000,
            4_102_444_799,
            253_402_300_799,
        ] {
            for micros in [0u32, 1, 999_999, 123_456] {
                let t = SystemTime::UNIX_EPOCH + Duration::new(secs, micros * 1000 + 999);
                out.clear();
                received_stamp(&mut out, t);
                assert_eq!(
                    String::from_utf8_lossy(&out),
                    humantime::format_rfc3339_micros(t).to_string()
                );
            }
        }
        // sender timestamps: every fraction width, offsets either side, odd years.
        for text in [
            "2026-11-25T10:00:00Z",
            "2026-11-25T10:00:00.5+01:00",
            "2026-11-25T10:00:00.123456-05:30",
            "0001-01-01T00:00:00.000000001+14:00",
            "9999-12-31T23:59:59.100200300-12:00",
            "2026-02-28T23:59:59.000001+00:00",
        ] {
            let ts = DateTime::parse_from_rfc3339(text).expect("stamp");
            out.clear();
            sender_stamp(&mut out, &ts);
            assert_eq!(
                String::from_utf8_lossy(&out),
                ts.to_rfc3339_opts(SecondsFormat::AutoSi, true),
                "{text}"
            );
        }
        let odd = FixedOffset::east_opt(3 * 3600 + 7)
            .expect("offset")
            .with_ymd_and_hms(2026, 1, 2, 3, 4, 5)
            .single()
            .expect("ts");
        out.clear();
        sender_stamp(&mut out, &odd);
        assert_eq!(
            String::from_utf8_lossy(&out),
            odd.to_rfc3339_opts(SecondsFormat::AutoSi, true)
        );
        let mut all = String::new();
        for c in (0u32..0x80).chain([0xe9, 0xfffd, 0x1f600]) {
            all.push(char::from_u32(c).expect("char"));
        }
        for text in [
            all.as_str(),
            "",
            "plain",
            "a\"b\\c\n",
            "\u{1}x\u{7f}",
            "tail\t",
        ] {
            out.clear();
            string(&mut out, text);
            assert_eq!(
                String::from_utf8_lossy(&out),
                serde_json::to_string(text).expect("json"),
                "{text:?}"
            );
        }
        for a in [
            "0.0.0.0:0",
            "255.255.255.255:65535",
            "10.7.0.12:514",
            "[::1]:514",
            "[2001:db8::1%3]:9",
        ] {
            let a: SocketAddr = a.parse().expect("addr");
            out.clear();
            source_addr(&mut out, &a);
            assert_eq!(String::from_utf8_lossy(&out), a.to_string());
        }
    }
}
