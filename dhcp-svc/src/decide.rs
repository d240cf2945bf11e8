//! The DHCP decision: a request and what the registry says about its MAC go in, a reply
//! (or a counted reason for silence) comes out. No sockets, no clocks, no registry
//! calls: every RFC 2131 state and every boot case is table-tested here.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use ironboot_proto::MacAddr;
use ironboot_proto::pb::{Hardware, Interface};
use ironboot_telemetry::trace::{TRACEPARENT_BYTES, TRACEPARENT_LEN, TraceParent};

use crate::netboot::{BootAnswer, BootFiles, Client, Endpoints, boot_answer, classify};
use crate::packet::{MessageType, OptionList, Options, Reply, Request, code};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Answer registered MACs with their reserved address and boot information.
    Reservation,
    /// ProxyDHCP beside another DHCP server: boot information only, no addresses.
    Proxy,
}

impl Mode {
    pub fn label(self) -> &'static str {
        match self {
            Mode::Reservation => "reservation",
            Mode::Proxy => "proxy",
        }
    }
}

/// Service-wide settings the decision needs.
#[derive(Clone, Debug)]
pub struct Settings {
    pub mode: Mode,
    pub default_lease_secs: u32,
    pub syslog_server: Option<Ipv4Addr>,
    pub ipxe_user_classes: Vec<String>,
    pub boot_files: BootFiles,
    pub endpoints: Endpoints,
    /// Whether netboot replies carry the boot's trace context (see `Arrival::trace`).
    pub trace_context: bool,
}

/// Facts about where this request arrived.
#[derive(Clone, Copy, Debug)]
pub struct Arrival {
    /// Our server identifier on this link (option 54).
    pub server_id: Ipv4Addr,
    /// TFTP next-server (siaddr).
    pub next_server: Ipv4Addr,
    /// The ingress interface's subnet, when it has an address: reservations for other
    /// subnets are not handed out on this link (unless relayed from that subnet).
    pub ingress_net: Option<(Ipv4Addr, Ipv4Addr)>,
    /// Arrived on the PXE boot-server port 4011.
    pub pxe_port: bool,
    /// The trace context to hand a netboot client (its reply's span), so the fetch it
    /// makes next joins the boot's trace; None for clients that get no boot answer.
    pub trace: Option<TraceParent>,
}

/// Why we stay silent; each is a metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Silence {
    UnknownMac,
    NoReservation,
    WrongSubnet,
    NotNetboot,
    NetbootDenied,
    OtherServer,
    Released,
    Declined,
    Unsupported,
}

impl Silence {
    pub fn label(self) -> &'static str {
        match self {
            Silence::UnknownMac => "unknown_mac",
            Silence::NoReservation => "no_reservation",
            Silence::WrongSubnet => "wrong_subnet",
            Silence::NotNetboot => "not_netboot",
            Silence::NetbootDenied => "netboot_denied",
            Silence::OtherServer => "other_server",
            Silence::Released => "released",
            Silence::Declined => "declined",
            Silence::Unsupported => "unsupported",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    Reply {
        reply: Reply,
        client: Client,
        boot: Option<BootAnswer>,
    },
    Silent(Silence),
}

fn interface<'h>(hw: &'h Hardware, mac: &MacAddr) -> Option<&'h Interface> {
    hw.interfaces.iter().find(|i| same_mac(&i.mac, mac))
}

/// `MacAddr::parse(s) == Ok(mac)`, without parsing (and allocating) in the usual case
/// of the registry's own spelling, `52:54:00:ee:0d:0b`.
fn same_mac(s: &str, mac: &MacAddr) -> bool {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let b = s.as_bytes();
    let canonical = b.len() == 17
        && mac.0.iter().enumerate().all(|(i, o)| {
            b[i * 3].eq_ignore_ascii_case(&HEX[(o >> 4) as usize])
                && b[i * 3 + 1].eq_ignore_ascii_case(&HEX[(o & 15) as usize])
                && (i == 5 || b[i * 3 + 2] == b':')
        });
    canonical || MacAddr::parse(s).ok().as_ref() == Some(mac)
}

/// Network boot allowed for this machine on this interface? (`allow_pxe` absent means
/// yes: registering a machine is the operator's consent; `false` and `disabled` say no.)
pub fn netboot_allowed(hw: &Hardware, iface: &Interface) -> bool {
    !hw.disabled && iface.netboot.as_ref().and_then(|n| n.allow_pxe) != Some(false)
}

fn in_net(ip: Ipv4Addr, net: Ipv4Addr, mask: Ipv4Addr) -> bool {
    u32::from(ip) & u32::from(mask) == u32::from(net) & u32::from(mask)
}

/// What a reservation takes from its record (and the settings): the address, its mask,
/// the lease, whether the interface may netboot and the network options. The same for
/// every packet until the record changes, so a caller may work it out once per record
/// version and hand it to [`decide_with`]; an ordinary DHCP client's reply then reads
/// nothing else of the record.
#[derive(Clone, Debug)]
pub struct Reservation {
    pub ip: Ipv4Addr,
    pub mask: Ipv4Addr,
    /// Lease time in seconds: the record's, else the default; at least 60.
    pub lease_secs: u32,
    /// [`netboot_allowed`] for this interface.
    pub netboot: bool,
    pub network: OptionList,
}

