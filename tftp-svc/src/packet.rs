//! TFTP packets (RFC 1350 with the option extension of RFC 2347): decode and encode.
//!
//! Everything from the network goes through [`decode`], which borrows from the input,
//! never panics, and bounds what it accepts (option count and string lengths), so the
//! fuzz target and the property tests can hold it to that.

use std::fmt;

pub const OP_RRQ: u16 = 1;
pub const OP_WRQ: u16 = 2;
pub const OP_DATA: u16 = 3;
pub const OP_ACK: u16 = 4;
pub const OP_ERROR: u16 = 5;
pub const OP_OACK: u16 = 6;

/// Options beyond this many are ignored (real clients send at most four or five).
pub const MAX_OPTIONS: usize = 16;
/// Longest file name, mode, option name or value accepted.
pub const MAX_STRING: usize = 1024;

/// TFTP error codes (RFC 1350, RFC 2347).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum ErrorCode {
    NotDefined = 0,
    FileNotFound = 1,
    AccessViolation = 2,
    DiskFull = 3,
    IllegalOperation = 4,
    UnknownTid = 5,
    FileExists = 6,
    NoSuchUser = 7,
    /// Option negotiation refused (RFC 2347); also what OVMF sends after reading tsize.
    OptionRefused = 8,
}

impl ErrorCode {
    pub fn from_u16(c: u16) -> Option<ErrorCode> {
        Some(match c {
            0 => ErrorCode::NotDefined,
            1 => ErrorCode::FileNotFound,
            2 => ErrorCode::AccessViolation,
            3 => ErrorCode::DiskFull,
            4 => ErrorCode::IllegalOperation,
            5 => ErrorCode::UnknownTid,
            6 => ErrorCode::FileExists,
            7 => ErrorCode::NoSuchUser,
            8 => ErrorCode::OptionRefused,
            _ => return None,
        })
    }
}

/// A read or write request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request<'a> {
    /// Raw file name bytes (not necessarily UTF-8).
    pub filename: &'a [u8],
    /// Transfer mode as sent (`octet`, `netascii`, `mail`; compared case-insensitively).
    pub mode: &'a [u8],
    /// Option name/value pairs in the order sent, at most [`MAX_OPTIONS`].
    pub options: Vec<(&'a [u8], &'a [u8])>,
}

impl Request<'_> {
    pub fn is_octet(&self) -> bool {
        self.mode.eq_ignore_ascii_case(b"octet")
    }

    /// The first value of option `name` (case-insensitive), as text.
    pub fn option(&self, name: &str) -> Option<&str> {
        self.options
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// The spelling the client used for `name`, to echo in the OACK.
    pub fn option_spelling(&self, name: &str) -> Option<&str> {
        self.options
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .and_then(|(n, _)| std::str::from_utf8(n).ok())
    }
}

