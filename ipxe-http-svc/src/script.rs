//! Which script a machine gets, and every value that goes into it. Pure: a hardware
//! record, the service's settings and a few request facts in; a [`Script`] out.
//!
//! The order of precedence follows Tinkerbell so its hardware records behave the same
//! here: `netboot.ipxe.contents` (served as is) over `netboot.ipxe.url` (chained) over
//! the installer. Installer values come from the record first (`netboot.osie.*`), then
//! from the service's flags, then from how the client reached us — a lab with no
//! configuration boots the kernel and initrd from this service's own `/assets/`.
//!
//! Values from the registry are validated there, but a script is code the firmware
//! runs: everything interpolated here is reduced to single tokens (no whitespace, no
//! control characters), so no record can add lines to a script.

use bootfiles::TraceParent;
use ironboot_proto::MacAddr;
use ironboot_proto::pb::{Hardware, Interface};

/// tink-server's default gRPC port, used when `--grpc-authority` is not given.
pub const DEFAULT_TINK_GRPC_PORT: u16 = 42113;

/// The service-wide installer settings (from flags).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InstallerDefaults {
    /// OSIE base URL; empty means this service's `/assets` as the client reached it.
    pub osie_url: String,
    pub syslog_host: Option<String>,
    pub grpc_authority: Option<String>,
    pub tinkerbell_tls: bool,
    pub tinkerbell_insecure_tls: bool,
    pub consoles: Vec<String>,
    pub extra_args: Vec<String>,
    pub retries: u32,
    pub retry_delay_secs: u64,
}

/// Facts about the request a script depends on.
#[derive(Clone, Copy, Debug)]
pub struct RequestFacts<'a> {
    /// The authority the client used (`Host` header, already checked), e.g. `10.0.0.1:8080`.
    pub authority: &'a str,
    pub traceparent: TraceParent,
}

/// Everything the installer template sees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstallerVars {
    pub machine: String,
    pub mac: String,
    pub arch: String,
    pub base_url: String,
    pub kernel_url: String,
    pub initrd_url: String,
    pub worker_id: String,
    pub hw_addr: String,
    pub facility: String,
    pub syslog_host: String,
    pub grpc_authority: String,
    pub tinkerbell_tls: bool,
    pub tinkerbell_insecure_tls: bool,
    pub vlan_id: Option<u32>,
    pub consoles: Vec<String>,
    pub extra_args: Vec<String>,
    pub kernel_params: Vec<String>,
    pub traceparent: String,
    pub retries: u32,
    pub retry_delay: u64,
    /// The assembled kernel command line, in order.
    pub kernel_args: Vec<String>,
}

impl InstallerVars {
    pub fn cmdline(&self) -> String {
        self.kernel_args.join(" ")
    }
}

/// What the chain template sees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainVars {
    pub machine: String,
    pub mac: String,
    pub url: String,
    pub retries: u32,
    pub retry_delay: u64,
    pub traceparent: String,
}

/// The script a machine gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Script {
    /// `netboot.ipxe.contents`, served byte for byte.
    Contents(String),
    /// `netboot.ipxe.url`: a script that chains to it.
    Chain(ChainVars),
    /// The installer.
    Installer(Box<InstallerVars>),
}

impl Script {
    /// Label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Script::Contents(_) => "custom_contents",
            Script::Chain(_) => "custom_url",
            Script::Installer(_) => "installer",
        }
    }
}

/// Whitespace and control characters removed: one token of a command line or script.
pub fn token(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_whitespace() && !c.is_control())
        .collect()
}

/// A space-separated list as tokens.
pub fn tokens(s: &str) -> Vec<String> {
    s.split_whitespace()
        .map(token)
        .filter(|t| !t.is_empty())
        .collect()
}

/// The kernel/initrd naming of Hook: `x86_64` or `aarch64`. Tinkerbell boots 64-bit
/// installers only, so 32-bit x86 records get the x86_64 kernel, as Smee does.
pub fn installer_arch(record_arch: &str) -> String {
    match record_arch.trim().to_ascii_lowercase().as_str() {
        "" | "x86_64" | "amd64" | "x86-64" | "x64" | "i386" | "i686" | "x86" => "x86_64".into(),
        "aarch64" | "arm64" => "aarch64".into(),
        other => {
            let t = token(other);
            if !t.is_empty()
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                t
            } else {
                "x86_64".into()
            }
        }
    }
}

/// `host` of a `host[:port]` authority (`[v6]` keeps its brackets).
pub fn authority_host(authority: &str) -> &str {
    if authority.starts_with('[') {
        return match authority.find(']') {
            Some(i) => &authority[..=i],
            None => authority,
        };
    }
    match authority.rsplit_once(':') {
        Some((h, p))
            if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && !h.contains(':') =>
        {
            h
        }
        _ => authority,
    }
}

/// `base/name`, or `name` itself when it already is a URL.
fn join_url(base: &str, name: &str) -> String {
    if name.contains("://") {
        name.to_string()
    } else {
        format!(
            "{}/{}",
            base.trim_end_matches('/'),
            name.trim_start_matches('/')
        )
    }
}

