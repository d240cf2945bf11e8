//! DHCPv4 messages on the wire: a bounds-checked decoder for what clients send and an
//! encoder for what we answer.
//!
//! We decode requests ourselves rather than with dhcproto 0.15 because its decoder
//! panics (debug) or silently stops (release) on a malformed option 94, keeps only the
//! first architecture of option 93 and ignores option overload (52) — facts recorded in
//! ../shared/DEPENDENCIES.md. This decoder never panics (fuzzed and property-tested),
//! concatenates split options (RFC 3396), reads overloaded `file`/`sname` fields
//! (RFC 2131 §4.1) and borrows from the packet instead of allocating. dhcproto is used in
//! the tests as an independent decoder of what we encode.

use std::borrow::Cow;
use std::net::Ipv4Addr;

pub const SERVER_PORT: u16 = 67;
pub const CLIENT_PORT: u16 = 68;
pub const PXE_PORT: u16 = 4011;

const HEADER_LEN: usize = 236;
const COOKIE: [u8; 4] = [99, 130, 83, 99];
/// BOOTP's minimum message size: some relays and ROMs drop anything shorter.
pub const MIN_REPLY_LEN: usize = 300;
/// RFC 2131: every client accepts at least 576-byte IP datagrams (548 bytes of DHCP).
pub const DEFAULT_MAX_MESSAGE: usize = 576;
const IP_UDP_HEADERS: usize = 28;

/// Option codes we read or write.
pub mod code {
    pub const PAD: u8 = 0;
    pub const SUBNET_MASK: u8 = 1;
    pub const ROUTER: u8 = 3;
    pub const DNS: u8 = 6;
    pub const LOG_SERVER: u8 = 7;
    pub const HOSTNAME: u8 = 12;
    pub const DOMAIN_NAME: u8 = 15;
    pub const BROADCAST: u8 = 28;
    pub const NTP: u8 = 42;
    pub const VENDOR_SPECIFIC: u8 = 43;
    pub const REQUESTED_IP: u8 = 50;
    pub const LEASE_TIME: u8 = 51;
    pub const OVERLOAD: u8 = 52;
    pub const MESSAGE_TYPE: u8 = 53;
    pub const SERVER_ID: u8 = 54;
    pub const PARAMETER_LIST: u8 = 55;
    pub const MESSAGE: u8 = 56;
    pub const MAX_MESSAGE_SIZE: u8 = 57;
    pub const RENEWAL_T1: u8 = 58;
    pub const REBINDING_T2: u8 = 59;
    pub const VENDOR_CLASS: u8 = 60;
    pub const CLIENT_ID: u8 = 61;
    pub const TFTP_SERVER: u8 = 66;
    pub const BOOTFILE: u8 = 67;
    pub const USER_CLASS: u8 = 77;
    pub const RELAY_AGENT: u8 = 82;
    pub const CLIENT_ARCH: u8 = 93;
    pub const CLIENT_NDI: u8 = 94;
    pub const CLIENT_UUID: u8 = 97;
    pub const DOMAIN_SEARCH: u8 = 119;
    pub const IPXE_ENCAP: u8 = 175;
    pub const END: u8 = 255;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MessageType {
    Discover = 1,
    Offer = 2,
    Request = 3,
    Decline = 4,
    Ack = 5,
    Nak = 6,
    Release = 7,
    Inform = 8,
}

impl MessageType {
    pub fn from_u8(v: u8) -> Option<Self> {
        use MessageType::*;
        Some(match v {
            1 => Discover,
            2 => Offer,
            3 => Request,
            4 => Decline,
            5 => Ack,
            6 => Nak,
            7 => Release,
            8 => Inform,
            _ => return None,
        })
    }

    /// Lowercase name for logs and metric labels.
    pub fn name(self) -> &'static str {
        use MessageType::*;
        match self {
            Discover => "discover",
            Offer => "offer",
            Request => "request",
            Decline => "decline",
            Ack => "ack",
            Nak => "nak",
            Release => "release",
            Inform => "inform",
        }
    }
}

