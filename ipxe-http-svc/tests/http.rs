//! The real router and listener on loopback, fed by a real registry (in-process
//! hardware-api with a memory store) through the watch-backed cache: every route, every
//! MAC spelling, refusals, source-address identification through trusted proxies,
//! traversal attempts, Range/HEAD/conditional requests, metrics and health.

mod common;

use std::time::Duration;

use common::*;

fn assert_refusal(r: &Resp, status: u16, needle: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    assert_script(&r.text());
    assert!(
        r.text().contains(needle),
        "expected {needle:?} in:\n{}",
        r.text()
    );
    assert!(r.text().contains("exit 1"), "{}", r.text());
}

#[tokio::test]
async fn script_for_every_mac_spelling() {
    let svc = start(&[]).await;
    for spelling in [
        "52:54:00:ee:0d:0b",
        "52-54-00-ee-0d-0b",
        "525400ee0d0b",
        "52:54:00:EE:0D:0B",
        "5254.00ee.0d0b",
        "52%3A54%3A00%3Aee%3A0d%3A0b",
    ] {
        let r = get(svc.addr, &format!("/{spelling}/auto.ipxe")).await;
        assert_eq!(r.status, 200, "{spelling}: {}", r.text());
        let s = r.text();
        assert_script(&s);
        assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
        assert_eq!(r.header("cache-control"), Some("no-store"));
        for arg in [
            "worker_id=52:54:00:ee:0d:0b",
            "hw_addr=52:54:00:ee:0d:0b",
            "facility=lab1",
            "vlan_id=42",
            "console=ttyS0,115200",
            "tinkerbell_tls=false",
            "tinkerbell_insecure_tls=false",
        ] {
            assert!(s.contains(arg), "{spelling}: {arg} missing:\n{s}");
        }
        // Defaults follow the address the client used.
        let host = svc.addr.ip().to_string();
        assert!(
            s.contains(&format!(
                "kernel http://{}/assets/vmlinuz-x86_64 ",
                svc.addr
            )),
            "{s}"
        );
        assert!(
            s.contains(&format!(
                "initrd --name initrd http://{}/assets/initramfs-x86_64 ",
                svc.addr
            )),
            "{s}"
        );
        assert!(
            s.contains(&format!("syslog_host={host} "))
                && s.contains(&format!("grpc_authority={host}:42113 ")),
            "{s}"
        );
        assert!(s.trim_end().ends_with("exit 1"));
    }
}

#[tokio::test]
async fn head_on_a_script_has_its_length_and_no_body() {
    let svc = start(&[]).await;
    let g = get(svc.addr, &format!("/{MAC}/auto.ipxe")).await;
    let h = request(svc.addr, "HEAD", &format!("/{MAC}/auto.ipxe"), &[]).await;
    assert_eq!(h.status, 200);
    // The traceparent differs per request but has a fixed length.
    assert_eq!(
        h.header("content-length")
            .map(|v| v.parse::<usize>().unwrap()),
        Some(g.body.len())
    );
}

#[tokio::test]
async fn traceparent_continues_the_callers_trace() {
    let svc = start(&[]).await;
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let r = request(
        svc.addr,
        "GET",
        &format!("/{MAC}/auto.ipxe"),
        &[("traceparent", parent)],
    )
    .await;
    let s = r.text();
    let tp = s
        .split("traceparent=")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .expect("traceparent= in script");
    assert!(
        tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{tp}"
    );
    assert_ne!(tp, parent, "a new span, not the caller's");
    assert!(tp.ends_with("-01"));
    // Without a header: a fresh valid trace per request.
    let a = get(svc.addr, &format!("/{MAC}/auto.ipxe")).await.text();
    let b = get(svc.addr, &format!("/{MAC}/auto.ipxe")).await.text();
    let pick = |s: &str| {
        s.split("traceparent=")
            .nth(1)
            .and_then(|t| t.split_whitespace().next())
            .map(str::to_string)
    };
    assert_ne!(pick(&a), pick(&b));
    assert!(bootfiles::TraceParent::from_header(&pick(&a).unwrap()).is_some_and(|t| t.is_valid()));
}

