//! dhcp-svc on a real (namespaced) network with real DHCP clients: ISC dhclient,
//! busybox udhcpc, a relay and a PXE-style client built on dhcproto, and dnsmasq.

mod common;

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::process::Stdio;
use std::time::Duration;

use common::{Lab, Proc, SERVER_IP, get, http_get, sh};
use dhcproto::{Decodable, Decoder, Encodable, Encoder, v4};
use ironboot_testkit::metrics::Scrape;

/// A boot file name or URL without the trace context dhcp-svc hands netboot clients
/// (`<file>-00-…` or `<url>?traceparent=…`); panics when there is none or it is malformed.
fn without_trace(s: &str) -> &str {
    use ironboot_telemetry::TraceParent;
    if let Some((url, tp)) = s.split_once("?traceparent=") {
        assert!(
            TraceParent::parse(tp).is_some_and(|t| t.is_valid()),
            "malformed trace context in {s:?}"
        );
        return url;
    }
    let cut = s.len().saturating_sub(56);
    let (file, suffix) = s.split_at(cut);
    assert!(
        suffix
            .strip_prefix('-')
            .and_then(TraceParent::parse)
            .is_some_and(|t| t.is_valid()),
        "no trace context on {s:?}"
    );
    file
}

fn fname(m: &v4::Message) -> String {
    m.fname()
        .map(|f| String::from_utf8_lossy(f.split(|b| *b == 0).next().unwrap()).into_owned())
        .unwrap_or_default()
}

