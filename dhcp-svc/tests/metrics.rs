//! The real `dhcp-svc` binary's `/metrics` after a known exchange, counters asserted
//! exactly: DISCOVER and REQUEST from a registered MAC, DISCOVER from an unknown one. In
//! the test's own network namespaces with its own registry: every count is ours.

mod common;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use common::{Lab, SERVER_IP};
use dhcproto::{Decodable, Decoder, Encodable, Encoder, v4};
use ironboot_testkit::metrics::{Scrape, scrape};

fn message(mac: [u8; 6], xid: u32, ty: v4::MessageType, opts: Vec<v4::DhcpOption>) -> Vec<u8> {
    let mut m = v4::Message::default();
    m.set_opcode(v4::Opcode::BootRequest)
        .set_chaddr(&mac)
        .set_xid(xid)
        .set_flags(v4::Flags::default().set_broadcast());
    m.opts_mut().insert(v4::DhcpOption::MessageType(ty));
    for o in opts {
        m.opts_mut().insert(o);
    }
    let mut buf = Vec::new();
    m.encode(&mut Encoder::new(&mut buf)).unwrap();
    buf
}

/// The replies to transaction `xid` received within `wait`.
fn replies(sock: &UdpSocket, xid: u32, wait: Duration) -> Vec<v4::Message> {
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let deadline = Instant::now() + wait;
    let mut out = Vec::new();
    let mut buf = [0u8; 1500];
    while Instant::now() < deadline {
        if let Ok((n, _)) = sock.recv_from(&mut buf)
            && let Ok(m) = v4::Message::decode(&mut Decoder::new(&buf[..n]))
            && m.opcode() == v4::Opcode::BootReply
            && m.xid() == xid
        {
            out.push(m);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packets_by_type_mode_and_outcome_unknown_macs_and_cache_state() {
    let mut lab = Lab::new().await;
    let mac = lab.client_mac.clone();
    lab.registry
        .put_yaml(&format!(
            "name: m1\ninterfaces:\n  - mac: {mac}\n    dhcp: {{ip: 10.77.0.10, netmask: 255.255.255.0, gateway: 10.77.0.1}}\n    netboot: {{allow_pxe: true}}\n"
        ))
        .await;
    lab.start_dhcp(&["--interface", "br0"]);
    let known = ironboot_proto::MacAddr::parse(&mac).unwrap().0;
    let unknown = [0x52, 0x54, 0x00, 0xde, 0xad, 0x01];
    let ifname = lab.client_if.clone();
    let (offers, acks, strays) = lab.cli.enter(|| {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
        s.set_broadcast(true).unwrap();
        s.bind_device(Some(ifname.as_bytes())).unwrap();
        s.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68).into())
            .unwrap();
        let sock: UdpSocket = s.into();
        let to = (Ipv4Addr::BROADCAST, 67);
        sock.send_to(
            &message(known, 0x1001, v4::MessageType::Discover, vec![]),
            to,
        )
        .unwrap();
        let offers = replies(&sock, 0x1001, Duration::from_millis(1500));
        let request = vec![
            v4::DhcpOption::ServerIdentifier(SERVER_IP),
            v4::DhcpOption::RequestedIpAddress(Ipv4Addr::new(10, 77, 0, 10)),
        ];
        sock.send_to(
            &message(known, 0x1002, v4::MessageType::Request, request),
            to,
        )
        .unwrap();
        let acks = replies(&sock, 0x1002, Duration::from_millis(1500));
        sock.send_to(
            &message(unknown, 0x1003, v4::MessageType::Discover, vec![]),
            to,
        )
        .unwrap();
        let strays = replies(&sock, 0x1003, Duration::from_millis(1500));
        (offers, acks, strays)
    });
    assert_eq!(offers.len(), 1, "log:\n{}", lab.log());
    assert_eq!(offers[0].opts().msg_type(), Some(v4::MessageType::Offer));
    assert_eq!(acks.len(), 1, "log:\n{}", lab.log());
    assert_eq!(acks[0].opts().msg_type(), Some(v4::MessageType::Ack));
    assert!(strays.is_empty(), "an unknown MAC was answered: {strays:?}");

    let m: Scrape = scrape(SocketAddr::V4(lab.admin()));
    let packets = |ty: &str, outcome: &str| {
        m.value(
            "dhcp_packets_total",
            &[("type", ty), ("mode", "reservation"), ("outcome", outcome)],
        )
    };
    assert_eq!(packets("discover", "offer"), 1.0);
    assert_eq!(packets("request", "ack"), 1.0);
    assert_eq!(packets("discover", "unknown_mac"), 1.0);
    assert_eq!(
        m.sum("dhcp_packets_total", &[]),
        3.0,
        "nothing else was counted"
    );
    assert_eq!(m.value("dhcp_unknown_mac_total", &[]), 1.0);
    assert_eq!(m.value("dhcp_decision_seconds_count", &[]), 3.0);
    // The unknown MAC was asked of the registry once (cache miss path), and not found.
    assert_eq!(
        m.value(
            "hardware_cache_fallback_lookups_total",
            &[("result", "not_found")]
        ),
        1.0
    );
    assert_eq!(m.value("hardware_cache_synced", &[]), 1.0);
    assert_eq!(m.value("hardware_cache_records", &[]), 1.0);
    assert!(
        m.undescribed().is_empty(),
        "metrics without # HELP: {:?}",
        m.undescribed()
    );
}
