//! One syslog message (already framed, already text) → its fields.
//!
//! The senders we care about are not polite: iPXE writes `<PRI>host ipxe: text` with no
//! timestamp, busybox `syslogd -R` forwards `<PRI>Mmm dd hh:mm:ss tag: text` with no
//! hostname, `logger --rfc5424` sends structured data, and anything else on port 514 may
//! be garbage. So the rules here are:
//!
//! - A message that starts with a valid PRI (`<0>`…`<191>`) followed by a version and a
//!   space (`1 `) is RFC 5424, its header parsed by [`crate::rfc5424`]; when that header
//!   does not follow the grammar, the message is kept raw with
//!   `parse_error = "malformed RFC 5424 header"`.
//! - Any other message with a valid PRI is RFC 3164, parsed here, leniently: the
//!   timestamp is optional (`Mmm dd hh:mm:ss`, with an optional year or fraction, or an
//!   RFC 3339 stamp), the hostname is optional, and the tag (`app:` or `app[pid]:`) is
//!   recognised by its colon.
//! - Without a valid PRI the whole text is the message, with facility `user` and
//!   severity `notice` (what RFC 3164 §4.3.3 tells a relay to assume) and
//!   `parse_error = "missing PRI"` / `"invalid PRI"`.
//!
//! Nothing in here can fail: every input gives a [`Parsed`], so a malformed packet is
//! still shown to the operator, flagged, rather than lost.

use std::borrow::Cow;

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, TimeZone, Utc};

/// Which grammar the message followed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Rfc5424,
    Rfc3164,
    /// No recognisable header: the whole text is the message.
    Raw,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Rfc5424 => "rfc5424",
            Format::Rfc3164 => "rfc3164",
            Format::Raw => "raw",
        }
    }
}

/// Why a message was kept raw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseIssue {
    MissingPri,
    InvalidPri,
    Malformed5424,
}

impl ParseIssue {
    pub fn as_str(self) -> &'static str {
        match self {
            ParseIssue::MissingPri => "missing PRI",
            ParseIssue::InvalidPri => "invalid PRI",
            ParseIssue::Malformed5424 => "malformed RFC 5424 header",
        }
    }
}

/// One SD-ELEMENT: `[id name="value" …]`, values unescaped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SdElement<'a> {
    pub id: &'a str,
    pub params: Vec<(&'a str, Cow<'a, str>)>,
}

/// The fields of one message. Strings borrow from the input text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed<'a> {
    pub format: Format,
    /// Facility code 0–23 (`user` when the message had no valid PRI).
    pub facility: u8,
    /// Severity code 0–7 (`notice` when the message had no valid PRI).
    pub severity: u8,
    /// The sender's own timestamp, when it sent one we could read.
    pub timestamp: Option<DateTime<FixedOffset>>,
    pub hostname: Option<&'a str>,
    pub app: Option<&'a str>,
    pub procid: Option<Cow<'a, str>>,
    pub msgid: Option<&'a str>,
    pub structured_data: Vec<SdElement<'a>>,
    pub message: &'a str,
    pub issue: Option<ParseIssue>,
}

/// What the parser needs to know about "now" (RFC 3164 timestamps have no year and no
/// zone).
#[derive(Clone, Copy, Debug)]
pub struct ParseContext {
    pub now: DateTime<Utc>,
    /// Zone assumed for RFC 3164 timestamps (they carry none).
    pub rfc3164_offset: FixedOffset,
}

impl ParseContext {
    pub fn utc_now() -> Self {
        ParseContext {
            now: Utc::now(),
            rfc3164_offset: FixedOffset::east_opt(0).expect("zero offset"),
        }
    }
}

const DEFAULT_FACILITY: u8 = 1; // user
const DEFAULT_SEVERITY: u8 = 5; // notice

const FACILITIES: [&str; 24] = [
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv",
    "ftp", "ntp", "audit", "alert", "clock", "local0", "local1", "local2", "local3", "local4",
    "local5", "local6", "local7",
];
const SEVERITIES: [&str; 8] = [
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];

/// The facility's conventional name (rsyslog's spelling).
pub fn facility_name(code: u8) -> &'static str {
    FACILITIES.get(code as usize).copied().unwrap_or("invalid")
}