#[tokio::test]
async fn custom_scripts_and_architectures() {
    let svc = start(&[]).await;
    let r = get(svc.addr, "/52:54:00:ee:0d:0e/auto.ipxe").await;
    assert_eq!(r.status, 200);
    assert_script(&r.text());
    assert!(
        r.text()
            .contains("chain --autofree http://scripts.example/custom.ipxe"),
        "{}",
        r.text()
    );

    let r = get(svc.addr, "/52:54:00:ee:0d:0f/auto.ipxe").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.text(),
        "#!ipxe\necho custom contents\nshell\n",
        "served as is"
    );

    let r = get(svc.addr, "/52:54:00:ee:0e:01/auto.ipxe").await;
    let s = r.text();
    assert_script(&s);
    assert!(
        s.contains("kernel http://osie.example/hook/vmlinuz-aarch64 "),
        "{s}"
    );
    assert!(
        s.contains("initrd --name initrd http://osie.example/hook/initramfs-aarch64"),
        "{s}"
    );
    assert!(
        s.contains(" tink_worker_image=quay.io/tinkerbell/tink-worker:v0.10 &&"),
        "per-hardware params come last:\n{s}"
    );
    assert!(!s.contains("vlan_id="));
}

#[tokio::test]
async fn service_flags_reach_the_script() {
    let svc = start(&[
        "--osie-url",
        "https://osie.example/v1/",
        "--syslog-host",
        "10.9.9.9",
        "--grpc-authority",
        "tink.example:42113",
        "--tinkerbell-tls",
        "--console",
        "ttyS1,115200",
        "--extra-kernel-args",
        "quiet hook_debug=1",
        "--script-retries",
        "4",
        "--script-retry-delay",
        "3s",
    ])
    .await;
    let s = get(svc.addr, &format!("/{MAC}/auto.ipxe")).await.text();
    assert_script(&s);
    for want in [
        "kernel https://osie.example/v1/vmlinuz-x86_64 ",
        "syslog_host=10.9.9.9 ",
        "grpc_authority=tink.example:42113 ",
        "tinkerbell_tls=true ",
        "console=ttyS1,115200 quiet hook_debug=1 &&",
        "set retries:int32 4\n",
        "set delay:int32 3\n",
    ] {
        assert!(s.contains(want), "{want:?} missing:\n{s}");
    }
    assert!(!s.contains("console=tty0"));
}

#[tokio::test]
async fn bad_unknown_and_refused_machines() {
    let svc = start(&[]).await;
    for bad in [
        "zz:54:00:ee:0d:0b",
        "52:54:00:ee:0d",
        "1234",
        "52:54:00:ee:0d:0b:00",
        "52:54-00:ee:0d:0b",
        "..",
        "%2e%2e",
        "%0aecho",
    ] {
        let r = get(svc.addr, &format!("/{bad}/auto.ipxe")).await;
        assert_refusal(&r, 400, "is not a MAC address");
        assert!(!r.text().contains('\u{0}'));
        assert_eq!(
            r.text().lines().count(),
            3,
            "no injected lines: {}",
            r.text()
        );
    }
    assert_refusal(
        &get(svc.addr, "/52:54:00:00:00:99/auto.ipxe").await,
        404,
        "no machine with MAC 52:54:00:00:00:99 is registered",
    );
    assert_refusal(
        &get(svc.addr, "/52:54:00:ee:0d:0c/auto.ipxe").await,
        404,
        "not allowed for refused",
    );
    assert_refusal(
        &get(svc.addr, "/52:54:00:ee:0d:0d/auto.ipxe").await,
        404,
        "switched-off is disabled",
    );
    // Wrong names under a MAC are not scripts.
    assert_eq!(
        get(svc.addr, &format!("/{MAC}/other.ipxe")).await.status,
        404
    );
    assert_eq!(get(svc.addr, "/a/b/auto.ipxe").await.status, 404);
}