/// Why a datagram is not a DHCP request we can answer. Each is counted, never fatal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("shorter than a BOOTP header")]
    TooShort,
    #[error("no DHCP magic cookie")]
    NoCookie,
    #[error("not a BOOTREQUEST")]
    NotRequest,
    #[error("hardware type is not Ethernet")]
    NotEthernet,
    #[error("option {0} runs past the end of the packet")]
    Truncated(u8),
    #[error("option {0} has an invalid length")]
    BadLength(u8),
    #[error("no DHCP message type (option 53)")]
    NoMessageType,
}

/// A decoded request, borrowing from the receive buffer.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub xid: u32,
    pub secs: u16,
    pub flags: u16,
    pub hops: u8,
    pub ciaddr: Ipv4Addr,
    pub yiaddr: Ipv4Addr,
    pub siaddr: Ipv4Addr,
    pub giaddr: Ipv4Addr,
    pub chaddr: [u8; 6],
    pub message_type: MessageType,
    /// Options in arrival order; repeated codes already concatenated (RFC 3396).
    options: Vec<(u8, Cow<'a, [u8]>)>,
}

fn ip(b: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(b[0], b[1], b[2], b[3])
}

/// Walks one options area, appending to `out` (concatenating repeats).
fn walk<'a>(area: &'a [u8], out: &mut Vec<(u8, Cow<'a, [u8]>)>) -> Result<(), DecodeError> {
    let mut i = 0;
    while i < area.len() {
        let c = area[i];
        match c {
            code::PAD => {
                i += 1;
                continue;
            }
            code::END => return Ok(()),
            _ => {}
        }
        let len = *area.get(i + 1).ok_or(DecodeError::Truncated(c))? as usize;
        let data = area
            .get(i + 2..i + 2 + len)
            .ok_or(DecodeError::Truncated(c))?;
        match out.iter_mut().find(|(k, _)| *k == c) {
            Some((_, v)) => v.to_mut().extend_from_slice(data),
            None => out.push((c, Cow::Borrowed(data))),
        }
        i += 2 + len;
    }
    // Running off the end without END is tolerated: many ROMs pad instead.
    Ok(())
}

impl<'a> Request<'a> {
    pub fn decode(buf: &'a [u8]) -> Result<Self, DecodeError> {
        if buf.len() < HEADER_LEN + 4 {
            return Err(DecodeError::TooShort);
        }
        if buf[236..240] != COOKIE {
            return Err(DecodeError::NoCookie);
        }
        if buf[0] != 1 {
            return Err(DecodeError::NotRequest);
        }
        if buf[1] != 1 || buf[2] != 6 {
            return Err(DecodeError::NotEthernet);
        }
        let mut options = Vec::with_capacity(16);
        walk(&buf[240..], &mut options)?;
        // Option overload: more options in `file` (1), `sname` (2) or both (3).
        let overload = options
            .iter()
            .find(|(c, _)| *c == code::OVERLOAD)
            .map(|(_, v)| v.to_vec());
        if let Some(v) = overload {
            let which = *v.first().ok_or(DecodeError::BadLength(code::OVERLOAD))?;
            if v.len() != 1 || !(1..=3).contains(&which) {
                return Err(DecodeError::BadLength(code::OVERLOAD));
            }
            if which & 1 != 0 {
                walk(&buf[108..236], &mut options)?;
            }
            if which & 2 != 0 {
                walk(&buf[44..108], &mut options)?;
            }
        }
        let mt = options
            .iter()
            .find(|(c, _)| *c == code::MESSAGE_TYPE)
            .ok_or(DecodeError::NoMessageType)?;
        if mt.1.len() != 1 {
            return Err(DecodeError::BadLength(code::MESSAGE_TYPE));
        }
        let message_type = MessageType::from_u8(mt.1[0]).ok_or(DecodeError::NoMessageType)?;
        let req = Request {
            xid: u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
            secs: u16::from_be_bytes([buf[8], buf[9]]),
            flags: u16::from_be_bytes([buf[10], buf[11]]),
            hops: buf[3],
            ciaddr: ip(&buf[12..16]),
            yiaddr: ip(&buf[16..20]),
            siaddr: ip(&buf[20..24]),
            giaddr: ip(&buf[24..28]),
            chaddr: [buf[28], buf[29], buf[30], buf[31], buf[32], buf[33]],
            message_type,
            options,
        };
        req.check_lengths()?;
        Ok(req)
    }

