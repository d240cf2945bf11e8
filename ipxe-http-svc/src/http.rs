//! The routes: who is asking, may they boot, and what they get.
//!
//! | route | answer |
//! | --- | --- |
//! | `GET/HEAD /<mac>/auto.ipxe` | the machine's script (MAC as colon, dash, bare or Cisco) |
//! | `GET/HEAD /auto.ipxe` | the script of the machine whose address the request comes from |
//! | `GET/HEAD /ipxe/<file>`, `/ipxe/<mac>/<file>` | an iPXE binary from memory, with Range |
//! | `GET/HEAD /assets/<path>` | a file of `--assets-dir`, from disk, with Range |
//! | `/metrics`, `/healthz` | Prometheus; ready once the hardware cache has synced |
//!
//! Every handler leaves a [`RouteInfo`] on its response; one middleware turns it into
//! the request's log line and metrics, so each request is logged and counted exactly once.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bootfiles::gate::{Identity, decide};
use bootfiles::{BootFile, Catalogue, Decision, Lookup, Refusal, TraceParent, UnknownClients};
use ironboot_proto::MacAddr;
use ironboot_proto::cache::HardwareCache;
use ironboot_proto::pb::Hardware;
use metrics_exporter_prometheus::PrometheusHandle;
use tracing::Instrument;

use crate::assets::AssetRoot;
use crate::client_ip::{client_ip, ipv4};
use crate::config::Settings;
use crate::listener::ConnAddrs;
use crate::metrics as m;
use crate::range::{Conditions, Entity, Outcome, evaluate};
use crate::script::{self, RequestFacts, Script};
use crate::script_cache::{ScriptCache, split_at_traceparent};
use crate::templates::Templates;
use crate::trace;
use crate::zero_copy::ZeroCopy;

/// Everything the handlers share.
pub struct Service {
    pub settings: Settings,
    pub catalogue: Arc<Catalogue>,
    pub cache: HardwareCache,
    pub templates: Templates,
    pub assets: Option<AssetRoot>,
    pub scripts: ScriptCache,
    pub zero_copy: Arc<ZeroCopy>,
}

/// What a handler found out about a request, for its log line and metrics.
#[derive(Clone, Debug, Default)]
pub struct RouteInfo {
    pub route: &'static str,
    pub client: Option<IpAddr>,
    pub mac: Option<MacAddr>,
    pub machine: Option<String>,
    pub kind: Option<&'static str>,
    pub reason: Option<&'static str>,
    pub file: Option<String>,
    pub traceparent: Option<TraceParent>,
}

impl RouteInfo {
    pub fn new(route: &'static str) -> Self {
        RouteInfo {
            route,
            ..Default::default()
        }
    }
}

/// The router with every route, the admin routes merged in and the request tracking.
pub fn router(svc: Arc<Service>, metrics: PrometheusHandle) -> Router {
    let ready_cache = svc.cache.clone();
    let ready: ironboot_telemetry::metrics::Ready = Arc::new(move || ready_cache.is_synced());
    let mut app = Router::new()
        .route("/auto.ipxe", get(script_by_ip))
        .route("/{mac}/auto.ipxe", get(script_by_mac))
        .route("/ipxe/{*path}", get(binary))
        .with_state(svc.clone())
        .merge(ironboot_telemetry::metrics::admin_router(metrics, ready));
    if let Some(a) = &svc.assets {
        app = app.merge(crate::assets::router(a.clone()));
    }
    app.fallback(not_found)
        .layer(axum::middleware::from_fn(track))
}

async fn not_found() -> Response {
    text(StatusCode::NOT_FOUND, "not found\n")
}

fn text(status: StatusCode, body: &'static str) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn with_info(mut r: Response, info: RouteInfo) -> Response {
    r.extensions_mut().insert(info);
    r
}

