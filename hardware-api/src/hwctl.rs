//! `hwctl`: the operator's command line for the hardware registry.

use std::io::Read;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use anyhow::{Context, anyhow, bail};
use clap::{Parser, Subcommand, ValueEnum};
use ironboot_proto::MacAddr;
use ironboot_proto::client::{HardwareClient, RegistryArgs};
use ironboot_proto::pb::{
    DeleteHardwareRequest, EventType, GetHardwareRequest, Hardware, ListHardwareRequest,
    UpdateHardwareRequest, UpdateOutcome, WatchHardwareRequest, delete_hardware_request,
    get_hardware_request,
};
use tonic::Code;

use crate::manifest::{HardwareDoc, parse_documents};

/// Register and inspect machines in the ironboot hardware registry.
#[derive(Debug, Parser)]
#[command(name = "hwctl", version)]
pub struct Cli {
    #[command(flatten)]
    pub registry: RegistryArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Yaml,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create or update machines from YAML/JSON (ours or Tinkerbell Hardware; many
    /// documents per file). Every document is checked by the registry before any is
    /// written; applying the same file twice changes nothing.
    Apply {
        /// File to read, or - for standard input.
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<PathBuf>,
        /// Check everything with the registry, write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Show one machine, found by name, MAC (any spelling) or IPv4 address.
    Get {
        key: String,
        /// Treat KEY as the registry id.
        #[arg(long)]
        id: bool,
        #[arg(short, long, value_enum, default_value = "yaml")]
        output: Output,
    },
    /// List machines.
    List {
        /// Label selector, e.g. "rack=r1,env!=prod".
        #[arg(short = 'l', long = "selector", default_value = "")]
        selector: String,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Delete machines by name.
    Delete {
        #[arg(required = true)]
        names: Vec<String>,
        /// Succeed when a machine does not exist.
        #[arg(long)]
        ignore_not_found: bool,
    },
    /// Check that the registry answers and is serving (gRPC health protocol; no token
    /// needed). Exit 0 when serving — usable as a container health check.
    Health,
    /// Print changes as they happen.
    Watch {
        /// Start after this revision (default: from now).
        #[arg(long)]
        since: Option<u64>,
        /// One JSON object per event instead of a line of text.
        #[arg(long)]
        json: bool,
    },
}

/// Runs the command; the error is what the operator reads.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let command = match cli.command {
        Command::Health => return health(&cli.registry).await,
        other => other,
    };
    let mut client = cli.registry.connect().await?;
    match command {
        Command::Apply { files, dry_run } => apply(&mut client, &files, dry_run).await,
        Command::Get { key, id, output } => get(&mut client, &key, id, output).await,
        Command::List { selector, output } => list(&mut client, &selector, output).await,
        Command::Delete {
            names,
            ignore_not_found,
        } => delete(&mut client, &names, ignore_not_found).await,
        Command::Watch { since, json } => watch(&mut client, since, json).await,
        Command::Health => health(&cli.registry).await,
    }
}

/// Words an operator understands for a gRPC failure.
fn explain(status: &tonic::Status) -> anyhow::Error {
    let msg = status.message();
    match status.code() {
        Code::Unauthenticated => anyhow!(
            "not authenticated: {msg} (pass --registry-token or set IRONBOOT_REGISTRY_TOKEN)"
        ),
        Code::PermissionDenied => anyhow!("permission denied: {msg}"),
        Code::Unavailable => anyhow!("registry unavailable: {msg}"),
        Code::DeadlineExceeded => anyhow!("registry did not answer in time: {msg}"),
        _ => anyhow!("{msg}"),
    }
}

fn read_input(path: &PathBuf) -> anyhow::Result<String> {
    if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading standard input")?;
        Ok(s)
    } else {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
    }
}