    /// Options whose length is fixed by their RFC are checked once here, so the typed
    /// accessors below can trust them.
    fn check_lengths(&self) -> Result<(), DecodeError> {
        for (c, v) in &self.options {
            let ok = match *c {
                code::REQUESTED_IP | code::SERVER_ID => v.len() == 4,
                code::MAX_MESSAGE_SIZE => v.len() == 2,
                code::CLIENT_ARCH => !v.is_empty() && v.len() % 2 == 0,
                code::CLIENT_NDI => v.len() == 3,
                code::CLIENT_UUID => v.len() == 17,
                _ => true,
            };
            if !ok {
                return Err(DecodeError::BadLength(*c));
            }
        }
        Ok(())
    }

    pub fn option(&self, c: u8) -> Option<&[u8]> {
        self.options
            .iter()
            .find(|(k, _)| *k == c)
            .map(|(_, v)| v.as_ref())
    }

    pub fn has(&self, c: u8) -> bool {
        self.option(c).is_some()
    }

    pub fn broadcast_flag(&self) -> bool {
        self.flags & 0x8000 != 0
    }

    pub fn requested_ip(&self) -> Option<Ipv4Addr> {
        self.option(code::REQUESTED_IP).map(ip)
    }

    pub fn server_id(&self) -> Option<Ipv4Addr> {
        self.option(code::SERVER_ID).map(ip)
    }

    pub fn parameter_list(&self) -> &[u8] {
        self.option(code::PARAMETER_LIST).unwrap_or(&[])
    }

    /// The largest reply (DHCP message bytes) the client accepts: option 57 less the IP
    /// and UDP headers, never below RFC 2131's 576-byte floor.
    pub fn max_reply_len(&self) -> usize {
        let m = self
            .option(code::MAX_MESSAGE_SIZE)
            .map(|v| u16::from_be_bytes([v[0], v[1]]) as usize)
            .unwrap_or(DEFAULT_MAX_MESSAGE);
        m.max(DEFAULT_MAX_MESSAGE) - IP_UDP_HEADERS
    }

    pub fn vendor_class(&self) -> &[u8] {
        self.option(code::VENDOR_CLASS).unwrap_or(&[])
    }