fn machine(name: &str, mac: &str, ip: &str, extra_netboot: &str) -> String {
    format!(
        "name: {name}
interfaces:
  - mac: {mac}
    dhcp:
      ip: {ip}
      netmask: 255.255.255.0
      gateway: 10.77.0.1
      hostname: {name}
      domain: lab.example
      lease_time: 3600
      name_servers: [10.77.0.53, 10.77.0.54]
    netboot: {{allow_pxe: true{extra_netboot}}}
"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dhclient_gets_the_reservation() {
    let mut lab = Lab::new().await;
    lab.registry
        .put_yaml(&machine("m1", &lab.client_mac, "10.77.0.10", ""))
        .await;
    lab.start_dhcp(&["--interface", "br0"]);
    let out = lab.tmp.path().join("dhclient.env");
    let script = lab.tmp.path().join("dhclient.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n[ \"$reason\" = BOUND ] && env > {}\nexit 0\n",
            out.display()
        ),
    )
    .unwrap();
    sh(&["chmod", "+x", &script.display().to_string()]);
    let mut cmd = lab.cli.cmd("dhclient");
    cmd.args(["-4", "-d", "-1", "-sf"])
        .arg(&script)
        .arg("-lf")
        .arg(lab.tmp.path().join("dhclient.leases"))
        .arg("-pf")
        .arg(lab.tmp.path().join("dhclient.pid"))
        .arg(&lab.client_if)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _dhclient = Proc::spawn(cmd, "dhclient");
    let mut env = String::new();
    for _ in 0..150 {
        if let Ok(s) = std::fs::read_to_string(&out)
            && s.contains("new_ip_address")
        {
            env = s;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !env.is_empty(),
        "dhclient got no lease; dhcp-svc log:\n{}",
        lab.log()
    );
    for want in [
        "new_ip_address=10.77.0.10",
        "new_subnet_mask=255.255.255.0",
        "new_routers=10.77.0.1",
        "new_domain_name_servers=10.77.0.53 10.77.0.54",
        "new_host_name=m1",
        "new_domain_name=lab.example",
        "new_dhcp_lease_time=3600",
        "new_dhcp_server_identifier=10.77.0.1",
    ] {
        assert!(env.lines().any(|l| l == want), "missing {want} in:\n{env}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udhcpc_sees_the_right_boot_answer_per_client_kind() {
    let mut lab = Lab::new().await;
    lab.registry
        .put_yaml(&machine("m1", &lab.client_mac, "10.77.0.10", ""))
        .await;
    lab.start_dhcp(&["--interface", "br0"]);
    let mac = lab.client_mac.clone();
    let cases: Vec<(Vec<&str>, String)> = vec![
        (
            vec!["-V", "PXEClient:Arch:00007:UNDI:003000", "-x", "0x5d:0007"],
            "ipxe.efi".into(),
        ),
        (
            vec!["-V", "PXEClient:Arch:00000:UNDI:002001", "-x", "0x5d:0000"],
            "undionly.kpxe".into(),
        ),
        (
            vec!["-V", "PXEClient:Arch:00011:UNDI:003000", "-x", "0x5d:000b"],
            "snp.efi".into(),
        ),
        (
            vec!["-x", "0x5d:0007", "-x", "0x4d:69505845"],
            format!("http://10.77.0.1:8080/{mac}/auto.ipxe"),
        ),
        (
            vec!["-x", "0x4d:0a54696e6b657262656c6c"],
            format!("http://10.77.0.1:8080/{mac}/auto.ipxe"),
        ),
        (
            vec!["-V", "HTTPClient:Arch:00016:UNDI:003000", "-x", "0x5d:0010"],
            format!("http://10.77.0.1:8080/ipxe/{mac}/ipxe.efi"),
        ),
    ];
    for (args, want) in cases {
        let env = lab
            .udhcpc(&args)
            .unwrap_or_else(|| panic!("no lease for {args:?}; log:\n{}", lab.log()));
        assert_eq!(get(&env, "ip"), Some("10.77.0.10"), "{args:?}");
        assert_eq!(
            get(&env, "boot_file").map(without_trace),
            Some(want.as_str()),
            "{args:?}"
        );
        if want.ends_with(".efi") || want.ends_with(".kpxe") {
            assert_eq!(get(&env, "siaddr"), Some("10.77.0.1"), "{args:?}");
        }
    }
    // A plain client (an installed OS) gets its address and no boot file.
    let env = lab.udhcpc(&[]).expect("plain lease");
    assert_eq!(get(&env, "ip"), Some("10.77.0.10"));
    assert_eq!(get(&env, "boot_file"), None);
    assert_eq!(get(&env, "hostname"), Some("m1"));
    assert_eq!(get(&env, "lease"), Some("3600"));
    let m = lab.metrics();
    assert!(
        Scrape::parse(&m).sum(
            "dhcp_packets_total",
            &[("type", "discover"), ("outcome", "offer")]
        ) >= 7.0,
        "{m}"
    );
    assert!(
        Scrape::parse(&m).sum(
            "dhcp_packets_total",
            &[("type", "request"), ("outcome", "ack")]
        ) >= 7.0,
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_pxe_false_gets_an_address_but_no_boot_file() {
    let mut lab = Lab::new().await;
    let yaml = machine("m1", &lab.client_mac, "10.77.0.10", "")
        .replace("allow_pxe: true", "allow_pxe: false");
    lab.registry.put_yaml(&yaml).await;
    lab.start_dhcp(&["--interface", "br0"]);
    let env = lab
        .udhcpc(&["-V", "PXEClient:Arch:00007:UNDI:003000", "-x", "0x5d:0007"])
        .expect("lease");
    assert_eq!(get(&env, "ip"), Some("10.77.0.10"));
    assert_eq!(get(&env, "boot_file"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_mac_gets_nothing_and_is_listed_then_answered_once_registered() {
    let mut lab = Lab::new().await;
    lab.start_dhcp(&["--interface", "br0"]);
    assert!(
        lab.udhcpc(&["-V", "PXEClient:Arch:00007:UNDI:003000", "-x", "0x5d:0007"])
            .is_none(),
        "an unregistered MAC was answered"
    );
    let (status, body) = http_get(lab.admin(), "/unregistered").unwrap();
    assert_eq!(status, 200);
    let list: serde_json::Value = serde_json::from_str(&body).unwrap();
    let entry = list
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["mac"] == lab.client_mac.as_str())
        .unwrap_or_else(|| panic!("{body}"));
    assert!(entry["count"].as_u64().unwrap() >= 1);
    assert_eq!(entry["arch"], 7);
    assert!(Scrape::parse(&lab.metrics()).sum("dhcp_unknown_mac_total", &[]) >= 1.0);

    // Registered now: answered on the first try, and no longer listed.
    lab.registry
        .put_yaml(&machine("late", &lab.client_mac, "10.77.0.11", ""))
        .await;
    let env = lab
        .udhcpc(&[])
        .unwrap_or_else(|| panic!("not answered after registration; log:\n{}", lab.log()));
    assert_eq!(get(&env, "ip"), Some("10.77.0.11"));
    let (_, body) = http_get(lab.admin(), "/unregistered").unwrap();
    assert!(!body.contains(&lab.client_mac), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_record_is_answered_with_its_new_reservation() {
    // Reservations are worked out when a record version arrives (the cache's derive hook),
    // not per packet: a change over the registry's watch must replace the old one.
    let mut lab = Lab::new().await;
    lab.registry
        .put_yaml(&machine("m1", &lab.client_mac, "10.77.0.10", ""))
        .await;
    lab.start_dhcp(&["--interface", "br0"]);
    let env = lab
        .udhcpc(&[])
        .unwrap_or_else(|| panic!("no lease; log:\n{}", lab.log()));
    assert_eq!(get(&env, "ip"), Some("10.77.0.10"));
    lab.registry
        .put_yaml(&machine("m1", &lab.client_mac, "10.77.0.12", ""))
        .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let ip = lab
            .udhcpc(&[])
            .and_then(|env| get(&env, "ip").map(str::to_string));
        if ip.as_deref() == Some("10.77.0.12") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still {ip:?} 10 s after the change; log:\n{}",
            lab.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn discover(mac: [u8; 6], giaddr: Ipv4Addr, opts: Vec<v4::DhcpOption>) -> Vec<u8> {
    let mut m = v4::Message::default();
    // Broadcast flag set, as OVMF's PXE client does: it has no address to receive on.
    m.set_opcode(v4::Opcode::BootRequest)
        .set_chaddr(&mac)
        .set_giaddr(giaddr)
        .set_xid(0xfeed_0001)
        .set_flags(v4::Flags::default().set_broadcast());
    m.opts_mut()
        .insert(v4::DhcpOption::MessageType(v4::MessageType::Discover));
    for o in opts {
        m.opts_mut().insert(o);
    }
    let mut buf = Vec::new();
    m.encode(&mut Encoder::new(&mut buf)).unwrap();
    buf
}

fn request(mac: [u8; 6], server: Ipv4Addr, ip: Ipv4Addr) -> Vec<u8> {
    let mut m = v4::Message::default();
    m.set_opcode(v4::Opcode::BootRequest)
        .set_chaddr(&mac)
        .set_xid(0xfeed_0002)
        .set_flags(v4::Flags::default().set_broadcast());
    m.opts_mut()
        .insert(v4::DhcpOption::MessageType(v4::MessageType::Request));
    m.opts_mut()
        .insert(v4::DhcpOption::ServerIdentifier(server));
    m.opts_mut().insert(v4::DhcpOption::RequestedIpAddress(ip));
    let mut buf = Vec::new();
    m.encode(&mut Encoder::new(&mut buf)).unwrap();
    buf
}

fn mac_bytes(s: &str) -> [u8; 6] {
    ironboot_proto::MacAddr::parse(s).unwrap().0
}

/// Replies received on `sock` within `wait`, decoded by dhcproto.
fn replies(sock: &UdpSocket, wait: Duration) -> Vec<(SocketAddrV4, v4::Message)> {
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = std::time::Instant::now() + wait;
    let mut out = Vec::new();
    let mut buf = [0u8; 1500];
    while std::time::Instant::now() < deadline {
        if let Ok((n, from)) = sock.recv_from(&mut buf)
            && let (Ok(m), std::net::SocketAddr::V4(f)) =
                (v4::Message::decode(&mut Decoder::new(&buf[..n])), from)
            && m.opcode() == v4::Opcode::BootReply
        {
            out.push((f, m));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relayed_request_gets_a_unicast_reply_to_the_relay() {
    let mut lab = Lab::new().await;
    lab.registry
        .put_yaml(&machine("m1", "52:54:00:aa:00:01", "10.77.0.10", ""))
        .await;
    lab.start_dhcp(&["--interface", "br0"]);
    lab.cli
        .ip(&["addr", "add", "10.77.0.2/24", "dev", &lab.client_if]);
    let got = lab.cli.enter(|| {
        // We are the relay agent: port 67 on our own address.
        let sock = UdpSocket::bind("10.77.0.2:67").unwrap();
        let pkt = discover(
            mac_bytes("52:54:00:aa:00:01"),
            Ipv4Addr::new(10, 77, 0, 2),
            vec![],
        );
        sock.send_to(&pkt, (SERVER_IP, 67)).unwrap();
        replies(&sock, Duration::from_secs(2))
    });
    assert_eq!(got.len(), 1, "log:\n{}", lab.log());
    let (from, offer) = &got[0];
    assert_eq!(*from, SocketAddrV4::new(SERVER_IP, 67));
    assert_eq!(offer.opts().msg_type(), Some(v4::MessageType::Offer));
    assert_eq!(offer.yiaddr(), Ipv4Addr::new(10, 77, 0, 10));
    assert_eq!(offer.giaddr(), Ipv4Addr::new(10, 77, 0, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_for_another_servers_offer_is_ignored() {
    let mut lab = Lab::new().await;
    let mac = lab.client_mac.clone();
    lab.registry
        .put_yaml(&machine("m1", &mac, "10.77.0.10", ""))
        .await;
    lab.start_dhcp(&["--interface", "br0"]);
    let ifname = lab.client_if.clone();
    let (other, ours) = lab.cli.enter(|| {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
        s.set_broadcast(true).unwrap();
        s.bind_device(Some(ifname.as_bytes())).unwrap();
        s.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68).into())
            .unwrap();
        let sock: UdpSocket = s.into();
        let to = (Ipv4Addr::BROADCAST, 67);
        sock.send_to(
            &request(
                mac_bytes(&mac),
                Ipv4Addr::new(10, 77, 0, 99),
                Ipv4Addr::new(10, 77, 0, 10),
            ),
            to,
        )
        .unwrap();
        let other = replies(&sock, Duration::from_millis(1500));
        sock.send_to(
            &request(mac_bytes(&mac), SERVER_IP, Ipv4Addr::new(10, 77, 0, 10)),
            to,
        )
        .unwrap();
        let ours = replies(&sock, Duration::from_millis(1500));
        (other, ours)
    });
    assert!(
        other.is_empty(),
        "answered a REQUEST meant for another server: {other:?}"
    );
    assert_eq!(ours.len(), 1, "log:\n{}", lab.log());
    assert_eq!(ours[0].1.opts().msg_type(), Some(v4::MessageType::Ack));
    assert!(
        Scrape::parse(&lab.metrics()).sum("dhcp_packets_total", &[("outcome", "other_server")])
            >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_mode_beside_dnsmasq() {
    let mut lab = Lab::new().await;
    let mac = lab.client_mac.clone();
    lab.registry
        .put_yaml(&machine("m1", &mac, "10.77.0.10", ""))
        .await;
    // dnsmasq hands out addresses from its own namespace on the same LAN.
    let dns = common::netns("d", lab.id);
    let dns_if = format!("ibd{}", lab.id);
    lab.attach(&dns, &dns_if, None, Some("10.77.0.3/24"));
    let mut cmd = dns.cmd("dnsmasq");
    cmd.args([
        "--no-daemon",
        "--port=0",
        "--no-resolv",
        "--no-hosts",
        "--bind-interfaces",
        "--dhcp-authoritative",
        "--no-ping",
    ])
    .arg(format!("--interface={dns_if}"))
    .arg("--dhcp-range=10.77.0.100,10.77.0.150,255.255.255.0,1h")
    .arg(format!(
        "--dhcp-leasefile={}",
        lab.tmp.path().join("dnsmasq.leases").display()
    ))
    .arg(format!(
        "--pid-file={}",
        lab.tmp.path().join("dnsmasq.pid").display()
    ))
    .stdout(Stdio::null())
    .stderr(Stdio::from(
        std::fs::File::create(lab.tmp.path().join("dnsmasq.log")).unwrap(),
    ));
    let _dnsmasq = Proc::spawn(cmd, "dnsmasq");
    std::thread::sleep(Duration::from_millis(500));
    lab.start_dhcp(&["--mode", "proxy", "--interface", "br0"]);
    let ifname = lab.client_if.clone();
    let m = mac_bytes(&mac);
    let (offers, proxy_ack) = lab.cli.enter(|| {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
        s.set_broadcast(true).unwrap();
        s.set_reuse_address(true).unwrap();
        s.bind_device(Some(ifname.as_bytes())).unwrap();
        s.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68).into())
            .unwrap();
        let sock: UdpSocket = s.into();
        let pxe = vec![
            v4::DhcpOption::ClassIdentifier(b"PXEClient:Arch:00007:UNDI:003000".to_vec()),
            v4::DhcpOption::ClientSystemArchitecture(v4::Architecture::from(7u16)),
        ];
        sock.send_to(
            &discover(m, Ipv4Addr::UNSPECIFIED, pxe),
            (Ipv4Addr::BROADCAST, 67),
        )
        .unwrap();
        let offers = replies(&sock, Duration::from_secs(2));
        // As PXE firmware does next: ask the proxy for the boot file on port 4011.
        let mut ack = Vec::new();
        if let Some((_, o)) = offers
            .iter()
            .find(|(_, o)| o.yiaddr() != Ipv4Addr::UNSPECIFIED)
        {
            let mine = o.yiaddr();
            let _ = std::process::Command::new("ip")
                .args(["addr", "add", &format!("{mine}/24"), "dev", &ifname])
                .status();
            let c = UdpSocket::bind((mine, 4011)).unwrap();
            let mut r = v4::Message::default();
            r.set_opcode(v4::Opcode::BootRequest)
                .set_chaddr(&m)
                .set_xid(0xfeed_0003)
                .set_ciaddr(mine);
            r.opts_mut()
                .insert(v4::DhcpOption::MessageType(v4::MessageType::Request));
            r.opts_mut().insert(v4::DhcpOption::ClassIdentifier(
                b"PXEClient:Arch:00007:UNDI:003000".to_vec(),
            ));
            r.opts_mut()
                .insert(v4::DhcpOption::ClientSystemArchitecture(
                    v4::Architecture::from(7u16),
                ));
            let mut buf = Vec::new();
            r.encode(&mut Encoder::new(&mut buf)).unwrap();
            c.send_to(&buf, (SERVER_IP, 4011)).unwrap();
            ack = replies(&c, Duration::from_secs(2));
        }
        (offers, ack)
    });
    let from_dnsmasq: Vec<_> = offers
        .iter()
        .filter(|(f, _)| f.ip() == &Ipv4Addr::new(10, 77, 0, 3))
        .collect();
    let from_proxy: Vec<_> = offers
        .iter()
        .filter(|(f, _)| f.ip() == &SERVER_IP)
        .collect();
    let dnsmasq_log =
        std::fs::read_to_string(lab.tmp.path().join("dnsmasq.log")).unwrap_or_default();
    assert_eq!(
        from_dnsmasq.len(),
        1,
        "dnsmasq offers: {offers:?}\ndnsmasq log:\n{dnsmasq_log}"
    );
    assert!(from_dnsmasq[0].1.yiaddr() != Ipv4Addr::UNSPECIFIED);
    assert_eq!(
        from_proxy.len(),
        1,
        "proxy offers: {offers:?}\nlog:\n{}",
        lab.log()
    );
    let p = &from_proxy[0].1;
    assert_eq!(
        p.yiaddr(),
        Ipv4Addr::UNSPECIFIED,
        "proxy mode never assigns addresses"
    );
    assert_eq!(p.siaddr(), SERVER_IP);
    assert_eq!(without_trace(&fname(p)), "ipxe.efi");
    assert!(
        matches!(p.opts().get(v4::OptionCode::ClassIdentifier), Some(v4::DhcpOption::ClassIdentifier(c)) if c == b"PXEClient")
    );
    assert_eq!(
        proxy_ack.len(),
        1,
        "no ACK on port 4011; log:\n{}",
        lab.log()
    );
    assert_eq!(proxy_ack[0].1.opts().msg_type(), Some(v4::MessageType::Ack));
    assert_eq!(without_trace(&fname(&proxy_ack[0].1)), "ipxe.efi");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_packets_are_counted_and_the_service_keeps_answering() {
    let mut lab = Lab::new().await;
    lab.registry
        .put_yaml(&machine("m1", &lab.client_mac, "10.77.0.10", ""))
        .await;
    lab.start_dhcp(&["--interface", "br0"]);
    lab.cli
        .ip(&["addr", "add", "10.77.0.2/24", "dev", &lab.client_if]);
    lab.cli.enter(|| {
        let sock = UdpSocket::bind("10.77.0.2:6800").unwrap();
        let mut bad = discover([2, 0, 0, 0, 0, 1], Ipv4Addr::UNSPECIFIED, vec![]);
        // A truncated option 94 (the dhcproto pitfall), garbage, and an empty datagram.
        let end = bad.iter().rposition(|b| *b == 255).unwrap();
        bad.truncate(end);
        bad.extend_from_slice(&[94, 2, 1, 2, 255]);
        for p in [bad, vec![0xff; 300], vec![], vec![1; 10]] {
            sock.send_to(&p, (SERVER_IP, 67)).unwrap();
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        Scrape::parse(&lab.metrics()).sum("dhcp_packets_total", &[("outcome", "malformed")]) >= 4.0,
        "{}",
        lab.metrics()
    );
    lab.cli.ip(&["addr", "flush", "dev", &lab.client_if]);
    assert!(
        lab.udhcpc(&[]).is_some(),
        "service stopped answering after malformed input"
    );
}