/// The interface of `hw` that has `mac`.
pub fn interface(hw: &Hardware, mac: MacAddr) -> Option<&Interface> {
    hw.interfaces
        .iter()
        .find(|i| MacAddr::parse(&i.mac).ok() == Some(mac))
}

/// The record's display name (name, else id).
pub fn machine_name(hw: &Hardware) -> String {
    if hw.name.is_empty() {
        hw.id.clone()
    } else {
        hw.name.clone()
    }
}

/// Chooses and fills in the script for `mac` of `hw`. Pure.
pub fn choose(
    hw: &Hardware,
    mac: MacAddr,
    d: &InstallerDefaults,
    req: &RequestFacts<'_>,
) -> Script {
    let iface = interface(hw, mac);
    let netboot = iface.and_then(|i| i.netboot.as_ref());
    let machine = token(&machine_name(hw));
    let mac_s = mac.to_string();
    let traceparent = req.traceparent.to_string();
    if let Some(ipxe) = netboot.and_then(|n| n.ipxe.as_ref()) {
        if !ipxe.contents.trim().is_empty() {
            return Script::Contents(ipxe.contents.clone());
        }
        let url = token(&ipxe.url);
        if !url.is_empty() {
            return Script::Chain(ChainVars {
                machine,
                mac: mac_s,
                url,
                retries: d.retries,
                retry_delay: d.retry_delay_secs,
                traceparent,
            });
        }
    }

    let dhcp = iface.and_then(|i| i.dhcp.as_ref());
    let osie = netboot.and_then(|n| n.osie.as_ref());
    let arch = installer_arch(dhcp.map(|d| d.arch.as_str()).unwrap_or(""));
    let host = token(authority_host(req.authority));
    let base_url = {
        let from_record = osie.map(|o| token(&o.base_url)).unwrap_or_default();
        let chosen = if !from_record.is_empty() {
            from_record
        } else if !d.osie_url.trim().is_empty() {
            token(&d.osie_url)
        } else {
            format!("http://{}/assets", token(req.authority))
        };
        chosen.trim_end_matches('/').to_string()
    };
    let pick =
        |v: Option<&String>, default: String| match v.map(|s| token(s)).filter(|s| !s.is_empty()) {
            Some(s) => s,
            None => default,
        };
    let kernel = pick(osie.map(|o| &o.kernel), format!("vmlinuz-{arch}"));
    let initrd = pick(osie.map(|o| &o.initrd), format!("initramfs-{arch}"));
    let syslog_host = d
        .syslog_host
        .as_deref()
        .map(token)
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| host.clone());
    let grpc_authority = d
        .grpc_authority
        .as_deref()
        .map(token)
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| format!("{host}:{DEFAULT_TINK_GRPC_PORT}"));
    let facility = token(&hw.facility);
    let vlan_id = dhcp.map(|d| d.vlan_id).filter(|v| *v != 0);
    let consoles: Vec<String> = d
        .consoles
        .iter()
        .map(|c| token(c))
        .filter(|c| !c.is_empty())
        .collect();
    let extra_args: Vec<String> = d.extra_args.iter().flat_map(|a| tokens(a)).collect();
    let kernel_params = osie.map(|o| tokens(&o.kernel_params)).unwrap_or_default();

    // Order: what Hook reads, then consoles, then the operator's global arguments, then
    // this machine's own (last, so a machine can override a global value).
    let mut args = vec![
        "initrd=initrd".to_string(),
        format!("worker_id={mac_s}"),
        format!("hw_addr={mac_s}"),
    ];
    if !facility.is_empty() {
        args.push(format!("facility={facility}"));
    }
    args.push(format!("syslog_host={syslog_host}"));
    args.push(format!("grpc_authority={grpc_authority}"));
    args.push(format!("tinkerbell_tls={}", d.tinkerbell_tls));
    args.push(format!(
        "tinkerbell_insecure_tls={}",
        d.tinkerbell_insecure_tls
    ));
    if let Some(v) = vlan_id {
        args.push(format!("vlan_id={v}"));
    }
    args.push(format!("traceparent={traceparent}"));
    args.extend(consoles.iter().map(|c| format!("console={c}")));
    args.extend(extra_args.iter().cloned());
    args.extend(kernel_params.iter().cloned());

    Script::Installer(Box::new(InstallerVars {
        machine,
        worker_id: mac_s.clone(),
        hw_addr: mac_s.clone(),
        mac: mac_s,
        arch,
        kernel_url: join_url(&base_url, &kernel),
        initrd_url: join_url(&base_url, &initrd),
        base_url,
        facility,
        syslog_host,
        grpc_authority,
        tinkerbell_tls: d.tinkerbell_tls,
        tinkerbell_insecure_tls: d.tinkerbell_insecure_tls,
        vlan_id,
        consoles,
        extra_args,
        kernel_params,
        traceparent,
        retries: d.retries,
        retry_delay: d.retry_delay_secs,
        kernel_args: args,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ironboot_proto::pb::{Dhcp, Ipxe, Netboot, Osie};

    const MAC: MacAddr = MacAddr([0x52, 0x54, 0, 0xee, 0x0d, 0x0b]);

    fn tp() -> TraceParent {
        TraceParent {
            trace_id: [0xab; 16],
            span_id: [0xcd; 8],
            flags: 1,
        }
    }

    fn hw(netboot: Option<Netboot>, arch: &str) -> Hardware {
        Hardware {
            name: "machine1".into(),
            facility: "lab1".into(),
            interfaces: vec![Interface {
                mac: "52:54:00:ee:0d:0b".into(),
                dhcp: Some(Dhcp {
                    ip: "10.0.0.10".into(),
                    arch: arch.into(),
                    ..Default::default()
                }),
                netboot,
            }],
            ..Default::default()
        }
    }

    fn defaults() -> InstallerDefaults {
        InstallerDefaults {
            consoles: vec!["tty0".into(), "ttyS0,115200".into()],
            retries: 3,
            retry_delay_secs: 2,
            ..Default::default()
        }
    }

    fn installer(h: &Hardware, d: &InstallerDefaults) -> InstallerVars {
        match choose(
            h,
            MAC,
            d,
            &RequestFacts {
                authority: "10.0.0.1:8080",
                traceparent: tp(),
            },
        ) {
            Script::Installer(v) => *v,
            other => panic!("expected the installer, got {other:?}"),
        }
    }

    #[test]
    fn defaults_come_from_how_the_client_reached_us() {
        let v = installer(&hw(None, "x86_64"), &defaults());
        assert_eq!(v.kernel_url, "http://10.0.0.1:8080/assets/vmlinuz-x86_64");
        assert_eq!(v.initrd_url, "http://10.0.0.1:8080/assets/initramfs-x86_64");
        assert_eq!(v.syslog_host, "10.0.0.1");
        assert_eq!(v.grpc_authority, "10.0.0.1:42113");
        assert_eq!(v.worker_id, "52:54:00:ee:0d:0b");
        assert!(v.kernel_args.contains(&format!("traceparent={}", tp())));
    }

    #[test]
    fn record_overrides_flags_override_request() {
        let mut d = defaults();
        d.osie_url = "http://osie.example/hook/".into();
        let v = installer(&hw(None, "aarch64"), &d);
        assert_eq!(v.kernel_url, "http://osie.example/hook/vmlinuz-aarch64");
        let nb = Netboot {
            osie: Some(Osie {
                base_url: "http://other.example/x".into(),
                kernel: "k".into(),
                initrd: "https://cdn.example/i.img".into(),
                kernel_params: "  a=1 \t b ".into(),
            }),
            ..Default::default()
        };
        let v = installer(&hw(Some(nb), "x86_64"), &d);
        assert_eq!(v.kernel_url, "http://other.example/x/k");
        assert_eq!(v.initrd_url, "https://cdn.example/i.img");
        assert_eq!(v.kernel_params, ["a=1", "b"]);
        assert_eq!(v.kernel_args.last().map(String::as_str), Some("b"));
    }

    #[test]
    fn custom_scripts_take_precedence() {
        let nb = |url: &str, contents: &str| Netboot {
            ipxe: Some(Ipxe {
                url: url.into(),
                contents: contents.into(),
            }),
            ..Default::default()
        };
        let d = defaults();
        let r = RequestFacts {
            authority: "h",
            traceparent: tp(),
        };
        assert_eq!(
            choose(&hw(Some(nb("", "#!ipxe\nshell\n")), ""), MAC, &d, &r),
            Script::Contents("#!ipxe\nshell\n".into())
        );
        assert_eq!(
            choose(&hw(Some(nb("http://x/y.ipxe", "")), ""), MAC, &d, &r).kind(),
            "custom_url"
        );
        assert_eq!(
            choose(&hw(Some(nb("", "  ")), ""), MAC, &d, &r).kind(),
            "installer"
        );
    }

    #[test]
    fn nothing_from_a_record_can_add_lines() {
        let mut h = hw(
            Some(Netboot {
                osie: Some(Osie {
                    kernel_params: "a=1\nchain http://evil/".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            "x86_64",
        );
        h.facility = "lab\nshell".into();
        let v = installer(&h, &defaults());
        assert!(
            v.kernel_args
                .iter()
                .all(|a| !a.contains(char::is_whitespace))
        );
        assert_eq!(v.facility, "labshell");
    }

    #[test]
    fn arch_names() {
        for (a, want) in [
            ("", "x86_64"),
            ("amd64", "x86_64"),
            ("i386", "x86_64"),
            ("ARM64", "aarch64"),
            ("riscv64", "riscv64"),
            ("a b/c", "x86_64"),
        ] {
            assert_eq!(installer_arch(a), want, "{a}");
        }
    }

    #[test]
    fn authority_hosts() {
        for (a, want) in [
            ("10.0.0.1:8080", "10.0.0.1"),
            ("boot.example", "boot.example"),
            ("[fd00::1]:8080", "[fd00::1]"),
            ("[fd00::1]", "[fd00::1]"),
            ("h:", "h:"),
        ] {
            assert_eq!(authority_host(a), want, "{a}");
        }
    }
}