    /// Every architecture in option 93 (RFC 4578 allows a list).
    pub fn arches(&self) -> Vec<u16> {
        self.option(code::CLIENT_ARCH)
            .map(|v| {
                v.chunks_exact(2)
                    .map(|c| u16::from_be_bytes([c[0], c[1]]))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// User classes (option 77), whether sent raw (`iPXE`, as iPXE and dhclient do) or
    /// RFC 3004-encoded (`\x04iPXE`, as dhcpcd does).
    pub fn user_classes(&self) -> Vec<&[u8]> {
        let Some(v) = self.option(code::USER_CLASS) else {
            return vec![];
        };
        // RFC 3004 form: a sequence of length-prefixed items that exactly fills the option.
        let mut items = Vec::new();
        let mut i = 0;
        while i < v.len() {
            let l = v[i] as usize;
            if l == 0 || i + 1 + l > v.len() {
                items.clear();
                break;
            }
            items.push(&v[i + 1..i + 1 + l]);
            i += 1 + l;
        }
        let encoded = !items.is_empty()
            && i == v.len()
            && items.iter().all(|s| s.iter().all(|b| b.is_ascii_graphic()));
        if encoded { items } else { vec![v] }
    }
}

/// A reply we are about to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub xid: u32,
    pub flags: u16,
    pub hops: u8,
    pub ciaddr: Ipv4Addr,
    pub yiaddr: Ipv4Addr,
    pub siaddr: Ipv4Addr,
    pub giaddr: Ipv4Addr,
    pub chaddr: [u8; 6],
    /// Server host name field; at most 63 bytes (longer is refused when set).
    pub sname: Vec<u8>,
    /// Boot file field; at most 127 bytes (longer names go to option 67 only).
    pub file: Vec<u8>,
    /// In the order written: 53 first, 82 last (RFC 3046).
    pub options: Options,
}

/// Reply options in order, their values in one buffer: a reply costs two allocations,
/// not one per option.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Which codes are set: `get` and `set` skip the search for absent ones.
    present: [u64; 4],
    /// Code, start and length of each value in `data`.
    index: Vec<(u8, u32, u32)>,
    /// Values; a replaced value's old bytes stay unused until the reply is dropped.
    data: Vec<u8>,
}

impl Options {
    pub fn with_capacity(options: usize, bytes: usize) -> Self {
        Options {
            present: [0; 4],
            index: Vec::with_capacity(options),
            data: Vec::with_capacity(bytes),
        }
    }

    fn has(&self, c: u8) -> bool {
        self.present[(c >> 6) as usize] & (1 << (c & 63)) != 0
    }

    pub fn get(&self, c: u8) -> Option<&[u8]> {
        if !self.has(c) {
            return None;
        }
        self.index
            .iter()
            .find(|(k, _, _)| *k == c)
            .map(|(_, s, l)| &self.data[*s as usize..(*s + *l) as usize])
    }

    /// Adds or replaces an option; a replaced one keeps its place.
    pub fn set(&mut self, c: u8, value: &[u8]) {
        let start = self.data.len();
        self.data.extend_from_slice(value);
        self.put(c, start);
    }

    /// Sets option `c` to what `write` appends to the value buffer, unless it appends
    /// nothing (then the option is left as it was).
    pub fn set_nonempty_with(&mut self, c: u8, write: impl FnOnce(&mut Vec<u8>)) {
        let start = self.data.len();
        write(&mut self.data);
        if self.data.len() > start {
            self.put(c, start);
        }
    }

    /// Points option `c` at `data[start..]`.
    fn put(&mut self, c: u8, start: usize) {
        let entry = (c, start as u32, (self.data.len() - start) as u32);
        if !self.has(c) {
            self.present[(c >> 6) as usize] |= 1 << (c & 63);
            self.index.push(entry);
        } else if let Some(e) = self.index.iter_mut().find(|(k, _, _)| *k == c) {
            *e = entry;
        }
    }

    /// Options in order.
    pub fn iter(&self) -> impl Iterator<Item = (u8, &[u8])> + '_ {
        self.index
            .iter()
            .map(|(c, s, l)| (*c, &self.data[*s as usize..(*s + *l) as usize]))
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }
}

/// Options frozen into one buffer — code, 4-byte length, value, in order — for what is
/// kept and read on every reply (a reservation's network options): one allocation, a
/// couple of cache lines, where [`Options`] takes two and a bitmap.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OptionList(Box<[u8]>);

impl OptionList {
    pub fn get(&self, c: u8) -> Option<&[u8]> {
        self.iter().find(|(k, _)| *k == c).map(|(_, v)| v)
    }

    /// Options in order.
    pub fn iter(&self) -> impl Iterator<Item = (u8, &[u8])> + '_ {
        let mut rest = &self.0[..];
        std::iter::from_fn(move || {
            let (&c, r) = rest.split_first()?;
            let (len, r) = r.split_first_chunk::<4>()?;
            let (v, r) = r.split_at_checked(u32::from_be_bytes(*len) as usize)?;
            rest = r;
            Some((c, v))
        })
    }
}

