//! Command-line flags for the catalogue, flattened into tftp-svc's and ipxe-http-svc's
//! parsers so both services read the same directories with the same variables.

use std::path::PathBuf;
use std::time::Duration;

use crate::catalogue::{CatalogueConfig, SourceDir};

#[derive(Clone, Debug, clap::Args)]
pub struct CatalogueArgs {
    /// Directory of stock iPXE binaries (Debian's `ipxe` package installs undionly.kpxe,
    /// ipxe.efi, snponly.efi … here). Empty string to serve none.
    #[arg(long, env = "IRONBOOT_IPXE_DIR", default_value = "/usr/lib/ipxe")]
    pub ipxe_dir: PathBuf,
    /// Operator-supplied iPXE binaries (Tinkerbell builds, an arm64 snp.efi). A name here
    /// replaces the stock file of the same name.
    #[arg(long, env = "IRONBOOT_IPXE_EXTRA_DIR")]
    pub ipxe_extra_dir: Option<PathBuf>,
    /// Other boot files, served under their paths relative to this directory
    /// (subdirectories included). Lowest priority.
    #[arg(long, env = "IRONBOOT_ASSETS_DIR")]
    pub assets_dir: Option<PathBuf>,
    /// Directories a symlink in a served directory may point into besides its own
    /// directory (comma-separated). Debian links ipxe.efi and ipxe.lkrn to /boot.
    /// An empty value allows none.
    #[arg(
        long,
        env = "IRONBOOT_LINK_ROOTS",
        value_delimiter = ',',
        default_value = "/boot"
    )]
    pub link_roots: Vec<String>,
    /// How often the directories are checked for changed files.
    #[arg(long, env = "IRONBOOT_RESCAN_INTERVAL", value_parser = humantime::parse_duration, default_value = "5s")]
    pub rescan_interval: Duration,
    /// Largest single file loaded, in bytes.
    #[arg(long, env = "IRONBOOT_MAX_FILE_BYTES", default_value_t = 256 << 20)]
    pub max_file_bytes: u64,
    /// Most bytes held in memory for all files together.
    #[arg(long, env = "IRONBOOT_MAX_CATALOGUE_BYTES", default_value_t = 1 << 30)]
    pub max_catalogue_bytes: u64,
}

impl CatalogueArgs {
    /// Directories in priority order: operator binaries, stock binaries, assets.
    pub fn catalogue_config(&self) -> CatalogueConfig {
        let mut dirs = Vec::new();
        if let Some(d) = &self.ipxe_extra_dir {
            dirs.push(SourceDir {
                path: d.clone(),
                max_depth: 1,
            });
        }
        if !self.ipxe_dir.as_os_str().is_empty() {
            dirs.push(SourceDir {
                path: self.ipxe_dir.clone(),
                max_depth: 1,
            });
        }
        if let Some(d) = &self.assets_dir {
            dirs.push(SourceDir {
                path: d.clone(),
                max_depth: 8,
            });
        }
        CatalogueConfig {
            dirs,
            link_roots: self
                .link_roots
                .iter()
                .map(|p| p.trim())
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
                .collect(),
            max_file_bytes: self.max_file_bytes,
            max_total_bytes: self.max_catalogue_bytes,
            ..CatalogueConfig::default()
        }
    }
}
