//! Conditional and range requests for in-memory files (RFC 9110 §13 and §14), as a pure
//! decision: request headers and the file's validators in, what to send out.
//!
//! UEFI HTTP boot firmware and iPXE resume interrupted downloads with `Range`, caches
//! in front of the service revalidate with `If-None-Match`/`If-Modified-Since`, and a
//! wrong answer here (a 206 with the wrong bytes, a 304 for a changed binary) boots the
//! wrong thing. Only single ranges are served; a multi-range request gets the whole
//! file, which RFC 9110 allows and which every boot client handles.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The validators of the representation being served.
#[derive(Clone, Copy, Debug)]
pub struct Entity<'a> {
    pub len: u64,
    /// Strong, quoted entity tag.
    pub etag: &'a str,
    pub modified: SystemTime,
}

/// The request headers that matter, raw.
#[derive(Clone, Copy, Debug, Default)]
pub struct Conditions<'a> {
    pub if_none_match: Option<&'a str>,
    pub if_modified_since: Option<&'a str>,
    pub range: Option<&'a str>,
    pub if_range: Option<&'a str>,
}

/// What to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// 200 with the whole body.
    Full,
    /// 206 with bytes `start..=end`.
    Partial { start: u64, end: u64 },
    /// 304.
    NotModified,
    /// 416 with `Content-Range: bytes */len`.
    Unsatisfiable,
}

