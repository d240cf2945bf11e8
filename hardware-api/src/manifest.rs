//! The forms an operator writes hardware in, and how `hwctl` prints it back.
//!
//! Two forms are read, in YAML or JSON, one or many documents per file:
//! - ours: the `Hardware` record's own fields (`name`, `interfaces[].mac`, `dhcp`, …),
//!   optionally with `apiVersion: ironboot/v1` and `kind: Hardware`. Unknown fields are
//!   refused, so a typo such as `alow_pxe` is an error rather than a silent default.
//! - Tinkerbell's `Hardware` (`apiVersion: tinkerbell.org/v1alpha1`): the fields we
//!   have are mapped, the rest of its spec (disks, BMC, user data, …) is ignored and
//!   reported, so a migration is one `hwctl apply -f` away.
//!
//! Checks of values (MAC syntax, subnets…) are the registry's job: one place decides.

use std::collections::{BTreeMap, HashMap};
use std::time::SystemTime;

use ironboot_proto::pb;
use serde::{Deserialize, Serialize};

pub const API_VERSION: &str = "ironboot/v1";
pub const TINKERBELL_API_PREFIX: &str = "tinkerbell.org/";

/// Our form of a hardware record; also the output form of `hwctl get -o yaml|json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HardwareDoc {
    #[serde(
        rename = "apiVersion",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub api_version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub facility: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub disabled: bool,
    #[serde(default)]
    pub interfaces: Vec<InterfaceDoc>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub revision: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub created_at: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub updated_at: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterfaceDoc {
    pub mac: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dhcp: Option<DhcpDoc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netboot: Option<NetbootDoc>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DhcpDoc {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ip: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub netmask: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub gateway: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hostname: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub domain: String,
    #[serde(default, skip_serializing_if = "is_zero32")]
    pub lease_time: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub name_servers: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub time_servers: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub domain_search: Vec<String>,
    #[serde(default, skip_serializing_if = "is_zero32")]
    pub vlan_id: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub arch: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub uefi: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub iface_name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetbootDoc {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_pxe: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_workflow: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipxe: Option<IpxeDoc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub osie: Option<OsieDoc>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ipxe_binary: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpxeDoc {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub url: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub contents: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OsieDoc {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub base_url: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kernel: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub initrd: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kernel_params: String,
}

fn is_false(b: &bool) -> bool {
    !*b
}
fn is_zero(n: &u64) -> bool {
    *n == 0
}
fn is_zero32(n: &u32) -> bool {
    *n == 0
}

// ---- Tinkerbell's Hardware (tinkerbell.org/v1alpha1), the subset we map ----

#[derive(Debug, Default, Deserialize)]
struct TinkHardware {
    #[serde(default)]
    metadata: TinkObjectMeta,
    #[serde(default)]
    spec: TinkSpec,
}

#[derive(Debug, Default, Deserialize)]
struct TinkObjectMeta {
    #[serde(default)]
    name: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
struct TinkSpec {
    #[serde(default)]
    interfaces: Vec<TinkInterface>,
    #[serde(default)]
    metadata: Option<TinkSpecMetadata>,
    #[serde(flatten)]
    other: BTreeMap<String, serde_yaml::Value>,
}

#[derive(Debug, Default, Deserialize)]
struct TinkSpecMetadata {
    #[serde(default)]
    facility: Option<TinkFacility>,
}

#[derive(Debug, Default, Deserialize)]
struct TinkFacility {
    #[serde(default)]
    facility_code: String,
}

#[derive(Debug, Default, Deserialize)]
struct TinkInterface {
    #[serde(default)]
    dhcp: Option<TinkDhcp>,
    #[serde(default)]
    netboot: Option<TinkNetboot>,
    #[serde(default, rename = "disableDhcp")]
    disable_dhcp: bool,
}

#[derive(Debug, Default, Deserialize)]
struct TinkDhcp {
    #[serde(default)]
    mac: String,
    #[serde(default)]
    ip: Option<TinkIp>,
    #[serde(default)]
    hostname: String,
    #[serde(default)]
    lease_time: i64,
    #[serde(default)]
    name_servers: Vec<String>,
    #[serde(default)]
    time_servers: Vec<String>,
    #[serde(default)]
    arch: String,
    #[serde(default)]
    uefi: bool,
    #[serde(default)]
    vlan_id: Option<StringOrNumber>,
    #[serde(default)]
    iface_name: String,
}

#[derive(Debug, Default, Deserialize)]
struct TinkIp {
    #[serde(default)]
    address: String,
    #[serde(default)]
    netmask: String,
    #[serde(default)]
    gateway: String,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum StringOrNumber {
    S(String),
    N(i64),
}

#[derive(Debug, Default, Deserialize)]
struct TinkNetboot {
    #[serde(default, rename = "allowPXE")]
    allow_pxe: Option<bool>,
    #[serde(default, rename = "allowWorkflow")]
    allow_workflow: Option<bool>,
    #[serde(default)]
    ipxe: Option<IpxeDoc>,
    #[serde(default)]
    osie: Option<TinkOsie>,
}

#[derive(Debug, Default, Deserialize)]
struct TinkOsie {
    #[serde(default, rename = "baseURL")]
    base_url: String,
    #[serde(default)]
    kernel: String,
    #[serde(default)]
    initrd: String,
}

/// A parsed document: the record, and notes about what was not carried over.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub hardware: pb::Hardware,
    pub notes: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("document {index}{name}: {message}")]
pub struct ManifestError {
    /// 1-based position in the input.
    pub index: usize,
    /// ` (name "x")` when known, else empty.
    pub name: String,
    pub message: String,
}

/// Parses every document of a YAML or JSON input. A document may be one record, a list
/// of records, or a `kind: List` / `HardwareList` with `items`. Fails on the first bad
/// document, so nothing is applied from a file that is partly wrong.
pub fn parse_documents(text: &str) -> Result<Vec<Parsed>, ManifestError> {
    let mut out = Vec::new();
    let mut index = 0;
    for doc in serde_yaml::Deserializer::from_str(text) {
        let value = serde_yaml::Value::deserialize(doc).map_err(|e| ManifestError {
            index: index + 1,
            name: String::new(),
            message: e.to_string(),
        })?;
        for item in flatten(value) {
            index += 1;
            out.push(parse_one(item, index)?);
        }
    }
    Ok(out)
}

fn flatten(value: serde_yaml::Value) -> Vec<serde_yaml::Value> {
    use serde_yaml::Value;
    match value {
        Value::Null => vec![],
        Value::Sequence(items) => items.into_iter().flat_map(flatten).collect(),
        Value::Mapping(ref m)
            if m.get("items").is_some()
                && m.get("kind")
                    .and_then(Value::as_str)
                    .is_some_and(|k| k.ends_with("List")) =>
        {
            match value {
                Value::Mapping(mut m) => m.remove("items").map(flatten).unwrap_or_default(),
                _ => vec![],
            }
        }
        v => vec![v],
    }
}

fn parse_one(value: serde_yaml::Value, index: usize) -> Result<Parsed, ManifestError> {
    let api = value
        .get("apiVersion")
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_string();
    let name_hint = value
        .get("name")
        .or_else(|| value.get("metadata").and_then(|m| m.get("name")))
        .and_then(|v| v.as_str())
        .map(|n| format!(" (name {n:?})"))
        .unwrap_or_default();
    let fail = |message: String| ManifestError {
        index,
        name: name_hint.clone(),
        message,
    };
    if !value.is_mapping() {
        return Err(fail("expected a mapping (a hardware record)".into()));
    }
    if api.starts_with(TINKERBELL_API_PREFIX) {
        let kind = value.get("kind").and_then(|v| v.as_str()).unwrap_or("");
        if kind != "Hardware" {
            return Err(fail(format!("kind {kind:?} of {api} is not Hardware")));
        }
        let tink: TinkHardware = serde_yaml::from_value(value).map_err(|e| fail(e.to_string()))?;
        return from_tinkerbell(tink).map_err(fail);
    }
    if !api.is_empty() && api != API_VERSION {
        return Err(fail(format!(
            "unknown apiVersion {api:?} (expected {API_VERSION} or tinkerbell.org/v1alpha1)"
        )));
    }
    let doc: HardwareDoc = serde_yaml::from_value(value).map_err(|e| fail(e.to_string()))?;
    if !doc.kind.is_empty() && doc.kind != "Hardware" {
        return Err(fail(format!("kind {:?} is not Hardware", doc.kind)));
    }
    Ok(Parsed {
        hardware: doc.into_pb(),
        notes: vec![],
    })
}

/// Maps a Tinkerbell Hardware to our record. Interfaces with `disableDhcp: true` keep
/// their MAC (the machine is still known by it) but lose the DHCP reservation.
fn from_tinkerbell(t: TinkHardware) -> Result<Parsed, String> {
    let mut notes = Vec::new();
    let ignored: Vec<&str> = t.spec.other.keys().map(String::as_str).collect();
    if !ignored.is_empty() {
        notes.push(format!(
            "ignored Tinkerbell spec fields: {}",
            ignored.join(", ")
        ));
    }
    let mut interfaces = Vec::new();
    for (i, ti) in t.spec.interfaces.into_iter().enumerate() {
        let Some(d) = ti.dhcp else {
            return Err(format!(
                "spec.interfaces[{i}].dhcp.mac: required (the MAC is how a machine is found)"
            ));
        };
        let vlan_id = match d.vlan_id {
            None => 0,
            Some(StringOrNumber::N(n)) => u32::try_from(n)
                .map_err(|_| format!("spec.interfaces[{i}].dhcp.vlan_id: {n} is not a VLAN id"))?,
            Some(StringOrNumber::S(s)) if s.trim().is_empty() => 0,
            Some(StringOrNumber::S(s)) => s.trim().parse().map_err(|_| {
                format!("spec.interfaces[{i}].dhcp.vlan_id: {s:?} is not a VLAN id")
            })?,
        };
        let lease_time = u32::try_from(d.lease_time).map_err(|_| {
            format!(
                "spec.interfaces[{i}].dhcp.lease_time: {} is out of range",
                d.lease_time
            )
        })?;
        let ip = d.ip.unwrap_or_default();
        let dhcp = if ti.disable_dhcp {
            notes.push(format!(
                "interface {}: disableDhcp is set, so no address is reserved",
                d.mac
            ));
            pb::Dhcp {
                hostname: d.hostname,
                arch: d.arch,
                uefi: d.uefi,
                iface_name: d.iface_name,
                ..Default::default()
            }
        } else {
            pb::Dhcp {
                ip: ip.address,
                netmask: ip.netmask,
                gateway: ip.gateway,
                hostname: d.hostname,
                domain: String::new(),
                lease_time,
                name_servers: d.name_servers,
                time_servers: d.time_servers,
                domain_search: vec![],
                vlan_id,
                arch: d.arch,
                uefi: d.uefi,
                iface_name: d.iface_name,
            }
        };
        let netboot = ti.netboot.map(|n| pb::Netboot {
            allow_pxe: n.allow_pxe,
            allow_workflow: n.allow_workflow,
            ipxe: n.ipxe.map(|x| pb::Ipxe {
                url: x.url,
                contents: x.contents,
            }),
            osie: n.osie.map(|o| pb::Osie {
                base_url: o.base_url,
                kernel: o.kernel,
                initrd: o.initrd,
                kernel_params: String::new(),
            }),
            ipxe_binary: String::new(),
        });
        interfaces.push(pb::Interface {
            mac: d.mac,
            dhcp: Some(dhcp),
            netboot,
        });
    }
    let facility = t
        .spec
        .metadata
        .and_then(|m| m.facility)
        .map(|f| f.facility_code)
        .unwrap_or_default();
    Ok(Parsed {
        hardware: pb::Hardware {
            name: t.metadata.name,
            labels: t.metadata.labels.into_iter().collect(),
            facility,
            interfaces,
            ..Default::default()
        },
        notes,
    })
}

impl HardwareDoc {
    pub fn into_pb(self) -> pb::Hardware {
        pb::Hardware {
            id: self.id,
            name: self.name,
            labels: self.labels.into_iter().collect::<HashMap<_, _>>(),
            facility: self.facility,
            disabled: self.disabled,
            interfaces: self
                .interfaces
                .into_iter()
                .map(InterfaceDoc::into_pb)
                .collect(),
            revision: 0,
            created_at: None,
            updated_at: None,
        }
    }

    pub fn from_pb(hw: &pb::Hardware) -> Self {
        HardwareDoc {
            api_version: API_VERSION.into(),
            kind: "Hardware".into(),
            id: hw.id.clone(),
            name: hw.name.clone(),
            labels: hw
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            facility: hw.facility.clone(),
            disabled: hw.disabled,
            interfaces: hw.interfaces.iter().map(InterfaceDoc::from_pb).collect(),
            revision: hw.revision,
            created_at: hw.created_at.map(rfc3339).unwrap_or_default(),
            updated_at: hw.updated_at.map(rfc3339).unwrap_or_default(),
        }
    }
}

impl InterfaceDoc {
    fn into_pb(self) -> pb::Interface {
        pb::Interface {
            mac: self.mac,
            dhcp: self.dhcp.map(|d| pb::Dhcp {
                ip: d.ip,
                netmask: d.netmask,
                gateway: d.gateway,
                hostname: d.hostname,
                domain: d.domain,
                lease_time: d.lease_time,
                name_servers: d.name_servers,
                time_servers: d.time_servers,
                domain_search: d.domain_search,
                vlan_id: d.vlan_id,
                arch: d.arch,
                uefi: d.uefi,
                iface_name: d.iface_name,
            }),
            netboot: self.netboot.map(|n| pb::Netboot {
                allow_pxe: n.allow_pxe,
                allow_workflow: n.allow_workflow,
                ipxe: n.ipxe.map(|i| pb::Ipxe {
                    url: i.url,
                    contents: i.contents,
                }),
                osie: n.osie.map(|o| pb::Osie {
                    base_url: o.base_url,
                    kernel: o.kernel,
                    initrd: o.initrd,
                    kernel_params: o.kernel_params,
                }),
                ipxe_binary: n.ipxe_binary,
            }),
        }
    }

    fn from_pb(i: &pb::Interface) -> Self {
        InterfaceDoc {
            mac: i.mac.clone(),
            dhcp: i.dhcp.as_ref().map(|d| DhcpDoc {
                ip: d.ip.clone(),
                netmask: d.netmask.clone(),
                gateway: d.gateway.clone(),
                hostname: d.hostname.clone(),
                domain: d.domain.clone(),
                lease_time: d.lease_time,
                name_servers: d.name_servers.clone(),
                time_servers: d.time_servers.clone(),
                domain_search: d.domain_search.clone(),
                vlan_id: d.vlan_id,
                arch: d.arch.clone(),
                uefi: d.uefi,
                iface_name: d.iface_name.clone(),
            }),
            netboot: i.netboot.as_ref().map(|n| NetbootDoc {
                allow_pxe: n.allow_pxe,
                allow_workflow: n.allow_workflow,
                ipxe: n.ipxe.as_ref().map(|x| IpxeDoc {
                    url: x.url.clone(),
                    contents: x.contents.clone(),
                }),
                osie: n.osie.as_ref().map(|o| OsieDoc {
                    base_url: o.base_url.clone(),
                    kernel: o.kernel.clone(),
                    initrd: o.initrd.clone(),
                    kernel_params: o.kernel_params.clone(),
                }),
                ipxe_binary: n.ipxe_binary.clone(),
            }),
        }
    }
}

/// RFC 3339 UTC, seconds precision.
pub fn rfc3339(ts: prost_types::Timestamp) -> String {
    match SystemTime::try_from(ts) {
        Ok(t) => humantime::format_rfc3339_seconds(t).to_string(),
        Err(_) => String::new(),
    }
}