/// A decoded packet, borrowing from the datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Packet<'a> {
    Rrq(Request<'a>),
    Wrq(Request<'a>),
    Data { block: u16, data: &'a [u8] },
    Ack(u16),
    Error { code: u16, message: &'a [u8] },
    Oack(Vec<(&'a [u8], &'a [u8])>),
}

/// Why a datagram is not a TFTP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("shorter than an opcode")]
    Short,
    #[error("unknown opcode {0}")]
    UnknownOpcode(u16),
    #[error("truncated {0} packet")]
    Truncated(&'static str),
    #[error("string not NUL-terminated")]
    Unterminated,
    #[error("string longer than {MAX_STRING} bytes")]
    TooLong,
}

impl DecodeError {
    /// Label for the dropped-packets metric.
    pub fn label(&self) -> &'static str {
        match self {
            DecodeError::Short => "short",
            DecodeError::UnknownOpcode(_) => "unknown_opcode",
            DecodeError::Truncated(_) => "truncated",
            DecodeError::Unterminated => "unterminated",
            DecodeError::TooLong => "too_long",
        }
    }
}

/// Takes one NUL-terminated string from the front of `b`.
fn take_str(b: &[u8]) -> Result<(&[u8], &[u8]), DecodeError> {
    let end = b
        .iter()
        .position(|&c| c == 0)
        .ok_or(DecodeError::Unterminated)?;
    if end > MAX_STRING {
        return Err(DecodeError::TooLong);
    }
    Ok((&b[..end], &b[end + 1..]))
}

/// Option name/value pairs borrowed from a datagram.
pub type OptionPairs<'a> = Vec<(&'a [u8], &'a [u8])>;

/// Option pairs. Lenient where real clients are sloppy: a trailing name without a value,
/// or trailing NUL padding, ends the list instead of failing the request.
fn take_options(mut b: &[u8]) -> Result<OptionPairs<'_>, DecodeError> {
    let mut out = Vec::new();
    while !b.is_empty() && out.len() < MAX_OPTIONS {
        let Ok((name, rest)) = take_str(b) else { break };
        if name.is_empty() {
            break;
        }
        let Ok((value, rest)) = take_str(rest) else {
            break;
        };
        out.push((name, value));
        b = rest;
    }
    Ok(out)
}

/// Decodes one datagram. Never panics.
pub fn decode(b: &[u8]) -> Result<Packet<'_>, DecodeError> {
    if b.len() < 2 {
        return Err(DecodeError::Short);
    }
    let op = u16::from_be_bytes([b[0], b[1]]);
    let body = &b[2..];
    match op {
        OP_RRQ | OP_WRQ => {
            let (filename, rest) = take_str(body)?;
            let (mode, rest) = take_str(rest)?;
            let options = take_options(rest)?;
            let req = Request {
                filename,
                mode,
                options,
            };
            Ok(if op == OP_RRQ {
                Packet::Rrq(req)
            } else {
                Packet::Wrq(req)
            })
        }
        OP_DATA => {
            if body.len() < 2 {
                return Err(DecodeError::Truncated("DATA"));
            }
            Ok(Packet::Data {
                block: u16::from_be_bytes([body[0], body[1]]),
                data: &body[2..],
            })
        }
        OP_ACK => {
            if body.len() < 2 {
                return Err(DecodeError::Truncated("ACK"));
            }
            // Extra bytes after the block number are tolerated (some stacks pad).
            Ok(Packet::Ack(u16::from_be_bytes([body[0], body[1]])))
        }
        OP_ERROR => {
            if body.len() < 2 {
                return Err(DecodeError::Truncated("ERROR"));
            }
            let code = u16::from_be_bytes([body[0], body[1]]);
            // The message should be NUL-terminated; accept it without, it is only logged.
            let msg = &body[2..];
            let msg = &msg[..msg
                .iter()
                .position(|&c| c == 0)
                .unwrap_or(msg.len())
                .min(MAX_STRING)];
            Ok(Packet::Error { code, message: msg })
        }
        OP_OACK => Ok(Packet::Oack(take_options(body)?)),
        other => Err(DecodeError::UnknownOpcode(other)),
    }
}

/// Appends a DATA header.
pub fn data_header(block: u16) -> [u8; 4] {
    let b = block.to_be_bytes();
    [0, OP_DATA as u8, b[0], b[1]]
}

pub fn encode_ack(block: u16) -> [u8; 4] {
    let b = block.to_be_bytes();
    [0, OP_ACK as u8, b[0], b[1]]
}

pub fn encode_error(code: ErrorCode, message: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(5 + message.len());
    v.extend_from_slice(&OP_ERROR.to_be_bytes());
    v.extend_from_slice(&(code as u16).to_be_bytes());
    v.extend(message.bytes().filter(|&c| c != 0));
    v.push(0);
    v
}

pub fn encode_oack<'a>(options: impl IntoIterator<Item = (&'a str, String)>) -> Vec<u8> {
    let mut v = OP_OACK.to_be_bytes().to_vec();
    for (k, val) in options {
        v.extend_from_slice(k.as_bytes());
        v.push(0);
        v.extend_from_slice(val.as_bytes());
        v.push(0);
    }
    v
}

/// Encodes a request (used by the test/benchmark client).
pub fn encode_request(op: u16, filename: &str, mode: &str, options: &[(&str, String)]) -> Vec<u8> {
    let mut v = op.to_be_bytes().to_vec();
    for s in [filename, mode] {
        v.extend_from_slice(s.as_bytes());
        v.push(0);
    }
    for (k, val) in options {
        v.extend_from_slice(k.as_bytes());
        v.push(0);
        v.extend_from_slice(val.as_bytes());
        v.push(0);
    }
    v
}

/// Printable form of bytes from the network, for logs.
pub struct Lossy<'a>(pub &'a [u8]);