async fn apply(
    client: &mut HardwareClient,
    files: &[PathBuf],
    dry_run: bool,
) -> anyhow::Result<()> {
    let mut docs = Vec::new();
    for f in files {
        let text = read_input(f)?;
        let parsed = parse_documents(&text).map_err(|e| anyhow!("{}: {e}", f.display()))?;
        for p in parsed {
            for n in &p.notes {
                eprintln!("note: {}: hardware {:?}: {n}", f.display(), p.hardware.name);
            }
            docs.push((f.clone(), p.hardware));
        }
    }
    if docs.is_empty() {
        bail!("no hardware documents found");
    }
    let mut names = std::collections::HashSet::new();
    for (f, hw) in &docs {
        if !names.insert(hw.name.clone()) {
            bail!(
                "{}: hardware {:?} appears twice in the input",
                f.display(),
                hw.name
            );
        }
    }
    // First pass: the registry checks every document; nothing is written unless all pass.
    for (f, hw) in &docs {
        upsert(client, hw.clone(), true)
            .await
            .map_err(|e| anyhow!("{}: hardware {:?}: {e}", f.display(), hw.name))?;
    }
    if dry_run {
        for (_, hw) in &docs {
            println!("hardware/{} valid (dry run)", hw.name);
        }
        return Ok(());
    }
    for (f, hw) in docs {
        let name = hw.name.clone();
        let outcome = upsert(client, hw, false)
            .await
            .map_err(|e| anyhow!("{}: hardware {name:?}: {e}", f.display()))?;
        let word = match outcome {
            UpdateOutcome::Created => "created",
            UpdateOutcome::Updated => "configured",
            UpdateOutcome::Unchanged => "unchanged",
            UpdateOutcome::Unspecified => "applied",
        };
        println!("hardware/{name} {word}");
    }
    Ok(())
}

async fn upsert(
    client: &mut HardwareClient,
    hw: Hardware,
    validate_only: bool,
) -> anyhow::Result<UpdateOutcome> {
    // Matched by name: ids are the registry's, files do not carry them.
    let hw = Hardware {
        id: String::new(),
        ..hw
    };
    let resp = client
        .update_hardware(UpdateHardwareRequest {
            hardware: Some(hw),
            expected_revision: 0,
            allow_missing: true,
            validate_only,
        })
        .await
        .map_err(|s| explain(&s))?
        .into_inner();
    Ok(UpdateOutcome::try_from(resp.outcome).unwrap_or(UpdateOutcome::Unspecified))
}

/// Reads KEY as a MAC, then an IPv4 address, then a name.
pub fn lookup_key(key: &str, is_id: bool) -> get_hardware_request::Key {
    use get_hardware_request::Key;
    if is_id {
        Key::Id(key.to_string())
    } else if let Ok(mac) = MacAddr::parse(key) {
        Key::Mac(mac.to_string())
    } else if key.parse::<Ipv4Addr>().is_ok() {
        Key::Ip(key.to_string())
    } else {
        Key::Name(key.to_string())
    }
}

async fn get(
    client: &mut HardwareClient,
    key: &str,
    id: bool,
    output: Output,
) -> anyhow::Result<()> {
    let hw = client
        .get_hardware(GetHardwareRequest {
            key: Some(lookup_key(key, id)),
        })
        .await
        .map_err(|s| explain(&s))?
        .into_inner()
        .hardware
        .ok_or_else(|| anyhow!("the registry answered without a record"))?;
    print_records(&[hw], output)
}

async fn list(client: &mut HardwareClient, selector: &str, output: Output) -> anyhow::Result<()> {
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let resp = client
            .list_hardware(ListHardwareRequest {
                page_size: 0,
                page_token: token,
                label_selector: selector.to_string(),
            })
            .await
            .map_err(|s| explain(&s))?
            .into_inner();
        all.extend(resp.hardware);
        if resp.next_page_token.is_empty() {
            break;
        }
        token = resp.next_page_token;
    }
    print_records(&all, output)
}

fn print_records(records: &[Hardware], output: Output) -> anyhow::Result<()> {
    let docs: Vec<HardwareDoc> = records.iter().map(HardwareDoc::from_pb).collect();
    match output {
        Output::Yaml => {
            for (i, d) in docs.iter().enumerate() {
                if i > 0 {
                    println!("---");
                }
                print!("{}", serde_yaml::to_string(d)?);
            }
        }
        Output::Json => {
            if docs.len() == 1 {
                println!("{}", serde_json::to_string_pretty(&docs[0])?);
            } else {
                println!("{}", serde_json::to_string_pretty(&docs)?);
            }
        }
        Output::Table => print!("{}", table(records)),
    }
    Ok(())
}

