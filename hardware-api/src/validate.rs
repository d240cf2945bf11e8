//! Turning a hardware record as a client sent it into one the store may keep.
//!
//! Every check names the field and the value it refused, because the operator reading
//! the error is usually looking at a YAML file with dozens of machines in it.
//! Validation also normalises: MACs to lowercase colon form, architecture aliases to
//! one spelling, names of DNS labels to lowercase.

use std::collections::HashSet;
use std::fmt;
use std::net::Ipv4Addr;

use ironboot_proto::MacAddr;
use ironboot_proto::pb::Hardware;

/// Longest lease the registry accepts (one year). Longer leases hide dead machines.
pub const MAX_LEASE_SECS: u32 = 365 * 24 * 3600;
/// Shortest non-default lease. A netbooting machine renews at half of it; below a
/// minute the renewals become a load of their own.
pub const MIN_LEASE_SECS: u32 = 60;
/// At most this many interfaces per machine.
pub const MAX_INTERFACES: usize = 64;
const MAX_LABELS: usize = 64;
const MAX_SCRIPT_BYTES: usize = 64 * 1024;

/// A refused field: which one, the value, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub value: String,
    pub reason: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?}: {}", self.field, self.value, self.reason)
    }
}

impl std::error::Error for FieldError {}

fn refuse(
    field: impl Into<String>,
    value: impl fmt::Display,
    reason: impl Into<String>,
) -> FieldError {
    FieldError {
        field: field.into(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// A record that passed validation, with its keys parsed for the store's indexes.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidHardware {
    pub hardware: Hardware,
    pub macs: Vec<MacAddr>,
    pub ips: Vec<Ipv4Addr>,
}

/// Checks and normalises a record. `id`, `revision` and timestamps are left for the
/// store to manage and are not checked here.
pub fn validate(mut hw: Hardware) -> Result<ValidHardware, FieldError> {
    hw.name = hw.name.trim().to_string();
    check_name(&hw.name)?;
    check_labels(&hw)?;
    if hw.facility.len() > 64 || hw.facility.chars().any(char::is_control) {
        return Err(refuse(
            "facility",
            &hw.facility,
            "at most 64 printable characters",
        ));
    }
    if hw.interfaces.is_empty() {
        return Err(refuse(
            "interfaces",
            "[]",
            "a machine needs at least one interface (its MAC is how it is found)",
        ));
    }
    if hw.interfaces.len() > MAX_INTERFACES {
        return Err(refuse(
            "interfaces",
            hw.interfaces.len(),
            format!("at most {MAX_INTERFACES} interfaces"),
        ));
    }
    let mut macs = Vec::with_capacity(hw.interfaces.len());
    let mut ips = Vec::new();
    let mut seen_macs = HashSet::new();
    let mut seen_ips = HashSet::new();
    for (i, iface) in hw.interfaces.iter_mut().enumerate() {
        let at = |f: &str| format!("interfaces[{i}].{f}");
        let mac = MacAddr::parse(&iface.mac).map_err(|_| {
            refuse(
                at("mac"),
                &iface.mac,
                "not a MAC address (e.g. 52:54:00:ee:0d:0b)",
            )
        })?;
        if mac.0 == [0; 6] || mac.0[0] & 1 == 1 {
            return Err(refuse(
                at("mac"),
                &iface.mac,
                "a broadcast, multicast or all-zero MAC cannot be a machine",
            ));
        }
        if !seen_macs.insert(mac) {
            return Err(refuse(at("mac"), mac, "listed twice in this record"));
        }
        iface.mac = mac.to_string();
        macs.push(mac);

        if let Some(dhcp) = iface.dhcp.as_mut()
            && let Some(ip) = check_dhcp(dhcp, &at)?
        {
            if !seen_ips.insert(ip) {
                return Err(refuse(at("dhcp.ip"), ip, "listed twice in this record"));
            }
            ips.push(ip);
        }
        if let Some(nb) = iface.netboot.as_mut() {
            check_netboot(nb, &at)?;
        }
    }
    Ok(ValidHardware {
        hardware: hw,
        macs,
        ips,
    })
}

/// Names follow RFC 1123 subdomain rules (like Kubernetes object names), so a
/// Tinkerbell Hardware name is always a valid name here.
fn check_name(name: &str) -> Result<(), FieldError> {
    if name.is_empty() {
        return Err(refuse("name", name, "required"));
    }
    if name.len() > 253 || !is_dns_name(name, false) {
        return Err(refuse(
            "name",
            name,
            "must be lowercase letters, digits, '-' and '.', start and end with a letter or digit, at most 253 characters",
        ));
    }
    Ok(())
}

fn check_labels(hw: &Hardware) -> Result<(), FieldError> {
    if hw.labels.len() > MAX_LABELS {
        return Err(refuse(
            "labels",
            hw.labels.len(),
            format!("at most {MAX_LABELS} labels"),
        ));
    }
    for (k, v) in &hw.labels {
        let key_ok = !k.is_empty()
            && k.len() <= 253
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
            && k.as_bytes()[0].is_ascii_alphanumeric();
        if !key_ok {
            return Err(refuse(
                format!("labels[{k}]"),
                k,
                "a label key is letters, digits, '-', '_', '.', '/', starting with a letter or digit",
            ));
        }
        let val_ok = v.len() <= 63
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !val_ok {
            return Err(refuse(
                format!("labels[{k}]"),
                v,
                "a label value is at most 63 letters, digits, '-', '_' or '.'",
            ));
        }
    }
    Ok(())
}

/// RFC 1123 host name: dot-separated labels of letters, digits and inner hyphens, each
/// 1–63 characters. With `allow_upper` false, only lowercase letters.
pub fn is_dns_name(s: &str, allow_upper: bool) -> bool {
    if s.is_empty() || s.len() > 253 {
        return false;
    }
    s.split('.').all(|label| {
        let b = label.as_bytes();
        !b.is_empty()
            && b.len() <= 63
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter().all(|c| {
                c.is_ascii_digit()
                    || *c == b'-'
                    || c.is_ascii_lowercase()
                    || (allow_upper && c.is_ascii_uppercase())
            })
    })
}

fn parse_ipv4(field: String, s: &str) -> Result<Ipv4Addr, FieldError> {
    s.trim().parse::<Ipv4Addr>().map_err(|_| {
        refuse(
            field,
            s,
            "not an IPv4 address (dotted quad, e.g. 10.0.0.10)",
        )
    })
}

/// Checks the DHCP block; returns the reserved address, if any.
fn check_dhcp(
    dhcp: &mut ironboot_proto::pb::Dhcp,
    at: &dyn Fn(&str) -> String,
) -> Result<Option<Ipv4Addr>, FieldError> {
    let ip = if dhcp.ip.trim().is_empty() {
        dhcp.ip.clear();
        None
    } else {
        let ip = parse_ipv4(at("dhcp.ip"), &dhcp.ip)?;
        if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() || ip.is_loopback() {
            return Err(refuse(at("dhcp.ip"), ip, "not a usable host address"));
        }
        dhcp.ip = ip.to_string();
        Some(ip)
    };

    let mask = if dhcp.netmask.trim().is_empty() {
        if ip.is_some() {
            return Err(refuse(
                at("dhcp.netmask"),
                "",
                "required when dhcp.ip is set",
            ));
        }
        dhcp.netmask.clear();
        None
    } else {
        let m = parse_ipv4(at("dhcp.netmask"), &dhcp.netmask)?;
        let bits = u32::from(m);
        if bits == 0 || bits.leading_ones() + bits.trailing_zeros() != 32 {
            return Err(refuse(
                at("dhcp.netmask"),
                m,
                "not a contiguous netmask (e.g. 255.255.255.0)",
            ));
        }
        dhcp.netmask = m.to_string();
        Some(m)
    };

    if dhcp.gateway.trim().is_empty() {
        dhcp.gateway.clear();
    } else {
        let gw = parse_ipv4(at("dhcp.gateway"), &dhcp.gateway)?;
        if let (Some(ip), Some(mask)) = (ip, mask) {
            let m = u32::from(mask);
            let net = u32::from(ip) & m;
            let prefix = m.leading_ones();
            let network = Ipv4Addr::from(net);
            if u32::from(gw) & m != net {
                return Err(refuse(
                    at("dhcp.gateway"),
                    gw,
                    format!("not inside the interface's subnet {network}/{prefix}"),
                ));
            }
            if gw == ip {
                return Err(refuse(at("dhcp.gateway"), gw, "the same as dhcp.ip"));
            }
            if prefix < 31 && (u32::from(gw) == net || u32::from(gw) == net | !m) {
                return Err(refuse(
                    at("dhcp.gateway"),
                    gw,
                    format!("the network or broadcast address of {network}/{prefix}"),
                ));
            }
        }
        dhcp.gateway = gw.to_string();
    }
    if let (Some(ip), Some(mask)) = (ip, mask) {
        let m = u32::from(mask);
        if m.leading_ones() < 31 && (u32::from(ip) & !m == 0 || u32::from(ip) | m == u32::MAX) {
            return Err(refuse(
                at("dhcp.ip"),
                ip,
                "the network or broadcast address of its subnet",
            ));
        }
    }

    if !dhcp.hostname.is_empty() && !is_dns_name(&dhcp.hostname, true) {
        return Err(refuse(
            at("dhcp.hostname"),
            &dhcp.hostname,
            "not a host name per RFC 1123 (letters, digits, inner '-', dot-separated labels of at most 63)",
        ));
    }
    dhcp.domain = dhcp.domain.trim_end_matches('.').to_string();
    if !dhcp.domain.is_empty() && !is_dns_name(&dhcp.domain, true) {
        return Err(refuse(
            at("dhcp.domain"),
            &dhcp.domain,
            "not a domain name per RFC 1123",
        ));
    }
    for (j, d) in dhcp.domain_search.iter_mut().enumerate() {
        *d = d.trim_end_matches('.').to_string();
        if !is_dns_name(d, true) {
            return Err(refuse(
                at(&format!("dhcp.domain_search[{j}]")),
                &*d,
                "not a domain name per RFC 1123",
            ));
        }
    }
    if dhcp.lease_time != 0 && !(MIN_LEASE_SECS..=MAX_LEASE_SECS).contains(&dhcp.lease_time) {
        return Err(refuse(
            at("dhcp.lease_time"),
            dhcp.lease_time,
            format!(
                "seconds between {MIN_LEASE_SECS} and {MAX_LEASE_SECS}, or 0 for the DHCP service's default"
            ),
        ));
    }
    for (list, name) in [
        (&mut dhcp.name_servers, "name_servers"),
        (&mut dhcp.time_servers, "time_servers"),
    ] {
        for (j, s) in list.iter_mut().enumerate() {
            *s = parse_ipv4(at(&format!("dhcp.{name}[{j}]")), s)?.to_string();
        }
    }
    if dhcp.vlan_id > 4094 {
        return Err(refuse(
            at("dhcp.vlan_id"),
            dhcp.vlan_id,
            "a VLAN id is 0 (none) to 4094",
        ));
    }
    dhcp.arch = normalize_arch(&dhcp.arch).map_err(|known| {
        refuse(
            at("dhcp.arch"),
            &dhcp.arch,
            format!("unknown architecture; one of {known}"),
        )
    })?;
    if dhcp.iface_name.len() > 15
        || dhcp
            .iface_name
            .chars()
            .any(|c| c.is_whitespace() || c == '/')
    {
        return Err(refuse(
            at("dhcp.iface_name"),
            &dhcp.iface_name,
            "an interface name is at most 15 characters, no spaces or '/'",
        ));
    }
    Ok(ip)
}

/// One spelling per architecture, so the boot services compare strings, not aliases.
pub fn normalize_arch(arch: &str) -> Result<String, &'static str> {
    const KNOWN: &str = "x86_64 (amd64), aarch64 (arm64), i386 (x86)";
    let a = arch.trim().to_ascii_lowercase();
    Ok(match a.as_str() {
        "" => String::new(),
        "x86_64" | "amd64" | "x86-64" | "x64" => "x86_64".into(),
        "aarch64" | "arm64" => "aarch64".into(),
        "i386" | "i686" | "x86" => "i386".into(),
        _ => return Err(KNOWN),
    })
}

fn check_netboot(
    nb: &mut ironboot_proto::pb::Netboot,
    at: &dyn Fn(&str) -> String,
) -> Result<(), FieldError> {
    nb.ipxe_binary = nb.ipxe_binary.trim().to_string();
    let b = &nb.ipxe_binary;
    if b.len() > 127
        || b.starts_with('.')
        || b.chars()
            .any(|c| c == '/' || c == '\\' || c.is_whitespace() || c.is_control())
    {
        return Err(refuse(
            at("netboot.ipxe_binary"),
            b,
            "a file name (no '/', spaces or leading '.'), at most 127 bytes",
        ));
    }
    if let Some(ipxe) = nb.ipxe.as_mut() {
        ipxe.url = ipxe.url.trim().to_string();
        if !ipxe.url.is_empty() && !ipxe.contents.is_empty() {
            return Err(refuse(
                at("netboot.ipxe"),
                "url + contents",
                "set either url or contents, not both",
            ));
        }
        if !ipxe.url.is_empty() && !is_url(&ipxe.url, &["http://", "https://", "tftp://"]) {
            return Err(refuse(
                at("netboot.ipxe.url"),
                &ipxe.url,
                "an http://, https:// or tftp:// URL without spaces",
            ));
        }
        if !ipxe.contents.is_empty() {
            if ipxe.contents.len() > MAX_SCRIPT_BYTES {
                return Err(refuse(
                    at("netboot.ipxe.contents"),
                    format!("{} bytes", ipxe.contents.len()),
                    "at most 64 KiB",
                ));
            }
            if !ipxe.contents.trim_start().starts_with("#!ipxe") {
                let first = ipxe.contents.lines().next().unwrap_or("");
                return Err(refuse(
                    at("netboot.ipxe.contents"),
                    first,
                    "an iPXE script must start with #!ipxe",
                ));
            }
        }
    }
    if let Some(osie) = nb.osie.as_mut() {
        osie.base_url = osie.base_url.trim().to_string();
        if !osie.base_url.is_empty() && !is_url(&osie.base_url, &["http://", "https://"]) {
            return Err(refuse(
                at("netboot.osie.base_url"),
                &osie.base_url,
                "an http:// or https:// URL without spaces",
            ));
        }
        for (v, f) in [(&osie.kernel, "kernel"), (&osie.initrd, "initrd")] {
            if v.chars().any(char::is_whitespace) {
                return Err(refuse(
                    at(&format!("netboot.osie.{f}")),
                    v,
                    "a file name or URL without spaces",
                ));
            }
        }
        if osie.kernel_params.contains('\n') || osie.kernel_params.len() > 4096 {
            return Err(refuse(
                at("netboot.osie.kernel_params"),
                &osie.kernel_params,
                "one line of at most 4096 characters",
            ));
        }
    }
    Ok(())
}

fn is_url(s: &str, schemes: &[&str]) -> bool {
    let lower = s.to_ascii_lowercase();
    schemes
        .iter()
        .any(|p| lower.starts_with(p) && lower.len() > p.len())
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ironboot_proto::pb::{Dhcp, Interface, Ipxe, Netboot};

    fn machine() -> Hardware {
        Hardware {
            name: "machine1".into(),
            interfaces: vec![Interface {
                mac: "52-54-00-EE-0D-0B".into(),
                dhcp: Some(Dhcp {
                    ip: "10.0.0.10".into(),
                    netmask: "255.255.255.0".into(),
                    gateway: "10.0.0.1".into(),
                    hostname: "machine1".into(),
                    arch: "amd64".into(),
                    ..Default::default()
                }),
                netboot: None,
            }],
            ..Default::default()
        }
    }

    fn field_of(hw: Hardware) -> String {
        validate(hw).expect_err("should be refused").field
    }

    #[test]
    fn normalises_mac_and_arch() {
        let v = validate(machine()).unwrap();
        assert_eq!(v.hardware.interfaces[0].mac, "52:54:00:ee:0d:0b");
        assert_eq!(
            v.hardware.interfaces[0].dhcp.as_ref().unwrap().arch,
            "x86_64"
        );
        assert_eq!(v.ips, vec![Ipv4Addr::new(10, 0, 0, 10)]);
    }

    #[test]
    fn names_the_field_it_refuses() {
        let mut hw = machine();
        hw.name = "Bad_Name".into();
        assert_eq!(field_of(hw), "name");

        let mut hw = machine();
        hw.interfaces[0].mac = "52:54:00:ee:0d".into();
        assert_eq!(field_of(hw), "interfaces[0].mac");

        let mut hw = machine();
        hw.interfaces[0].dhcp.as_mut().unwrap().gateway = "10.0.1.1".into();
        let e = validate(hw).unwrap_err();
        assert_eq!(e.field, "interfaces[0].dhcp.gateway");
        assert!(e.reason.contains("10.0.0.0/24"), "{e}");

        let mut hw = machine();
        hw.interfaces[0].dhcp.as_mut().unwrap().netmask = "255.0.255.0".into();
        assert_eq!(field_of(hw), "interfaces[0].dhcp.netmask");

        let mut hw = machine();
        hw.interfaces[0].dhcp.as_mut().unwrap().ip = "10.0.0.300".into();
        assert_eq!(field_of(hw), "interfaces[0].dhcp.ip");

        let mut hw = machine();
        hw.interfaces[0].dhcp.as_mut().unwrap().ip = "10.0.0.255".into();
        assert_eq!(field_of(hw), "interfaces[0].dhcp.ip");

        let mut hw = machine();
        hw.interfaces[0].dhcp.as_mut().unwrap().hostname = "-bad-".into();
        assert_eq!(field_of(hw), "interfaces[0].dhcp.hostname");

        let mut hw = machine();
        hw.interfaces[0].dhcp.as_mut().unwrap().lease_time = 5;
        assert_eq!(field_of(hw), "interfaces[0].dhcp.lease_time");

        let mut hw = machine();
        hw.interfaces[0].dhcp.as_mut().unwrap().vlan_id = 4095;
        assert_eq!(field_of(hw), "interfaces[0].dhcp.vlan_id");

        let mut hw = machine();
        hw.interfaces[0].dhcp.as_mut().unwrap().arch = "sparc".into();
        assert_eq!(field_of(hw), "interfaces[0].dhcp.arch");

        let mut hw = machine();
        hw.interfaces.push(hw.interfaces[0].clone());
        hw.interfaces[1].mac = "52:54:00:ee:0d:0b".into();
        assert_eq!(field_of(hw), "interfaces[1].mac");

        let mut hw = machine();
        hw.interfaces.push(hw.interfaces[0].clone());
        hw.interfaces[1].mac = "52:54:00:ee:0d:0c".into();
        assert_eq!(field_of(hw), "interfaces[1].dhcp.ip");

        let mut hw = machine();
        hw.interfaces[0].netboot = Some(Netboot {
            ipxe: Some(Ipxe {
                url: String::new(),
                contents: "echo hi".into(),
            }),
            ..Default::default()
        });
        assert_eq!(field_of(hw), "interfaces[0].netboot.ipxe.contents");

        let mut hw = machine();
        hw.interfaces.clear();
        assert_eq!(field_of(hw), "interfaces");

        let mut hw = machine();
        hw.labels.insert("rack".into(), "r 1".into());
        assert_eq!(field_of(hw), "labels[rack]");
    }

    #[test]
    fn ip_needs_netmask_but_interface_may_have_no_ip() {
        let mut hw = machine();
        hw.interfaces[0].dhcp.as_mut().unwrap().netmask.clear();
        assert_eq!(field_of(hw), "interfaces[0].dhcp.netmask");

        let mut hw = machine();
        hw.interfaces[0].dhcp = Some(Dhcp::default());
        let v = validate(hw).unwrap();
        assert!(v.ips.is_empty());
    }

    #[test]
    fn point_to_point_subnets_are_fine() {
        let mut hw = machine();
        let d = hw.interfaces[0].dhcp.as_mut().unwrap();
        d.ip = "10.0.0.0".into();
        d.netmask = "255.255.255.254".into();
        d.gateway = "10.0.0.1".into();
        validate(hw).unwrap();
    }
}
