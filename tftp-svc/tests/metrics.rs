//! The real `tftp-svc` binary's `/metrics` after a known sequence of transfers, counters
//! asserted exactly. One test in its own binary with its own registry: every count is ours.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::Duration;

use common::stock;
use ironboot_testkit::metrics::{scrape_once_counted, start_ready};
use tftp_svc::client::{self, ClientError, ClientOptions};

const MACHINES: &str = r#"
name: no-pxe
interfaces:
  - mac: 52:54:00:bb:00:01
    netboot:
      allow_pxe: false
---
name: good
interfaces:
  - mac: 52:54:00:bb:00:02
    netboot:
      allow_pxe: true
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_bytes_refusals_and_cache_state() {
    let reg = hardware_api::testing::TestRegistry::start().await;
    reg.put_yaml(MACHINES).await;
    let udp = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let admin: SocketAddr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tftp-svc"));
    cmd.args([
        "--listen",
        &udp.to_string(),
        "--admin-listen",
        &admin.to_string(),
    ])
    .args([
        "--registry",
        &reg.endpoint,
        "--registry-token",
        &reg.read_token,
    ]);
    // Ready means: files loaded and the registry cache synced.
    let _service = start_ready(cmd, "tftp-svc", admin, Duration::from_secs(15)).await;

    let o = ClientOptions {
        blksize: Some(1468),
        ..ClientOptions::default()
    };
    let a = client::get(udp, "undionly.kpxe", &o)
        .await
        .expect("undionly.kpxe");
    let b = client::get(udp, "52:54:00:bb:00:02/ipxe.efi", &o)
        .await
        .expect("ipxe.efi for a registered machine");
    assert_eq!(a.data, stock("undionly.kpxe"));
    assert_eq!(b.data, stock("ipxe.efi"));
    let refused = client::get(udp, "52:54:00:bb:00:01/ipxe.efi", &o).await;
    assert!(
        matches!(refused, Err(ClientError::Tftp { code: 2, .. })),
        "allow_pxe: false must be refused: {refused:?}"
    );

    // The server counts a transfer when it has seen the last ACK: give it a moment.
    // A transfer is counted after its other figures.
    let m = scrape_once_counted(
        admin,
        "tftp_transfers_total",
        &[("outcome", "completed")],
        2.0,
        Duration::from_secs(5),
    )
    .await;
    let zero_if_absent = |name: &str, labels: &[(&str, &str)]| m.get(name, labels).unwrap_or(0.0);
    assert_eq!(
        m.value("tftp_transfers_total", &[("outcome", "completed")]),
        2.0
    );
    assert_eq!(m.sum("tftp_transfers_total", &[]), 2.0, "no other outcome");
    assert_eq!(zero_if_absent("tftp_transfers_failed_total", &[]), 0.0);
    assert_eq!(m.value("tftp_transfers_active", &[]), 0.0);
    assert_eq!(
        m.value(
            "tftp_requests_refused_total",
            &[("reason", "pxe_not_allowed")]
        ),
        1.0
    );
    assert_eq!(m.sum("tftp_requests_refused_total", &[]), 1.0);
    // Loopback loses nothing: the bytes sent are the two files, once.
    assert_eq!(zero_if_absent("tftp_retransmits_total", &[]), 0.0);
    assert_eq!(
        m.value("tftp_bytes_sent_total", &[]),
        (a.data.len() + b.data.len()) as f64
    );
    assert_eq!(
        m.value(
            "tftp_transfer_duration_seconds_count",
            &[("outcome", "completed")]
        ),
        2.0
    );

    // The registry cache, as every service reports it.
    assert_eq!(m.value("hardware_cache_synced", &[]), 1.0);
    assert_eq!(m.value("hardware_cache_connected", &[]), 1.0);
    assert_eq!(m.value("hardware_cache_records", &[]), 2.0);
    assert_eq!(m.value("hardware_cache_relists_total", &[]), 1.0);
    let staleness = m.value("hardware_cache_staleness_seconds", &[]);
    assert!(
        (0.0..5.0).contains(&staleness),
        "staleness {staleness} with 1 s bookmarks"
    );
    assert!(m.value("bootfiles_files", &[]) >= 2.0);
    assert!(
        m.undescribed().is_empty(),
        "metrics without # HELP: {:?}",
        m.undescribed()
    );

    // Zero-copy windows: a file's first download at a blksize copies and has its wire
    // image built (in the background, one at a time); later ones send from the image.
    // Until one does, every download is copied, and all of them are byte-identical.
    let ipxe = stock("ipxe.efi");
    let o = ClientOptions {
        blksize: Some(1468),
        windowsize: Some(8),
        ..ClientOptions::default()
    };
    let mut downloads = 0.0;
    let mut zero_copy = 0.0;
    for _ in 0..50 {
        let d = client::get(udp, "ipxe.efi", &o).await.expect("ipxe.efi");
        assert!(
            d.data == ipxe,
            "a download differs after {downloads} good ones"
        );
        downloads += 1.0;
        let m = scrape_once_counted(
            admin,
            "tftp_transfers_total",
            &[("outcome", "completed")],
            2.0 + downloads,
            Duration::from_secs(5),
        )
        .await;
        zero_copy = m.get("tftp_zero_copy_bytes_sent_total", &[]).unwrap_or(0.0);
        if zero_copy > 0.0 {
            let images = m.value("tftp_wire_image_bytes", &[]);
            assert!(
                images >= tftp_svc::wire_image::image_len(ipxe.len() as u64, 1468) as f64,
                "the image is held: {images} bytes"
            );
            // Every byte was sent once, copied or not (loopback loses nothing).
            let all = (a.data.len() + b.data.len()) as f64 + downloads * ipxe.len() as f64;
            assert_eq!(m.value("tftp_bytes_sent_total", &[]), all);
            assert_eq!(
                zero_copy,
                ipxe.len() as f64,
                "exactly the last download went out zero-copy"
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        zero_copy > 0.0,
        "{downloads} downloads of ipxe.efi, none sent from its wire image"
    );
}