/// HTTP dates have whole seconds; compare at that precision.
fn whole_seconds(t: SystemTime) -> SystemTime {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn parse_date(s: &str) -> Option<SystemTime> {
    httpdate::parse_http_date(s.trim()).ok()
}

fn opaque(tag: &str) -> &str {
    tag.trim().trim_start_matches("W/")
}

/// `If-None-Match` uses the weak comparison: `W/"x"` matches `"x"`.
fn none_match_hits(header: &str, etag: &str) -> bool {
    header.split(',').any(|t| {
        let t = t.trim();
        t == "*" || opaque(t) == opaque(etag)
    })
}

/// Decides the response. Pure.
pub fn evaluate(c: &Conditions<'_>, e: &Entity<'_>) -> Outcome {
    // §13.2.2: If-None-Match wins over If-Modified-Since.
    match (c.if_none_match, c.if_modified_since.and_then(parse_date)) {
        (Some(inm), _) if none_match_hits(inm, e.etag) => return Outcome::NotModified,
        (None, Some(since)) if whole_seconds(e.modified) <= since => return Outcome::NotModified,
        _ => {}
    }
    let Some(range) = c.range else {
        return Outcome::Full;
    };
    if let Some(ir) = c.if_range {
        let ir = ir.trim();
        let still_same = if ir.starts_with('"') {
            // Strong comparison only (§13.1.5).
            ir == e.etag
        } else if ir.starts_with("W/") {
            false
        } else {
            parse_date(ir).is_some_and(|d| d == whole_seconds(e.modified))
        };
        if !still_same {
            return Outcome::Full;
        }
    }
    match parse_range(range, e.len) {
        RangeSpec::Ignore => Outcome::Full,
        RangeSpec::Unsatisfiable => Outcome::Unsatisfiable,
        RangeSpec::Bytes { start, end } => Outcome::Partial { start, end },
    }
}

#[derive(Debug, PartialEq, Eq)]
enum RangeSpec {
    /// Not a single bytes range we understand: serve the whole representation.
    Ignore,
    Unsatisfiable,
    Bytes {
        start: u64,
        end: u64,
    },
}

fn parse_range(header: &str, len: u64) -> RangeSpec {
    let h = header.trim();
    let Some((unit, set)) = h.split_once('=') else {
        return RangeSpec::Ignore;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return RangeSpec::Ignore;
    }
    let specs: Vec<&str> = set
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let [spec] = specs.as_slice() else {
        return RangeSpec::Ignore;
    };
    let Some((first, last)) = spec.split_once('-') else {
        return RangeSpec::Ignore;
    };
    let (first, last) = (first.trim(), last.trim());
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if first.is_empty() {
        // Suffix range: the last N bytes.
        if !digits(last) {
            return RangeSpec::Ignore;
        }
        let n: u64 = last.parse().unwrap_or(u64::MAX);
        if n == 0 || len == 0 {
            return RangeSpec::Unsatisfiable;
        }
        return RangeSpec::Bytes {
            start: len.saturating_sub(n),
            end: len - 1,
        };
    }
    if !digits(first) || !(last.is_empty() || digits(last)) {
        return RangeSpec::Ignore;
    }
    let Ok(start) = first.parse::<u64>() else {
        return RangeSpec::Unsatisfiable;
    };
    let end = if last.is_empty() {
        u64::MAX
    } else {
        last.parse::<u64>().unwrap_or(u64::MAX)
    };
    if end < start {
        return RangeSpec::Ignore;
    }
    if start >= len {
        return RangeSpec::Unsatisfiable;
    }
    RangeSpec::Bytes {
        start,
        end: end.min(len - 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TAG: &str = "\"abc-10\"";

    fn entity() -> Entity<'static> {
        Entity {
            len: 10,
            etag: TAG,
            modified: UNIX_EPOCH + Duration::from_millis(1_700_000_000_500),
        }
    }

    fn range(r: &str) -> Outcome {
        evaluate(
            &Conditions {
                range: Some(r),
                ..Default::default()
            },
            &entity(),
        )
    }

    #[test]
    fn byte_ranges() {
        assert_eq!(range("bytes=0-3"), Outcome::Partial { start: 0, end: 3 });
        assert_eq!(range("bytes=4-"), Outcome::Partial { start: 4, end: 9 });
        assert_eq!(range("bytes=-3"), Outcome::Partial { start: 7, end: 9 });
        assert_eq!(range("bytes=-30"), Outcome::Partial { start: 0, end: 9 });
        assert_eq!(range("bytes=5-100"), Outcome::Partial { start: 5, end: 9 });
        assert_eq!(range("Bytes = 9-9"), Outcome::Partial { start: 9, end: 9 });
        assert_eq!(range("bytes=10-"), Outcome::Unsatisfiable);
        assert_eq!(range("bytes=-0"), Outcome::Unsatisfiable);
        assert_eq!(
            range("bytes=99999999999999999999999-"),
            Outcome::Unsatisfiable
        );
        // Not understood or several: the whole file.
        for r in [
            "bytes=3-1",
            "bytes=0-1,4-5",
            "items=0-1",
            "bytes=a-b",
            "bytes=",
            "bytes=-",
            "garbage",
            "bytes=+1-2",
        ] {
            assert_eq!(range(r), Outcome::Full, "{r}");
        }
    }

    #[test]
    fn empty_file_ranges_are_unsatisfiable() {
        let e = Entity { len: 0, ..entity() };
        let c = Conditions {
            range: Some("bytes=0-"),
            ..Default::default()
        };
        assert_eq!(evaluate(&c, &e), Outcome::Unsatisfiable);
    }

    #[test]
    fn revalidation() {
        let e = entity();
        let same = httpdate::fmt_http_date(e.modified);
        let older = httpdate::fmt_http_date(e.modified - Duration::from_secs(5));
        let c = |inm: Option<&'static str>, ims: Option<&str>| {
            let ims = ims.map(|s| s.to_string());
            evaluate(
                &Conditions {
                    if_none_match: inm,
                    if_modified_since: ims.as_deref(),
                    ..Default::default()
                },
                &e,
            )
        };
        assert_eq!(c(Some(TAG), None), Outcome::NotModified);
        assert_eq!(c(Some("W/\"abc-10\""), None), Outcome::NotModified);
        assert_eq!(c(Some("\"x\", \"abc-10\""), None), Outcome::NotModified);
        assert_eq!(c(Some("*"), None), Outcome::NotModified);
        assert_eq!(c(Some("\"other\""), None), Outcome::Full);
        assert_eq!(
            c(None, Some(&same)),
            Outcome::NotModified,
            "sub-second mtime compares by seconds"
        );
        assert_eq!(c(None, Some(&older)), Outcome::Full);
        assert_eq!(c(None, Some("not a date")), Outcome::Full);
        // If-None-Match that misses overrides a matching If-Modified-Since.
        assert_eq!(c(Some("\"other\""), Some(&same)), Outcome::Full);
    }

    #[test]
    fn if_range() {
        let e = entity();
        let same = httpdate::fmt_http_date(e.modified);
        let with = |ir: &str| {
            evaluate(
                &Conditions {
                    range: Some("bytes=2-3"),
                    if_range: Some(ir),
                    ..Default::default()
                },
                &e,
            )
        };
        assert_eq!(with(TAG), Outcome::Partial { start: 2, end: 3 });
        assert_eq!(with(&same), Outcome::Partial { start: 2, end: 3 });
        assert_eq!(with("\"changed\""), Outcome::Full);
        assert_eq!(
            with("W/\"abc-10\""),
            Outcome::Full,
            "weak tags never satisfy If-Range"
        );
        assert_eq!(with("Thu, 01 Jan 1970 00:00:00 GMT"), Outcome::Full);
    }

    proptest! {
        #[test]
        fn partial_ranges_are_inside_the_file(r in "\\PC{0,40}", len in 0u64..1000) {
            let e = Entity { len, ..entity() };
            if let Outcome::Partial { start, end } = evaluate(&Conditions { range: Some(&r), ..Default::default() }, &e) {
                prop_assert!(start <= end && end < len);
            }
        }

        #[test]
        fn numeric_ranges(a in 0u64..50, b in 0u64..50, len in 1u64..40) {
            let e = Entity { len, ..entity() };
            let got = evaluate(&Conditions { range: Some(&format!("bytes={a}-{b}")), ..Default::default() }, &e);
            let want = if b < a { Outcome::Full } else if a >= len { Outcome::Unsatisfiable } else { Outcome::Partial { start: a, end: b.min(len - 1) } };
            prop_assert_eq!(got, want);
        }
    }
}