impl Reservation {
    /// The reservation of `mac`'s interface in `hw`; None when it has none (no DHCP
    /// section, or an address or mask that does not parse) or no such interface.
    pub fn of(hw: &Hardware, mac: &MacAddr, s: &Settings) -> Option<Reservation> {
        interface(hw, mac).and_then(|iface| Self::of_interface(hw, iface, s))
    }

    fn of_interface(hw: &Hardware, iface: &Interface, s: &Settings) -> Option<Reservation> {
        let d = iface.dhcp.as_ref()?;
        let ip: Ipv4Addr = d.ip.parse().ok()?;
        let mask: Ipv4Addr = d.netmask.parse().ok()?;
        let lease_secs = Some(d.lease_time)
            .filter(|l| *l > 0)
            .unwrap_or(s.default_lease_secs)
            .max(60);
        let network = OptionList::from(&lease_options(iface, ip, mask, s));
        Some(Reservation {
            ip,
            mask,
            lease_secs,
            netboot: netboot_allowed(hw, iface),
            network,
        })
    }
}

/// A registered MAC as the server answers it: its record and, in reservation mode, its
/// [`Reservation`]. The registry cache keeps one per MAC and record version, so a packet
/// finds both through one allocation.
#[derive(Debug)]
pub struct Known {
    pub hw: Arc<Hardware>,
    pub reservation: Option<Reservation>,
}

impl Known {
    pub fn of(hw: Arc<Hardware>, mac: &MacAddr, s: &Settings) -> Known {
        let reservation = if s.mode == Mode::Reservation {
            Reservation::of(&hw, mac, s)
        } else {
            None
        };
        Known { hw, reservation }
    }
}

pub fn decide(req: &Request<'_>, hw: Option<&Hardware>, at: &Arrival, s: &Settings) -> Decision {
    decide_with(req, hw, None, at, s)
}

/// [`decide`], with the MAC's [`Reservation`] already worked out by the caller
/// (`Some(Reservation::of(hw, mac, s).as_ref())`, which the registry cache keeps per
/// record version); `None` works it out here, and so does `Some(None)` (to tell a record
/// without this MAC's interface from one without a reservation on it).
pub fn decide_with(
    req: &Request<'_>,
    hw: Option<&Hardware>,
    worked_out: Option<Option<&Reservation>>,
    at: &Arrival,
    s: &Settings,
) -> Decision {
    let mac = MacAddr(req.chaddr);
    let Some(hw) = hw else {
        return Decision::Silent(Silence::UnknownMac);
    };
    let client = classify(req, &s.ipxe_user_classes);
    let computed;
    let r = match (s.mode, worked_out) {
        // Worked out for this very MAC. Without one, look again below: "no such interface"
        // (UnknownMac) and "no reservation on it" are different silences.
        (Mode::Reservation, Some(Some(r))) => Some(r),
        _ => {
            let Some(iface) = interface(hw, &mac) else {
                return Decision::Silent(Silence::UnknownMac);
            };
            if s.mode == Mode::Proxy {
                return proxy(req, hw, iface, client, at, s);
            }
            computed = Reservation::of_interface(hw, iface, s);
            computed.as_ref()
        }
    };
    reservation(req, hw, r, client, at, s)
}

fn reservation(
    req: &Request<'_>,
    hw: &Hardware,
    r: Option<&Reservation>,
    client: Client,
    at: &Arrival,
    s: &Settings,
) -> Decision {
    use MessageType::*;
    let Some(r) = r else {
        return Decision::Silent(Silence::NoReservation);
    };
    let (ip, mask) = (r.ip, r.mask);
    // Hand an address out only on the link it belongs to.
    let on_link = if !req.giaddr.is_unspecified() {
        in_net(req.giaddr, ip, mask)
    } else {
        match at.ingress_net {
            Some((net, nmask)) => in_net(ip, net, nmask),
            None => true,
        }
    };
    if !on_link {
        return Decision::Silent(Silence::WrongSubnet);
    }
    let (mt, yiaddr) = match req.message_type {
        Discover => (Offer, ip),
        Request => {
            let selecting = req.server_id();
            if let Some(sid) = selecting
                && sid != at.server_id
            {
                // The client chose another server's offer.
                return Decision::Silent(Silence::OtherServer);
            }
            let asked = if selecting.is_some() || req.requested_ip().is_some() {
                // SELECTING or INIT-REBOOT: option 50 carries the address.
                req.requested_ip().unwrap_or(req.ciaddr)
            } else {
                // RENEWING / REBINDING: ciaddr carries it.
                req.ciaddr
            };
            if asked == ip {
                (Ack, ip)
            } else {
                return nak(req, at);
            }
        }
        Inform => (Ack, Ipv4Addr::UNSPECIFIED),
        Release => return Decision::Silent(Silence::Released),
        Decline => return Decision::Silent(Silence::Declined),
        _ => return Decision::Silent(Silence::Unsupported),
    };
    let mut reply = Reply::to(req, mt);
    reply.yiaddr = yiaddr;
    if req.message_type == Inform {
        reply.ciaddr = req.ciaddr;
    }
    // Identity and lease first: what must survive a small option 57.
    reply.set(code::SERVER_ID, at.server_id.octets());
    if req.message_type != Inform {
        let lease = r.lease_secs;
        reply.set(code::LEASE_TIME, lease.to_be_bytes());
        reply.set(code::RENEWAL_T1, (lease / 2).to_be_bytes());
        reply.set(code::REBINDING_T2, (lease / 8 * 7).to_be_bytes());
    }
    // Only a netboot client's reply reads the record itself (its boot overrides).
    let boot = if r.netboot && client.is_netboot() {
        interface(hw, &MacAddr(req.chaddr))
            .and_then(|iface| boot_options(&mut reply, req, client, iface, at, s))
    } else {
        None
    };
    finish(&mut reply, req, &r.network);
    Decision::Reply {
        reply,
        client,
        boot,
    }
}

