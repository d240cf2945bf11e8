//! What a client asked for: `<file>`, `<mac>/<file>`, either with Smee's traceparent suffix.
//!
//! Firmware and iPXE put more than a file name into a boot path. Smee-style DHCP answers
//! hand out `<mac>/<file>` so a server can tell machines apart before it knows their IP,
//! and append `-00-<trace id>-<span id>-<flags>` so the binary fetch joins the boot's
//! trace. Both are peeled off here, once, for TFTP and HTTP alike, and what remains is
//! checked lexically: the catalogue lookup that follows only ever sees a clean relative
//! name, never something the filesystem would interpret.

use ironboot_proto::MacAddr;

/// Longest request path accepted (TFTP's request packet is 512 bytes in RFC 1350; HTTP
/// paths are longer only when someone is probing).
pub const MAX_PATH_LEN: usize = 1024;

pub use ironboot_telemetry::TraceParent;

/// A request path after the MAC prefix and traceparent suffix are removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestPath {
    /// The MAC from a `<mac>/<file>` prefix, if there was one.
    pub mac: Option<MacAddr>,
    /// The file name relative to the served roots (`ipxe.efi`, `grub/grub.cfg`).
    pub name: String,
    /// The traceparent from a `-00-…` suffix, if there was a well-formed one (valid or not;
    /// see [`TraceParent::is_valid`]).
    pub traceparent: Option<TraceParent>,
}

/// Why a request path is refused before any lookup.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("empty path")]
    Empty,
    #[error("path longer than {MAX_PATH_LEN} bytes")]
    TooLong,
    #[error("absolute paths are not served")]
    Absolute,
    #[error("'..' and '.' components are not served")]
    DotComponent,
    #[error("empty path component")]
    EmptyComponent,
    #[error("backslashes, control characters and NUL are not allowed in paths")]
    BadCharacter,
}

/// Parses and lexically confines a request path. Pure: no filesystem access.
///
/// Accepted: `ipxe.efi`, `52:54:00:ee:0d:0b/ipxe.efi` (also `52-54-…` and `525400…`),
/// `ipxe.efi-00-<32 hex>-<16 hex>-<2 hex>`, and nested names (`grub/grub.cfg`) for the
/// asset directory. Refused: absolute paths, `.`/`..` components, empty components,
/// backslashes and control characters. A leading segment that is not a MAC is simply
/// part of the name.
pub fn parse_request_path(raw: &str) -> Result<RequestPath, PathError> {
    if raw.is_empty() {
        return Err(PathError::Empty);
    }
    if raw.len() > MAX_PATH_LEN {
        return Err(PathError::TooLong);
    }
    if raw.starts_with('/') {
        return Err(PathError::Absolute);
    }
    if raw.chars().any(|c| c == '\\' || c.is_control()) {
        return Err(PathError::BadCharacter);
    }
    let (rest, traceparent) = split_traceparent(raw);
    let (mac, name) = match rest.split_once('/') {
        Some((first, tail)) if first.len() == 12 || first.len() == 17 => {
            match MacAddr::parse(first) {
                Ok(m) => (Some(m), tail),
                Err(_) => (None, rest),
            }
        }
        _ => (None, rest),
    };
    check_relative(name)?;
    Ok(RequestPath {
        mac,
        name: name.to_string(),
        traceparent,
    })
}

/// Lexical confinement of a relative name: every component non-empty, not `.` or `..`.
/// Also used for the names the catalogue builds from directory entries, so a file whose
/// name a client could never ask for is not loaded either.
pub fn check_relative(name: &str) -> Result<(), PathError> {
    if name.is_empty() {
        return Err(PathError::Empty);
    }
    if name.starts_with('/') {
        return Err(PathError::Absolute);
    }
    if name.chars().any(|c| c == '\\' || c.is_control()) {
        return Err(PathError::BadCharacter);
    }
    for comp in name.split('/') {
        match comp {
            "" => return Err(PathError::EmptyComponent),
            "." | ".." => return Err(PathError::DotComponent),
            _ => {}
        }
    }
    Ok(())
}