impl From<&Options> for OptionList {
    fn from(o: &Options) -> Self {
        let mut buf = Vec::with_capacity(o.iter().map(|(_, v)| 5 + v.len()).sum());
        for (c, v) in o.iter() {
            buf.push(c);
            buf.extend_from_slice(&(v.len() as u32).to_be_bytes());
            buf.extend_from_slice(v);
        }
        OptionList(buf.into_boxed_slice())
    }
}

impl PartialEq for Options {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for Options {}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("the reply's required options do not fit in {0} bytes")]
    TooLarge(usize),
}

impl Reply {
    /// Starts a reply to `req` with its transaction fields copied.
    pub fn to(req: &Request<'_>, message_type: MessageType) -> Reply {
        Reply {
            xid: req.xid,
            flags: req.flags,
            hops: 0,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            yiaddr: Ipv4Addr::UNSPECIFIED,
            siaddr: Ipv4Addr::UNSPECIFIED,
            giaddr: req.giaddr,
            chaddr: req.chaddr,
            sname: vec![],
            file: vec![],
            options: {
                let mut o = Options::with_capacity(16, 256);
                o.set(code::MESSAGE_TYPE, &[message_type as u8]);
                o
            },
        }
    }

    pub fn message_type(&self) -> Option<MessageType> {
        self.option(code::MESSAGE_TYPE)
            .and_then(|v| v.first().copied())
            .and_then(MessageType::from_u8)
    }

    pub fn option(&self, c: u8) -> Option<&[u8]> {
        self.options.get(c)
    }

    /// Adds or replaces an option (any length: long values are split on encode).
    pub fn set(&mut self, c: u8, value: impl AsRef<[u8]>) {
        self.options.set(c, value.as_ref())
    }

    /// Encodes within `max_len` bytes (and at least 300). Options that do not fit in
    /// the options area move into the unused `file` and `sname` fields (option
    /// overload); options still left over are dropped from the end of the list — the
    /// caller orders options by importance. Returns the bytes and the dropped codes.
    pub fn encode(&self, max_len: usize) -> Result<(Vec<u8>, Vec<u8>), EncodeError> {
        let mut buf = Vec::new();
        let dropped = self.encode_into(max_len, &mut buf)?;
        Ok((buf, dropped))
    }

