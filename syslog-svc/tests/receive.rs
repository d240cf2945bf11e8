//! Real clients against the running service: util-linux `logger` (UDP and TCP, RFC 5424
//! with structured data and RFC 3164), busybox `syslogd -R` forwarding, and the query API.

mod common;

use std::net::UdpSocket;
use std::process::Command;
use std::time::Duration;

use common::*;
use hardware_api::testing::TestRegistry;

const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn logger(args: &[&str]) {
    let out = Command::new("logger")
        .args(args)
        .output()
        .expect("run logger");
    assert!(
        out.status.success(),
        "logger {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn logger_udp_and_tcp_in_both_formats() {
    need("logger");
    private_network(&["10.77.0.2"]);
    runtime().block_on(async {
        let reg = TestRegistry::start().await;
        reg.put_yaml(&machine_yaml("node2", "52:54:00:77:00:02", "10.77.0.2"))
            .await;
        let mut svc = Svc::start(&reg, &[]).await;
        let (u, t) = (svc.udp.port().to_string(), svc.tcp.port().to_string());
        let sd = format!("traceparent=\"{TP}\"");
        let base = |port: &str| {
            vec![
                "-n".to_string(),
                "10.77.0.2".into(),
                "-P".into(),
                port.to_string(),
            ]
        };
        let run = |mut a: Vec<String>, more: &[&str]| {
            a.extend(more.iter().map(|s| s.to_string()));
            logger(&a.iter().map(String::as_str).collect::<Vec<_>>());
        };
        run(
            base(&u),
            &[
                "-d",
                "--rfc5424",
                "--sd-id",
                "trace@32473",
                "--sd-param",
                &sd,
                "-t",
                "inst",
                "-p",
                "local0.info",
                "udp 5424",
            ],
        );
        run(
            base(&u),
            &[
                "-d",
                "--rfc3164",
                "-t",
                "inst",
                "-p",
                "daemon.err",
                "udp 3164",
            ],
        );
        run(
            base(&t),
            &[
                "-T",
                "--rfc5424",
                "--sd-id",
                "zoo@123",
                "--sd-param",
                "tiger=\"hungry \\\"big\\\" cat\"",
                "-t",
                "inst",
                "tcp 5424",
            ],
        );
        run(
            base(&t),
            &[
                "-T",
                "--octet-count",
                "--rfc3164",
                "-t",
                "inst",
                "tcp 3164 octet-counted",
            ],
        );
        let lines = wait_lines(&svc.out, 4, Duration::from_secs(10)).await;
        assert_eq!(lines.len(), 4, "{lines:#?}");
        let by_msg = |m: &str| {
            lines
                .iter()
                .find(|l| l["message"] == m)
                .unwrap_or_else(|| panic!("no line {m:?} in {lines:#?}"))
        };

        let l = by_msg("udp 5424");
        assert_eq!(
            (l["transport"].as_str(), l["format"].as_str()),
            (Some("udp"), Some("rfc5424"))
        );
        assert_eq!(
            (l["facility"].as_str(), l["severity"].as_str()),
            (Some("local0"), Some("info"))
        );
        assert_eq!(l["app"], "inst");
        assert_eq!(l["structured_data"]["trace@32473"]["traceparent"], TP);
        assert_eq!(l["traceparent"], TP);
        assert!(l["structured_data"]["timeQuality"].is_object());
        assert!(l["timestamp"].is_string());

        let l = by_msg("udp 3164");
        assert_eq!(
            (l["transport"].as_str(), l["format"].as_str()),
            (Some("udp"), Some("rfc3164"))
        );
        assert_eq!(
            (l["facility"].as_str(), l["severity"].as_str()),
            (Some("daemon"), Some("err"))
        );
        assert_eq!(l["app"], "inst");
        assert!(l["hostname"].is_string() && l["timestamp"].is_string());

        let l = by_msg("tcp 5424");
        assert_eq!(
            (l["transport"].as_str(), l["format"].as_str()),
            (Some("tcp"), Some("rfc5424"))
        );
        assert_eq!(
            l["structured_data"]["zoo@123"]["tiger"],
            "hungry \"big\" cat"
        );

        let l = by_msg("tcp 3164 octet-counted");
        assert_eq!(
            (l["transport"].as_str(), l["format"].as_str()),
            (Some("tcp"), Some("rfc3164"))
        );

        for l in &lines {
            assert_eq!(l["machine"]["name"], "node2", "{l}");
            assert_eq!(l["machine"]["mac"], "52:54:00:77:00:02");
            assert!(
                l["source"]
                    .as_str()
                    .is_some_and(|s| s.starts_with("10.77.0.2:"))
            );
            assert!(l.get("parse_error").is_none());
        }
        let s = svc.stats();
        assert_eq!(
            (s.received_udp.get(), s.received_tcp.get(), s.written.get()),
            (2, 2, 4)
        );
        svc.stop().await;
    });
}

#[test]
fn busybox_syslogd_forwarding() {
    need("busybox");
    need("unshare");
    need("nsenter");
    private_network(&["10.77.0.3"]);
    runtime().block_on(async {
        let reg = TestRegistry::start().await;
        reg.put_yaml(&machine_yaml("bbox", "52:54:00:77:00:03", "10.77.0.3")).await;
        let mut svc = Svc::start(&reg, &[]).await;
        // busybox syslogd always listens on /dev/log: give it a private mount namespace
        // whose /dev is a scratch tmpfs (with /dev/null bound in), so the host's /dev/log
        // is never touched. `--kill-child` makes syslogd die with its unshare parent.
        let scratch = tempfile::tempdir().expect("tempdir");
        let d = scratch.path().display();
        let script = format!(
            "mount -t tmpfs tmpfs {d} && touch {d}/null && mount --bind /dev/null {d}/null && mount --bind {d} /dev \
             && exec busybox syslogd -n -R 10.77.0.3:{} -O /dev/null",
            svc.udp.port()
        );
        let unshare = Command::new("unshare")
            .args(["--fork", "--kill-child", "--mount", "--propagation", "private", "sh", "-c", &script])
            .spawn()
            .expect("start busybox syslogd");
        let guard = Proc::adopt(unshare, "unshare");
        let upid = guard.pid();
        // syslogd is unshare's child; wait for its /dev/log.
        let mut syslogd = None;
        for _ in 0..100 {
            let children = std::fs::read_to_string(format!("/proc/{upid}/task/{upid}/children")).unwrap_or_default();
            if let Some(pid) = children.split_whitespace().next() {
                let ok = Command::new("nsenter").args(["-t", pid, "-m", "test", "-S", "/dev/log"]).status().is_ok_and(|s| s.success());
                if ok {
                    syslogd = Some(pid.to_string());
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let pid = syslogd.expect("busybox syslogd did not create /dev/log");
        for (prio, text) in [("daemon.warn", "hello from busybox"), ("user.info", "second line")] {
            let st = Command::new("nsenter")
                .args(["-t", &pid, "-m", "busybox", "logger", "-t", "bbtag", "-p", prio, text])
                .status()
                .expect("busybox logger");
            assert!(st.success());
        }
        let lines = wait_lines(&svc.out, 2, Duration::from_secs(10)).await;
        drop(guard);
        assert_eq!(lines.len(), 2, "{lines:#?}");
        assert_eq!(lines[0]["message"], "hello from busybox");
        assert_eq!(lines[0]["app"], "bbtag");
        assert_eq!((lines[0]["facility"].as_str(), lines[0]["severity"].as_str()), (Some("daemon"), Some("warning")));
        assert_eq!(lines[0]["format"], "rfc3164");
        assert!(lines[0]["timestamp"].is_string());
        assert!(lines[0].get("hostname").is_none(), "busybox sends no hostname: {}", lines[0]);
        assert_eq!(lines[1]["message"], "second line");
        for l in &lines {
            assert_eq!(l["machine"]["name"], "bbox");
        }
        svc.stop().await;
    });
}

#[test]
fn query_api_returns_exactly_one_machines_messages() {
    private_network(&["10.77.0.11", "10.77.0.12", "10.77.0.13", "10.77.0.20"]);
    runtime().block_on(async {
        let reg = TestRegistry::start().await;
        for n in 11..=13 {
            reg.put_yaml(&machine_yaml(
                &format!("m{n}"),
                &format!("52:54:00:77:00:{n}"),
                &format!("10.77.0.{n}"),
            ))
            .await;
        }
        let mut svc = Svc::start(&reg, &["--ring-messages=50"]).await;
        let target = std::net::SocketAddr::from(([10, 77, 0, 11], svc.udp.port()));
        // Interleaved senders: m11 sends 80 (ring keeps 50), m12 20, m13 5, an unknown 10.
        let socks: Vec<(u8, UdpSocket, usize)> = [(11u8, 80usize), (12, 20), (13, 5), (20, 10)]
            .into_iter()
            .map(|(n, count)| {
                (
                    n,
                    UdpSocket::bind(format!("10.77.0.{n}:0")).expect("bind source"),
                    count,
                )
            })
            .collect();
        let mut sent = 0;
        for i in 0..80 {
            for (n, s, count) in &socks {
                if i < *count {
                    s.send_to(
                        format!("<14>host{n} app: from {n} seq {i}").as_bytes(),
                        target,
                    )
                    .expect("send");
                    sent += 1;
                }
            }
        }
        // And m12 once over TCP, from its own address.
        {
            let sock = tokio::net::TcpSocket::new_v4().expect("socket");
            sock.bind("10.77.0.12:0".parse().expect("addr"))
                .expect("bind");
            let mut c = sock
                .connect(std::net::SocketAddr::from((
                    [10, 77, 0, 11],
                    svc.tcp.port(),
                )))
                .await
                .expect("connect");
            tokio::io::AsyncWriteExt::write_all(&mut c, b"<14>host12 app: from 12 over tcp\n")
                .await
                .expect("write");
        }
        sent += 1;
        let lines = wait_lines(&svc.out, sent, Duration::from_secs(10)).await;
        assert_eq!(lines.len(), sent);
        assert_eq!(svc.stats().unattributed.get(), 10);

        let (st, body) = http_get(svc.http, "/machines/52-54-00-77-00-12/logs?limit=1000").await;
        assert_eq!(st, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(v["name"], "m12");
        let msgs = v["messages"].as_array().expect("messages");
        assert_eq!(msgs.len(), 21);
        assert!(msgs.iter().all(|m| {
            m["machine"]["name"] == "m12"
                && m["message"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("from 12 "))
        }));
        // UDP and TCP take different paths: the TCP line is there, not necessarily last.
        assert_eq!(
            msgs.iter()
                .filter(|m| m["message"] == "from 12 over tcp")
                .count(),
            1
        );

        let (_, body) = http_get(svc.http, "/machines/52:54:00:77:00:11/logs?limit=1000").await;
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        let msgs = v["messages"].as_array().expect("messages");
        assert_eq!(msgs.len(), 50, "the ring keeps the newest 50");
        assert_eq!(msgs[0]["message"], "from 11 seq 30");
        assert_eq!(msgs[49]["message"], "from 11 seq 79");
        let (_, body) = http_get(svc.http, "/machines/525400770011/logs?limit=3").await;
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(v["count"], 3);
        assert_eq!(v["messages"][2]["message"], "from 11 seq 79");

        let (_, body) = http_get(svc.http, "/machines/52:54:00:77:00:13/logs?since=1h").await;
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(v["count"], 5);
        let (_, body) = http_get(
            svc.http,
            "/machines/52:54:00:77:00:13/logs?since=2099-01-01T00:00:00Z",
        )
        .await;
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(v["count"], 0);

        let (st, body) = http_get(svc.http, "/machines/52:54:00:99:99:99/logs").await;
        assert_eq!(st, 404, "{body}");
        let (st, body) = http_get(svc.http, "/machines/not-a-mac/logs").await;
        assert_eq!(st, 400);
        assert!(body.contains("mac"), "{body}");
        let (st, body) = http_get(svc.http, "/machines/52:54:00:77:00:13/logs?limit=0").await;
        assert_eq!(st, 400);
        assert!(body.contains("limit"), "{body}");
        let (st, body) = http_get(svc.http, "/machines/52:54:00:77:00:13/logs?since=soon").await;
        assert_eq!(st, 400);
        assert!(body.contains("since"), "{body}");

        let (st, body) = http_get(svc.http, "/machines").await;
        assert_eq!(st, 200);
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(v["machines"].as_array().map(Vec::len), Some(3));

        let (st, _) = http_get(svc.http, "/healthz").await;
        assert_eq!(st, 200);
        let (st, body) = http_get(svc.http, "/metrics").await;
        assert_eq!(st, 200);
        assert!(body.contains("syslog_received_total"), "{body}");
        svc.stop().await;
    });
}