pub fn severity_name(code: u8) -> &'static str {
    SEVERITIES.get(code as usize).copied().unwrap_or("invalid")
}

/// Strips what framing and C strings leave around a message: trailing CR/LF/NUL and
/// leading whitespace.
pub fn trim_message(text: &str) -> &str {
    text.trim_end_matches(['\n', '\r', '\0'])
        .trim_start_matches([' ', '\t', '\n', '\r'])
}

/// Parses one message. Total: every input gives an answer.
pub fn parse<'a>(text: &'a str, ctx: &ParseContext) -> Parsed<'a> {
    let text = trim_message(text);
    let raw = |issue, facility, severity, message| Parsed {
        format: Format::Raw,
        facility,
        severity,
        timestamp: None,
        hostname: None,
        app: None,
        procid: None,
        msgid: None,
        structured_data: Vec::new(),
        message,
        issue: Some(issue),
    };
    let (pri, rest) = match split_pri(text) {
        PriResult::Ok(pri, rest) => (pri, rest),
        PriResult::Missing => {
            return raw(
                ParseIssue::MissingPri,
                DEFAULT_FACILITY,
                DEFAULT_SEVERITY,
                text,
            );
        }
        PriResult::Invalid => {
            return raw(
                ParseIssue::InvalidPri,
                DEFAULT_FACILITY,
                DEFAULT_SEVERITY,
                text,
            );
        }
    };
    let (facility, severity) = (pri >> 3, pri & 7);
    if looks_like_5424(rest) {
        return match crate::rfc5424::parse(rest, facility, severity) {
            Some(p) => p,
            None => raw(ParseIssue::Malformed5424, facility, severity, rest),
        };
    }
    parse_3164(rest, facility, severity, ctx)
}

enum PriResult<'a> {
    Ok(u8, &'a str),
    Missing,
    Invalid,
}

/// `<N>` with 1–3 digits and N ≤ 191 (RFC 5424 §6.2.1).
fn split_pri(text: &str) -> PriResult<'_> {
    let Some(after) = text.strip_prefix('<') else {
        return PriResult::Missing;
    };
    let digits = after.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || digits > 3 || after.as_bytes().get(digits) != Some(&b'>') {
        return PriResult::Invalid;
    }
    match after[..digits].parse::<u16>() {
        Ok(v) if v <= 191 => PriResult::Ok(v as u8, &after[digits + 1..]),
        _ => PriResult::Invalid,
    }
}

/// `VERSION SP` right after the PRI: 1–2 digits, not starting with 0.
fn looks_like_5424(rest: &str) -> bool {
    let b = rest.as_bytes();
    match b {
        [d, b' ', ..] if (b'1'..=b'9').contains(d) => true,
        [d, e, b' ', ..] if (b'1'..=b'9').contains(d) && e.is_ascii_digit() => true,
        _ => false,
    }
}

/// PARAM-VALUE escapes (RFC 5424 §6.3.3): `\"`, `\\` and `\]` stand for the character;
/// a backslash before anything else is itself.
pub fn unescape_sd(v: &str) -> Cow<'_, str> {
    if !v.contains('\\') {
        return Cow::Borrowed(v);
    }
    let mut out = String::with_capacity(v.len());
    let mut chars = v.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\'
            && let Some(&n) = chars.peek()
            && matches!(n, '"' | '\\' | ']')
        {
            out.push(n);
            chars.next();
            continue;
        }
        out.push(c);
    }
    Cow::Owned(out)
}

fn parse_3164<'a>(rest: &'a str, facility: u8, severity: u8, ctx: &ParseContext) -> Parsed<'a> {
    let (timestamp, had_timestamp, rest) = match timestamp_3164(rest, ctx) {
        Some((ts, after)) => (ts, true, after.trim_start_matches(' ')),
        None => (None, false, rest.trim_start_matches(' ')),
    };
    let mut out = Parsed {
        format: Format::Rfc3164,
        facility,
        severity,
        timestamp,
        hostname: None,
        app: None,
        procid: None,
        msgid: None,
        structured_data: Vec::new(),
        message: rest,
        issue: None,
    };
    let (first, after_first) = split_token(rest);
    if first.is_empty() {
        return out;
    }
    if let Some((app, pid, after)) = tag(first, after_first) {
        // `tag: text` — no hostname (busybox, iPXE without a hostname, local daemons).
        out.app = Some(app);
        out.procid = pid.map(Cow::Borrowed);
        out.message = after;
        return out;
    }
    let (second, after_second) = split_token(after_first);
    if is_hostname(first) {
        if let Some((app, pid, after)) = tag(second, after_second) {
            // `host tag: text` — iPXE with a hostname, classic 3164.
            out.hostname = Some(first);
            out.app = Some(app);
            out.procid = pid.map(Cow::Borrowed);
            out.message = after;
            return out;
        }
        if had_timestamp {
            // RFC 3164 puts the hostname right after the timestamp.
            out.hostname = Some(first);
            out.message = after_first;
        }
    }
    out
}