    /// [`Reply::encode`] into `buf` (cleared first), so a worker reuses one buffer.
    /// Options go straight into it; only a reply that spills into `file`/`sname`
    /// allocates.
    pub fn encode_into(&self, max_len: usize, buf: &mut Vec<u8>) -> Result<Vec<u8>, EncodeError> {
        let max_len = max_len.max(MIN_REPLY_LEN);
        buf.clear();
        buf.resize(HEADER_LEN, 0);
        buf[0] = 2;
        buf[1] = 1;
        buf[2] = 6;
        buf[3] = self.hops;
        buf[4..8].copy_from_slice(&self.xid.to_be_bytes());
        buf[10..12].copy_from_slice(&self.flags.to_be_bytes());
        buf[12..16].copy_from_slice(&self.ciaddr.octets());
        buf[16..20].copy_from_slice(&self.yiaddr.octets());
        buf[20..24].copy_from_slice(&self.siaddr.octets());
        buf[24..28].copy_from_slice(&self.giaddr.octets());
        buf[28..34].copy_from_slice(&self.chaddr);
        buf.extend_from_slice(&COOKIE);

        // Room in the main area: everything up to max_len, less END.
        let main_room = max_len - buf.len() - 1;
        let mut main_len = 0;
        // Option 82 must be last in the main area; reserve its room first.
        let relay = self.options.get(code::RELAY_AGENT);
        let relay_len = relay.map(tlv_len).unwrap_or(0);
        let mut spill: Vec<(u8, &[u8])> = Vec::new();
        for (c, v) in self.options.iter() {
            if c == code::RELAY_AGENT {
                continue;
            }
            let n = tlv_len(v);
            if spill.is_empty() && main_len + n + relay_len + 3 <= main_room {
                put_tlv(buf, c, v);
                main_len += n;
            } else {
                spill.push((c, v));
            }
        }
        let file_free = self.file.is_empty();
        let sname_free = self.sname.is_empty();
        let mut file_area = Vec::new();
        let mut sname_area = Vec::new();
        let mut dropped = Vec::new();
        let mut overload = 0u8;
        for (c, v) in spill {
            let n = tlv_len(v);
            if file_free && file_area.len() + n < 128 {
                put_tlv(&mut file_area, c, v);
                overload |= 1;
            } else if sname_free && sname_area.len() + n < 64 {
                put_tlv(&mut sname_area, c, v);
                overload |= 2;
            } else if matches!(c, code::MESSAGE_TYPE | code::SERVER_ID | code::BOOTFILE) {
                // Without these the reply is wrong, not just thinner: refuse loudly.
                return Err(EncodeError::TooLarge(max_len));
            } else {
                dropped.push(c);
            }
        }
        if overload != 0 {
            buf.extend_from_slice(&[code::OVERLOAD, 1, overload]);
        }
        if let Some(v) = relay {
            put_tlv(buf, code::RELAY_AGENT, v);
        }
        buf.push(code::END);
        // sname (44..108) and file (108..236).
        if overload & 2 != 0 {
            sname_area.push(code::END);
            buf[44..44 + sname_area.len()].copy_from_slice(&sname_area);
        } else {
            let n = self.sname.len().min(63);
            buf[44..44 + n].copy_from_slice(&self.sname[..n]);
        }
        if overload & 1 != 0 {
            file_area.push(code::END);
            buf[108..108 + file_area.len()].copy_from_slice(&file_area);
        } else {
            let n = self.file.len().min(127);
            buf[108..108 + n].copy_from_slice(&self.file[..n]);
        }
        if buf.len() < MIN_REPLY_LEN {
            buf.resize(MIN_REPLY_LEN, 0);
        }
        Ok(dropped)
    }
}

/// Encoded size of one option: values over 255 bytes are split (RFC 3396).
fn tlv_len(v: &[u8]) -> usize {
    v.len() + 2 * v.len().div_ceil(255).max(1)
}

