//! Who is asking (firmware PXE, UEFI HTTP boot, or iPXE already) and what it should be
//! told to load next. Pure functions: request facts in, boot answer out.

use std::collections::BTreeMap;

use crate::packet::{Request, code};

pub use bootfiles::arch;

/// What kind of network-boot client sent the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Client {
    /// An ordinary DHCP client (an OS, an installer's udhcpc).
    Plain,
    /// Firmware PXE (vendor class PXEClient, or options 93/94/97 present).
    Pxe { arch: u16 },
    /// UEFI HTTP boot (vendor class HTTPClient): wants a URL, not a TFTP file.
    HttpBoot { arch: u16 },
    /// iPXE already running: must get the script, never the binary again.
    Ipxe { arch: u16 },
}

impl Client {
    pub fn is_netboot(self) -> bool {
        !matches!(self, Client::Plain)
    }

    pub fn label(self) -> &'static str {
        match self {
            Client::Plain => "plain",
            Client::Pxe { .. } => "pxe",
            Client::HttpBoot { .. } => "httpboot",
            Client::Ipxe { .. } => "ipxe",
        }
    }
}

/// The architecture from option 93 (the first we know), else from the
/// `PXEClient:Arch:NNNNN` vendor class, else x86 BIOS.
pub fn client_arch(req: &Request<'_>) -> u16 {
    let arches = req.arches();
    if let Some(a) = arches.iter().copied().find(|a| known_arch(*a)) {
        return a;
    }
    if let Some(a) = arches.first() {
        return *a;
    }
    let vc = req.vendor_class();
    if let Some(pos) = find(vc, b"Arch:") {
        let digits = &vc[pos + 5..];
        let n: String = digits
            .iter()
            .take(5)
            .take_while(|b| b.is_ascii_digit())
            .map(|b| *b as char)
            .collect();
        if let Ok(a) = n.parse() {
            return a;
        }
    }
    arch::X86_BIOS
}

fn known_arch(a: u16) -> bool {
    matches!(a, 0 | 6 | 7 | 9 | 10 | 11 | 15 | 16 | 18 | 19)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Classifies the client. `ipxe_user_classes` is the configured set of user classes
/// that mean "this is our iPXE" (default `iPXE`, `Tinkerbell`).
pub fn classify(req: &Request<'_>, ipxe_user_classes: &[String]) -> Client {
    let arch = client_arch(req);
    let is_ipxe = req.has(code::IPXE_ENCAP)
        || req
            .user_classes()
            .iter()
            .any(|uc| ipxe_user_classes.iter().any(|want| want.as_bytes() == *uc));
    if is_ipxe {
        return Client::Ipxe { arch };
    }
    let vc = req.vendor_class();
    if vc.starts_with(b"HTTPClient") {
        return Client::HttpBoot { arch };
    }
    if vc.starts_with(b"PXEClient")
        || req.has(code::CLIENT_ARCH)
        || req.has(code::CLIENT_NDI)
        || req.has(code::CLIENT_UUID)
    {
        return Client::Pxe { arch };
    }
    Client::Plain
}

/// Which iPXE binary each architecture gets; operators override per architecture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootFiles(BTreeMap<u16, String>);

impl Default for BootFiles {
    fn default() -> Self {
        BootFiles(
            arch::DEFAULT_BINARIES
                .iter()
                .map(|(a, f)| (*a, f.to_string()))
                .collect(),
        )
    }
}

impl BootFiles {
    /// Applies `ARCH=FILE` overrides (e.g. `7=snponly.efi`).
    pub fn with_overrides(mut self, overrides: &[String]) -> Result<Self, String> {
        for o in overrides {
            let (a, f) = o.split_once('=').ok_or_else(|| {
                format!("boot file override {o:?}: expected ARCH=FILE, e.g. 7=snponly.efi")
            })?;
            let a: u16 = a.trim().parse().map_err(|_| {
                format!("boot file override {o:?}: {a:?} is not an architecture number")
            })?;
            let f = f.trim();
            if f.is_empty() || f.len() > 127 || f.contains(['/', ' ']) {
                return Err(format!(
                    "boot file override {o:?}: a file name without '/' or spaces, at most 127 bytes"
                ));
            }
            self.0.insert(a, f.to_string());
        }
        Ok(self)
    }

    /// Unknown architectures get nothing rather than a binary that cannot run.
    pub fn for_arch(&self, arch: u16) -> Option<&str> {
        self.0.get(&arch).map(String::as_str)
    }
}

/// What to tell a netboot client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BootAnswer {
    /// A TFTP file name from next-server (firmware PXE).
    TftpFile(String),
    /// A URL to fetch the binary over HTTP (UEFI HTTP boot); reply carries option 60 HTTPClient.
    HttpBinary(String),
    /// The iPXE script URL (already iPXE).
    Script(String),
    /// Architecture we have no binary for.
    UnknownArch(u16),
}

/// Where the other services are, as clients should reach them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoints {
    /// `host[:port]` of ipxe-http-svc as advertised to clients; empty means "the
    /// server identifier of the link, port 8080" (resolved per packet).
    pub http: String,
}

