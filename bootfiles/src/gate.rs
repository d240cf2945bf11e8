//! May this client have a boot file? The same answer on TFTP and HTTP.
//!
//! The registry's rule: a machine that is `disabled`, or whose matching interface has
//! `netboot.allow_pxe = false`, gets no network boot on any route. A client can be
//! identified two ways on a file fetch — a MAC in the path (`<mac>/<file>`) and the
//! source IP (a reserved address) — and a refusal by either wins, so renaming the path
//! cannot route around a disabled machine. Clients the registry does not know are
//! served by default (stock iPXE binaries are public software; refusing strangers is a
//! policy choice, not a safety default).

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use ironboot_proto::MacAddr;
use ironboot_proto::cache::HardwareCache;
use ironboot_proto::pb::Hardware;

/// What to do with a client the registry does not know.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum UnknownClients {
    /// Serve it (default).
    Serve,
    /// Refuse it.
    Refuse,
}

/// Why a request is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The machine's record has `disabled = true`.
    Disabled,
    /// The matching interface has `netboot.allow_pxe = false`.
    PxeNotAllowed,
    /// Nobody registered this MAC/IP and the policy is to refuse strangers.
    UnknownClient,
}

impl Refusal {
    /// Short label for metrics and logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            Refusal::Disabled => "disabled",
            Refusal::PxeNotAllowed => "pxe_not_allowed",
            Refusal::UnknownClient => "unknown_client",
        }
    }
}

/// The gate's answer.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Serve. `machine` names the matched record (for logs), if any.
    Allow { machine: Option<String> },
    /// Refuse, naming the record when there is one.
    Refuse {
        reason: Refusal,
        machine: Option<String>,
    },
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow { .. })
    }
}

/// Who the request appears to come from, with what the registry knows about each.
#[derive(Clone, Debug, Default)]
pub struct Identity<'a> {
    pub mac: Option<MacAddr>,
    pub by_mac: Option<&'a Hardware>,
    pub ip: Option<Ipv4Addr>,
    pub by_ip: Option<&'a Hardware>,
}

/// The decision, from what is known. Pure.
pub fn decide(id: &Identity<'_>, unknown: UnknownClients) -> Decision {
    let mut matched: Option<String> = None;
    let checks = [
        id.by_mac
            .zip(id.mac)
            .map(|(hw, mac)| (hw, interface_allows_by_mac(hw, mac))),
        id.by_ip
            .zip(id.ip)
            .map(|(hw, ip)| (hw, interface_allows_by_ip(hw, ip))),
    ];
    for (hw, allow_pxe) in checks.into_iter().flatten() {
        let name = Some(record_name(hw));
        if hw.disabled {
            return Decision::Refuse {
                reason: Refusal::Disabled,
                machine: name,
            };
        }
        if allow_pxe == Some(false) {
            return Decision::Refuse {
                reason: Refusal::PxeNotAllowed,
                machine: name,
            };
        }
        matched = matched.or(name);
    }
    match (matched, unknown) {
        (Some(m), _) => Decision::Allow { machine: Some(m) },
        (None, UnknownClients::Serve) => Decision::Allow { machine: None },
        (None, UnknownClients::Refuse) => Decision::Refuse {
            reason: Refusal::UnknownClient,
            machine: None,
        },
    }
}

fn record_name(hw: &Hardware) -> String {
    if hw.name.is_empty() {
        hw.id.clone()
    } else {
        hw.name.clone()
    }
}

/// `allow_pxe` of the interface that owns `mac` (absent ≠ false).
fn interface_allows_by_mac(hw: &Hardware, mac: MacAddr) -> Option<bool> {
    hw.interfaces
        .iter()
        .find(|i| MacAddr::parse(&i.mac).ok() == Some(mac))
        .and_then(|i| i.netboot.as_ref())
        .and_then(|n| n.allow_pxe)
}

/// `allow_pxe` of the interface whose reserved address is `ip`.
fn interface_allows_by_ip(hw: &Hardware, ip: Ipv4Addr) -> Option<bool> {
    hw.interfaces
        .iter()
        .find(|i| i.dhcp.as_ref().and_then(|d| d.ip.parse::<Ipv4Addr>().ok()) == Some(ip))
        .and_then(|i| i.netboot.as_ref())
        .and_then(|n| n.allow_pxe)
}