#[tokio::test]
async fn machines_registered_after_start_are_found() {
    let svc = start(&[]).await;
    let reg = svc.registry.as_ref().unwrap();
    reg.put_yaml("apiVersion: ironboot/v1\nkind: Hardware\nname: late\ninterfaces:\n  - mac: 52:54:00:aa:00:01\n").await;
    let r = get(svc.addr, "/52:54:00:aa:00:01/auto.ipxe").await;
    assert_eq!(r.status, 200, "{}", r.text());
    // Switched off in the registry: the watch brings the change.
    reg.put_yaml("apiVersion: ironboot/v1\nkind: Hardware\nname: late\ninterfaces:\n  - mac: 52:54:00:aa:00:01\n    netboot: {allow_pxe: false}\n").await;
    let mut last = 0;
    for _ in 0..50 {
        last = get(svc.addr, "/52:54:00:aa:00:01/auto.ipxe").await.status;
        if last == 404 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(last, 404);
}

#[tokio::test]
async fn source_address_identification_through_a_trusted_proxy() {
    // Not trusted: the header is ignored and 127.0.0.1 is nobody.
    let svc = start(&[]).await;
    let r = request(
        svc.addr,
        "GET",
        "/auto.ipxe",
        &[("X-Forwarded-For", "10.42.0.10")],
    )
    .await;
    assert_refusal(&r, 404, "no machine with address 127.0.0.1");
    drop(svc);

    let svc = start(&["--trusted-proxy", "127.0.0.0/8"]).await;
    let r = request(
        svc.addr,
        "GET",
        "/auto.ipxe",
        &[("X-Forwarded-For", "10.42.0.10")],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.text().contains("worker_id=52:54:00:ee:0d:0b"),
        "{}",
        r.text()
    );
    // A client-supplied leftmost entry does not win over what the proxy appended.
    let r = request(
        svc.addr,
        "GET",
        "/auto.ipxe",
        &[("X-Forwarded-For", "10.42.0.10, 10.42.0.11")],
    )
    .await;
    assert_refusal(&r, 404, "not allowed for refused");
    let r = request(
        svc.addr,
        "GET",
        "/auto.ipxe",
        &[("X-Forwarded-For", "10.42.0.12")],
    )
    .await;
    assert_refusal(&r, 404, "disabled");
    let r = request(
        svc.addr,
        "GET",
        "/auto.ipxe",
        &[("X-Forwarded-For", "10.42.0.99")],
    )
    .await;
    assert_refusal(&r, 404, "no machine with address 10.42.0.99");
    let r = request(svc.addr, "GET", "/auto.ipxe", &[]).await;
    assert_refusal(&r, 404, "no machine with address 127.0.0.1");
    // The source address gates the MAC route too: a refused machine cannot ask for
    // another machine's script by MAC.
    let r = request(
        svc.addr,
        "GET",
        &format!("/{MAC}/auto.ipxe"),
        &[("X-Forwarded-For", "10.42.0.11")],
    )
    .await;
    assert_refusal(&r, 404, "not allowed");
    // And binaries.
    let r = request(
        svc.addr,
        "GET",
        "/ipxe/ipxe.efi",
        &[("X-Forwarded-For", "10.42.0.12")],
    )
    .await;
    assert_eq!(r.status, 403);
    let r = request(
        svc.addr,
        "GET",
        "/ipxe/ipxe.efi",
        &[("X-Forwarded-For", "10.42.0.10")],
    )
    .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn registry_down_and_nothing_cached_is_503() {
    // An endpoint where nothing listens: the cache never syncs.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let svc = start_with(None, &endpoint, "0123456789abcdef0123", &[], false).await;
    let r = get(svc.addr, &format!("/{MAC}/auto.ipxe")).await;
    assert_refusal(&r, 503, "registry cannot be reached");
    assert_eq!(r.header("retry-after"), Some("5"));
    assert_eq!(get(svc.addr, "/auto.ipxe").await.status, 503);
    let h = get(svc.addr, "/healthz").await;
    assert_eq!(h.status, 503, "not ready before the cache synced");
    // Binaries still work (unknown clients are served by default).
    assert_eq!(get(svc.addr, "/ipxe/ipxe.efi").await.status, 200);
}

#[tokio::test]
async fn binaries_by_name_and_by_mac() {
    let svc = start(&[]).await;
    let data = binary_bytes();
    let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    for path in [
        "/ipxe/ipxe.efi".to_string(),
        format!("/ipxe/{MAC}/ipxe.efi"),
        "/ipxe/52-54-00-ee-0d-0b/ipxe.efi".into(),
        "/ipxe/525400ee0d0b/ipxe.efi".into(),
        format!("/ipxe/{MAC}/ipxe.efi-{tp}"),
        format!("/ipxe/ipxe.efi-{tp}"),
        "/ipxe/52:54:00:00:00:99/ipxe.efi".into(),
    ] {
        let r = get(svc.addr, &path).await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.body, data, "{path}");
        assert_eq!(r.header("content-type"), Some("application/octet-stream"));
        assert_eq!(r.header("accept-ranges"), Some("bytes"));
        assert!(r.header("etag").is_some_and(|e| e.starts_with('"')));
        assert!(r.header("last-modified").is_some());
    }
    assert_eq!(get(svc.addr, "/ipxe/undionly.kpxe").await.body, b"UNDI");
    // Gated like TFTP.
    assert_eq!(
        get(svc.addr, "/ipxe/52:54:00:ee:0d:0c/ipxe.efi")
            .await
            .status,
        403
    );
    assert_eq!(
        get(svc.addr, "/ipxe/52:54:00:ee:0d:0d/undionly.kpxe")
            .await
            .status,
        403
    );
    // Missing.
    assert_eq!(get(svc.addr, "/ipxe/nope.efi").await.status, 404);
    assert_eq!(
        get(svc.addr, &format!("/ipxe/{MAC}/nope.efi")).await.status,
        404
    );
}

#[tokio::test]
async fn unknown_clients_can_be_refused_binaries() {
    let svc = start(&["--unknown-clients", "refuse"]).await;
    assert_eq!(
        get(svc.addr, "/ipxe/52:54:00:00:00:99/ipxe.efi")
            .await
            .status,
        403
    );
    assert_eq!(
        get(svc.addr, &format!("/ipxe/{MAC}/ipxe.efi")).await.status,
        200
    );
}

#[tokio::test]
async fn ranges_heads_and_revalidation_on_binaries() {
    let svc = start(&[]).await;
    let data = binary_bytes();
    let len = data.len();
    let p = "/ipxe/ipxe.efi";
    let addr = svc.addr;
    let range = |r: &'static str| async move { request(addr, "GET", p, &[("Range", r)]).await };

    let r = range("bytes=0-9").await;
    assert_eq!(r.status, 206);
    assert_eq!(r.body, data[..10]);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes 0-9/{len}").as_str())
    );
    assert_eq!(r.header("content-length"), Some("10"));
    let r = range("bytes=99990-").await;
    assert_eq!((r.status, r.body.as_slice()), (206, &data[99990..]));
    let r = range("bytes=-5").await;
    assert_eq!((r.status, r.body.as_slice()), (206, &data[len - 5..]));
    let r = range("bytes=50000-99999999").await;
    assert_eq!((r.status, r.body.len()), (206, len - 50000));
    let r = range("bytes=100000-").await;
    assert_eq!(r.status, 416);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes */{len}").as_str())
    );
    let r = range("bytes=0-1,5-6").await;
    assert_eq!(
        (r.status, r.body.len()),
        (200, len),
        "multi-range gets the whole file"
    );

    let h = request(svc.addr, "HEAD", p, &[]).await;
    assert_eq!(h.status, 200);
    assert_eq!(h.header("content-length"), Some(len.to_string().as_str()));
    let h = request(svc.addr, "HEAD", p, &[("Range", "bytes=10-19")]).await;
    assert_eq!((h.status, h.header("content-length")), (206, Some("10")));

    let full = get(svc.addr, p).await;
    let etag = full.header("etag").unwrap().to_string();
    let lm = full.header("last-modified").unwrap().to_string();
    assert_eq!(
        request(svc.addr, "GET", p, &[("If-None-Match", &etag)])
            .await
            .status,
        304
    );
    assert_eq!(
        request(svc.addr, "GET", p, &[("If-Modified-Since", &lm)])
            .await
            .status,
        304
    );
    assert_eq!(
        request(svc.addr, "GET", p, &[("If-None-Match", "\"other\"")])
            .await
            .status,
        200
    );
    let r = request(
        svc.addr,
        "GET",
        p,
        &[("Range", "bytes=0-3"), ("If-Range", &etag)],
    )
    .await;
    assert_eq!(r.status, 206);
    let r = request(
        svc.addr,
        "GET",
        p,
        &[("Range", "bytes=0-3"), ("If-Range", "\"stale\"")],
    )
    .await;
    assert_eq!((r.status, r.body.len()), (200, len));
}

