//! The real `ipxe-http-svc` binary's `/metrics` after a known sequence of requests,
//! counters asserted exactly. One test in its own binary with its own registry: every
//! count is ours.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use ironboot_testkit::metrics::{scrape, start_ready};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_scripts_binaries_and_cache_state() {
    let reg = registry_with_machines().await;
    let ipxe = tempfile::tempdir().unwrap();
    std::fs::write(ipxe.path().join("ipxe.efi"), binary_bytes()).unwrap();
    let addr: std::net::SocketAddr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut cmd = Command::new(service_binary());
    cmd.args([
        "--listen",
        &addr.to_string(),
        "--ipxe-dir",
        ipxe.path().to_str().unwrap(),
        "--link-roots",
        "",
    ])
    .args([
        "--registry",
        &reg.endpoint,
        "--registry-token",
        &reg.read_token,
    ]);
    let _service = start_ready(cmd, "ipxe-http-svc", addr, Duration::from_secs(20)).await;

    for _ in 0..3 {
        assert_eq!(get(addr, &format!("/{MAC}/auto.ipxe")).await.status, 200);
    }
    assert_eq!(
        get(addr, "/52:54:00:ee:0d:0e/auto.ipxe").await.status,
        200,
        "custom URL chain script"
    );
    // A MAC nobody registered: one fallback lookup, a refusal, a 404.
    assert_eq!(get(addr, "/52:54:00:99:99:99/auto.ipxe").await.status, 404);
    assert_eq!(get(addr, "/no/such/route").await.status, 404);
    let bin = get(addr, "/ipxe/ipxe.efi").await;
    assert_eq!(bin.status, 200);
    assert_eq!(bin.body, binary_bytes());

    let m = scrape(addr);
    let requests = |route: &str, status: &str| {
        m.value(
            "http_requests_total",
            &[("route", route), ("status", status)],
        )
    };
    assert_eq!(requests("script", "200"), 4.0);
    assert_eq!(requests("script", "404"), 1.0);
    assert_eq!(requests("other", "404"), 1.0);
    assert_eq!(requests("binary", "200"), 1.0);
    assert_eq!(m.sum("http_requests_total", &[("route", "script")]), 5.0);
    assert_eq!(m.sum("http_requests_total", &[("route", "binary")]), 1.0);
    assert_eq!(
        m.value(
            "http_request_duration_seconds_count",
            &[("route", "script")]
        ),
        5.0
    );
    // Binaries go out zero-copy: their bytes are counted by the sendfile counter.
    assert_eq!(
        m.value("http_sendfile_bytes_total", &[]),
        binary_bytes().len() as f64
    );
    assert_eq!(
        m.value("ipxe_scripts_rendered_total", &[("kind", "installer")]),
        3.0
    );
    assert_eq!(
        m.value("ipxe_scripts_rendered_total", &[("kind", "custom_url")]),
        1.0
    );
    assert_eq!(m.sum("ipxe_scripts_rendered_total", &[]), 4.0);
    assert_eq!(
        m.value(
            "http_refused_total",
            &[("route", "script"), ("reason", "unknown")]
        ),
        1.0
    );
    assert_eq!(m.sum("http_refused_total", &[]), 1.0);

    assert_eq!(m.value("hardware_cache_synced", &[]), 1.0);
    assert_eq!(m.value("hardware_cache_records", &[]), 6.0);
    // Two misses asked the registry: the unknown MAC's script, and the binary request's
    // source address (127.0.0.1 is no machine's); registered MACs were answered from memory.
    assert_eq!(
        m.value(
            "hardware_cache_fallback_lookups_total",
            &[("result", "not_found")]
        ),
        2.0
    );
    assert_eq!(
        m.sum("hardware_cache_fallback_lookups_total", &[]),
        2.0,
        "{:?}",
        m.series("hardware_cache_fallback_lookups_total")
    );
    assert_eq!(
        m.value("bootfiles_files", &[]),
        1.0,
        "catalogue gauges are set at start"
    );
    assert!(
        m.undescribed().is_empty(),
        "metrics without # HELP: {:?}",
        m.undescribed()
    );
}