/// The next space-separated token and the text after the single separating space.
fn split_token(s: &str) -> (&str, &str) {
    match s.find(' ') {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, ""),
    }
}

/// A TAG: `app:`, `app[pid]:` or `app[pid]` (some senders omit the colon after a pid).
/// Returns app, pid and the message after it.
fn tag<'a>(token: &'a str, after: &'a str) -> Option<(&'a str, Option<&'a str>, &'a str)> {
    let message = after.trim_start_matches(' ');
    let body = token.strip_suffix(':');
    let core = body.unwrap_or(token);
    if let Some(open) = core.find('[') {
        let inner = core[open + 1..].strip_suffix(']')?;
        let app = &core[..open];
        if app.is_empty() || inner.is_empty() || inner.contains(['[', ']']) || !is_tag_name(app) {
            return None;
        }
        return Some((app, Some(inner), message));
    }
    let app = body?;
    if app.is_empty() || !is_tag_name(app) {
        return None;
    }
    Some((app, None, message))
}

/// RFC 3164 limits TAG to 32 alphanumerics; real programs use `-`, `_`, `.`, `/` and
/// longer names, so allow those, up to 64.
fn is_tag_name(s: &str) -> bool {
    s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/' | b'@'))
}

/// Host names, IPv4 and IPv6 literals.
fn is_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
        && !s.ends_with(':')
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// An RFC 3164 timestamp at the start of `s`: `Mmm dd hh:mm:ss` (day space-padded or
/// not), optionally `Mmm dd yyyy hh:mm:ss`, a fraction, a trailing colon; or an RFC 3339
/// stamp (rsyslog's high-precision format). Returns the time (None when the pattern
/// matched but named no real date, e.g. Feb 30) and the text after it.
fn timestamp_3164<'a>(
    s: &'a str,
    ctx: &ParseContext,
) -> Option<(Option<DateTime<FixedOffset>>, &'a str)> {
    let b = s.as_bytes();
    if b.len() >= 4 && b[..4].iter().all(u8::is_ascii_digit) {
        let (tok, after) = split_token(s);
        let ts = DateTime::parse_from_rfc3339(tok).ok()?;
        return Some((Some(ts), after));
    }
    let month = MONTHS
        .iter()
        .position(|m| s.get(..3).is_some_and(|p| p.eq_ignore_ascii_case(m)))?
        as u32
        + 1;
    let mut p = Cursor { s, i: 3 };
    p.spaces(1)?;
    let day = p.number(1, 2)?;
    p.spaces(1)?;
    // Either a year then the time, or the time.
    let save = p.i;
    let year = match p.number(4, 4) {
        Some(y) if p.peek() == Some(b' ') => {
            p.spaces(1)?;
            Some(y as i32)
        }
        _ => {
            p.i = save;
            None
        }
    };
    let hour = p.number(2, 2)?;
    p.byte(b':')?;
    let minute = p.number(2, 2)?;
    p.byte(b':')?;
    let second = p.number(2, 2)?;
    let mut nanos = 0u32;
    if p.peek() == Some(b'.') {
        p.i += 1;
        let start = p.i;
        let digits = p.digits(9)?;
        // Scale the fraction to nanoseconds.
        nanos = digits * 10u32.pow(9 - (p.i - start) as u32);
    }
    if p.peek() == Some(b':') {
        p.i += 1;
    }
    // The timestamp ends at a space or the end of the message.
    if !matches!(p.peek(), None | Some(b' ')) {
        return None;
    }
    let after = &s[p.i..];
    let year = year.unwrap_or_else(|| guess_year(month, ctx));
    let ts = NaiveDate::from_ymd_opt(year, month, day)
        .and_then(|d| d.and_hms_nano_opt(hour, minute, second, nanos))
        .and_then(|naive| ctx.rfc3164_offset.from_local_datetime(&naive).single());
    Some((ts, after))
}