/// Looks the client up in the cache (one bounded registry fallback on a miss, cut off
/// after `lookup_timeout` so a registry outage delays a boot by at most that) and
/// decides. A lookup that fails counts as "unknown": the registry being down must not
/// stop known-good machines from booting, and the unknown-client policy still applies.
pub async fn check(
    cache: Option<&HardwareCache>,
    mac: Option<MacAddr>,
    ip: Option<Ipv4Addr>,
    unknown: UnknownClients,
    lookup_timeout: Duration,
) -> Decision {
    let Some(cache) = cache else {
        return decide(
            &Identity {
                mac,
                ip,
                ..Default::default()
            },
            unknown,
        );
    };
    let by_mac: Option<Arc<Hardware>> = match mac {
        Some(m) => tokio::time::timeout(lookup_timeout, cache.by_mac_or_fetch(m))
            .await
            .ok()
            .and_then(|r| r.ok())
            .flatten(),
        None => None,
    };
    let by_ip: Option<Arc<Hardware>> = match ip {
        Some(a) => tokio::time::timeout(lookup_timeout, cache.by_ip_or_fetch(a))
            .await
            .ok()
            .and_then(|r| r.ok())
            .flatten(),
        None => None,
    };
    decide(
        &Identity {
            mac,
            by_mac: by_mac.as_deref(),
            ip,
            by_ip: by_ip.as_deref(),
        },
        unknown,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use ironboot_proto::pb::{Dhcp, Interface, Netboot};

    fn hw(mac: &str, ip: &str, allow_pxe: Option<bool>, disabled: bool) -> Hardware {
        Hardware {
            name: format!("m-{mac}"),
            disabled,
            interfaces: vec![Interface {
                mac: mac.into(),
                dhcp: Some(Dhcp {
                    ip: ip.into(),
                    ..Default::default()
                }),
                netboot: Some(Netboot {
                    allow_pxe,
                    ..Default::default()
                }),
            }],
            ..Default::default()
        }
    }

    const MAC: MacAddr = MacAddr([0x52, 0x54, 0, 0, 0, 1]);
    const IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 5);

    #[test]
    fn unknown_clients_follow_policy() {
        let id = Identity {
            mac: Some(MAC),
            ip: Some(IP),
            ..Default::default()
        };
        assert_eq!(
            decide(&id, UnknownClients::Serve),
            Decision::Allow { machine: None }
        );
        assert_eq!(
            decide(&id, UnknownClients::Refuse),
            Decision::Refuse {
                reason: Refusal::UnknownClient,
                machine: None
            }
        );
    }

    #[test]
    fn allow_pxe_absent_is_not_false() {
        let h = hw("52:54:00:00:00:01", "10.0.0.5", None, false);
        let id = Identity {
            mac: Some(MAC),
            by_mac: Some(&h),
            ..Default::default()
        };
        assert_eq!(
            decide(&id, UnknownClients::Refuse),
            Decision::Allow {
                machine: Some("m-52:54:00:00:00:01".into())
            }
        );
    }

    #[test]
    fn refusals_by_mac_or_ip() {
        let off = hw("52:54:00:00:00:01", "10.0.0.5", Some(false), false);
        let disabled = hw("52:54:00:00:00:01", "10.0.0.5", Some(true), true);
        let by_mac = Identity {
            mac: Some(MAC),
            by_mac: Some(&off),
            ..Default::default()
        };
        assert!(matches!(
            decide(&by_mac, UnknownClients::Serve),
            Decision::Refuse {
                reason: Refusal::PxeNotAllowed,
                ..
            }
        ));
        let by_ip = Identity {
            ip: Some(IP),
            by_ip: Some(&disabled),
            ..Default::default()
        };
        assert!(matches!(
            decide(&by_ip, UnknownClients::Serve),
            Decision::Refuse {
                reason: Refusal::Disabled,
                ..
            }
        ));
    }

    #[test]
    fn either_refusal_wins() {
        let ok = hw("52:54:00:00:00:01", "10.0.0.9", Some(true), false);
        let off = hw("52:54:00:00:00:02", "10.0.0.5", Some(false), false);
        // The path names an allowed machine, but the request comes from a refused one.
        let id = Identity {
            mac: Some(MAC),
            by_mac: Some(&ok),
            ip: Some(IP),
            by_ip: Some(&off),
        };
        assert!(matches!(
            decide(&id, UnknownClients::Serve),
            Decision::Refuse {
                reason: Refusal::PxeNotAllowed,
                ..
            }
        ));
    }

    #[test]
    fn allow_pxe_is_per_interface() {
        // Two interfaces; only the other one is refused.
        let mut h = hw("52:54:00:00:00:01", "10.0.0.5", Some(true), false);
        h.interfaces.push(Interface {
            mac: "52:54:00:00:00:02".into(),
            dhcp: None,
            netboot: Some(Netboot {
                allow_pxe: Some(false),
                ..Default::default()
            }),
        });
        let id = Identity {
            mac: Some(MAC),
            by_mac: Some(&h),
            ..Default::default()
        };
        assert!(decide(&id, UnknownClients::Serve).is_allowed());
        let other = Identity {
            mac: Some(MacAddr([0x52, 0x54, 0, 0, 0, 2])),
            by_mac: Some(&h),
            ..Default::default()
        };
        assert!(!decide(&other, UnknownClients::Serve).is_allowed());
    }
}