#[tokio::test]
async fn traversal_is_refused_on_binaries_and_assets() {
    let svc = start(&[]).await;
    let bad = [
        "/ipxe/../../../../etc/passwd",
        "/ipxe/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/ipxe/..%2f..%2f..%2fetc%2fpasswd",
        "/ipxe/52:54:00:ee:0d:0b/../../etc/passwd",
        "/ipxe/%2fetc%2fpasswd",
        "/ipxe//etc/passwd",
        "/ipxe/..%5c..%5cetc%5cpasswd",
        "/ipxe/leak.efi",
        "/assets/../../../../etc/passwd",
        "/assets/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/assets/..%2f..%2f..%2fetc%2fpasswd",
        "/assets/sub/../../../../etc/passwd",
        "/assets/%2fetc%2fpasswd",
        "/assets//etc/passwd",
        "/assets/leak",
        "/assets/sub",
        "/assets/sub/",
        "/assets/",
        "/assets/%zz",
        "/assets/%00",
    ];
    for path in bad {
        let r = get(svc.addr, path).await;
        assert!(
            matches!(r.status, 400 | 404),
            "{path}: {} {}",
            r.status,
            r.text()
        );
        assert!(!r.text().contains("root:"), "{path} leaked /etc/passwd");
        assert!(
            !r.text().contains("SECRET"),
            "{path} followed a symlink out"
        );
    }
}