fn nak(req: &Request<'_>, at: &Arrival) -> Decision {
    let mut reply = Reply::to(req, MessageType::Nak);
    reply.set(code::SERVER_ID, at.server_id.octets());
    reply.set(
        code::MESSAGE,
        b"requested address is not this machine's reservation",
    );
    // RFC 2131 §4.3.2: a NAK to a relayed client sets the broadcast bit.
    if !req.giaddr.is_unspecified() {
        reply.flags |= 0x8000;
    }
    Decision::Reply {
        reply,
        client: Client::Plain,
        boot: None,
    }
}

fn proxy(
    req: &Request<'_>,
    hw: &Hardware,
    iface: &Interface,
    client: Client,
    at: &Arrival,
    s: &Settings,
) -> Decision {
    use MessageType::*;
    if !client.is_netboot() {
        return Decision::Silent(Silence::NotNetboot);
    }
    if !netboot_allowed(hw, iface) {
        return Decision::Silent(Silence::NetbootDenied);
    }
    let mt = match req.message_type {
        Discover if !at.pxe_port => Offer,
        Request if at.pxe_port => Ack,
        // A REQUEST on port 67 is for the address server, unless it names us.
        Request if req.server_id() == Some(at.server_id) => Ack,
        Request => return Decision::Silent(Silence::OtherServer),
        Inform if at.pxe_port => Ack,
        _ => return Decision::Silent(Silence::Unsupported),
    };
    let mut reply = Reply::to(req, mt);
    if at.pxe_port {
        reply.ciaddr = req.ciaddr;
    }
    reply.set(code::SERVER_ID, at.server_id.octets());
    let boot = boot_options(&mut reply, req, client, iface, at, s);
    finish(&mut reply, req, &OptionList::default());
    Decision::Reply {
        reply,
        client,
        boot,
    }
}

/// Adds next-server, file and the boot options; returns what the client was told.
fn boot_options(
    reply: &mut Reply,
    req: &Request<'_>,
    client: Client,
    iface: &Interface,
    at: &Arrival,
    s: &Settings,
) -> Option<BootAnswer> {
    if !client.is_netboot() {
        return None;
    }
    let nb = iface.netboot.as_ref();
    let file_override = nb.map(|n| n.ipxe_binary.as_str()).filter(|f| !f.is_empty());
    let script_override = nb
        .and_then(|n| n.ipxe.as_ref())
        .map(|i| i.url.as_str())
        .filter(|u| !u.is_empty());
    let mac = MacAddr(req.chaddr).to_string();
    let endpoints = if s.endpoints.http.is_empty() {
        Endpoints {
            http: format!("{}:8080", at.server_id),
        }
    } else {
        s.endpoints.clone()
    };
    let answer = boot_answer(
        client,
        &mac,
        &s.boot_files,
        &endpoints,
        file_override,
        script_override,
    )?;
    let target = match &answer {
        BootAnswer::UnknownArch(_) => return Some(answer),
        BootAnswer::TftpFile(f) => {
            reply.set(code::VENDOR_CLASS, b"PXEClient");
            // PXE vendor options: discovery control 8 = "use the boot file name given";
            // Smee's sub-option 69, the trace context in binary.
            let mut pxe = vec![6, 1, 8];
            if let Some(tp) = at.trace {
                pxe.extend_from_slice(&[69, TRACEPARENT_BYTES as u8]);
                pxe.extend_from_slice(&tp.to_bytes());
            }
            pxe.push(255);
            reply.set(code::VENDOR_SPECIFIC, pxe);
            with_trace_suffix(f, at.trace)
        }
        BootAnswer::HttpBinary(u) => {
            reply.set(code::VENDOR_CLASS, b"HTTPClient");
            // A query, not a suffix: UEFI HTTP boot checks the path ends in `.efi`.
            with_trace_query(u, at.trace)
        }
        BootAnswer::Script(u) => {
            if s.mode == Mode::Proxy {
                // iPXE treats an offer as ProxyDHCP only when it says PXEClient; it then
                // asks us again on port 4011 and takes the script from that ACK.
                reply.set(code::VENDOR_CLASS, b"PXEClient");
            } else {
                // iPXE option 175, sub-option 176 (no-pxedhcp): do not wait for a
                // ProxyDHCP offer that will not come (saves ≈ 2 s per boot).
                reply.set(code::IPXE_ENCAP, [176, 1, 1]);
            }
            // An operator's own `ipxe.url` is handed out exactly as written.
            if script_override.is_some() {
                u.clone()
            } else {
                with_trace_query(u, at.trace)
            }
        }
    };
    reply.siaddr = at.next_server;
    let wants = |c: u8| req.parameter_list().contains(&c);
    if target.len() <= 127 {
        reply.file = target.clone().into_bytes();
        if wants(code::BOOTFILE) {
            reply.set(code::BOOTFILE, target);
        }
    } else {
        // Too long for the file field: option 67 only, never truncated.
        reply.set(code::BOOTFILE, target);
    }
    if wants(code::TFTP_SERVER) {
        reply.set(code::TFTP_SERVER, at.next_server.to_string());
    }
    Some(answer)
}

