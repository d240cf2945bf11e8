//! MAC addresses as the registry stores them: six bytes, printed in lowercase colon form.

use std::fmt;
use std::str::FromStr;

/// A 48-bit Ethernet MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

/// Why a string is not a MAC address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a MAC address (expected six hex octets, e.g. 52:54:00:ee:0d:0b)")]
pub struct ParseMacError(pub String);

impl MacAddr {
    /// Parses every spelling operators and firmware use: `52:54:00:EE:0D:0B`,
    /// `52-54-00-ee-0d-0b`, `5254.00ee.0d0b` (Cisco), and bare `525400ee0d0b`.
    /// Mixed separators and single-digit octets are refused: they are typos more often
    /// than intent, and a wrong MAC silently boots the wrong machine.
    pub fn parse(s: &str) -> Result<Self, ParseMacError> {
        let err = || ParseMacError(s.to_string());
        let t = s.trim();
        let hex: Vec<u8> = match t.len() {
            17 => {
                let sep = t.as_bytes()[2];
                if sep != b':' && sep != b'-' {
                    return Err(err());
                }
                let mut out = Vec::with_capacity(12);
                for (i, b) in t.bytes().enumerate() {
                    if i % 3 == 2 {
                        if b != sep {
                            return Err(err());
                        }
                    } else {
                        out.push(b);
                    }
                }
                out
            }
            14 => {
                let mut out = Vec::with_capacity(12);
                for (i, b) in t.bytes().enumerate() {
                    if i == 4 || i == 9 {
                        if b != b'.' {
                            return Err(err());
                        }
                    } else {
                        out.push(b);
                    }
                }
                out
            }
            12 => t.bytes().collect(),
            _ => return Err(err()),
        };
        let mut bytes = [0u8; 6];
        for (i, pair) in hex.chunks_exact(2).enumerate() {
            let hi = hex_val(pair[0]).ok_or_else(err)?;
            let lo = hex_val(pair[1]).ok_or_else(err)?;
            bytes[i] = (hi << 4) | lo;
        }
        Ok(MacAddr(bytes))
    }

    pub fn octets(&self) -> [u8; 6] {
        self.0
    }
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

impl FromStr for MacAddr {
    type Err = ParseMacError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_common_spellings() {
        let want = MacAddr([0x52, 0x54, 0x00, 0xee, 0x0d, 0x0b]);
        for s in [
            "52:54:00:ee:0d:0b",
            "52:54:00:EE:0D:0B",
            "52-54-00-ee-0d-0b",
            "5254.00ee.0d0b",
            "525400EE0D0B",
            " 52:54:00:ee:0d:0b\n",
        ] {
            assert_eq!(MacAddr::parse(s), Ok(want), "{s}");
        }
        assert_eq!(want.to_string(), "52:54:00:ee:0d:0b");
    }

    #[test]
    fn refuses_near_misses() {
        for s in [
            "",
            "52:54:00:ee:0d",
            "52:54:00:ee:0d:0b:00",
            "52:54-00:ee:0d:0b",
            "52:54:00:ee:0d:0g",
            "5254.00ee-0d0b",
            "2:54:00:ee:0d:0b1",
            "525400ee0d0",
            "52::54:00:ee:0d:0",
        ] {
            assert!(MacAddr::parse(s).is_err(), "{s:?} should be refused");
        }
    }

    proptest! {
        #[test]
        fn display_round_trips(b in any::<[u8; 6]>()) {
            let m = MacAddr(b);
            prop_assert_eq!(MacAddr::parse(&m.to_string()), Ok(m));
            prop_assert_eq!(MacAddr::parse(&m.to_string().replace(':', "-")), Ok(m));
            prop_assert_eq!(MacAddr::parse(&m.to_string().replace(':', "")), Ok(m));
        }

        #[test]
        fn never_panics(s in ".{0,40}") {
            let _ = MacAddr::parse(&s);
        }
    }
}