/// Appends one option as TLV bytes, split into 255-byte pieces when longer.
fn put_tlv(out: &mut Vec<u8>, c: u8, v: &[u8]) {
    if v.len() <= 255 {
        out.extend_from_slice(&[c, v.len() as u8]);
        out.extend_from_slice(v);
        return;
    }
    for chunk in v.chunks(255) {
        out.push(c);
        out.push(chunk.len() as u8);
        out.extend_from_slice(chunk);
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Builds a request the way a client would, for tests.
    pub fn request_bytes(mt: MessageType, mac: [u8; 6], opts: &[(u8, &[u8])]) -> Vec<u8> {
        let mut b = vec![0u8; 236];
        b[0] = 1;
        b[1] = 1;
        b[2] = 6;
        b[4..8].copy_from_slice(&0x1234_5678u32.to_be_bytes());
        b[28..34].copy_from_slice(&mac);
        b.extend_from_slice(&COOKIE);
        b.extend_from_slice(&[53, 1, mt as u8]);
        for (c, v) in opts {
            b.push(*c);
            b.push(v.len() as u8);
            b.extend_from_slice(v);
        }
        b.push(255);
        b
    }

    const MAC: [u8; 6] = [0x52, 0x54, 0, 0xee, 0x0d, 0x0b];

    #[test]
    fn decodes_an_ovmf_discover() {
        let b = request_bytes(
            MessageType::Discover,
            MAC,
            &[
                (93, &[0, 7]),
                (94, &[1, 3, 0]),
                (60, b"PXEClient:Arch:00007:UNDI:003000"),
                (97, &[0; 17]),
                (57, &[5, 192]),
            ],
        );
        let r = Request::decode(&b).unwrap();
        assert_eq!(r.message_type, MessageType::Discover);
        assert_eq!(r.chaddr, MAC);
        assert_eq!(r.arches(), vec![7]);
        assert_eq!(r.vendor_class(), b"PXEClient:Arch:00007:UNDI:003000");
        assert_eq!(r.max_reply_len(), 1472 - 28);
    }

    #[test]
    fn refuses_malformed_fixed_length_options() {
        for (c, v) in [
            (94u8, &[1u8, 2][..]),
            (93, &[0]),
            (97, &[0; 3]),
            (50, &[1, 2, 3]),
            (57, &[1]),
        ] {
            let b = request_bytes(MessageType::Discover, MAC, &[(c, v)]);
            assert_eq!(
                Request::decode(&b).unwrap_err(),
                DecodeError::BadLength(c),
                "option {c}"
            );
        }
        let mut b = request_bytes(MessageType::Discover, MAC, &[]);
        b.truncate(b.len() - 1);
        b.extend_from_slice(&[60, 10, b'P']);
        assert_eq!(Request::decode(&b).unwrap_err(), DecodeError::Truncated(60));
        assert_eq!(
            Request::decode(&b[..100]).unwrap_err(),
            DecodeError::TooShort
        );
    }

    #[test]
    fn user_class_raw_and_rfc3004() {
        let raw = request_bytes(MessageType::Discover, MAC, &[(77, b"iPXE")]);
        assert_eq!(
            Request::decode(&raw).unwrap().user_classes(),
            vec![&b"iPXE"[..]]
        );
        let enc = request_bytes(
            MessageType::Discover,
            MAC,
            &[(77, b"\x04iPXE\x0aTinkerbell")],
        );
        assert_eq!(
            Request::decode(&enc).unwrap().user_classes(),
            vec![&b"iPXE"[..], &b"Tinkerbell"[..]]
        );
    }

    #[test]
    fn concatenates_split_options_and_reads_overload() {
        let mut b = request_bytes(
            MessageType::Request,
            MAC,
            &[(60, b"PXE"), (60, b"Client"), (52, &[1])],
        );
        // Put option 12 into the file field.
        b[108..108 + 6].copy_from_slice(&[12, 3, b'a', b'b', b'c', 255]);
        let r = Request::decode(&b).unwrap();
        assert_eq!(r.vendor_class(), b"PXEClient");
        assert_eq!(r.option(12), Some(&b"abc"[..]));
    }

    fn reply() -> Reply {
        let b = request_bytes(MessageType::Discover, MAC, &[]);
        let req = Request::decode(&b).unwrap();
        let mut r = Reply::to(&req, MessageType::Offer);
        r.yiaddr = Ipv4Addr::new(10, 0, 0, 10);
        r.set(code::SERVER_ID, vec![10, 0, 0, 1]);
        r
    }

    #[test]
    fn replies_are_at_least_300_bytes_and_dhcproto_agrees() {
        use dhcproto::{Decodable, Decoder, v4};
        let mut r = reply();
        r.set(code::LEASE_TIME, 86400u32.to_be_bytes());
        r.set(code::RELAY_AGENT, vec![1, 3, b'a', b'b', b'c']);
        r.file = b"undionly.kpxe".to_vec();
        let (bytes, dropped) = r.encode(548).unwrap();
        assert!(dropped.is_empty());
        assert_eq!(bytes.len(), 300);
        let m = v4::Message::decode(&mut Decoder::new(&bytes)).unwrap();
        assert_eq!(m.opts().msg_type(), Some(v4::MessageType::Offer));
        assert_eq!(m.yiaddr(), Ipv4Addr::new(10, 0, 0, 10));
        assert_eq!(m.chaddr(), &MAC);
        assert_eq!(
            m.fname()
                .map(|f| f.split(|b| *b == 0).next().unwrap().to_vec()),
            Some(b"undionly.kpxe".to_vec())
        );
        assert!(matches!(
            m.opts().get(v4::OptionCode::AddressLeaseTime),
            Some(v4::DhcpOption::AddressLeaseTime(86400))
        ));
        // Option 82 is the last option before END.
        let end = bytes.iter().rposition(|b| *b == 255).unwrap();
        assert_eq!(&bytes[end - 7..end], &[82, 5, 1, 3, b'a', b'b', b'c']);
    }

    #[test]
    fn long_values_split_and_overflow_goes_to_file_and_sname() {
        let mut r = reply();
        let url = "http://10.0.0.1:8080/".to_string() + &"x".repeat(260);
        r.set(code::BOOTFILE, url.clone().into_bytes());
        for c in 200..230u8 {
            r.set(c, vec![c; 10]);
        }
        let (bytes, dropped) = r.encode(548).unwrap();
        assert!(bytes.len() <= 548);
        let req_view = {
            // Our own decoder reads replies too once op is flipped to 1.
            let mut b = bytes.clone();
            b[0] = 1;
            b
        };
        let back = Request::decode(&req_view).unwrap();
        assert_eq!(
            back.option(code::BOOTFILE),
            Some(url.as_bytes()),
            "the long URL survives whole"
        );
        assert!(back.has(code::OVERLOAD));
        for c in 200..230u8 {
            assert!(
                back.has(c) || dropped.contains(&c),
                "option {c} neither sent nor reported dropped"
            );
        }
        assert!(!dropped.is_empty(), "this much cannot fit in 548 bytes");
    }

    #[test]
    fn a_boot_url_that_cannot_fit_is_an_error_not_a_truncation() {
        let mut r = reply();
        r.set(code::BOOTFILE, vec![b'x'; 600]);
        assert_eq!(r.encode(548), Err(EncodeError::TooLarge(548)));
        assert!(r.encode(1400).is_ok());
    }

    proptest! {
        #[test]
        fn an_option_list_keeps_every_option_in_order(opts in proptest::collection::vec((1u8..255, proptest::collection::vec(any::<u8>(), 0..300)), 0..12)) {
            let mut o = Options::default();
            for (c, v) in &opts {
                o.set(*c, v);
            }
            let list = OptionList::from(&o);
            prop_assert!(list.iter().eq(o.iter()));
            for (c, _) in &opts {
                prop_assert_eq!(list.get(*c), o.get(*c));
            }
            prop_assert_eq!(list.get(255), None);
        }

        #[test]
        fn decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..700)) {
            let _ = Request::decode(&bytes);
        }

        #[test]
        fn decoder_never_panics_on_mutated_requests(
            opts in proptest::collection::vec((1u8..255, proptest::collection::vec(any::<u8>(), 0..40)), 0..12),
            cut in 0usize..400,
        ) {
            let o: Vec<(u8, &[u8])> = opts.iter().map(|(c, v)| (*c, v.as_slice())).collect();
            let b = request_bytes(MessageType::Discover, MAC, &o);
            let _ = Request::decode(&b);
            let _ = Request::decode(&b[..cut.min(b.len())]);
            if let Ok(r) = Request::decode(&b) {
                let _ = (r.arches(), r.user_classes(), r.max_reply_len(), r.requested_ip(), r.server_id());
            }
        }

        #[test]
        fn any_reply_encodes_within_bounds(n in 0usize..60, len in 0usize..300, max in 0usize..1500) {
            let mut r = reply();
            for i in 0..n {
                r.set(100 + i as u8, vec![7; len.min(255)]);
            }
            if let Ok((b, _)) = r.encode(max) {
                prop_assert!(b.len() >= MIN_REPLY_LEN);
                prop_assert!(b.len() <= max.max(MIN_REPLY_LEN));
            }
        }
    }
}
