//! The registry as operators and boot services meet it: the real binaries on loopback.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{READ_TOKEN, Registry, WRITE_TOKEN, eventually, machine_yaml};
use ironboot_proto::MacAddr;
use ironboot_proto::cache::{CacheConfig, HardwareCache};
use ironboot_proto::pb::{
    CreateHardwareRequest, Dhcp, EventType, GetHardwareRequest, Hardware, Interface,
    ListHardwareRequest, WatchHardwareRequest, get_hardware_request,
};
use tonic::Code;

fn hw(name: &str, mac: &str) -> Hardware {
    Hardware {
        name: name.into(),
        interfaces: vec![Interface {
            mac: mac.into(),
            dhcp: None,
            netboot: None,
        }],
        ..Default::default()
    }
}

fn create_req(h: Hardware) -> CreateHardwareRequest {
    CreateHardwareRequest {
        hardware: Some(h),
        validate_only: false,
    }
}

fn by_name(n: &str) -> GetHardwareRequest {
    GetHardwareRequest {
        key: Some(get_hardware_request::Key::Name(n.into())),
    }
}

async fn count(r: &Registry) -> usize {
    let mut c = r.client(Some(READ_TOKEN)).await;
    c.list_hardware(ListHardwareRequest::default())
        .await
        .unwrap()
        .into_inner()
        .hardware
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crud_through_hwctl() {
    let r = Registry::start();
    let yaml = machine_yaml("machine1", "52-54-00-EE-0D-0B", "10.0.0.10");
    assert_eq!(
        r.hwctl_stdin(&["apply", "-f", "-"], &yaml).ok(),
        "hardware/machine1 created\n"
    );
    assert_eq!(
        r.hwctl_stdin(&["apply", "-f", "-"], &yaml).ok(),
        "hardware/machine1 unchanged\n"
    );

    // Found by name, by any spelling of its MAC and by IP; stored in canonical form.
    for key in [
        "machine1",
        "52:54:00:ee:0d:0b",
        "5254.00ee.0d0b",
        "10.0.0.10",
    ] {
        let out = r.hwctl(&["get", key, "-o", "json"]).ok();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["name"], "machine1", "{key}");
        assert_eq!(v["interfaces"][0]["mac"], "52:54:00:ee:0d:0b");
        assert_eq!(v["revision"], 1);
    }

    // Update: new IP, label; the revision moves and the old IP no longer finds it.
    let changed = yaml.replace("10.0.0.10", "10.0.0.11").replacen(
        "name: machine1\n",
        "name: machine1\nlabels: {rack: r1}\n",
        1,
    );
    assert_eq!(
        r.hwctl_stdin(&["apply", "-f", "-"], &changed).ok(),
        "hardware/machine1 configured\n"
    );
    assert!(
        r.hwctl(&["get", "10.0.0.10"])
            .fails()
            .contains("no hardware with IP 10.0.0.10")
    );
    let v: serde_json::Value =
        serde_json::from_str(&r.hwctl(&["get", "10.0.0.11", "-o", "json"]).ok()).unwrap();
    assert_eq!(v["revision"], 2);
    assert_eq!(v["labels"]["rack"], "r1");

    let table = r.hwctl(&["list"]).ok();
    assert!(table.starts_with("NAME "), "{table}");
    assert!(
        table.contains("machine1") && table.contains("10.0.0.11"),
        "{table}"
    );
    assert!(
        !r.hwctl(&["list", "-l", "rack=r2"])
            .ok()
            .contains("machine1")
    );
    assert!(
        r.hwctl(&["list", "-l", "rack=r1", "-o", "yaml"])
            .ok()
            .contains("name: machine1")
    );

    assert_eq!(
        r.hwctl(&["delete", "machine1"]).ok(),
        "hardware/machine1 deleted\n"
    );
    assert!(
        r.hwctl(&["get", "machine1"])
            .fails()
            .contains("no hardware named \"machine1\"")
    );
    assert!(
        r.hwctl(&["delete", "machine1"])
            .fails()
            .contains("no hardware named")
    );
    r.hwctl(&["delete", "machine1", "--ignore-not-found"]).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicts_name_the_record_holding_the_mac_or_ip() {
    let r = Registry::start();
    r.hwctl_stdin(
        &["apply", "-f", "-"],
        &machine_yaml("machine1", "52:54:00:ee:0d:0b", "10.0.0.10"),
    )
    .ok();

    let err = r
        .hwctl_stdin(
            &["apply", "-f", "-"],
            &machine_yaml("machine2", "52:54:00:EE:0D:0B", "10.0.0.20"),
        )
        .fails();
    assert!(
        err.contains(r#"MAC 52:54:00:ee:0d:0b is already used by hardware "machine1""#),
        "{err}"
    );
    let err = r
        .hwctl_stdin(
            &["apply", "-f", "-"],
            &machine_yaml("machine2", "52:54:00:ee:0d:0c", "10.0.0.10"),
        )
        .fails();
    assert!(
        err.contains(r#"IP 10.0.0.10 is already used by hardware "machine1""#),
        "{err}"
    );

    // The gRPC code is ALREADY_EXISTS.
    let mut c = r.client(Some(WRITE_TOKEN)).await;
    let st = c
        .create_hardware(create_req(hw("machine3", "52:54:00:ee:0d:0b")))
        .await
        .unwrap_err();
    assert_eq!(st.code(), Code::AlreadyExists);
    let st = c
        .create_hardware(create_req(hw("machine1", "52:54:00:ee:0d:0d")))
        .await
        .unwrap_err();
    assert_eq!(st.code(), Code::AlreadyExists);
    assert_eq!(count(&r).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_of_one_mac_have_exactly_one_winner() {
    let r = Registry::start();
    let client = r.client(Some(WRITE_TOKEN)).await;
    let mut tasks = Vec::new();
    for i in 0..32 {
        let mut c = client.clone();
        tasks.push(tokio::spawn(async move {
            c.create_hardware(create_req(hw(&format!("racer{i}"), "52:54:00:aa:bb:cc")))
                .await
        }));
    }
    let mut wins = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => wins += 1,
            Err(s) => assert_eq!(s.code(), Code::AlreadyExists, "{s:?}"),
        }
    }
    assert_eq!(wins, 1);
    assert_eq!(count(&r).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_is_ordered_resumable_and_says_when_it_cannot_resume() {
    let r = Registry::start_with(&["--event-retention", "5"]);
    let mut c = r.client(Some(WRITE_TOKEN)).await;
    for i in 1..=3 {
        c.create_hardware(create_req(hw(
            &format!("m{i}"),
            &format!("52:54:00:00:00:0{i}"),
        )))
        .await
        .unwrap();
    }
    // From the start: ADDED 1, 2, 3 in order, then a bookmark at 3.
    let mut s = c
        .watch_hardware(WatchHardwareRequest {
            since_revision: Some(0),
            store_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut seen = Vec::new();
    for _ in 0..4 {
        let ev = s.message().await.unwrap().unwrap();
        seen.push((EventType::try_from(ev.r#type).unwrap(), ev.revision));
    }
    assert_eq!(
        seen,
        vec![
            (EventType::Added, 1),
            (EventType::Added, 2),
            (EventType::Added, 3),
            (EventType::Bookmark, 3)
        ]
    );
    // Live events follow in order.
    c.delete_hardware(ironboot_proto::pb::DeleteHardwareRequest {
        key: Some(ironboot_proto::pb::delete_hardware_request::Key::Name(
            "m2".into(),
        )),
        expected_revision: 0,
    })
    .await
    .unwrap();
    let ev = loop {
        let ev = s.message().await.unwrap().unwrap();
        if ev.r#type != EventType::Bookmark as i32 {
            break ev;
        }
    };
    assert_eq!(
        (ev.r#type, ev.revision, ev.hardware.unwrap().name),
        (EventType::Deleted as i32, 4, "m2".to_string())
    );

    // Resume after 2: exactly 3 and 4.
    let mut s = c
        .watch_hardware(WatchHardwareRequest {
            since_revision: Some(2),
            store_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.message().await.unwrap().unwrap().revision, 3);
    assert_eq!(s.message().await.unwrap().unwrap().revision, 4);

    // Push the log past retention (5): revision 0 can no longer be resumed.
    for i in 4..=8 {
        c.create_hardware(create_req(hw(
            &format!("m{i}"),
            &format!("52:54:00:00:00:0{i}"),
        )))
        .await
        .unwrap();
    }
    let st = c
        .watch_hardware(WatchHardwareRequest {
            since_revision: Some(0),
            store_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(st.code(), Code::OutOfRange, "{st:?}");
    let st = c
        .watch_hardware(WatchHardwareRequest {
            since_revision: Some(999),
            store_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(st.code(), Code::OutOfRange);
    let st = c
        .watch_hardware(WatchHardwareRequest {
            since_revision: Some(1),
            store_id: "another-store".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(st.code(), Code::OutOfRange);

    // hwctl watch prints the retained history, one line per change.
    let lines = r.hwctl_watch(&["watch", "--since", "6"], 2);
    assert_eq!(
        lines,
        vec![
            "7 ADDED m6 52:54:00:00:00:06",
            "8 ADDED m7 52:54:00:00:00:07"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_follows_changes_and_resyncs_after_registry_restarts() {
    let mut r = Registry::start();
    let mut c = r.client(Some(WRITE_TOKEN)).await;
    for i in 1..=3 {
        c.create_hardware(create_req(hw(
            &format!("m{i}"),
            &format!("52:54:00:00:00:0{i}"),
        )))
        .await
        .unwrap();
    }
    let config = CacheConfig {
        backoff_min: Duration::from_millis(50),
        backoff_max: Duration::from_millis(400),
        ..Default::default()
    };
    let cache = HardwareCache::start(r.args(Some(READ_TOKEN)).connect_lazy().unwrap(), config);
    tokio::time::timeout(Duration::from_secs(10), cache.wait_synced())
        .await
        .expect("synced");
    assert_eq!(cache.len(), 3);
    let m1 = MacAddr::parse("52:54:00:00:00:01").unwrap();
    assert_eq!(cache.by_mac(&m1).unwrap().name, "m1");

    // A change arrives through the watch.
    c.create_hardware(create_req(hw("m4", "52:54:00:00:00:04")))
        .await
        .unwrap();
    let m4 = MacAddr::parse("52:54:00:00:00:04").unwrap();
    assert!(eventually(Duration::from_secs(5), || cache.by_mac(&m4).is_some()).await);

    // Registry killed: the cache keeps answering from memory.
    r.kill9();
    assert!(eventually(Duration::from_secs(5), || !cache.status().connected).await);
    assert_eq!(cache.by_mac(&m1).unwrap().name, "m1");

    // Same store back: the cache reconnects, resumes, and sees new changes.
    r.restart();
    let mut c = r.client(Some(WRITE_TOKEN)).await;
    c.create_hardware(create_req(hw("m5", "52:54:00:00:00:05")))
        .await
        .unwrap();
    let m5 = MacAddr::parse("52:54:00:00:00:05").unwrap();
    assert!(
        eventually(Duration::from_secs(10), || cache.by_mac(&m5).is_some()).await,
        "cache missed m5 after restart"
    );
    assert_eq!(cache.len(), 5);
    assert!(cache.status().connected);

    // A different, empty store at the same address: the cache must list again and
    // forget records that no longer exist.
    let relists = cache.status().relists;
    r.kill9();
    let fresh = tempfile::tempdir().unwrap();
    r.data_dir = fresh.path().to_path_buf();
    r.restart();
    let mut c = r.client(Some(WRITE_TOKEN)).await;
    c.create_hardware(create_req(hw("n1", "52:54:00:00:01:01")))
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(10), || cache.status().relists > relists
            && cache.len() == 1)
        .await,
        "cache did not relist: {:?}",
        cache.status()
    );
    assert!(cache.by_mac(&m1).is_none());
    assert_eq!(
        cache
            .by_mac(&MacAddr::parse("52:54:00:00:01:01").unwrap())
            .unwrap()
            .name,
        "n1"
    );
    cache.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_miss_falls_back_to_one_lookup() {
    let r = Registry::start();
    let cache = HardwareCache::start(
        r.args(Some(READ_TOKEN)).connect_lazy().unwrap(),
        CacheConfig::default(),
    );
    tokio::time::timeout(Duration::from_secs(10), cache.wait_synced())
        .await
        .unwrap();
    cache.stop(); // no watch: only the fallback can find new records now
    let mut c = r.client(Some(WRITE_TOKEN)).await;
    let mut h = hw("late", "52:54:00:00:00:77");
    h.interfaces[0].dhcp = Some(Dhcp {
        ip: "10.0.0.77".into(),
        netmask: "255.255.255.0".into(),
        ..Default::default()
    });
    c.create_hardware(create_req(h)).await.unwrap();
    let mac = MacAddr::parse("52:54:00:00:00:77").unwrap();
    assert!(cache.by_mac(&mac).is_none());
    assert_eq!(
        cache.by_mac_or_fetch(mac).await.unwrap().unwrap().name,
        "late"
    );
    assert!(cache.by_mac(&mac).is_some(), "the fetched record is cached");
    assert_eq!(
        cache
            .by_ip_or_fetch("10.0.0.77".parse().unwrap())
            .await
            .unwrap()
            .unwrap()
            .name,
        "late"
    );
    assert!(
        cache
            .by_mac_or_fetch(MacAddr::parse("52:54:00:00:00:78").unwrap())
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_roles() {
    let r = Registry::start();
    let mut anon = r.client(None).await;
    let st = anon
        .list_hardware(ListHardwareRequest::default())
        .await
        .unwrap_err();
    assert_eq!(st.code(), Code::Unauthenticated);
    let mut wrong = r.client(Some("not-a-real-token-at-all")).await;
    assert_eq!(
        wrong.get_hardware(by_name("x")).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    let mut reader = r.client(Some(READ_TOKEN)).await;
    assert_eq!(
        reader.get_hardware(by_name("x")).await.unwrap_err().code(),
        Code::NotFound
    );
    let st = reader
        .create_hardware(create_req(hw("x", "52:54:00:00:00:01")))
        .await
        .unwrap_err();
    assert_eq!(st.code(), Code::PermissionDenied);
    assert_eq!(count(&r).await, 0);

    let err = r.hwctl_as(None, &["list"], None).fails();
    assert!(err.contains("not authenticated"), "{err}");
    let err = r.hwctl_as(Some(READ_TOKEN), &["delete", "x"], None).fails();
    assert!(err.contains("permission denied"), "{err}");

    // Health and reflection need no token (probes and grpcurl discovery).
    let channel = tonic::transport::Endpoint::from_shared(r.endpoint())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let resp = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "hardware.v1.HardwareService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        resp.status(),
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );
    assert_eq!(r.hwctl_as(None, &["health"], None).ok(), "serving\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() {
    let mut r = Registry::start();
    let client = r.client(Some(WRITE_TOKEN)).await;
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut tasks = Vec::new();
    for t in 0..8u32 {
        let mut c = client.clone();
        let acked = acked.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..10_000u32 {
                let n = t * 10_000 + i;
                let name = format!("d{n}");
                let mac = format!(
                    "02:00:00:{:02x}:{:02x}:{:02x}",
                    (n >> 16) & 0xff,
                    (n >> 8) & 0xff,
                    n & 0xff
                );
                match c.create_hardware(create_req(hw(&name, &mac))).await {
                    Ok(_) => acked.lock().unwrap().push(name),
                    Err(_) => return,
                }
            }
        }));
    }
    // Let writes flow, then cut the process down mid-stream.
    assert!(
        eventually(Duration::from_secs(20), || acked.lock().unwrap().len()
            >= 300)
        .await
    );
    r.kill9();
    for t in tasks {
        let _ = t.await;
    }
    let acked = acked.lock().unwrap().clone();
    r.restart();
    let mut c = r.client(Some(READ_TOKEN)).await;
    let mut stored = HashSet::new();
    let mut token = String::new();
    loop {
        let page = c
            .list_hardware(ListHardwareRequest {
                page_size: 5000,
                page_token: token,
                label_selector: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        stored.extend(page.hardware.into_iter().map(|h| h.name));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let missing: Vec<_> = acked.iter().filter(|n| !stored.contains(*n)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged writes lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    eprintln!(
        "{} acknowledged before kill -9, {} stored after restart",
        acked.len(),
        stored.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tinkerbell_hardware_yaml_imports_and_reapplies_unchanged() {
    let r = Registry::start();
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/tinkerbell-hardware.yaml"
    );
    let out = r.hwctl(&["apply", "-f", path]).ok();
    assert_eq!(out, "hardware/sm01 created\nhardware/arm01 created\n");
    let v: serde_json::Value =
        serde_json::from_str(&r.hwctl(&["get", "3c:ec:ef:4c:4f:55", "-o", "json"]).ok()).unwrap();
    assert_eq!(v["name"], "sm01");
    assert_eq!(v["facility"], "fra2");
    assert_eq!(v["labels"]["rack"], "r12");
    let i0 = &v["interfaces"][0];
    assert_eq!(i0["mac"], "3c:ec:ef:4c:4f:54");
    assert_eq!(i0["dhcp"]["ip"], "172.16.10.100");
    assert_eq!(i0["dhcp"]["gateway"], "172.16.10.1");
    assert_eq!(i0["dhcp"]["vlan_id"], 100);
    assert_eq!(i0["dhcp"]["lease_time"], 86400);
    assert_eq!(
        i0["dhcp"]["name_servers"],
        serde_json::json!(["172.16.10.1", "10.1.1.11"])
    );
    assert_eq!(i0["dhcp"]["iface_name"], "eno1");
    assert_eq!(i0["dhcp"]["uefi"], true);
    assert_eq!(i0["netboot"]["allow_pxe"], true);
    assert_eq!(
        i0["netboot"]["osie"]["base_url"],
        "http://172.16.10.2:8080/hook"
    );
    let i1 = &v["interfaces"][1];
    assert_eq!(i1["netboot"]["allow_pxe"], false);
    assert!(
        i1["dhcp"].get("ip").is_none(),
        "disableDhcp keeps no address: {i1}"
    );

    let arm: serde_json::Value =
        serde_json::from_str(&r.hwctl(&["get", "172.16.10.101", "-o", "json"]).ok()).unwrap();
    assert_eq!(arm["interfaces"][0]["mac"], "b8:27:eb:11:22:33");
    assert_eq!(arm["interfaces"][0]["dhcp"]["arch"], "aarch64");
    assert_eq!(
        arm["interfaces"][0]["netboot"]["ipxe"]["url"],
        "http://172.16.10.2:8080/custom/arm01.ipxe"
    );
    assert_eq!(arm["interfaces"][0]["netboot"]["allow_workflow"], false);

    let again = r.hwctl(&["apply", "-f", path]);
    assert_eq!(
        again.ok(),
        "hardware/sm01 unchanged\nhardware/arm01 unchanged\n"
    );
    assert!(
        again
            .stderr()
            .contains("ignored Tinkerbell spec fields: bmcRef, disks, userData"),
        "{}",
        again.stderr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_explained_and_stores_nothing() {
    let r = Registry::start();
    let cases: &[(&str, &str)] = &[
        (
            &machine_yaml("m1", "52:54:00:ee:0d", "10.0.0.10"),
            r#"interfaces[0].mac "52:54:00:ee:0d": not a MAC address"#,
        ),
        (
            &machine_yaml("m1", "52:54:00:ee:0d:0b", "10.0.0.300"),
            r#"interfaces[0].dhcp.ip "10.0.0.300": not an IPv4 address"#,
        ),
        (
            &machine_yaml("m1", "52:54:00:ee:0d:0b", "10.0.1.10"),
            r#"interfaces[0].dhcp.gateway "10.0.0.1": not inside the interface's subnet 10.0.1.0/24"#,
        ),
        (
            "name: m1\ninterfaces: [ {mac: 52:54:00:ee:0d:0b\n",
            "did not find expected",
        ),
        (
            "name: m1\ninterfaces:\n  - mac: 52:54:00:ee:0d:0b\n    dhcp: {ipaddr: 10.0.0.1}\n",
            "unknown field `ipaddr`",
        ),
        (
            "name: Machine_1\ninterfaces:\n  - mac: 52:54:00:ee:0d:0b\n",
            r#"name "Machine_1""#,
        ),
        (
            "apiVersion: example.com/v9\nname: m1\n",
            "unknown apiVersion",
        ),
    ];
    for (yaml, want) in cases {
        let err = r.hwctl_stdin(&["apply", "-f", "-"], yaml).fails();
        assert!(
            err.contains(want),
            "for input:\n{yaml}\nwanted {want:?} in: {err}"
        );
    }
    // One good document followed by a bad one: the good one is not written either.
    let two = format!(
        "{}---\n{}",
        machine_yaml("good", "52:54:00:ee:0d:01", "10.0.0.11"),
        machine_yaml("bad", "zz", "10.0.0.12")
    );
    let err = r.hwctl_stdin(&["apply", "-f", "-"], &two).fails();
    assert!(err.contains(r#"hardware "bad""#), "{err}");
    assert_eq!(count(&r).await, 0);

    // The raw API names the field too.
    let mut c = r.client(Some(WRITE_TOKEN)).await;
    let st = c
        .create_hardware(create_req(hw("m1", "not-a-mac")))
        .await
        .unwrap_err();
    assert_eq!(st.code(), Code::InvalidArgument);
    assert!(
        st.message().contains("interfaces[0].mac"),
        "{}",
        st.message()
    );
    let st = c
        .get_hardware(GetHardwareRequest {
            key: Some(get_hardware_request::Key::Ip("10.0.0.256".into())),
        })
        .await
        .unwrap_err();
    assert_eq!(st.code(), Code::InvalidArgument);
    assert_eq!(count(&r).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_watch_streams_and_exits_cleanly() {
    let mut r = Registry::start();
    let mut c = r.client(Some(READ_TOKEN)).await;
    let mut s = c
        .watch_hardware(WatchHardwareRequest {
            since_revision: None,
            store_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        s.message().await.unwrap().unwrap().r#type,
        EventType::Bookmark as i32
    );
    let (status, took) = r.terminate();
    assert!(status.success(), "exit status {status:?}");
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
    // The open watch stream must end (not hang) once the registry is gone.
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while let Ok(Some(_)) = s.message().await {}
    })
    .await;
    assert!(ended.is_ok(), "the watch stream did not end after SIGTERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_example_applies() {
    let r = Registry::start();
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/examples/hardware.yaml"
    );
    assert_eq!(
        r.hwctl(&["apply", "-f", path]).ok(),
        "hardware/machine1 created\nhardware/machine2 created\n"
    );
    let table = r.hwctl(&["list"]).ok();
    assert!(
        table.contains("denied"),
        "machine2 has allow_pxe false: {table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_lists_the_service_without_a_token() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let r = Registry::start();
    let channel = tonic::transport::Endpoint::from_shared(r.endpoint())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut c = ServerReflectionClient::new(channel);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = c
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .unwrap()
        .into_inner();
    let resp = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = resp.message_response else {
        panic!("unexpected {resp:?}")
    };
    let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"hardware.v1.HardwareService".to_string()),
        "{names:?}"
    );
    assert!(
        names.contains(&"grpc.health.v1.Health".to_string()),
        "{names:?}"
    );
}

/// A registry that accepts connections and never answers: the first miss waits for the
/// lookup timeout, the misses right after it are answered at once (not each another
/// timeout), and once the pause is over the cache asks again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_registry_costs_one_lookup_timeout_not_one_per_miss() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", silent.local_addr().unwrap());
    let config = CacheConfig {
        lookup_timeout: Duration::from_millis(300),
        unreachable_pause: Duration::from_millis(800),
        backoff_min: Duration::from_secs(5),
        ..Default::default()
    };
    let args = ironboot_proto::client::RegistryArgs::new(endpoint, Some(READ_TOKEN.to_string()));
    let cache = HardwareCache::start(args.connect_lazy().unwrap(), config);
    let mac = MacAddr::parse("52:54:00:00:09:01").unwrap();
    let timed = |cache: HardwareCache| async move {
        let t = std::time::Instant::now();
        let r = cache.by_mac_or_fetch(mac).await;
        (r, t.elapsed())
    };

    let (first, waited) = timed(cache.clone()).await;
    assert!(
        first.is_err(),
        "an unsynced cache must say it does not know: {first:?}"
    );
    assert!(
        waited >= Duration::from_millis(250),
        "the first miss asks the registry ({waited:?})"
    );
    for _ in 0..5 {
        let (r, waited) = timed(cache.clone()).await;
        assert!(r.is_err(), "{r:?}");
        assert!(
            waited < Duration::from_millis(100),
            "a miss during the pause waited {waited:?}"
        );
    }
    tokio::time::sleep(Duration::from_millis(900)).await;
    let (_, waited) = timed(cache.clone()).await;
    assert!(
        waited >= Duration::from_millis(250),
        "after the pause the registry is asked again ({waited:?})"
    );
    drop(silent);
}