#[tokio::test]
async fn assets_with_ranges_and_heads() {
    let svc = start(&[]).await;
    let data = binary_bytes();
    let len = data.len();
    let p = "/assets/vmlinuz-x86_64";
    let r = get(svc.addr, p).await;
    assert_eq!((r.status, r.body == data), (200, true));
    assert_eq!(r.header("content-length"), Some(len.to_string().as_str()));
    assert!(r.header("last-modified").is_some());
    assert_eq!(get(svc.addr, "/assets/sub/file.txt").await.body, b"nested");
    assert_eq!(get(svc.addr, "/assets/missing").await.status, 404);

    let r = request(svc.addr, "GET", p, &[("Range", "bytes=100-199")]).await;
    assert_eq!(r.status, 206);
    assert_eq!(r.body, data[100..200]);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes 100-199/{len}").as_str())
    );
    let r = request(svc.addr, "GET", p, &[("Range", "bytes=-10")]).await;
    assert_eq!((r.status, r.body.as_slice()), (206, &data[len - 10..]));
    let r = request(svc.addr, "GET", p, &[("Range", "bytes=99000-")]).await;
    assert_eq!((r.status, r.body.as_slice()), (206, &data[99000..]));
    let r = request(svc.addr, "GET", p, &[("Range", "bytes=200000-")]).await;
    assert_eq!(r.status, 416);
    let h = request(svc.addr, "HEAD", p, &[]).await;
    assert_eq!(
        (h.status, h.header("content-length")),
        (200, Some(len.to_string().as_str()))
    );
    let h = request(svc.addr, "HEAD", p, &[("Range", "bytes=0-99")]).await;
    assert_eq!((h.status, h.header("content-length")), (206, Some("100")));
}

