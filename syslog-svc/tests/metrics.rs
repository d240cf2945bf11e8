//! The real `syslog-svc` binary's `/metrics` after a known sequence of messages, counters
//! asserted exactly. One test in its own binary (and network namespace) with its own
//! registry: every count is ours.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::Duration;

use common::*;
use hardware_api::testing::TestRegistry;
use ironboot_testkit::metrics::{Scrape, scrape_once_counted, start_ready};

#[test]
fn received_parsed_dropped_and_cache_state() {
    private_network(&["10.77.0.5"]);
    runtime().block_on(async {
        let reg = TestRegistry::start().await;
        reg.put_yaml(&machine_yaml("node5", "52:54:00:77:00:05", "10.77.0.5"))
            .await;
        let dir = tempfile::tempdir().unwrap();
        let http: SocketAddr = "127.0.0.1:9514".parse().unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_syslog-svc"));
        cmd.args([
            "--udp-listen",
            "0.0.0.0:5140",
            "--tcp-listen",
            "0.0.0.0:5140",
            "--http-listen",
            &http.to_string(),
        ])
        .arg(format!(
            "--output={}",
            dir.path().join("out.jsonl").display()
        ))
        .args([
            "--registry",
            &reg.endpoint,
            "--registry-token",
            &reg.read_token,
        ]);
        let _service = start_ready(cmd, "syslog-svc", http, Duration::from_secs(15)).await;

        let machine = UdpSocket::bind("10.77.0.5:0").unwrap();
        for msg in [
            "<134>1 2026-01-01T10:00:00Z node5 inst - - - one",
            "<134>1 2026-01-01T10:00:01Z node5 inst - - - two",
            "<134>1 2026-01-01T10:00:02Z node5 inst - - - three",
            "<30>Jan  1 10:00:03 node5 inst: four",
            "<192>x",
            "   ",
        ] {
            machine.send_to(msg.as_bytes(), "127.0.0.1:5140").unwrap();
        }
        // From an address no machine is registered under.
        UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .send_to(b"<134>1 - stranger app - - - five", "127.0.0.1:5140")
            .unwrap();

        // The writer adds `written` after a batch's other counts.
        let m: Scrape = scrape_once_counted(
            http,
            "syslog_written_total",
            &[],
            6.0,
            Duration::from_secs(10),
        )
        .await;
        let zero_if_absent =
            |name: &str, labels: &[(&str, &str)]| m.get(name, labels).unwrap_or(0.0);
        assert_eq!(
            m.value("syslog_received_total", &[("transport", "udp")]),
            7.0
        );
        assert_eq!(
            m.value("syslog_received_total", &[("transport", "tcp")]),
            0.0
        );
        assert_eq!(m.value("syslog_written_total", &[]), 6.0);
        assert_eq!(m.value("syslog_parsed_total", &[]), 5.0);
        assert_eq!(m.value("syslog_parse_errors_total", &[]), 1.0);
        assert_eq!(m.value("syslog_dropped_total", &[("reason", "empty")]), 1.0);
        assert_eq!(
            zero_if_absent("syslog_dropped_total", &[("reason", "queue_full")]),
            0.0
        );
        assert_eq!(m.value("syslog_unattributed_total", &[]), 1.0);
        assert_eq!(m.value("syslog_store_machines", &[]), 1.0);

        assert_eq!(m.value("hardware_cache_synced", &[]), 1.0);
        assert_eq!(m.value("hardware_cache_records", &[]), 1.0);
        assert_eq!(m.value("hardware_cache_relists_total", &[]), 1.0);
        assert!(m.value("hardware_cache_staleness_seconds", &[]) < 5.0);
        assert!(
            m.undescribed().is_empty(),
            "metrics without # HELP: {:?}",
            m.undescribed()
        );
    });
}