/// Picks the boot answer. `file_override` is the per-hardware binary, `script_override`
/// the per-hardware `ipxe.url`.
pub fn boot_answer(
    client: Client,
    mac: &str,
    files: &BootFiles,
    endpoints: &Endpoints,
    file_override: Option<&str>,
    script_override: Option<&str>,
) -> Option<BootAnswer> {
    let binary = |arch: u16| {
        file_override
            .map(str::to_string)
            .or_else(|| files.for_arch(arch).map(str::to_string))
    };
    Some(match client {
        Client::Plain => return None,
        Client::Ipxe { .. } => BootAnswer::Script(match script_override {
            Some(u) => u.to_string(),
            None => format!("http://{}/{}/auto.ipxe", endpoints.http, mac),
        }),
        Client::HttpBoot { arch } => match binary(arch) {
            Some(f) => {
                BootAnswer::HttpBinary(format!("http://{}/ipxe/{}/{}", endpoints.http, mac, f))
            }
            None => BootAnswer::UnknownArch(arch),
        },
        Client::Pxe { arch } => match binary(arch) {
            Some(f) => BootAnswer::TftpFile(f),
            None => BootAnswer::UnknownArch(arch),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::MessageType;
    use crate::packet::tests::request_bytes;

    const MAC: [u8; 6] = [0x52, 0x54, 0, 0xee, 0x0d, 0x0b];
    const MACS: &str = "52:54:00:ee:0d:0b";

    fn classes() -> Vec<String> {
        vec!["iPXE".into(), "Tinkerbell".into()]
    }

    fn answer(opts: &[(u8, &[u8])]) -> Option<BootAnswer> {
        let b = request_bytes(MessageType::Discover, MAC, opts);
        let r = Request::decode(&b).unwrap();
        let c = classify(&r, &classes());
        boot_answer(
            c,
            MACS,
            &BootFiles::default(),
            &Endpoints {
                http: "10.0.0.1:8080".into(),
            },
            None,
            None,
        )
    }

    fn tftp(f: &str) -> Option<BootAnswer> {
        Some(BootAnswer::TftpFile(f.into()))
    }

    #[test]
    fn every_architecture_gets_its_binary() {
        let table: &[(u16, Option<BootAnswer>)] = &[
            (0, tftp("undionly.kpxe")),
            (6, tftp("ipxe.efi")),
            (7, tftp("ipxe.efi")),
            (9, tftp("ipxe.efi")),
            (10, tftp("snp.efi")),
            (11, tftp("snp.efi")),
            (2, Some(BootAnswer::UnknownArch(2))),
            (0x20, Some(BootAnswer::UnknownArch(0x20))),
        ];
        for (a, want) in table {
            let got = answer(&[(93, &a.to_be_bytes()), (60, b"PXEClient")]);
            assert_eq!(&got, want, "arch {a}");
        }
    }

    #[test]
    fn http_boot_clients_get_a_url() {
        for (a, file) in [
            (15u16, "ipxe.efi"),
            (16, "ipxe.efi"),
            (18, "snp.efi"),
            (19, "snp.efi"),
        ] {
            let got = answer(&[
                (93, &a.to_be_bytes()),
                (60, b"HTTPClient:Arch:00016:UNDI:003000"),
            ]);
            assert_eq!(
                got,
                Some(BootAnswer::HttpBinary(format!(
                    "http://10.0.0.1:8080/ipxe/{MACS}/{file}"
                ))),
                "arch {a}"
            );
        }
    }

    #[test]
    fn ipxe_clients_get_the_script_never_the_binary() {
        let script = Some(BootAnswer::Script(format!(
            "http://10.0.0.1:8080/{MACS}/auto.ipxe"
        )));
        for opts in [
            vec![
                (93u8, &[0u8, 0][..]),
                (77, b"iPXE"),
                (60, b"PXEClient:Arch:00000:UNDI:002001"),
            ],
            vec![(93, &[0, 7][..]), (77, b"\x04iPXE")],
            vec![(93, &[0, 7][..]), (77, b"Tinkerbell")],
            vec![(93, &[0, 11][..]), (175, &[177, 1, 1][..])],
            vec![(77, b"iPXE")],
        ] {
            assert_eq!(answer(&opts), script, "{opts:?}");
        }
        // A user class we were not told about is not "our iPXE".
        assert_eq!(answer(&[(93, &[0, 7]), (77, b"Other")]), tftp("ipxe.efi"));
    }

    #[test]
    fn detection_from_each_option_alone() {
        assert_eq!(
            answer(&[(60, b"PXEClient:Arch:00007:UNDI:003000")]),
            tftp("ipxe.efi")
        );
        assert_eq!(answer(&[(93, &[0, 0])]), tftp("undionly.kpxe"));
        assert_eq!(answer(&[(94, &[1, 2, 1])]), tftp("undionly.kpxe"));
        assert_eq!(answer(&[(97, &[0; 17])]), tftp("undionly.kpxe"));
        assert_eq!(answer(&[(60, b"udhcp 1.35.0")]), None);
        assert_eq!(answer(&[]), None);
    }

    #[test]
    fn first_known_arch_of_a_list_wins() {
        assert_eq!(answer(&[(93, &[0x12, 0x34, 0, 7])]), tftp("ipxe.efi"));
    }

    #[test]
    fn overrides_per_arch_and_per_hardware() {
        let files = BootFiles::default()
            .with_overrides(&["7=snponly.efi".into()])
            .unwrap();
        let ep = Endpoints {
            http: "h:80".into(),
        };
        assert_eq!(
            boot_answer(Client::Pxe { arch: 7 }, MACS, &files, &ep, None, None),
            tftp("snponly.efi")
        );
        assert_eq!(
            boot_answer(
                Client::Pxe { arch: 7 },
                MACS,
                &files,
                &ep,
                Some("custom.efi"),
                None
            ),
            tftp("custom.efi")
        );
        assert_eq!(
            boot_answer(
                Client::Ipxe { arch: 7 },
                MACS,
                &files,
                &ep,
                None,
                Some("http://x/y.ipxe")
            ),
            Some(BootAnswer::Script("http://x/y.ipxe".into()))
        );
        assert!(
            BootFiles::default()
                .with_overrides(&["x=y".into()])
                .is_err()
        );
        assert!(
            BootFiles::default()
                .with_overrides(&["7=a/b".into()])
                .is_err()
        );
    }
}