#[tokio::test]
async fn assets_route_is_absent_without_a_directory() {
    let reg = registry_with_machines().await;
    let (e, t) = (reg.endpoint.clone(), reg.read_token.clone());
    let svc = start_with(Some(reg), &e, &t, &["--no-assets"], true).await;
    assert_eq!(get(svc.addr, "/assets/vmlinuz-x86_64").await.status, 404);
}

#[tokio::test]
async fn metrics_and_health() {
    let svc = start(&[]).await;
    assert_eq!(get(svc.addr, "/healthz").await.status, 200);
    get(svc.addr, &format!("/{MAC}/auto.ipxe")).await;
    get(svc.addr, "/52:54:00:ee:0d:0e/auto.ipxe").await;
    get(svc.addr, "/52:54:00:ee:0d:0c/auto.ipxe").await;
    get(svc.addr, "/ipxe/ipxe.efi").await;
    let m = get(svc.addr, "/metrics").await.text();
    for want in [
        "http_requests_total{route=\"script\",status=\"200\"}",
        "http_requests_total{route=\"script\",status=\"404\"}",
        "http_requests_total{route=\"binary\",status=\"200\"}",
        "ipxe_scripts_rendered_total{kind=\"installer\"}",
        "ipxe_scripts_rendered_total{kind=\"custom_url\"}",
        "http_refused_total{route=\"script\",reason=\"pxe_not_allowed\"}",
        "http_request_duration_seconds",
        "http_connections_active",
    ] {
        assert!(m.contains(want), "{want} missing from /metrics:\n{m}");
    }
    assert_eq!(get(svc.addr, "/nothing/here/at/all").await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_as_a_client() {
    let svc = start(&[]).await;
    let curl = |args: &[&str]| {
        let out = std::process::Command::new("curl")
            .args(["-sS", "--max-time", "10"])
            .args(args)
            .output()
            .expect("curl is needed for this test (Debian package curl)");
        assert!(
            out.status.success(),
            "curl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    let url = format!("http://{}", svc.addr);
    let body = curl(&["-r", "10-19", &format!("{url}/ipxe/ipxe.efi")]);
    assert_eq!(body, binary_bytes()[10..20]);
    let head = String::from_utf8(curl(&["-I", &format!("{url}/ipxe/{MAC}/ipxe.efi")])).unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("content-length: 100000"),
        "{head}"
    );
    let script = String::from_utf8(curl(&[&format!("{url}/{MAC}/auto.ipxe")])).unwrap();
    assert_script(&script);
    // Resume a partial download the way firmware does.
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("part");
    std::fs::write(&f, &binary_bytes()[..1234]).unwrap();
    curl(&[
        "-C",
        "-",
        "-o",
        f.to_str().unwrap(),
        &format!("{url}/assets/vmlinuz-x86_64"),
    ]);
    assert_eq!(std::fs::read(&f).unwrap(), binary_bytes());
}

#[tokio::test]
async fn many_concurrent_clients() {
    let svc = start(&["--max-connections", "8"]).await;
    let mut tasks = Vec::new();
    for i in 0..64 {
        let addr = svc.addr;
        tasks.push(tokio::spawn(async move {
            let path = if i % 2 == 0 {
                format!("/{MAC}/auto.ipxe")
            } else {
                "/ipxe/ipxe.efi".to_string()
            };
            get(addr, &path).await.status
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
}

#[tokio::test]
async fn idle_connections_are_closed() {
    use tokio::io::AsyncReadExt;
    let svc = start(&["--idle-timeout", "1s"]).await;
    let mut s = tokio::net::TcpStream::connect(svc.addr).await.unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("closed by the server")
        .unwrap_or(0);
    assert_eq!(n, 0, "closed without an answer");
    assert!(started.elapsed() >= Duration::from_millis(900));
}

#[tokio::test]
async fn cached_scripts_follow_record_changes_and_traceparents() {
    let svc = start(&[]).await;
    let reg = svc.registry.as_ref().unwrap();
    let doc = |params: &str| {
        format!(
            "apiVersion: ironboot/v1\nkind: Hardware\nname: cached\ninterfaces:\n  - mac: 52:54:00:aa:00:02\n    netboot:\n      osie: {{kernel_params: \"{params}\"}}\n"
        )
    };
    reg.put_yaml(&doc("first=1")).await;
    let path = "/52:54:00:aa:00:02/auto.ipxe";
    let parent = |n: u8| format!("00-{:032x}-00f067aa0ba902b7-01", u128::from(n) + 1);
    for n in 0..3 {
        let r = request(svc.addr, "GET", path, &[("traceparent", &parent(n))]).await;
        assert!(r.text().contains(" first=1 "), "{}", r.text());
        assert!(
            r.text()
                .contains(&format!("traceparent={}", &parent(n)[..36])),
            "request {n} got its own trace:\n{}",
            r.text()
        );
    }
    reg.put_yaml(&doc("second=2")).await;
    let mut seen = String::new();
    for _ in 0..50 {
        seen = get(svc.addr, path).await.text();
        if seen.contains(" second=2 ") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        seen.contains(" second=2 ") && !seen.contains("first=1"),
        "{seen}"
    );
}

#[tokio::test]
async fn templates_that_transform_the_traceparent_are_rendered_per_request() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("installer.ipxe"),
        "#!ipxe\necho trace {{ traceparent[3:35] }}\nexit 1\n",
    )
    .unwrap();
    let svc = start(&["--templates-dir", dir.path().to_str().unwrap()]).await;
    for n in 1..4u128 {
        let trace = format!("{n:032x}");
        let r = request(
            svc.addr,
            "GET",
            &format!("/{MAC}/auto.ipxe"),
            &[("traceparent", &format!("00-{trace}-00f067aa0ba902b7-01"))],
        )
        .await;
        assert_eq!(r.text(), format!("#!ipxe\necho trace {trace}\nexit 1\n"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binaries_go_out_with_sendfile_and_match_with_it_off() {
    let data = binary_bytes();
    for args in [&[][..], &["--zero-copy-max-bytes", "0"][..]] {
        let svc = start(args).await;
        let mut tasks = Vec::new();
        for i in 0..16usize {
            let addr = svc.addr;
            tasks.push(tokio::spawn(async move {
                match i % 3 {
                    0 => get(addr, "/ipxe/ipxe.efi").await.body,
                    1 => {
                        request(
                            addr,
                            "GET",
                            "/ipxe/ipxe.efi",
                            &[("Range", "bytes=12345-67889")],
                        )
                        .await
                        .body
                    }
                    _ => {
                        request(
                            addr,
                            "GET",
                            &format!("/ipxe/{MAC}/ipxe.efi"),
                            &[("Range", "bytes=-777")],
                        )
                        .await
                        .body
                    }
                }
            }));
        }
        for (i, t) in tasks.into_iter().enumerate() {
            let body = t.await.unwrap();
            let want = match i % 3 {
                0 => &data[..],
                1 => &data[12345..67890],
                _ => &data[data.len() - 777..],
            };
            assert!(body == want, "{args:?}: download {i} differs");
        }
        let m = get(svc.addr, "/metrics").await.text();
        if args.is_empty() {
            let sent: f64 = m
                .lines()
                .find(|l| l.starts_with("http_sendfile_bytes_total"))
                .and_then(|l| l.split_whitespace().last())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0);
            assert!(sent >= data.len() as f64, "sendfile was not used:\n{m}");
        }
    }
}
