//! Option negotiation (RFC 2347 blksize/tsize/timeout of RFC 2348/2349, windowsize of
//! RFC 7440): what the client asked, what we grant, what goes into the OACK. Pure.
//!
//! Invalid or unknown options are left out of the OACK rather than refused with ERROR 8:
//! firmware that sends something odd still boots, at the defaults.

use std::time::Duration;

use crate::packet::Request;

/// Smallest and largest blksize RFC 2348 allows.
pub const MIN_BLKSIZE: u16 = 8;
pub const MAX_BLKSIZE: u16 = 65464;
/// Block size without the option (RFC 1350).
pub const DEFAULT_BLKSIZE: u16 = 512;

/// Server-side limits on what clients may ask for.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest blksize granted. Default 1468: a DATA packet then fills a 1500-byte
    /// Ethernet frame (1500 − 20 IP − 8 UDP − 4 TFTP) and never fragments.
    pub max_blksize: u16,
    /// Largest windowsize granted.
    pub max_windowsize: u16,
}

/// What a transfer runs with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Negotiated {
    pub blksize: u16,
    pub windowsize: u16,
    /// The client's `timeout` (seconds), used as the upper bound of our retransmit timer.
    pub timeout: Option<Duration>,
    /// OACK entries (client's spelling, value), empty when no OACK is due.
    pub oack: Vec<(String, String)>,
}

impl Negotiated {
    pub fn needs_oack(&self) -> bool {
        !self.oack.is_empty()
    }
}

/// Grants what the request asked within `limits`, for a file of `size` bytes.
pub fn negotiate(req: &Request<'_>, size: u64, limits: &Limits) -> Negotiated {
    let mut n = Negotiated {
        blksize: DEFAULT_BLKSIZE,
        windowsize: 1,
        timeout: None,
        oack: Vec::new(),
    };
    // Order of the OACK follows a fixed order; clients look options up by name.
    if let (Some(v), Some(name)) = (req.option("blksize"), req.option_spelling("blksize"))
        && let Ok(want) = v.trim().parse::<u32>()
        && want >= u32::from(MIN_BLKSIZE)
    {
        let cap = limits.max_blksize.clamp(MIN_BLKSIZE, MAX_BLKSIZE);
        let grant = want.min(u32::from(cap)) as u16;
        n.blksize = grant;
        n.oack.push((name.to_string(), grant.to_string()));
    }
    if let (Some(v), Some(name)) = (req.option("tsize"), req.option_spelling("tsize")) {
        // In a read request the client sends 0 and expects the size back.
        if v.trim().parse::<u64>().is_ok() {
            n.oack.push((name.to_string(), size.to_string()));
        }
    }
    if let (Some(v), Some(name)) = (req.option("timeout"), req.option_spelling("timeout"))
        && let Ok(secs) = v.trim().parse::<u8>()
        && secs >= 1
    {
        n.timeout = Some(Duration::from_secs(u64::from(secs)));
        n.oack.push((name.to_string(), secs.to_string()));
    }
    if let (Some(v), Some(name)) = (req.option("windowsize"), req.option_spelling("windowsize"))
        && let Ok(want) = v.trim().parse::<u32>()
        && (1..=65535).contains(&want)
    {
        let grant = want.min(u32::from(limits.max_windowsize.max(1))) as u16;
        n.windowsize = grant;
        n.oack.push((name.to_string(), grant.to_string()));
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{OP_RRQ, Packet, decode, encode_request};

    const LIMITS: Limits = Limits {
        max_blksize: 1468,
        max_windowsize: 16,
    };

    fn neg(opts: &[(&str, &str)]) -> Negotiated {
        let o: Vec<(&str, String)> = opts.iter().map(|(k, v)| (*k, v.to_string())).collect();
        let b = encode_request(OP_RRQ, "f", "octet", &o);
        let Ok(Packet::Rrq(r)) = decode(&b) else {
            panic!()
        };
        negotiate(&r, 850_528, &LIMITS)
    }

    #[test]
    fn no_options_no_oack() {
        let n = neg(&[]);
        assert_eq!((n.blksize, n.windowsize, n.needs_oack()), (512, 1, false));
    }

    #[test]
    fn ovmf_probe() {
        let n = neg(&[("tsize", "0"), ("blksize", "1468"), ("windowsize", "4")]);
        assert_eq!(n.blksize, 1468);
        assert_eq!(n.windowsize, 4);
        assert_eq!(
            n.oack,
            vec![
                ("blksize".into(), "1468".into()),
                ("tsize".into(), "850528".into()),
                ("windowsize".into(), "4".into())
            ]
        );
    }

    #[test]
    fn caps_and_invalid_values() {
        assert_eq!(neg(&[("blksize", "65464")]).blksize, 1468);
        assert_eq!(neg(&[("blksize", "99999")]).blksize, 1468);
        let n = neg(&[("blksize", "7")]);
        assert_eq!((n.blksize, n.needs_oack()), (512, false));
        assert_eq!(neg(&[("blksize", "x")]).blksize, 512);
        assert_eq!(neg(&[("windowsize", "64")]).windowsize, 16);
        assert!(!neg(&[("windowsize", "0")]).needs_oack());
        assert!(!neg(&[("timeout", "0")]).needs_oack());
        assert!(!neg(&[("timeout", "256")]).needs_oack());
        assert_eq!(
            neg(&[("timeout", "6")]).timeout,
            Some(Duration::from_secs(6))
        );
        // Unknown options are ignored.
        assert!(!neg(&[("multicast", "")]).needs_oack());
    }

    #[test]
    fn echoes_client_spelling() {
        let n = neg(&[("BlkSize", "1024")]);
        assert_eq!(n.oack, vec![("BlkSize".into(), "1024".into())]);
    }
}