/// Logs and counts every request, from the [`RouteInfo`] its handler left.
async fn track(mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let span = trace::start(&mut req);
    let resp = next.run(req).instrument(span.clone()).await;
    let elapsed = started.elapsed();
    let status = resp.status().as_u16();
    let info = resp.extensions().get::<RouteInfo>();
    let route = match info {
        Some(i) => i.route,
        None => match path.as_str() {
            "/metrics" => "metrics",
            "/healthz" => "healthz",
            _ => "other",
        },
    };
    let bytes = if method == Method::HEAD {
        None
    } else {
        resp.headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
    };
    m::request(route, status, elapsed, bytes);
    span.record("route", route);
    span.record("status", status);
    if matches!(route, "metrics" | "healthz") {
        tracing::debug!(%method, %path, status, "admin request");
        return resp;
    }
    let none = RouteInfo::default();
    let i = info.unwrap_or(&none);
    tracing::info!(
        %method,
        %path,
        status,
        route,
        client = %i.client.map(|c| c.to_string()).unwrap_or_default(),
        mac = %i.mac.map(|c| c.to_string()).unwrap_or_default(),
        machine = i.machine.as_deref().unwrap_or(""),
        kind = i.kind.unwrap_or(""),
        reason = i.reason.unwrap_or(""),
        file = i.file.as_deref().unwrap_or(""),
        traceparent = %i.traceparent.map(|t| t.to_string()).unwrap_or_default(),
        bytes = bytes.unwrap_or(0),
        duration_ms = elapsed.as_secs_f64() * 1000.0,
        "request"
    );
    resp
}

impl Service {
    fn client(&self, conn: &ConnAddrs, headers: &HeaderMap) -> IpAddr {
        let xff = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok());
        client_ip(conn.peer.ip(), xff, &self.settings.trusted_proxies)
    }

    /// A 4xx/5xx with an iPXE body that says why.
    fn refusal(
        &self,
        mut info: RouteInfo,
        status: StatusCode,
        reason: &'static str,
        message: &str,
    ) -> Response {
        m::refused(info.route, reason);
        info.reason = Some(reason);
        let body = self.templates.refused(status.as_u16(), message);
        let mut r = (status, body).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if status == StatusCode::SERVICE_UNAVAILABLE {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        with_info(r, info)
    }
}

/// The authority the client used, for URLs in scripts: the `Host` header when it is a
/// plausible `host[:port]`, else the local address the connection arrived on.
fn authority(headers: &HeaderMap, conn: &ConnAddrs) -> String {
    let ok = |h: &str| {
        !h.is_empty()
            && h.len() <= 255
            && h.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']' | b'_')
            })
    };
    match headers.get(header::HOST).and_then(|v| v.to_str().ok()) {
        Some(h) if ok(h) => h.to_string(),
        _ => conn.local.to_string(),
    }
}

/// A registry answer for the script routes, which must tell "unknown" from "cannot say".
enum Found {
    Machine(Arc<Hardware>),
    Unknown,
    Unavailable(String),
}

async fn find(
    cache: &HardwareCache,
    lookup: impl std::future::Future<
        Output = Result<Option<Arc<Hardware>>, ironboot_proto::cache::LookupError>,
    >,
    timeout: Duration,
) -> Found {
    match tokio::time::timeout(timeout, lookup).await {
        Ok(Ok(Some(hw))) => Found::Machine(hw),
        Ok(Ok(None)) => Found::Unknown,
        Ok(Err(e)) => Found::Unavailable(e.to_string()),
        // A synced cache's miss is a reliable "unknown"; otherwise we cannot know.
        Err(_) if cache.is_synced() => Found::Unknown,
        Err(_) => Found::Unavailable(format!("no registry answer within {timeout:?}")),
    }
}

/// Only characters of MAC spellings, bounded: safe to echo in a refusal.
fn echo_mac(raw: &str) -> String {
    raw.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '-' | '.'))
        .take(32)
        .collect()
}

async fn script_by_mac(
    State(svc): State<Arc<Service>>,
    ConnectInfo(conn): ConnectInfo<ConnAddrs>,
    Path(raw): Path<String>,
    req: Request,
) -> Response {
    let headers = req.headers();
    let client = svc.client(&conn, headers);
    let mut info = RouteInfo {
        route: "script",
        client: Some(client),
        traceparent: Some(trace::of(&req)),
        ..Default::default()
    };
    let Ok(mac) = MacAddr::parse(&raw) else {
        let msg = format!(
            "{:?} is not a MAC address; ask for /<mac>/auto.ipxe, e.g. /52:54:00:ee:0d:0b/auto.ipxe",
            echo_mac(&raw)
        );
        return svc.refusal(info, StatusCode::BAD_REQUEST, "bad_mac", &msg);
    };
    info.mac = Some(mac);
    let hw = match find(
        &svc.cache,
        svc.cache.by_mac_or_fetch(mac),
        svc.settings.lookup_timeout,
    )
    .await
    {
        Found::Machine(hw) => hw,
        Found::Unknown => {
            return svc.refusal(
                info,
                StatusCode::NOT_FOUND,
                "unknown",
                &format!("no machine with MAC {mac} is registered"),
            );
        }
        Found::Unavailable(why) => {
            tracing::warn!(%mac, error = %why, "registry unavailable and machine not cached");
            return svc.refusal(
                info,
                StatusCode::SERVICE_UNAVAILABLE,
                "registry_unavailable",
                "the hardware registry cannot be reached; try again",
            );
        }
    };
    // The source address gates too (cache only: no extra registry hop per script), so
    // a refused machine cannot get a script by naming another machine's MAC.
    let ip = ipv4(client);
    let by_ip = ip.and_then(|a| svc.cache.by_ip(a));
    let id = Identity {
        mac: Some(mac),
        by_mac: Some(&hw),
        ip,
        by_ip: by_ip.as_deref(),
    };
    respond_script(
        &svc,
        info,
        &hw,
        mac,
        decide(&id, UnknownClients::Serve),
        &authority(headers, &conn),
    )
}

