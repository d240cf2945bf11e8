//! Measures the CPU cost of choosing and rendering one installer script (no HTTP):
//! `cargo run --release -p ipxe-http-svc --example render-cost`.

use std::time::Instant;

use ipxe_http_svc::Templates;
use ipxe_http_svc::script::{InstallerDefaults, RequestFacts, Script, choose};
use ironboot_proto::MacAddr;
use ironboot_proto::pb::{Dhcp, Hardware, Interface, Netboot};

fn main() {
    let t = Templates::load(None).expect("templates");
    let mac = MacAddr([2, 0, 0, 0, 0x27, 0x10]);
    let hw = Hardware {
        name: "bench-010000".into(),
        facility: "bench".into(),
        interfaces: vec![Interface {
            mac: mac.to_string(),
            dhcp: Some(Dhcp {
                ip: "10.0.39.16".into(),
                arch: "x86_64".into(),
                ..Default::default()
            }),
            netboot: Some(Netboot {
                allow_pxe: Some(true),
                ..Default::default()
            }),
        }],
        ..Default::default()
    };
    let d = InstallerDefaults {
        consoles: vec!["tty0".into(), "ttyS0,115200".into()],
        retries: 10,
        retry_delay_secs: 2,
        ..Default::default()
    };
    let n = 200_000;
    let mut bytes = 0;
    let started = Instant::now();
    for _ in 0..n {
        let tp = bootfiles::TraceParent::new_root();
        let s = choose(
            &hw,
            mac,
            &d,
            &RequestFacts {
                authority: "127.0.0.1:8080",
                traceparent: tp,
            },
        );
        let out = match s {
            Script::Installer(v) => t.installer(&v).expect("render"),
            _ => unreachable!(),
        };
        bytes += out.len();
    }
    let per = started.elapsed().as_secs_f64() / n as f64 * 1e6;
    println!(
        "choose+render: {per:.2} µs per script ({} bytes each)",
        bytes / n
    );
}
