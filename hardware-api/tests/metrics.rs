//! The registry's `/metrics` after a known sequence of calls, counters asserted exactly.
//! One test in its own binary against the real `hardware-api` binary: nothing else
//! calls this registry, so every count is ours.

mod common;

use common::{READ_TOKEN, Registry, WRITE_TOKEN};
use ironboot_proto::pb::{
    CreateHardwareRequest, Dhcp, GetHardwareRequest, Hardware, Interface, ListHardwareRequest,
    get_hardware_request,
};
use ironboot_testkit::http_get;
use ironboot_testkit::metrics::scrape;
use tonic::Code;

fn machine(name: &str, mac: &str, ip: &str) -> Hardware {
    Hardware {
        name: name.into(),
        interfaces: vec![Interface {
            mac: mac.into(),
            dhcp: Some(Dhcp {
                ip: ip.into(),
                netmask: "255.255.255.0".into(),
                gateway: "10.0.0.1".into(),
                ..Default::default()
            }),
            netboot: None,
        }],
        ..Default::default()
    }
}

fn by_mac(mac: &str) -> GetHardwareRequest {
    GetHardwareRequest {
        key: Some(get_hardware_request::Key::Mac(mac.into())),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpcs_by_method_and_code_and_store_size() {
    let reg = Registry::start();
    let admin = reg.admin_addr();
    let (status, body) = http_get(admin, "/healthz").unwrap();
    assert_eq!((status, body.trim()), (200, "ok"));

    // Before any call: every series is there at zero, and every family is described.
    let m = scrape(admin);
    assert_eq!(
        m.value(
            "registry_rpcs_total",
            &[("method", "GetHardware"), ("code", "OK")]
        ),
        0.0
    );
    assert_eq!(m.value("registry_store_records", &[]), 0.0);
    assert!(
        m.undescribed().is_empty(),
        "metrics without # HELP: {:?}",
        m.undescribed()
    );

    let mut w = reg.client(Some(WRITE_TOKEN)).await;
    for (n, mac, ip) in [
        ("m1", "52:54:00:00:10:01", "10.0.0.11"),
        ("m2", "52:54:00:00:10:02", "10.0.0.12"),
    ] {
        w.create_hardware(CreateHardwareRequest {
            hardware: Some(machine(n, mac, ip)),
            validate_only: false,
        })
        .await
        .expect("create");
    }
    let dup = w
        .create_hardware(CreateHardwareRequest {
            hardware: Some(machine("m3", "52:54:00:00:10:01", "10.0.0.13")),
            validate_only: false,
        })
        .await;
    assert_eq!(dup.unwrap_err().code(), Code::AlreadyExists);

    let mut r = reg.client(Some(READ_TOKEN)).await;
    for mac in [
        "52:54:00:00:10:01",
        "52-54-00-00-10-02",
        "52:54:00:00:10:01",
    ] {
        r.get_hardware(by_mac(mac)).await.expect("get");
    }
    assert_eq!(
        r.get_hardware(by_mac("52:54:00:00:10:99"))
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    r.list_hardware(ListHardwareRequest::default())
        .await
        .expect("list");
    // A read token may not write; no token at all is refused outright.
    let denied = r
        .create_hardware(CreateHardwareRequest {
            hardware: Some(machine("m4", "52:54:00:00:10:04", "10.0.0.14")),
            validate_only: false,
        })
        .await;
    assert_eq!(denied.unwrap_err().code(), Code::PermissionDenied);
    let mut anon = reg.client(None).await;
    assert_eq!(
        anon.get_hardware(by_mac("52:54:00:00:10:01"))
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );

    let m = scrape(admin);
    let rpcs = |method: &str, code: &str| {
        m.value("registry_rpcs_total", &[("method", method), ("code", code)])
    };
    assert_eq!(rpcs("CreateHardware", "OK"), 2.0);
    assert_eq!(rpcs("CreateHardware", "ALREADY_EXISTS"), 1.0);
    assert_eq!(rpcs("CreateHardware", "PERMISSION_DENIED"), 1.0);
    assert_eq!(rpcs("GetHardware", "OK"), 3.0);
    assert_eq!(rpcs("GetHardware", "NOT_FOUND"), 1.0);
    assert_eq!(rpcs("GetHardware", "UNAUTHENTICATED"), 1.0);
    assert_eq!(rpcs("ListHardware", "OK"), 1.0);
    assert_eq!(
        m.sum("registry_rpcs_total", &[]),
        10.0,
        "no other call was counted"
    );
    assert_eq!(
        m.value(
            "registry_rpc_duration_seconds_count",
            &[("method", "GetHardware")]
        ),
        5.0
    );
    assert_eq!(m.value("registry_store_records", &[]), 2.0);
    assert_eq!(m.value("registry_store_revision", &[]), 2.0);
    // Labels name methods and codes only: never a MAC, name or address.
    for s in &m.samples {
        for v in s.labels.values() {
            assert!(
                !v.contains("52:54") && !v.contains("10.0.0") && !v.starts_with('m'),
                "per-machine label value {v:?} in {}",
                s.name
            );
        }
    }
}
