//! Golden tests: the scripts the built-in templates render, compared byte for byte with
//! `tests/golden/*.ipxe`. A change to a template or to the argument order shows up as
//! a diff a reviewer reads. To accept a deliberate change:
//! `IHS_UPDATE_GOLDEN=1 cargo test -p ipxe-http-svc --test golden`, then review the diff.

use std::path::PathBuf;

use bootfiles::TraceParent;
use ipxe_http_svc::Templates;
use ipxe_http_svc::script::{InstallerDefaults, RequestFacts, Script, choose};
use ironboot_proto::MacAddr;
use ironboot_proto::pb::{Dhcp, Hardware, Interface, Ipxe, Netboot, Osie};

const MAC: MacAddr = MacAddr([0x52, 0x54, 0x00, 0xee, 0x0d, 0x0b]);

fn traceparent() -> TraceParent {
    TraceParent::from_header("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        .expect("traceparent")
}

fn defaults() -> InstallerDefaults {
    InstallerDefaults {
        osie_url: String::new(),
        syslog_host: None,
        grpc_authority: None,
        tinkerbell_tls: false,
        tinkerbell_insecure_tls: false,
        consoles: vec!["tty0".into(), "ttyS0,115200".into()],
        extra_args: vec![],
        retries: 10,
        retry_delay_secs: 2,
    }
}

fn machine(dhcp: Dhcp, netboot: Option<Netboot>) -> Hardware {
    Hardware {
        id: "5b0c2d4e-0000-4000-8000-000000000001".into(),
        name: "machine1".into(),
        facility: "lab1".into(),
        interfaces: vec![Interface {
            mac: MAC.to_string(),
            dhcp: Some(dhcp),
            netboot,
        }],
        ..Default::default()
    }
}

fn x86() -> Dhcp {
    Dhcp {
        ip: "10.42.0.10".into(),
        netmask: "255.255.255.0".into(),
        arch: "x86_64".into(),
        ..Default::default()
    }
}

fn render(hw: &Hardware, d: &InstallerDefaults) -> (String, &'static str) {
    let t = Templates::load(None).expect("built-in templates");
    let s = choose(
        hw,
        MAC,
        d,
        &RequestFacts {
            authority: "10.42.0.1:8080",
            traceparent: traceparent(),
        },
    );
    let kind = s.kind();
    let out = match s {
        Script::Contents(c) => c,
        Script::Chain(v) => t.chain(&v).expect("chain renders"),
        Script::Installer(v) => t.installer(&v).expect("installer renders"),
    };
    (out, kind)
}

fn check(name: &str, hw: Hardware, d: InstallerDefaults, kind: &str) {
    let (got, got_kind) = render(&hw, &d);
    assert_eq!(got_kind, kind, "{name}");
    assert!(got.starts_with("#!ipxe\n"), "{name}: not an iPXE script");
    for marker in ["{{", "}}", "{%", "%}", "{#", "#}"] {
        assert!(!got.contains(marker), "{name}: unresolved {marker:?}");
    }
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.ipxe"));
    if std::env::var_os("IHS_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &got).expect("write golden file");
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (IHS_UPDATE_GOLDEN=1 creates it)", path.display()));
    if got != want {
        panic!(
            "{name}: rendered script differs from {}\n--- want\n{want}\n--- got\n{got}",
            path.display()
        );
    }
}

#[test]
fn default_installer() {
    check("default", machine(x86(), None), defaults(), "installer");
}

#[test]
fn custom_url() {
    let nb = Netboot {
        ipxe: Some(Ipxe {
            url: "http://scripts.example/custom.ipxe".into(),
            contents: String::new(),
        }),
        ..Default::default()
    };
    check(
        "custom-url",
        machine(x86(), Some(nb)),
        defaults(),
        "custom_url",
    );
}

#[test]
fn custom_contents() {
    let contents = "#!ipxe\n# operator's own script, served byte for byte\necho hello {{ not a template }}\nshell\n";
    let nb = Netboot {
        ipxe: Some(Ipxe {
            url: String::new(),
            contents: contents.into(),
        }),
        ..Default::default()
    };
    let (got, kind) = render(&machine(x86(), Some(nb)), &defaults());
    assert_eq!(kind, "custom_contents");
    assert_eq!(got, contents, "contents are served as is, never templated");
}

#[test]
fn aarch64() {
    let dhcp = Dhcp {
        arch: "aarch64".into(),
        ..x86()
    };
    check("aarch64", machine(dhcp, None), defaults(), "installer");
}

#[test]
fn vlan() {
    let dhcp = Dhcp {
        vlan_id: 42,
        ..x86()
    };
    check("vlan", machine(dhcp, None), defaults(), "installer");
}

#[test]
fn extra_args_and_service_settings() {
    let d = InstallerDefaults {
        osie_url: "https://osie.example/hook/v0.10".into(),
        syslog_host: Some("syslog.example".into()),
        grpc_authority: Some("tink.example:42113".into()),
        tinkerbell_tls: true,
        tinkerbell_insecure_tls: true,
        consoles: vec!["ttyS1,115200".into()],
        extra_args: vec![
            "tink_worker_image=quay.io/tinkerbell/tink-worker:v0.10".into(),
            "quiet".into(),
        ],
        retries: 3,
        retry_delay_secs: 5,
    };
    check("extra-args", machine(x86(), None), d, "installer");
}

#[test]
fn per_hardware_kernel_params() {
    let nb = Netboot {
        osie: Some(Osie {
            base_url: "http://mirror.example/hook/".into(),
            kernel: "vmlinuz-custom".into(),
            initrd: "http://other.example/initrd.img".into(),
            kernel_params: "console=ttyS1,115200 hook_debug=1".into(),
        }),
        ..Default::default()
    };
    let d = InstallerDefaults {
        extra_args: vec!["quiet".into()],
        ..defaults()
    };
    check("kernel-params", machine(x86(), Some(nb)), d, "installer");
}

#[test]
fn refusal_body() {
    let t = Templates::load(None).expect("templates");
    assert_eq!(
        t.refused(404, "no machine with MAC 52:54:00:ee:0d:0b is registered"),
        "#!ipxe\necho ironboot: no machine with MAC 52:54:00:ee:0d:0b is registered\nexit 1\n"
    );
}

/// The template files shipped for operators are the ones compiled in.
#[test]
fn shipped_templates_are_the_builtins() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("templates");
    for (name, builtin) in ipxe_http_svc::templates::BUILTIN {
        let shipped = std::fs::read_to_string(dir.join(name)).expect("shipped template");
        assert_eq!(shipped, builtin, "{name}");
    }
    let t = Templates::load(Some(&dir)).expect("the shipped directory works as --templates-dir");
    assert!(t.ignored.is_empty());
}
