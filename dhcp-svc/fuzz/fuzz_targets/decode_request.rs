//! Every byte string a network can deliver to port 67: decoding never panics, and a
//! request that decodes can be answered (decided and encoded) without panicking either.
#![no_main]

use dhcp_svc::decide::{Arrival, Mode, Settings, decide};
use dhcp_svc::netboot::{BootFiles, Endpoints};
use dhcp_svc::packet::Request;
use ironboot_proto::pb::{Dhcp, Hardware, Interface};
use libfuzzer_sys::fuzz_target;
use std::net::Ipv4Addr;

fuzz_target!(|data: &[u8]| {
    let Ok(req) = Request::decode(data) else { return };
    let _ = (req.arches(), req.user_classes(), req.max_reply_len(), req.parameter_list().len());
    let hw = Hardware {
        id: "x".into(),
        name: "x".into(),
        interfaces: vec![Interface {
            mac: ironboot_proto::MacAddr(req.chaddr).to_string(),
            dhcp: Some(Dhcp { ip: "10.0.0.10".into(), netmask: "255.255.255.0".into(), ..Default::default() }),
            netboot: None,
        }],
        ..Default::default()
    };
    for mode in [Mode::Reservation, Mode::Proxy] {
        let s = Settings {
            mode,
            default_lease_secs: 3600,
            syslog_server: None,
            ipxe_user_classes: vec!["iPXE".into()],
            boot_files: BootFiles::default(),
            endpoints: Endpoints { http: String::new() },
            trace_context: true,
        };
        let at = Arrival { server_id: Ipv4Addr::new(10, 0, 0, 1), next_server: Ipv4Addr::new(10, 0, 0, 1), ingress_net: None, pxe_port: false, trace: None };
        if let dhcp_svc::decide::Decision::Reply { reply, .. } = decide(&req, Some(&hw), &at, &s) {
            let _ = reply.encode(req.max_reply_len());
        }
    }
});