/// RFC 3164 stamps have no year: take the receiver's, except that a December message
/// arriving in January belongs to last year (and a January one in December to next).
fn guess_year(month: u32, ctx: &ParseContext) -> i32 {
    let now = ctx.now.with_timezone(&ctx.rfc3164_offset);
    match (now.month(), month) {
        (1, 12) => now.year() - 1,
        (12, 1) => now.year() + 1,
        _ => now.year(),
    }
}

struct Cursor<'a> {
    s: &'a str,
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.i).copied()
    }
    fn byte(&mut self, b: u8) -> Option<()> {
        (self.peek() == Some(b)).then(|| self.i += 1)
    }
    fn spaces(&mut self, min: usize) -> Option<()> {
        let n = self.s.as_bytes()[self.i..]
            .iter()
            .take_while(|&&c| c == b' ')
            .count();
        self.i += n;
        (n >= min).then_some(())
    }
    /// Between `min` and `max` digits, as a number.
    fn number(&mut self, min: usize, max: usize) -> Option<u32> {
        let start = self.i;
        let v = self.digits(max)?;
        if self.i - start < min {
            self.i = start;
            return None;
        }
        Some(v)
    }
    /// 1 to `max` (≤ 9) digits.
    fn digits(&mut self, max: usize) -> Option<u32> {
        let bytes = &self.s.as_bytes()[self.i..];
        let n = bytes
            .iter()
            .take(max)
            .take_while(|c| c.is_ascii_digit())
            .count();
        if n == 0 {
            return None;
        }
        let v = bytes[..n]
            .iter()
            .fold(0u32, |acc, &c| acc * 10 + u32::from(c - b'0'));
        self.i += n;
        Some(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> ParseContext {
        ParseContext {
            now: Utc
                .with_ymd_and_hms(2026, 11, 25, 12, 0, 0)
                .single()
                .expect("date"),
            rfc3164_offset: FixedOffset::east_opt(0).expect("offset"),
        }
    }

    #[test]
    fn pri_bounds() {
        assert!(matches!(split_pri("<0>x"), PriResult::Ok(0, "x")));
        assert!(matches!(split_pri("<191>x"), PriResult::Ok(191, "x")));
        assert!(matches!(split_pri("<192>x"), PriResult::Invalid));
        assert!(matches!(split_pri("<>x"), PriResult::Invalid));
        assert!(matches!(split_pri("<1234>x"), PriResult::Invalid));
        assert!(matches!(split_pri("<13"), PriResult::Invalid));
        assert!(matches!(split_pri("13>"), PriResult::Missing));
    }

    #[test]
    fn fraction_and_year_forms() {
        let p = parse("<13>Nov  5 2025 01:02:03 host app: hi", &ctx());
        assert_eq!(
            p.timestamp.map(|t| t.to_rfc3339()),
            Some("2025-11-05T01:02:03+00:00".into())
        );
        assert_eq!(
            (p.hostname, p.app, p.message),
            (Some("host"), Some("app"), "hi")
        );
        let p = parse("<13>Nov 25 01:02:03.250: app: hi", &ctx());
        assert_eq!(
            p.timestamp.map(|t| t.to_rfc3339()),
            Some("2026-11-25T01:02:03.250+00:00".into())
        );
        assert_eq!(p.app, Some("app"));
    }

    #[test]
    fn year_rollover() {
        let mut c = ctx();
        c.now = Utc
            .with_ymd_and_hms(2027, 1, 1, 0, 0, 5)
            .single()
            .expect("date");
        let p = parse("<13>Dec 31 23:59:59 h a: m", &c);
        assert_eq!(p.timestamp.map(|t| t.year()), Some(2026));
    }

    #[test]
    fn sd_unescape() {
        assert_eq!(unescape_sd(r#"a\"b\\c\]d\e"#), r#"a"b\c]d\e"#);
        assert!(matches!(unescape_sd("plain"), Cow::Borrowed("plain")));
    }
}