async fn script_by_ip(
    State(svc): State<Arc<Service>>,
    ConnectInfo(conn): ConnectInfo<ConnAddrs>,
    req: Request,
) -> Response {
    let headers = req.headers();
    let client = svc.client(&conn, headers);
    let mut info = RouteInfo {
        route: "script",
        client: Some(client),
        traceparent: Some(trace::of(&req)),
        ..Default::default()
    };
    let Some(ip) = ipv4(client) else {
        let msg = format!(
            "machines are identified by IPv4 address; {client} is not one, ask for /<mac>/auto.ipxe"
        );
        return svc.refusal(info, StatusCode::NOT_FOUND, "unknown", &msg);
    };
    let hw = match find(
        &svc.cache,
        svc.cache.by_ip_or_fetch(ip),
        svc.settings.lookup_timeout,
    )
    .await
    {
        Found::Machine(hw) => hw,
        Found::Unknown => {
            return svc.refusal(
                info,
                StatusCode::NOT_FOUND,
                "unknown",
                &format!("no machine with address {ip} is registered"),
            );
        }
        Found::Unavailable(why) => {
            tracing::warn!(%ip, error = %why, "registry unavailable and machine not cached");
            return svc.refusal(
                info,
                StatusCode::SERVICE_UNAVAILABLE,
                "registry_unavailable",
                "the hardware registry cannot be reached; try again",
            );
        }
    };
    let Some(mac) = mac_of_ip(&hw, ip) else {
        return svc.refusal(
            info,
            StatusCode::NOT_FOUND,
            "unknown",
            &format!("no interface with address {ip} is registered"),
        );
    };
    info.mac = Some(mac);
    let id = Identity {
        mac: Some(mac),
        by_mac: Some(&hw),
        ip: Some(ip),
        by_ip: Some(&hw),
    };
    respond_script(
        &svc,
        info,
        &hw,
        mac,
        decide(&id, UnknownClients::Serve),
        &authority(headers, &conn),
    )
}

fn mac_of_ip(hw: &Hardware, ip: Ipv4Addr) -> Option<MacAddr> {
    hw.interfaces
        .iter()
        .find(|i| i.dhcp.as_ref().and_then(|d| d.ip.parse::<Ipv4Addr>().ok()) == Some(ip))
        .and_then(|i| MacAddr::parse(&i.mac).ok())
}

fn respond_script(
    svc: &Service,
    mut info: RouteInfo,
    hw: &Hardware,
    mac: MacAddr,
    decision: Decision,
    authority: &str,
) -> Response {
    match decision {
        Decision::Allow { machine } => info.machine = machine,
        Decision::Refuse { reason, machine } => {
            let name = machine.unwrap_or_else(|| script::machine_name(hw));
            info.machine = Some(name.clone());
            let msg = match reason {
                Refusal::Disabled => {
                    format!("machine {name} is disabled in the registry: no network boot")
                }
                Refusal::PxeNotAllowed => format!(
                    "network boot is not allowed for {name} ({mac}): netboot.allow_pxe is false"
                ),
                Refusal::UnknownClient => format!("no machine with MAC {mac} is registered"),
            };
            return svc.refusal(info, StatusCode::NOT_FOUND, reason.as_str(), &msg);
        }
    }
    let tp = info.traceparent.unwrap_or_else(TraceParent::new_root);
    let tp_text = tp.header();
    if let Some(hit) = svc.scripts.get(hw, mac, authority) {
        info.kind = Some(hit.kind);
        return script_ok(hit.kind, hit.assemble(&tp_text), info);
    }
    let render = |tp: TraceParent| {
        let chosen = script::choose(
            hw,
            mac,
            &svc.settings.installer,
            &RequestFacts {
                authority,
                traceparent: tp,
            },
        );
        let kind = chosen.kind();
        let out = match chosen {
            Script::Contents(s) => Ok(s),
            Script::Chain(v) => svc.templates.chain(&v),
            Script::Installer(v) => svc.templates.installer(&v),
        };
        (kind, out)
    };
    let (kind, rendered) = render(tp);
    info.kind = Some(kind);
    match rendered {
        Ok(body) => {
            if kind != "custom_contents" {
                // Prove the split with a second traceparent before caching it.
                let other = TraceParent::new_root();
                if let (_, Ok(second)) = render(other)
                    && let Some(segments) =
                        split_at_traceparent(&body, &tp_text, &second, &other.header())
                {
                    svc.scripts.insert(hw, mac, authority, kind, segments);
                }
            }
            script_ok(kind, body, info)
        }
        Err(e) => {
            m::script_error();
            tracing::error!(%mac, error = %e, "boot script template failed");
            svc.refusal(
                info,
                StatusCode::INTERNAL_SERVER_ERROR,
                "template_error",
                "the boot script could not be rendered; see the service log",
            )
        }
    }
}