/// `<file>-00-<trace>-<span>-<flags>`: Smee's suffix, which tftp-svc and ipxe-http-svc
/// strip and continue.
fn with_trace_suffix(file: &str, trace: Option<TraceParent>) -> String {
    let mut out = String::with_capacity(file.len() + 1 + TRACEPARENT_LEN);
    out.push_str(file);
    if let Some(tp) = trace {
        out.push('-');
        tp.write_to(&mut out);
    }
    out
}

/// `<url>?traceparent=…` (or `&traceparent=…` after an existing query).
fn with_trace_query(url: &str, trace: Option<TraceParent>) -> String {
    let mut out = String::with_capacity(url.len() + 13 + TRACEPARENT_LEN);
    out.push_str(url);
    if let Some(tp) = trace {
        out.push_str(if url.contains('?') {
            "&traceparent="
        } else {
            "?traceparent="
        });
        tp.write_to(&mut out);
    }
    out
}

/// The network configuration options of a reservation.
fn lease_options(iface: &Interface, ip: Ipv4Addr, mask: Ipv4Addr, s: &Settings) -> Options {
    let Some(d) = iface.dhcp.as_ref() else {
        return Options::default();
    };
    let mut o = Options::with_capacity(10, 128);
    // A list of addresses as one option; nothing when none of them parses.
    let ips = |o: &mut Options, c: u8, list: &[String]| {
        o.set_nonempty_with(c, |v| {
            list.iter()
                .filter_map(|a| a.parse::<Ipv4Addr>().ok())
                .for_each(|a| v.extend_from_slice(&a.octets()))
        })
    };
    o.set(code::SUBNET_MASK, &mask.octets());
    if let Ok(gw) = d.gateway.parse::<Ipv4Addr>() {
        o.set(code::ROUTER, &gw.octets());
    }
    ips(&mut o, code::DNS, &d.name_servers);
    if !d.hostname.is_empty() {
        o.set(code::HOSTNAME, d.hostname.as_bytes());
    }
    if !d.domain.is_empty() {
        o.set(code::DOMAIN_NAME, d.domain.as_bytes());
    }
    let bcast = Ipv4Addr::from(u32::from(ip) | !u32::from(mask));
    o.set(code::BROADCAST, &bcast.octets());
    ips(&mut o, code::NTP, &d.time_servers);
    if !d.domain_search.is_empty() {
        o.set(code::DOMAIN_SEARCH, &encode_domain_list(&d.domain_search));
    }
    if let Some(log) = s.syslog_server {
        o.set(code::LOG_SERVER, &log.octets());
    }
    o
}

/// RFC 3397 domain search list: RFC 1035 names, uncompressed.
pub fn encode_domain_list(domains: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    for d in domains {
        for label in d.trim_end_matches('.').split('.').filter(|l| !l.is_empty()) {
            let l = &label.as_bytes()[..label.len().min(63)];
            out.push(l.len() as u8);
            out.extend_from_slice(l);
        }
        out.push(0);
    }
    out
}

/// Orders options by importance (what must survive a small option 57 comes first):
/// identity and lease, boot, then what the client asked for in its order (option 55),
/// then, for clients that asked for nothing, the basic network set; echoes last.
/// The essential options (identity, lease, boot) are already in `reply`.
fn finish(reply: &mut Reply, req: &Request<'_>, network: &OptionList) {
    let prl = req.parameter_list();
    for c in prl {
        if let Some(v) = network.get(*c) {
            reply.set(*c, v);
        }
    }
    // Options a client did not list: the basics (RFC 2131 lets a server add them),
    // and everything when there was no list at all.
    for (c, v) in network.iter() {
        let basic = matches!(
            c,
            code::SUBNET_MASK
                | code::ROUTER
                | code::DNS
                | code::HOSTNAME
                | code::DOMAIN_NAME
                | code::BROADCAST
        );
        if !prl.contains(&c) && (basic || prl.is_empty()) {
            reply.set(c, v);
        }
    }
    // RFC 6842: echo the client identifier. RFC 3046: echo relay information, last.
    if let Some(id) = req.option(code::CLIENT_ID) {
        reply.set(code::CLIENT_ID, id);
    }
    if let Some(ri) = req.option(code::RELAY_AGENT) {
        reply.set(code::RELAY_AGENT, ri);
    }
}

/// Where a reply goes (RFC 2131 §4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// To the relay agent's server port, routed normally.
    Relay(Ipv4Addr),
    /// To an address the client already has (or the port-4011 sender).
    Unicast(SocketAddrV4),
    /// Broadcast on the ingress link. Used for clients without an address instead of a
    /// unicast to yiaddr: that would need an ARP entry the client cannot answer for yet,
    /// and every PXE ROM and DHCP client listens for broadcasts.
    Broadcast,
}

