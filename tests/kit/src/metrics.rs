//! Reading `/metrics` back in tests: a small parser of the Prometheus text format, a
//! blocking scrape over HTTP, and a service binary started and waited for until ready.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use crate::{Proc, http_get};

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
        let mut out = Scrape {
            text: text.to_string(),
            ..Default::default()
        };
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
                out.help.insert(name.to_string(), help.to_string());
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, ty) = rest.split_once(' ').unwrap_or((rest, ""));
                out.types.insert(name.to_string(), ty.to_string());
            } else if line.starts_with('#') {
            } else {
                out.samples.push(
                    parse_sample(line)
                        .unwrap_or_else(|| panic!("unreadable metrics line: {line:?}")),
                );
            }
        }
        out
    }

    /// The value of the series `name` whose labels are exactly `labels`.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == want)
            .map(|s| s.value)
    }

    /// Like [`Scrape::get`], but a missing series panics with the whole exposition.
    #[track_caller]
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("no series {name}{labels:?} in /metrics:\n{}", self.text))
    }

    /// Sum over the series of `name` whose labels include all of `labels` (0 if none).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
            .sum()
    }

    /// The series of `name`, as (labels, value).
    pub fn series(&self, name: &str) -> Vec<(&BTreeMap<String, String>, f64)> {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .map(|s| (&s.labels, s.value))
            .collect()
    }

    /// Metric families (from `# TYPE`) that have no `# HELP` line.
    pub fn undescribed(&self) -> Vec<&str> {
        self.types
            .keys()
            .filter(|n| !self.help.contains_key(*n))
            .map(String::as_str)
            .collect()
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
    (!name.is_empty()).then(|| Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// Scrapes `http://addr/metrics` and parses it; panics when it is not a 200.
#[track_caller]
pub fn scrape(addr: SocketAddr) -> Scrape {
    let (status, body) =
        http_get(addr, "/metrics").unwrap_or_else(|e| panic!("scraping {addr}/metrics: {e}"));
    assert_eq!(status, 200, "GET {addr}/metrics: {body}");
    Scrape::parse(&body)
}

/// Scrapes until `value` of series `name{labels}` reaches `want` (or `timeout`
/// passes), then once more, and returns that last scrape. A service adds the counter a
/// test waits on after the others of the same event, but one scrape reads the series
/// one by one while the service runs: only a scrape that starts after `want` was seen
/// shows every count of those events.
pub async fn scrape_once_counted(
    addr: SocketAddr,
    name: &str,
    labels: &[(&str, &str)],
    want: f64,
    timeout: Duration,
) -> Scrape {
    let deadline = std::time::Instant::now() + timeout;
    while scrape(addr).get(name, labels) != Some(want) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    scrape(addr)
}

/// Starts `cmd` (its output discarded, RUST_LOG cleared) and waits until
/// `GET http://ready_at/healthz` answers 200; panics on `what` after `timeout` or when
/// the process exits first.
pub async fn start_ready(
    mut cmd: std::process::Command,
    what: &str,
    ready_at: SocketAddr,
    timeout: Duration,
) -> Proc {
    use std::process::Stdio;
    cmd.env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut running = Proc::spawn(cmd, what);
    let deadline = std::time::Instant::now() + timeout;
    while !matches!(http_get(ready_at, "/healthz"), Ok((200, _))) {
        if let Some(status) = running.exited() {
            panic!("{what} exited before it became ready: {status}");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what} not ready at {ready_at}/healthz within {timeout:?}"
        );
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
        assert_eq!(
            s.get("a_total", &[("x", "1")]),
            None,
            "label sets match exactly"
        );
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