fn script_ok(kind: &'static str, body: String, info: RouteInfo) -> Response {
    m::script_rendered(kind);
    let mut r = (StatusCode::OK, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    with_info(r, info)
}

async fn binary(
    State(svc): State<Arc<Service>>,
    ConnectInfo(conn): ConnectInfo<ConnAddrs>,
    Path(raw): Path<String>,
    request: Request,
) -> Response {
    let headers = request.headers();
    let client = svc.client(&conn, headers);
    let mut info = RouteInfo {
        route: "binary",
        client: Some(client),
        ..Default::default()
    };
    let (req, file) = match bootfiles::resolve(&svc.catalogue, &raw) {
        Ok(x) => x,
        Err(Lookup::BadPath(e)) => {
            m::refused("binary", "bad_path");
            info.reason = Some("bad_path");
            let mut r = (StatusCode::BAD_REQUEST, format!("bad path: {e}\n")).into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            return with_info(r, info);
        }
        Err(Lookup::NotFound) => {
            info.reason = Some("not_found");
            return with_info(text(StatusCode::NOT_FOUND, "no such file\n"), info);
        }
    };
    info.mac = req.mac;
    info.file = Some(req.name.clone());
    info.traceparent = Some(trace::of(&request));
    let s = &svc.settings;
    match bootfiles::gate::check(
        Some(&svc.cache),
        req.mac,
        ipv4(client),
        s.unknown_clients,
        s.lookup_timeout,
    )
    .await
    {
        Decision::Allow { machine } => info.machine = machine,
        Decision::Refuse { reason, machine } => {
            m::refused("binary", reason.as_str());
            info.machine = machine;
            info.reason = Some(reason.as_str());
            return with_info(
                text(
                    StatusCode::FORBIDDEN,
                    "network boot is not allowed for this machine\n",
                ),
                info,
            );
        }
    }
    svc.zero_copy.prepare(&svc.catalogue, &file);
    with_info(file_response(&file, headers), info)
}

/// A served file with validators, conditional answers and single ranges.
pub fn file_response(file: &BootFile, headers: &HeaderMap) -> Response {
    let h = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let etag = file.etag();
    let cond = Conditions {
        if_none_match: h(header::IF_NONE_MATCH),
        if_modified_since: h(header::IF_MODIFIED_SINCE),
        range: h(header::RANGE),
        if_range: h(header::IF_RANGE),
    };
    let len = file.size();
    let outcome = evaluate(
        &cond,
        &Entity {
            len,
            etag: &etag,
            modified: file.modified,
        },
    );
    let builder = Response::builder()
        .header(header::ETAG, &etag)
        .header(
            header::LAST_MODIFIED,
            httpdate::fmt_http_date(file.modified),
        )
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CACHE_CONTROL, "no-cache");
    let built = match outcome {
        Outcome::Full => builder
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .body(Body::from(file.data.clone())),
        Outcome::Partial { start, end } => builder
            .status(StatusCode::PARTIAL_CONTENT)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header(header::CONTENT_RANGE, format!("bytes {start}-{end}/{len}"))
            .body(Body::from(file.data.slice(start as usize..=end as usize))),
        Outcome::NotModified => builder.status(StatusCode::NOT_MODIFIED).body(Body::empty()),
        Outcome::Unsatisfiable => builder
            .status(StatusCode::RANGE_NOT_SATISFIABLE)
            .header(header::CONTENT_RANGE, format!("bytes */{len}"))
            .body(Body::empty()),
    };
    built.unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}