/// The traceparent of a Smee-style `-00-…` suffix on `name`, without parsing the rest:
/// what a service needs before it opens the request's span.
pub fn suffix_traceparent(name: &str) -> Option<TraceParent> {
    split_traceparent(name).1.filter(TraceParent::is_valid)
}

/// Length of `-00-` + 32 hex + `-` + 16 hex + `-` + 2 hex.
const SUFFIX_LEN: usize = 4 + 32 + 1 + 16 + 1 + 2;

/// Splits `<file>-00-<trace>-<span>-<flags>` into the file and the parsed parent.
fn split_traceparent(s: &str) -> (&str, Option<TraceParent>) {
    if s.len() <= SUFFIX_LEN || !s.is_char_boundary(s.len() - SUFFIX_LEN) {
        return (s, None);
    }
    let (head, suffix) = s.split_at(s.len() - SUFFIX_LEN);
    // The suffix belongs to the last component only: "dir-00-…/file" is not a suffix.
    if head.ends_with('/') {
        return (s, None);
    }
    match suffix.strip_prefix('-').and_then(TraceParent::parse) {
        Some(tp) => (head, Some(tp)),
        None => (s, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TP: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    fn mac() -> MacAddr {
        MacAddr([0x52, 0x54, 0x00, 0xee, 0x0d, 0x0b])
    }

    #[test]
    fn plain_file() {
        let p = parse_request_path("ipxe.efi").unwrap();
        assert_eq!(
            p,
            RequestPath {
                mac: None,
                name: "ipxe.efi".into(),
                traceparent: None
            }
        );
    }

    #[test]
    fn mac_prefix_in_every_spelling() {
        for m in ["52:54:00:ee:0d:0b", "52-54-00-EE-0D-0B", "525400ee0d0b"] {
            let p = parse_request_path(&format!("{m}/undionly.kpxe")).unwrap();
            assert_eq!(p.mac, Some(mac()), "{m}");
            assert_eq!(p.name, "undionly.kpxe");
        }
    }

    #[test]
    fn traceparent_suffix_is_stripped() {
        let p = parse_request_path(&format!("52:54:00:ee:0d:0b/ipxe.efi-{TP}")).unwrap();
        assert_eq!(p.name, "ipxe.efi");
        assert_eq!(p.mac, Some(mac()));
        let tp = p.traceparent.unwrap();
        assert!(tp.is_valid());
        assert_eq!(tp.to_string(), TP);
        assert_eq!(tp.flags, 1);
    }

    #[test]
    fn traceparent_header_values() {
        let tp = TraceParent::from_header(&format!(" {TP}\t")).unwrap();
        assert_eq!(tp.to_string(), TP);
        let (upper, v01, longer, prefixed) = (
            TP.to_uppercase(),
            format!("01{}", &TP[2..]),
            format!("{TP}-00"),
            format!("x{TP}"),
        );
        let bads: [&str; 6] = ["", "00-abc", &upper, &v01, &longer, &prefixed];
        for bad in bads {
            assert_eq!(TraceParent::from_header(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn near_miss_suffixes_stay_in_the_name() {
        // Uppercase hex, wrong version, short ids: not a traceparent, so part of the name.
        for s in [
            "ipxe.efi-00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            "ipxe.efi-01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "ipxe.efi-00-0af7651916cd43dd8448eb211c80319-b7ad6b7169203331-011",
        ] {
            let p = parse_request_path(s).unwrap();
            assert_eq!(p.name, s);
            assert!(p.traceparent.is_none());
        }
        // The suffix alone is not a file.
        assert!(
            parse_request_path(&format!("-{TP}"))
                .unwrap()
                .traceparent
                .is_none()
        );
        let zero = format!("ipxe.efi-00-{}-{}-00", "0".repeat(32), "0".repeat(16));
        let p = parse_request_path(&zero).unwrap();
        assert_eq!(p.name, "ipxe.efi");
        assert!(!p.traceparent.unwrap().is_valid());
    }

    #[test]
    fn non_mac_prefix_is_a_directory() {
        let p = parse_request_path("grub/grub.cfg").unwrap();
        assert_eq!((p.mac, p.name.as_str()), (None, "grub/grub.cfg"));
        let p = parse_request_path("52:54:00:ee:0d:0g/ipxe.efi").unwrap();
        assert_eq!(p.mac, None);
    }

    #[test]
    fn refusals() {
        for (s, e) in [
            ("", PathError::Empty),
            ("/ipxe.efi", PathError::Absolute),
            ("../etc/passwd", PathError::DotComponent),
            ("a/../../etc/passwd", PathError::DotComponent),
            ("52:54:00:ee:0d:0b/../x", PathError::DotComponent),
            ("52:54:00:ee:0d:0b/", PathError::Empty),
            ("./ipxe.efi", PathError::DotComponent),
            ("a//b", PathError::EmptyComponent),
            ("dir/", PathError::EmptyComponent),
            ("..\\boot.ini", PathError::BadCharacter),
            ("ipxe.efi\0", PathError::BadCharacter),
            ("ipxe\n.efi", PathError::BadCharacter),
        ] {
            assert_eq!(parse_request_path(s), Err(e), "{s:?}");
        }
        assert_eq!(
            parse_request_path(&"a".repeat(MAX_PATH_LEN + 1)),
            Err(PathError::TooLong)
        );
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,80}") {
            let _ = parse_request_path(&s);
        }

        #[test]
        fn never_panics_on_near_valid(s in "[0-9a-f:/.\\-]{0,120}") {
            let _ = parse_request_path(&s);
        }

        /// Whatever is accepted is a clean relative name: no component escapes the root.
        #[test]
        fn accepted_names_are_confined(s in "[a-z0-9./\\-]{0,40}") {
            if let Ok(p) = parse_request_path(&s) {
                prop_assert!(!p.name.is_empty());
                prop_assert!(!p.name.starts_with('/'));
                prop_assert!(p.name.split('/').all(|c| !c.is_empty() && c != "." && c != ".."));
            }
        }

        /// Every combination of prefix spelling, name and suffix round-trips.
        #[test]
        fn round_trips(
            octets in any::<[u8; 6]>(),
            spelling in 0usize..4,
            name in "[A-Za-z0-9_][A-Za-z0-9_.\\-]{0,30}(/[A-Za-z0-9_][A-Za-z0-9_.\\-]{0,10})?",
            trace in any::<[u8; 16]>(),
            span in any::<[u8; 8]>(),
            flags in any::<u8>(),
            with_tp in any::<bool>(),
        ) {
            let m = MacAddr(octets);
            let prefix = match spelling {
                0 => String::new(),
                1 => format!("{m}/"),
                2 => format!("{}/", m.to_string().replace(':', "-").to_uppercase()),
                _ => format!("{}/", m.to_string().replace(':', "")),
            };
            prop_assume!(name.split('/').all(|c| c != "." && c != ".."));
            // A name whose first component is itself a MAC would be read as a prefix.
            prop_assume!(MacAddr::parse(name.split('/').next().unwrap_or("")).is_err() || !name.contains('/'));
            let tp = TraceParent { trace_id: trace, span_id: span, flags };
            let suffix = if with_tp { format!("-{tp}") } else { String::new() };
            let p = parse_request_path(&format!("{prefix}{name}{suffix}")).unwrap();
            prop_assert_eq!(p.mac, if spelling == 0 { None } else { Some(m) });
            prop_assert_eq!(&p.name, &name);
            prop_assert_eq!(p.traceparent, if with_tp { Some(tp) } else { None });
        }
    }
}