impl fmt::Display for Lossy<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in String::from_utf8_lossy(self.0).chars() {
            if c.is_control() {
                write!(f, "\\u{{{:x}}}", c as u32)?;
            } else {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decodes_rrq_with_options() {
        let b = encode_request(
            OP_RRQ,
            "ipxe.efi",
            "octet",
            &[("tsize", "0".into()), ("BLKSIZE", "1468".into())],
        );
        let Packet::Rrq(r) = decode(&b).unwrap() else {
            panic!()
        };
        assert_eq!(r.filename, b"ipxe.efi");
        assert!(r.is_octet());
        assert_eq!(r.option("blksize"), Some("1468"));
        assert_eq!(r.option_spelling("blksize"), Some("BLKSIZE"));
        assert_eq!(r.option("windowsize"), None);
    }

    #[test]
    fn tolerates_sloppy_option_tails() {
        let mut b = encode_request(OP_RRQ, "f", "OCTET", &[("blksize", "1024".into())]);
        b.extend_from_slice(b"tsize\0"); // name without value
        let Packet::Rrq(r) = decode(&b).unwrap() else {
            panic!()
        };
        assert_eq!(r.options.len(), 1);
        let mut b = encode_request(OP_RRQ, "f", "octet", &[]);
        b.extend_from_slice(&[0, 0, 0]);
        assert!(matches!(decode(&b), Ok(Packet::Rrq(_))));
    }

    #[test]
    fn refuses_garbage() {
        assert_eq!(decode(&[]), Err(DecodeError::Short));
        assert_eq!(decode(&[0]), Err(DecodeError::Short));
        assert_eq!(decode(&[0, 9]), Err(DecodeError::UnknownOpcode(9)));
        assert_eq!(decode(&[0, 1, b'a']), Err(DecodeError::Unterminated));
        assert_eq!(
            decode(&[0, 1, b'a', 0, b'o']),
            Err(DecodeError::Unterminated)
        );
        assert_eq!(decode(&[0, 4, 1]), Err(DecodeError::Truncated("ACK")));
        let mut long = vec![0, 1];
        long.extend(std::iter::repeat_n(b'a', MAX_STRING + 1));
        long.push(0);
        assert_eq!(decode(&long), Err(DecodeError::TooLong));
    }

    #[test]
    fn round_trips_small_packets() {
        assert_eq!(decode(&encode_ack(65535)), Ok(Packet::Ack(65535)));
        let e = encode_error(ErrorCode::OptionRefused, "size probe");
        assert_eq!(
            decode(&e),
            Ok(Packet::Error {
                code: 8,
                message: b"size probe"
            })
        );
        let o = encode_oack([
            ("blksize", "1468".to_string()),
            ("tsize", "850528".to_string()),
        ]);
        assert_eq!(
            decode(&o),
            Ok(Packet::Oack(vec![
                (&b"blksize"[..], &b"1468"[..]),
                (&b"tsize"[..], &b"850528"[..])
            ]))
        );
        let mut d = data_header(7).to_vec();
        d.extend_from_slice(b"xyz");
        assert_eq!(
            decode(&d),
            Ok(Packet::Data {
                block: 7,
                data: b"xyz"
            })
        );
    }

    #[test]
    fn options_are_bounded() {
        let opts: Vec<(&str, String)> = (0..100).map(|_| ("x", "1".to_string())).collect();
        let b = encode_request(OP_RRQ, "f", "octet", &opts);
        let Packet::Rrq(r) = decode(&b).unwrap() else {
            panic!()
        };
        assert_eq!(r.options.len(), MAX_OPTIONS);
    }

    proptest! {
        /// The decoder in the normal test suite, so CI exercises it without cargo-fuzz.
        #[test]
        fn decode_never_panics(b in proptest::collection::vec(any::<u8>(), 0..1500)) {
            let _ = decode(&b);
        }

        #[test]
        fn decode_never_panics_on_request_shapes(
            op in 0u16..8,
            parts in proptest::collection::vec(proptest::collection::vec(1u8..=255, 0..20), 0..12),
            trailing_nul in any::<bool>(),
        ) {
            let mut b = op.to_be_bytes().to_vec();
            for p in &parts {
                b.extend_from_slice(p);
                b.push(0);
            }
            if !trailing_nul { b.pop(); }
            let _ = decode(&b);
        }

        #[test]
        fn requests_round_trip(
            name in "[ -~&&[^\\x00]]{1,100}",
            opts in proptest::collection::vec(("[a-z]{1,10}", "[0-9]{1,6}"), 0..10),
        ) {
            let o: Vec<(&str, String)> = opts.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
            let b = encode_request(OP_RRQ, &name, "octet", &o);
            let Ok(Packet::Rrq(r)) = decode(&b) else { return Err(TestCaseError::fail("not an RRQ")) };
            prop_assert_eq!(r.filename, name.as_bytes());
            prop_assert_eq!(r.options.len(), opts.len());
            for ((k, v), (dk, dv)) in opts.iter().zip(r.options.iter()) {
                prop_assert_eq!(k.as_bytes(), *dk);
                prop_assert_eq!(v.as_bytes(), *dv);
            }
        }
    }
}