pub fn route(req: &Request<'_>, reply: &Reply, src: SocketAddrV4, pxe_port: bool) -> Route {
    if !req.giaddr.is_unspecified() {
        return Route::Relay(req.giaddr);
    }
    if pxe_port {
        return Route::Unicast(src);
    }
    if reply.message_type() == Some(MessageType::Nak) {
        return Route::Broadcast;
    }
    if !req.ciaddr.is_unspecified() {
        return Route::Unicast(SocketAddrV4::new(req.ciaddr, crate::packet::CLIENT_PORT));
    }
    Route::Broadcast
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::tests::request_bytes;
    use ironboot_proto::pb::{Dhcp, Ipxe, Netboot};

    const MAC: [u8; 6] = [0x52, 0x54, 0, 0xee, 0x0d, 0x0b];
    const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

    fn hw(allow_pxe: Option<bool>) -> Hardware {
        Hardware {
            id: "id".into(),
            name: "machine1".into(),
            interfaces: vec![Interface {
                mac: "52:54:00:ee:0d:0b".into(),
                dhcp: Some(Dhcp {
                    ip: "10.0.0.10".into(),
                    netmask: "255.255.255.0".into(),
                    gateway: "10.0.0.1".into(),
                    hostname: "machine1".into(),
                    domain: "lab.example".into(),
                    name_servers: vec!["10.0.0.2".into(), "10.0.0.3".into()],
                    time_servers: vec!["10.0.0.4".into()],
                    domain_search: vec!["lab.example".into(), "example".into()],
                    lease_time: 7200,
                    ..Default::default()
                }),
                netboot: Some(Netboot {
                    allow_pxe,
                    ..Default::default()
                }),
            }],
            ..Default::default()
        }
    }

    fn settings(mode: Mode) -> Settings {
        Settings {
            mode,
            default_lease_secs: 86400,
            syslog_server: Some(Ipv4Addr::new(10, 0, 0, 5)),
            ipxe_user_classes: vec!["iPXE".into(), "Tinkerbell".into()],
            boot_files: BootFiles::default(),
            endpoints: Endpoints {
                http: "10.0.0.1:8080".into(),
            },
            trace_context: true,
        }
    }

    fn arrival() -> Arrival {
        Arrival {
            server_id: SERVER,
            next_server: SERVER,
            ingress_net: Some((Ipv4Addr::new(10, 0, 0, 0), Ipv4Addr::new(255, 255, 255, 0))),
            pxe_port: false,
            trace: None,
        }
    }

    /// The decision worked out from the record alone, checked to equal the server's path:
    /// the [`Known`] the registry cache works out ahead for each of a record's MACs.
    fn run(
        mode: Mode,
        mt: MessageType,
        opts: &[(u8, &[u8])],
        h: Option<Hardware>,
        at: Arrival,
    ) -> Decision {
        let b = request_bytes(mt, MAC, opts);
        let r = Request::decode(&b).unwrap();
        let s = settings(mode);
        let d = decide(&r, h.as_ref(), &at, &s);
        if let Some(h) = h {
            let k = Known::of(Arc::new(h), &MacAddr(MAC), &s);
            assert_eq!(
                decide_with(&r, Some(&k.hw), Some(k.reservation.as_ref()), &at, &s),
                d,
                "worked out ahead vs on the spot"
            );
        }
        d
    }

    fn reply(d: &Decision) -> &Reply {
        match d {
            Decision::Reply { reply, .. } => reply,
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    const PXE_BIOS: &[(u8, &[u8])] = &[(93, &[0, 0]), (60, b"PXEClient:Arch:00000:UNDI:002001")];

    #[test]
    fn discover_gets_an_offer_with_the_reservation_and_every_option() {
        let d = run(
            Mode::Reservation,
            MessageType::Discover,
            &[(55, &[1, 3, 6, 12, 15, 28, 42, 119, 7, 66, 67])],
            Some(hw(None)),
            arrival(),
        );
        let r = reply(&d);
        assert_eq!(r.message_type(), Some(MessageType::Offer));
        assert_eq!(r.yiaddr, Ipv4Addr::new(10, 0, 0, 10));
        assert_eq!(r.option(code::SUBNET_MASK), Some(&[255, 255, 255, 0][..]));
        assert_eq!(r.option(code::ROUTER), Some(&[10, 0, 0, 1][..]));
        assert_eq!(r.option(code::DNS), Some(&[10, 0, 0, 2, 10, 0, 0, 3][..]));
        assert_eq!(r.option(code::HOSTNAME), Some(&b"machine1"[..]));
        assert_eq!(r.option(code::DOMAIN_NAME), Some(&b"lab.example"[..]));
        assert_eq!(r.option(code::BROADCAST), Some(&[10, 0, 0, 255][..]));
        assert_eq!(r.option(code::NTP), Some(&[10, 0, 0, 4][..]));
        assert_eq!(
            r.option(code::DOMAIN_SEARCH),
            Some(&b"\x03lab\x07example\x00\x07example\x00"[..])
        );
        assert_eq!(r.option(code::LOG_SERVER), Some(&[10, 0, 0, 5][..]));
        assert_eq!(r.option(code::LEASE_TIME), Some(&7200u32.to_be_bytes()[..]));
        assert_eq!(r.option(code::RENEWAL_T1), Some(&3600u32.to_be_bytes()[..]));
        assert_eq!(
            r.option(code::REBINDING_T2),
            Some(&6300u32.to_be_bytes()[..])
        );
        assert_eq!(r.option(code::SERVER_ID), Some(&[10, 0, 0, 1][..]));
        // A plain client gets no boot fields.
        assert!(r.file.is_empty());
        assert!(r.option(code::BOOTFILE).is_none());
    }

    #[test]
    fn request_states_per_rfc_2131() {
        let other = Ipv4Addr::new(10, 0, 0, 99).octets();
        let ours = SERVER.octets();
        let good = [10, 0, 0, 10];
        let bad = [10, 0, 0, 11];
        // SELECTING with our server id and the reserved address → ACK.
        let d = run(
            Mode::Reservation,
            MessageType::Request,
            &[(54, &ours), (50, &good)],
            Some(hw(None)),
            arrival(),
        );
        assert_eq!(reply(&d).message_type(), Some(MessageType::Ack));
        // SELECTING another server's offer → silence.
        let d = run(
            Mode::Reservation,
            MessageType::Request,
            &[(54, &other), (50, &good)],
            Some(hw(None)),
            arrival(),
        );
        assert_eq!(d, Decision::Silent(Silence::OtherServer));
        // INIT-REBOOT with the wrong address → NAK.
        let d = run(
            Mode::Reservation,
            MessageType::Request,
            &[(50, &bad)],
            Some(hw(None)),
            arrival(),
        );
        assert_eq!(reply(&d).message_type(), Some(MessageType::Nak));
        // INIT-REBOOT with the right one → ACK.
        let d = run(
            Mode::Reservation,
            MessageType::Request,
            &[(50, &good)],
            Some(hw(None)),
            arrival(),
        );
        assert_eq!(reply(&d).message_type(), Some(MessageType::Ack));
        // RENEWING from a wrong ciaddr → NAK; from the reservation → ACK.
        let mut b = request_bytes(MessageType::Request, MAC, &[]);
        b[12..16].copy_from_slice(&bad);
        let r = Request::decode(&b).unwrap();
        let d = decide(
            &r,
            Some(&hw(None)),
            &arrival(),
            &settings(Mode::Reservation),
        );
        assert_eq!(reply(&d).message_type(), Some(MessageType::Nak));
        b[12..16].copy_from_slice(&good);
        let r = Request::decode(&b).unwrap();
        let d = decide(
            &r,
            Some(&hw(None)),
            &arrival(),
            &settings(Mode::Reservation),
        );
        assert_eq!(reply(&d).message_type(), Some(MessageType::Ack));
    }

    #[test]
    fn inform_release_decline() {
        let mut b = request_bytes(MessageType::Inform, MAC, &[]);
        b[12..16].copy_from_slice(&[10, 0, 0, 10]);
        let r = Request::decode(&b).unwrap();
        let d = decide(
            &r,
            Some(&hw(None)),
            &arrival(),
            &settings(Mode::Reservation),
        );
        let rep = reply(&d);
        assert_eq!(rep.message_type(), Some(MessageType::Ack));
        assert_eq!(rep.yiaddr, Ipv4Addr::UNSPECIFIED);
        assert!(
            rep.option(code::LEASE_TIME).is_none(),
            "INFORM gets no lease time"
        );
        assert!(rep.option(code::SUBNET_MASK).is_some());
        assert_eq!(
            run(
                Mode::Reservation,
                MessageType::Release,
                &[],
                Some(hw(None)),
                arrival()
            ),
            Decision::Silent(Silence::Released)
        );
        assert_eq!(
            run(
                Mode::Reservation,
                MessageType::Decline,
                &[],
                Some(hw(None)),
                arrival()
            ),
            Decision::Silent(Silence::Declined)
        );
    }

    #[test]
    fn unknown_unreserved_and_wrong_subnet_get_nothing() {
        assert_eq!(
            run(
                Mode::Reservation,
                MessageType::Discover,
                PXE_BIOS,
                None,
                arrival()
            ),
            Decision::Silent(Silence::UnknownMac)
        );
        let mut h = hw(None);
        h.interfaces[0].dhcp.as_mut().unwrap().ip.clear();
        assert_eq!(
            run(
                Mode::Reservation,
                MessageType::Discover,
                &[],
                Some(h),
                arrival()
            ),
            Decision::Silent(Silence::NoReservation)
        );
        // A record without this MAC's interface: unknown, also when handed a worked-out "none".
        let mut other = hw(None);
        other.interfaces[0].mac = "52:54:00:00:00:99".into();
        assert_eq!(
            run(
                Mode::Reservation,
                MessageType::Discover,
                &[],
                Some(other),
                arrival()
            ),
            Decision::Silent(Silence::UnknownMac)
        );
        let mut at = arrival();
        at.ingress_net = Some((Ipv4Addr::new(10, 9, 0, 0), Ipv4Addr::new(255, 255, 0, 0)));
        assert_eq!(
            run(
                Mode::Reservation,
                MessageType::Discover,
                &[],
                Some(hw(None)),
                at
            ),
            Decision::Silent(Silence::WrongSubnet)
        );
        // Relayed from the reservation's subnet: fine even though the ingress link differs.
        let mut b = request_bytes(MessageType::Discover, MAC, &[]);
        b[24..28].copy_from_slice(&[10, 0, 0, 254]);
        let r = Request::decode(&b).unwrap();
        assert!(matches!(
            decide(&r, Some(&hw(None)), &at, &settings(Mode::Reservation)),
            Decision::Reply { .. }
        ));
    }

    #[test]
    fn boot_fields_per_client_kind_and_mode() {
        // Firmware PXE: TFTP file, next-server, option 43 discovery control, 60 PXEClient.
        let d = run(
            Mode::Reservation,
            MessageType::Discover,
            PXE_BIOS,
            Some(hw(None)),
            arrival(),
        );
        let r = reply(&d);
        assert_eq!(r.file, b"undionly.kpxe");
        assert_eq!(r.siaddr, SERVER);
        assert_eq!(r.option(code::VENDOR_SPECIFIC), Some(&[6, 1, 8, 255][..]));
        assert_eq!(r.option(code::VENDOR_CLASS), Some(&b"PXEClient"[..]));
        assert!(r.option(code::IPXE_ENCAP).is_none());
        // iPXE: the script URL and no-pxedhcp.
        let d = run(
            Mode::Reservation,
            MessageType::Discover,
            &[(93, &[0, 7]), (77, b"iPXE"), (175, &[177, 1, 1])],
            Some(hw(None)),
            arrival(),
        );
        let r = reply(&d);
        assert_eq!(r.file, b"http://10.0.0.1:8080/52:54:00:ee:0d:0b/auto.ipxe");
        assert_eq!(r.option(code::IPXE_ENCAP), Some(&[176, 1, 1][..]));
        // Proxy mode: no address, no lease, no no-pxedhcp.
        let d = run(
            Mode::Proxy,
            MessageType::Discover,
            &[(93, &[0, 7]), (77, b"iPXE")],
            Some(hw(None)),
            arrival(),
        );
        let r = reply(&d);
        assert_eq!(r.yiaddr, Ipv4Addr::UNSPECIFIED);
        assert!(r.option(code::LEASE_TIME).is_none());
        assert!(r.option(code::SUBNET_MASK).is_none());
        assert!(r.option(code::IPXE_ENCAP).is_none());
        assert_eq!(
            r.option(code::VENDOR_CLASS),
            Some(&b"PXEClient"[..]),
            "iPXE ignores proxy offers without PXEClient"
        );
        assert_eq!(r.file, b"http://10.0.0.1:8080/52:54:00:ee:0d:0b/auto.ipxe");
        // ...and iPXE's ProxyDHCP REQUEST on port 4011 gets the script in an ACK.
        let mut at = arrival();
        at.pxe_port = true;
        let d = run(
            Mode::Proxy,
            MessageType::Request,
            &[(93, &[0, 7]), (77, b"iPXE")],
            Some(hw(None)),
            at,
        );
        assert_eq!(reply(&d).message_type(), Some(MessageType::Ack));
        assert_eq!(
            reply(&d).file,
            b"http://10.0.0.1:8080/52:54:00:ee:0d:0b/auto.ipxe"
        );
        // Proxy mode ignores plain clients and other servers' REQUESTs on port 67.
        assert_eq!(
            run(
                Mode::Proxy,
                MessageType::Discover,
                &[],
                Some(hw(None)),
                arrival()
            ),
            Decision::Silent(Silence::NotNetboot)
        );
        assert_eq!(
            run(
                Mode::Proxy,
                MessageType::Request,
                PXE_BIOS,
                Some(hw(None)),
                arrival()
            ),
            Decision::Silent(Silence::OtherServer)
        );
        // ...and answers the PXE boot-server REQUEST on port 4011.
        let mut at = arrival();
        at.pxe_port = true;
        let d = run(
            Mode::Proxy,
            MessageType::Request,
            PXE_BIOS,
            Some(hw(None)),
            at,
        );
        assert_eq!(reply(&d).message_type(), Some(MessageType::Ack));
        assert_eq!(reply(&d).file, b"undionly.kpxe");
    }

    #[test]
    fn the_trace_context_travels_in_every_boot_answer() {
        const TP: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let mut at = arrival();
        at.trace = TraceParent::parse(TP);
        // Firmware PXE: Smee's file-name suffix and option 43 sub-option 69 in binary.
        let d = run(
            Mode::Reservation,
            MessageType::Discover,
            PXE_BIOS,
            Some(hw(None)),
            at,
        );
        let r = reply(&d);
        assert_eq!(r.file, format!("undionly.kpxe-{TP}").as_bytes());
        let pxe = r.option(code::VENDOR_SPECIFIC).unwrap();
        assert_eq!(&pxe[..5], &[6, 1, 8, 69, 26]);
        assert_eq!(&pxe[5..31], &at.trace.unwrap().to_bytes()[..]);
        assert_eq!(pxe[31..], [255]);
        // iPXE: a query on the script URL.
        let d = run(
            Mode::Reservation,
            MessageType::Discover,
            &[(93, &[0, 7]), (77, b"iPXE")],
            Some(hw(None)),
            at,
        );
        assert_eq!(
            reply(&d).file,
            format!("http://10.0.0.1:8080/52:54:00:ee:0d:0b/auto.ipxe?traceparent={TP}").as_bytes()
        );
        // UEFI HTTP boot: a query too, so the path still ends in .efi.
        let d = run(
            Mode::Reservation,
            MessageType::Discover,
            &[(93, &[0, 16]), (60, b"HTTPClient:Arch:00016")],
            Some(hw(None)),
            at,
        );
        let file = String::from_utf8(reply(&d).file.clone()).unwrap();
        assert!(
            file.ends_with(&format!("/ipxe.efi?traceparent={TP}")),
            "{file}"
        );
        // An operator's own script URL is handed out untouched.
        let mut custom = hw(None);
        custom.interfaces[0].netboot.as_mut().unwrap().ipxe = Some(ironboot_proto::pb::Ipxe {
            url: "http://x/boot.ipxe?a=1".into(),
            ..Default::default()
        });
        let d = run(
            Mode::Reservation,
            MessageType::Discover,
            &[(77, b"iPXE")],
            Some(custom),
            at,
        );
        assert_eq!(reply(&d).file, b"http://x/boot.ipxe?a=1");
    }

    #[test]
    fn allow_pxe_false_and_disabled_are_gated_in_both_modes() {
        for h in [
            hw(Some(false)),
            Hardware {
                disabled: true,
                ..hw(Some(true))
            },
        ] {
            let d = run(
                Mode::Reservation,
                MessageType::Discover,
                PXE_BIOS,
                Some(h.clone()),
                arrival(),
            );
            let r = reply(&d);
            assert_eq!(
                r.yiaddr,
                Ipv4Addr::new(10, 0, 0, 10),
                "still gets its address"
            );
            assert!(
                r.file.is_empty()
                    && r.siaddr.is_unspecified()
                    && r.option(code::VENDOR_SPECIFIC).is_none()
            );
            assert_eq!(
                run(
                    Mode::Proxy,
                    MessageType::Discover,
                    PXE_BIOS,
                    Some(h),
                    arrival()
                ),
                Decision::Silent(Silence::NetbootDenied)
            );
        }
    }

    #[test]
    fn long_script_url_goes_to_option_67_whole() {
        let mut h = hw(None);
        let url = format!("http://boot.example/{}", "a".repeat(200));
        h.interfaces[0].netboot.as_mut().unwrap().ipxe = Some(Ipxe {
            url: url.clone(),
            contents: String::new(),
        });
        let d = run(
            Mode::Reservation,
            MessageType::Discover,
            &[(77, b"iPXE")],
            Some(h),
            arrival(),
        );
        let r = reply(&d);
        assert!(r.file.is_empty());
        assert_eq!(r.option(code::BOOTFILE), Some(url.as_bytes()));
    }

    #[test]
    fn echoes_client_id_and_relay_info_last() {
        let d = run(
            Mode::Reservation,
            MessageType::Discover,
            &[
                (61, &[1, 0x52, 0x54, 0, 0xee, 0x0d, 0x0b]),
                (82, &[1, 2, 9, 9]),
            ],
            Some(hw(None)),
            arrival(),
        );
        let r = reply(&d);
        assert_eq!(
            r.option(code::CLIENT_ID),
            Some(&[1, 0x52, 0x54, 0, 0xee, 0x0d, 0x0b][..])
        );
        assert_eq!(
            r.options.iter().last().map(|(c, _)| c),
            Some(code::RELAY_AGENT)
        );
    }

    #[test]
    fn routes() {
        let src = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 10), 68);
        let d = run(
            Mode::Reservation,
            MessageType::Discover,
            &[],
            Some(hw(None)),
            arrival(),
        );
        let b = request_bytes(MessageType::Discover, MAC, &[]);
        let r = Request::decode(&b).unwrap();
        assert_eq!(route(&r, reply(&d), src, false), Route::Broadcast);
        let mut relayed = b.clone();
        relayed[24..28].copy_from_slice(&[10, 0, 0, 254]);
        let r = Request::decode(&relayed).unwrap();
        assert_eq!(
            route(&r, reply(&d), src, false),
            Route::Relay(Ipv4Addr::new(10, 0, 0, 254))
        );
        let mut renewing = b.clone();
        renewing[12..16].copy_from_slice(&[10, 0, 0, 10]);
        let r = Request::decode(&renewing).unwrap();
        assert_eq!(
            route(&r, reply(&d), src, false),
            Route::Unicast(SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 10), 68))
        );
        let r = Request::decode(&b).unwrap();
        assert_eq!(
            route(
                &r,
                reply(&d),
                SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 10), 4011),
                true
            ),
            Route::Unicast(SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 10), 4011))
        );
    }

    #[test]
    fn lease_time_never_zero() {
        let mut h = hw(None);
        h.interfaces[0].dhcp.as_mut().unwrap().lease_time = 0;
        let d = run(
            Mode::Reservation,
            MessageType::Discover,
            &[],
            Some(h),
            arrival(),
        );
        assert_eq!(
            reply(&d).option(code::LEASE_TIME),
            Some(&86400u32.to_be_bytes()[..])
        );
    }
}
