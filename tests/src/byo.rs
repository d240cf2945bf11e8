//! The bring-your-own-DHCP configurations in `deploy/byo-dhcp/`, exactly as shipped,
//! with their `@PLACEHOLDER@` addresses filled in for the lab.

use std::net::Ipv4Addr;
use std::time::Duration;

use crate::bins;
use crate::lab::{HTTP_PORT, Lab, NETMASK, SERVER_IP};

/// The values the templates ask for. A range of one address (the machine's registered
/// one) keeps the DHCP server's lease and the registry in agreement, so syslog-svc can
/// attribute the booted machine's messages by source address.
pub fn placeholders(
    interface: &str,
    range_start: Ipv4Addr,
    range_end: Ipv4Addr,
) -> Vec<(&'static str, String)> {
    vec![
        ("@INTERFACE@", interface.to_string()),
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
    let mut text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    for (k, v) in values {
        text = text.replace(k, v);
    }
    // Any @NAME@ left is a placeholder this lab does not know.
    let mut rest = text.as_str();
    while let Some(i) = rest.find('@') {
        let after = &rest[i + 1..];
        let name: String = after
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || *c == '_')
            .collect();
        assert!(
            name.is_empty() || !after[name.len()..].starts_with('@'),
            "{file}: placeholder @{name}@ has no value"
        );
        rest = after;
    }
    text
}

/// dnsmasq with `deploy/byo-dhcp/dnsmasq.conf` on peer `peer`'s `lan0`, handing out
/// `range`, plus `extra` lines (e.g. `dhcp-host=` reservations); returns once it serves.
#[track_caller]
pub fn start_dnsmasq(lab: &mut Lab, peer: usize, range: (Ipv4Addr, Ipv4Addr), extra: &str) {
    let dnsmasq = bins::system("/usr/sbin/dnsmasq", "dnsmasq-base");
    let text = render("dnsmasq.conf", &placeholders("lan0", range.0, range.1)) + extra;
    let conf = lab.dir.join("dnsmasq.conf");
    std::fs::write(&conf, text).expect("write dnsmasq.conf");
    let mut cmd = lab.peer(peer).cmd(&dnsmasq);
    cmd.args([
        "--keep-in-foreground",
        "--log-dhcp",
        "--log-facility=-",
        "--user=root",
        "--group=root",
    ])
    .arg(format!("--conf-file={}", conf.display()))
    .arg(format!(
        "--dhcp-leasefile={}",
        lab.dir.join("dnsmasq.leases").display()
    ))
    .arg(format!(
        "--pid-file={}",
        lab.dir.join("dnsmasq.pid").display()
    ));
    lab.start_other("dnsmasq", cmd, Duration::from_millis(300));
    lab.wait_log("dnsmasq", "DHCP, IP range", Duration::from_secs(10));
}

/// Kea's configuration is JSON with `//` comment lines (Kea's parser accepts them);
/// without them, for serde_json.
#[track_caller]
pub fn kea_json(text: &str) -> serde_json::Value {
    let stripped: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .map(|l| format!("{l}\n"))
        .collect();
    serde_json::from_str(&stripped)
        .unwrap_or_else(|e| panic!("kea.json is not JSON once comment lines are removed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_renders_completely() {
        let v = placeholders(
            "lan0",
            Ipv4Addr::new(10, 91, 0, 50),
            Ipv4Addr::new(10, 91, 0, 50),
        );
        for f in ["dnsmasq.conf", "kea.json", "dhcpd.conf"] {
            let text = render(f, &v);
            assert!(text.contains("10.91.0.50"), "{f}");
        }
        let kea = kea_json(&render("kea.json", &v));
        assert!(kea.get("Dhcp4").is_some());
    }
}
