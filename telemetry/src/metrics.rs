//! Prometheus metrics for every binary: one recorder per process, rendered at
//! `/metrics` — either on the service's own HTTP router or on the small admin listener
//! that UDP-only services (DHCP, TFTP) start with [`serve_admin`].

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide Prometheus recorder (once) and returns its handle.
pub fn init_metrics() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Fails only when another recorder is installed (a test harness running
            // several services in one process): keep the first.
            let _ = metrics::set_global_recorder(recorder);
            // Histogram samples accumulate until upkeep folds them into their buckets;
            // without it memory grows with every sample until someone scrapes /metrics.
            let upkeep = handle.clone();
            let _ = std::thread::Builder::new().name("metrics-upkeep".into()).spawn(move || loop {
                std::thread::sleep(std::time::Duration::from_secs(5));
                upkeep.run_upkeep();
            });
            handle
        })
        .clone()
}

/// Readiness, as the service judges it (e.g. "the hardware cache has synced").
pub type Ready = Arc<dyn Fn() -> bool + Send + Sync>;

/// A gauge computed when `/metrics` is scraped rather than on every change (time since
/// something, the size of a store). Returns `false` once it has nothing left to report
/// (its subject is gone), and is then dropped.
type ScrapeHook = Box<dyn Fn() -> bool + Send + Sync>;

static SCRAPE_HOOKS: std::sync::Mutex<Vec<ScrapeHook>> = std::sync::Mutex::new(Vec::new());

/// Runs `hook` before every render of `/metrics`, for values that are read rather than
/// counted (cache staleness, registry store size). The hook returns `false` when its
/// subject is gone (e.g. it holds a `Weak`), and is then removed.
pub fn on_scrape(hook: impl Fn() -> bool + Send + Sync + 'static) {
    SCRAPE_HOOKS.lock().unwrap_or_else(|p| p.into_inner()).push(Box::new(hook));
}

/// The Prometheus text exposition, after running the [`on_scrape`] hooks.
pub fn render(handle: &PrometheusHandle) -> String {
    SCRAPE_HOOKS.lock().unwrap_or_else(|p| p.into_inner()).retain(|hook| hook());
    handle.render()
}

/// `/metrics` and `/healthz` routes, to merge into a service's own router.
pub fn admin_router(handle: PrometheusHandle, ready: Ready) -> Router {
    Router::new()
        .route("/metrics", get(move || {
            let h = handle.clone();
            async move { render(&h) }
        }))
        .route("/healthz", get(move || {
            let ready = ready.clone();
            async move {
                if ready() {
                    (StatusCode::OK, "ok\n")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "not ready: hardware cache not synced\n")
                }
            }
        }))
}

/// Serves [`admin_router`] on its own listener until `shutdown` resolves.
pub async fn serve_admin(
    addr: SocketAddr,
    handle: PrometheusHandle,
    ready: Ready,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<SocketAddr> {
    serve_router(addr, admin_router(handle, ready), shutdown).await
}

/// Serves any router (e.g. [`admin_router`] merged with a service's own admin routes)
/// on its own listener until `shutdown` resolves; returns the bound address.
pub async fn serve_router(
    addr: SocketAddr,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("cannot listen on {addr} for metrics: {e}"))?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
            tracing::error!(error = %e, "admin listener failed");
        }
    });
    Ok(local)
}

