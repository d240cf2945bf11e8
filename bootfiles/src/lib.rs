//! Boot files as tftp-svc and ipxe-http-svc both serve them.
//!
//! The two services must agree on everything but the wire: which files exist, what a
//! request path means, what is out of bounds, and who may have a binary. Keeping that in
//! one crate means a path trick or a gating rule cannot work on one route and not the
//! other.
//!
//! - [`catalogue`]: the files, scanned from directories into memory ([`bytes::Bytes`],
//!   with size, mtime and a content digest for HTTP caching) and rescanned periodically;
//!   confinement of symlinks and special files happens at scan time.
//! - [`path`]: request paths — `<file>`, `<mac>/<file>`, the Smee traceparent suffix —
//!   parsed and lexically confined.
//! - [`gate`]: the registry's netboot rule (`disabled`, `allow_pxe = false`, unknown
//!   clients) as a pure decision plus a cache-backed lookup.
//! - [`memfd`]: sealed in-memory files, the source of both services' zero-copy sends.
//! - [`args`]: the flags both services flatten.
//! - [`arch`]: client architectures and the iPXE binary each gets by default, and the
//!   start-up check that those binaries are served.

pub mod arch;
pub mod args;
pub mod catalogue;
pub mod gate;
pub mod memfd;
pub mod path;

pub use args::CatalogueArgs;
pub use catalogue::{BootFile, Catalogue, CatalogueConfig, SourceDir};
pub use gate::{Decision, Refusal, UnknownClients};
pub use path::{PathError, RequestPath, TraceParent, parse_request_path, suffix_traceparent};

/// Why a request for a file is not served, in one place for both protocols.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Lookup {
    #[error("bad path: {0}")]
    BadPath(#[from] PathError),
    #[error("no such file")]
    NotFound,
}

/// Parses `raw` and finds the file. The parsed path is returned alongside so the caller
/// can gate on its MAC and log its traceparent.
pub fn resolve(catalogue: &Catalogue, raw: &str) -> Result<(RequestPath, BootFile), Lookup> {
    let req = parse_request_path(raw)?;
    let file = catalogue.get(&req.name).ok_or(Lookup::NotFound)?;
    Ok((req, file))
}