/// A fixed-width table: NAME, MAC, IP, FACILITY, PXE, REVISION (one row per machine,
/// extra interfaces joined with commas).
pub fn table(records: &[Hardware]) -> String {
    let rows: Vec<[String; 6]> = records
        .iter()
        .map(|h| {
            let macs: Vec<&str> = h.interfaces.iter().map(|i| i.mac.as_str()).collect();
            let ips: Vec<&str> = h
                .interfaces
                .iter()
                .filter_map(|i| {
                    i.dhcp
                        .as_ref()
                        .map(|d| d.ip.as_str())
                        .filter(|s| !s.is_empty())
                })
                .collect();
            let pxe = if h.disabled {
                "disabled"
            } else {
                match h
                    .interfaces
                    .iter()
                    .filter_map(|i| i.netboot.as_ref()?.allow_pxe)
                    .next()
                {
                    Some(true) => "allowed",
                    Some(false) => "denied",
                    None => "default",
                }
            };
            [
                h.name.clone(),
                macs.join(","),
                ips.join(","),
                h.facility.clone(),
                pxe.to_string(),
                h.revision.to_string(),
            ]
        })
        .collect();
    let header = ["NAME", "MAC", "IP", "FACILITY", "PXE", "REVISION"];
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  "));
            }
        }
        s.push('\n');
        s
    };
    let mut out = line(header.to_vec());
    for r in &rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

async fn delete(
    client: &mut HardwareClient,
    names: &[String],
    ignore_not_found: bool,
) -> anyhow::Result<()> {
    for name in names {
        let req = DeleteHardwareRequest {
            key: Some(delete_hardware_request::Key::Name(name.clone())),
            expected_revision: 0,
        };
        match client.delete_hardware(req).await {
            Ok(_) => println!("hardware/{name} deleted"),
            Err(s) if s.code() == Code::NotFound && ignore_not_found => {
                println!("hardware/{name} not found (ignored)")
            }
            Err(s) => return Err(explain(&s).context(format!("deleting hardware {name:?}"))),
        }
    }
    Ok(())
}

async fn health(registry: &RegistryArgs) -> anyhow::Result<()> {
    use tonic_health::pb::health_check_response::ServingStatus;
    let channel = registry.channel().await?;
    let mut h = tonic_health::pb::health_client::HealthClient::new(channel);
    let resp = h
        .check(tonic_health::pb::HealthCheckRequest {
            service: "hardware.v1.HardwareService".into(),
        })
        .await
        .map_err(|s| explain(&s))?
        .into_inner();
    match resp.status() {
        ServingStatus::Serving => {
            println!("serving");
            Ok(())
        }
        other => bail!("registry is {}", other.as_str_name()),
    }
}

async fn watch(client: &mut HardwareClient, since: Option<u64>, json: bool) -> anyhow::Result<()> {
    let mut stream = client
        .watch_hardware(WatchHardwareRequest {
            since_revision: since,
            store_id: String::new(),
        })
        .await
        .map_err(|s| explain(&s))?
        .into_inner();
    while let Some(ev) = stream.message().await.map_err(|s| explain(&s))? {
        let kind = EventType::try_from(ev.r#type).unwrap_or(EventType::Unspecified);
        if kind == EventType::Bookmark {
            continue;
        }
        let word = match kind {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
            _ => "UNKNOWN",
        };
        let hw = ev.hardware.unwrap_or_default();
        if json {
            let obj = serde_json::json!({ "type": word, "revision": ev.revision, "hardware": HardwareDoc::from_pb(&hw) });
            println!("{obj}");
        } else {
            let macs: Vec<&str> = hw.interfaces.iter().map(|i| i.mac.as_str()).collect();
            println!("{} {word} {} {}", ev.revision, hw.name, macs.join(","));
        }
        use std::io::Write;
        let _ = std::io::stdout().flush();
    }
    Ok(())
}