/// Reading `/metrics` back in tests: a small parser of the Prometheus text format and a
/// blocking scrape over HTTP, shared by every crate's metric tests.
pub mod testing {
    use std::collections::BTreeMap;
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpStream};
    use std::time::Duration;

    /// One sample line: metric name, labels (sorted by name) and value.
    #[derive(Clone, Debug, PartialEq)]
    pub struct Sample {
        pub name: String,
        pub labels: BTreeMap<String, String>,
        pub value: f64,
    }

    /// A parsed exposition: every sample plus the `# HELP` and `# TYPE` lines.
    #[derive(Clone, Debug, Default)]
    pub struct Scrape {
        pub samples: Vec<Sample>,
        pub help: BTreeMap<String, String>,
        pub types: BTreeMap<String, String>,
        pub text: String,
    }

    impl Scrape {
        /// Parses the text format; panics (naming the line) on a line it cannot read, so a
        /// malformed exposition fails the test that scraped it.
        pub fn parse(text: &str) -> Scrape {
            let mut out = Scrape { text: text.to_string(), ..Default::default() };
            for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
                if let Some(rest) = line.strip_prefix("# HELP ") {
                    let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
                    out.help.insert(name.to_string(), help.to_string());
                } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                    let (name, ty) = rest.split_once(' ').unwrap_or((rest, ""));
                    out.types.insert(name.to_string(), ty.to_string());
                } else if line.starts_with('#') {
                } else {
                    out.samples.push(parse_sample(line).unwrap_or_else(|| panic!("unreadable metrics line: {line:?}")));
                }
            }
            out
        }

        /// The value of the series `name` whose labels are exactly `labels`.
        pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
            let want: BTreeMap<String, String> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            self.samples.iter().find(|s| s.name == name && s.labels == want).map(|s| s.value)
        }

        /// Like [`Scrape::get`], but a missing series panics with the whole exposition.
        #[track_caller]
        pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
            self.get(name, labels).unwrap_or_else(|| panic!("no series {name}{labels:?} in /metrics:\n{}", self.text))
        }

        /// Sum over the series of `name` whose labels include all of `labels` (0 if none).
        pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
            self.samples
                .iter()
                .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)))
                .map(|s| s.value)
                .sum()
        }

        /// The series of `name`, as (labels, value).
        pub fn series(&self, name: &str) -> Vec<(&BTreeMap<String, String>, f64)> {
            self.samples.iter().filter(|s| s.name == name).map(|s| (&s.labels, s.value)).collect()
        }

        /// Metric families (from `# TYPE`) that have no `# HELP` line.
        pub fn undescribed(&self) -> Vec<&str> {
            self.types.keys().filter(|n| !self.help.contains_key(*n)).map(String::as_str).collect()
        }
    }

    fn parse_sample(line: &str) -> Option<Sample> {
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let name = &line[..name_end];
        let mut rest = &line[name_end..];
        let mut labels = BTreeMap::new();
        if let Some(r) = rest.strip_prefix('{') {
            rest = r;
            loop {
                rest = rest.trim_start_matches([',', ' ']);
                if let Some(r) = rest.strip_prefix('}') {
                    rest = r;
                    break;
                }
                let (key, r) = rest.split_once("=\"")?;
                let mut value = String::new();
                let mut chars = r.char_indices();
                let end = loop {
                    match chars.next()? {
                        (i, '"') => break i,
                        (_, '\\') => match chars.next()?.1 {
                            'n' => value.push('\n'),
                            c => value.push(c),
                        },
                        (_, c) => value.push(c),
                    }
                };
                labels.insert(key.trim().to_string(), value);
                rest = &r[end + 1..];
            }
        }
        let value = rest.split_whitespace().next()?;
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().ok()?,
        };
        (!name.is_empty()).then(|| Sample { name: name.to_string(), labels, value })
    }

    /// `GET path` over plain HTTP/1.1: (status, body). Blocking; for tests.
    pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
        let mut resp = Vec::new();
        s.read_to_end(&mut resp)?;
        let resp = String::from_utf8_lossy(&resp);
        let status = resp.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
        let chunked = head.lines().any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding:") && l.to_ascii_lowercase().contains("chunked"));
        Ok((status, if chunked { dechunk(body) } else { body.to_string() }))
    }

    fn dechunk(mut body: &str) -> String {
        let mut out = String::new();
        while let Some((size, rest)) = body.split_once("\r\n") {
            let Ok(n) = usize::from_str_radix(size.trim(), 16) else { break };
            if n == 0 || rest.len() < n {
                break;
            }
            out.push_str(&rest[..n]);
            body = rest[n..].strip_prefix("\r\n").unwrap_or(&rest[n..]);
        }
        out
    }

    /// Scrapes `http://addr/metrics` and parses it; panics when it is not a 200.
    #[track_caller]
    pub fn scrape(addr: SocketAddr) -> Scrape {
        let (status, body) = http_get(addr, "/metrics").unwrap_or_else(|e| panic!("scraping {addr}/metrics: {e}"));
        assert_eq!(status, 200, "GET {addr}/metrics: {body}");
        Scrape::parse(&body)
    }

    /// Scrapes until `value` of series `name{labels}` reaches `want` (or `timeout`
    /// passes), then once more, and returns that last scrape. A service adds the counter a
    /// test waits on after the others of the same event, but one scrape reads the series
    /// one by one while the service runs: only a scrape that starts after `want` was seen
    /// shows every count of those events.
    pub async fn scrape_once_counted(addr: SocketAddr, name: &str, labels: &[(&str, &str)], want: f64, timeout: Duration) -> Scrape {
        let deadline = std::time::Instant::now() + timeout;
        while scrape(addr).get(name, labels) != Some(want) && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        scrape(addr)
    }

    /// A service binary a test started; killed by PID and reaped when dropped.
    pub struct Running(pub std::process::Child);

    impl Drop for Running {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// Starts `cmd` (its output discarded, RUST_LOG cleared) and waits until
    /// `GET http://ready_at/healthz` answers 200; panics on `what` after `timeout` or when
    /// the process exits first.
    pub async fn start_ready(mut cmd: std::process::Command, what: &str, ready_at: SocketAddr, timeout: Duration) -> Running {
        use std::process::Stdio;
        let child = cmd.env_remove("RUST_LOG").stdout(Stdio::null()).stderr(Stdio::null()).spawn();
        let mut running = Running(child.unwrap_or_else(|e| panic!("starting {what}: {e}")));
        let deadline = std::time::Instant::now() + timeout;
        while !matches!(http_get(ready_at, "/healthz"), Ok((200, _))) {
            if let Ok(Some(status)) = running.0.try_wait() {
                panic!("{what} exited before it became ready: {status}");
            }
            assert!(std::time::Instant::now() < deadline, "{what} not ready at {ready_at}/healthz within {timeout:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        running
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn parses_labels_escapes_and_help() {
            let s = Scrape::parse(
                "# HELP a_total Things.\n# TYPE a_total counter\na_total{x=\"1\",y=\"q\\\"z\"} 3\na_total{x=\"2\"} 4\n# TYPE b gauge\nb 0.5\nh_bucket{le=\"+Inf\"} 7\n",
            );
            assert_eq!(s.get("a_total", &[("y", "q\"z"), ("x", "1")]), Some(3.0));
            assert_eq!(s.get("a_total", &[("x", "1")]), None, "label sets match exactly");
            assert_eq!(s.sum("a_total", &[]), 7.0);
            assert_eq!(s.value("b", &[]), 0.5);
            assert_eq!(s.value("h_bucket", &[("le", "+Inf")]), 7.0);
            assert_eq!(s.undescribed(), vec!["b"]);
        }

        #[test]
        #[should_panic(expected = "unreadable metrics line")]
        fn rejects_garbage() {
            Scrape::parse("a_total{x=\"1 3\n");
        }
    }
}
