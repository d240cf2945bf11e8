//! The bring-your-own-DHCP configurations in `deploy/byo-dhcp/`, exactly as shipped,
//! with their `@PLACEHOLDER@` addresses filled in for the lab.

use std::net::Ipv4Addr;

use crate::bins;
use crate::lab::{BRIDGE, HTTP_PORT, NETMASK, SERVER_IP};

/// The values the templates ask for. A range of one address (the machine's registered
/// one) keeps the DHCP server's lease and the registry in agreement, so syslog-svc can
/// attribute the booted machine's messages by source address.
pub fn placeholders(range_start: Ipv4Addr, range_end: Ipv4Addr) -> Vec<(&'static str, String)> {
    vec![
        ("@INTERFACE@", BRIDGE.to_string()),
        ("@SUBNET@", "10.91.0.0".to_string()),
        ("@PREFIX_LEN@", "24".to_string()),
        ("@NETMASK@", NETMASK.to_string()),
        ("@ROUTER@", SERVER_IP.to_string()),
        ("@RANGE_START@", range_start.to_string()),
        ("@RANGE_END@", range_end.to_string()),
        ("@TFTP_SERVER@", SERVER_IP.to_string()),
        ("@HTTP_SERVER@", format!("{SERVER_IP}:{HTTP_PORT}")),
    ]
}

/// `deploy/byo-dhcp/<file>` with every placeholder replaced; panics if one is left.
#[track_caller]
pub fn render(file: &str, values: &[(&str, String)]) -> String {
    let path = bins::workspace_root().join("deploy/byo-dhcp").join(file);
    let mut text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    for (k, v) in values {
        text = text.replace(k, v);
    }
    if let Some(i) = text.find('@') {
        let rest = &text[i + 1..];
        if let Some(j) = rest.find('@') {
            let name = &rest[..j];
            assert!(
                name.is_empty() || !name.chars().all(|c| c.is_ascii_uppercase() || c == '_'),
                "{file}: placeholder @{name}@ has no value"
            );
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_renders_completely() {
        let v = placeholders(Ipv4Addr::new(10, 91, 0, 50), Ipv4Addr::new(10, 91, 0, 50));
        for f in ["dnsmasq.conf", "kea.json", "dhcpd.conf"] {
            let text = render(f, &v);
            assert!(text.contains("10.91.0.50"), "{f}");
        }
        let kea: serde_json::Value = serde_json::from_str(&render("kea.json", &v)).expect("kea.json is JSON once rendered");
        assert!(kea.get("Dhcp4").is_some());
    }
}
