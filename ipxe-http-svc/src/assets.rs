//! `/assets/…`: kernels, initrds and ISOs from a directory, so a lab needs no nginx.
//!
//! Files are streamed from disk by tower-http's `ServeDir` (Range, HEAD, Last-Modified,
//! Content-Length; checked by this crate's tests), not loaded into memory: an ISO is
//! larger than the whole binary catalogue may be. `ServeDir` already refuses `..` after
//! percent-decoding; in front of it this module applies the same confinement as the
//! binary catalogue: the path must be a clean relative name, and what it resolves to
//! (after symlinks) must be a regular file inside the assets directory or one of the
//! link roots. Assets are not gated per machine: they are the installer everyone boots,
//! and a shared cache in front of this service must be able to serve them.

use std::path::{Path, PathBuf};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_http::services::ServeDir;

use crate::http::RouteInfo;

/// The directory served under `/assets/` and where its symlinks may point.
#[derive(Clone, Debug)]
pub struct AssetRoot {
    root: PathBuf,
    link_roots: Vec<PathBuf>,
}

impl AssetRoot {
    pub fn new(dir: &Path, link_roots: &[PathBuf]) -> std::io::Result<AssetRoot> {
        let root = dir.canonicalize()?;
        if !root.is_dir() {
            return Err(std::io::Error::other("not a directory"));
        }
        let link_roots = link_roots
            .iter()
            .filter_map(|p| p.canonicalize().ok())
            .collect();
        Ok(AssetRoot { root, link_roots })
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    /// The file `rel` names, if it may be served. Blocking (filesystem).
    pub fn resolve(&self, rel: &str) -> Result<PathBuf, Refusal> {
        bootfiles::path::check_relative(rel).map_err(|_| Refusal::BadPath)?;
        let target = self
            .root
            .join(rel)
            .canonicalize()
            .map_err(|_| Refusal::NotFound)?;
        let inside =
            target.starts_with(&self.root) || self.link_roots.iter().any(|r| target.starts_with(r));
        if !inside {
            return Err(Refusal::Outside);
        }
        match std::fs::metadata(&target) {
            Ok(m) if m.is_file() => Ok(target),
            _ => Err(Refusal::NotFound),
        }
    }
}

/// Why an asset path is not served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    BadPath,
    NotFound,
    /// A symlink that leads out of the served roots.
    Outside,
}

/// Percent-decoding of a URL path (`%2e%2e` is `..` to the filesystem). None for bad
/// escapes and for bytes that are not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            let v = std::str::from_utf8(hex)
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())?;
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The `/assets` routes.
pub fn router(root: AssetRoot) -> Router {
    let serve = ServeDir::new(root.path()).append_index_html_on_directories(false);
    Router::new()
        .nest_service("/assets", serve)
        .layer(axum::middleware::from_fn_with_state(root, confine))
}

fn refuse(status: StatusCode, reason: &'static str, text: &'static str) -> Response {
    crate::metrics::refused("asset", reason);
    let mut r = (status, text).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

async fn confine(State(root): State<AssetRoot>, req: Request, next: Next) -> Response {
    let raw = req
        .uri()
        .path()
        .strip_prefix("/assets/")
        .unwrap_or("")
        .to_string();
    let mut resp = match percent_decode(&raw) {
        None => refuse(StatusCode::BAD_REQUEST, "bad_path", "bad path\n"),
        Some(rel) => {
            let r = root.clone();
            let checked = tokio::task::spawn_blocking(move || r.resolve(&rel))
                .await
                .unwrap_or(Err(Refusal::NotFound));
            match checked {
                Ok(_) => next.run(req).await,
                Err(Refusal::BadPath) => refuse(StatusCode::BAD_REQUEST, "bad_path", "bad path\n"),
                Err(Refusal::NotFound) => (StatusCode::NOT_FOUND, "no such file\n").into_response(),
                Err(Refusal::Outside) => {
                    tracing::warn!(path = %raw, "asset symlink leads out of the served roots; not serving");
                    refuse(StatusCode::NOT_FOUND, "outside_root", "no such file\n")
                }
            }
        }
    };
    resp.extensions_mut().insert(RouteInfo::new("asset"));
    resp.map(Body::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding() {
        assert_eq!(percent_decode("a%2e%2E/b%20c").as_deref(), Some("a../b c"));
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%2"), None);
        assert_eq!(percent_decode("%ff"), None);
        assert_eq!(percent_decode("plain").as_deref(), Some("plain"));
    }

    #[test]
    fn confinement() {
        let root = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("vmlinuz"), b"k").unwrap();
        std::fs::create_dir(root.path().join("sub")).unwrap();
        std::fs::write(out.path().join("secret"), b"s").unwrap();
        std::os::unix::fs::symlink(out.path().join("secret"), root.path().join("leak")).unwrap();
        std::os::unix::fs::symlink("vmlinuz", root.path().join("alias")).unwrap();
        let a = AssetRoot::new(root.path(), &[]).unwrap();
        assert!(a.resolve("vmlinuz").is_ok());
        assert!(a.resolve("alias").is_ok());
        assert_eq!(a.resolve("leak"), Err(Refusal::Outside));
        assert_eq!(a.resolve("../x"), Err(Refusal::BadPath));
        assert_eq!(a.resolve("sub"), Err(Refusal::NotFound));
        assert_eq!(a.resolve("missing"), Err(Refusal::NotFound));
        let with_link_root = AssetRoot::new(root.path(), &[out.path().to_path_buf()]).unwrap();
        assert!(with_link_root.resolve("leak").is_ok());
    }
}
