//! The query API: one machine's recent log, over HTTP.
//!
//! - `GET /machines/{mac}/logs?since=…&limit=…` — the machine's newest lines (oldest
//!   first), each exactly the JSON object written to the output. `mac` in any spelling;
//!   `since` an RFC 3339 time (`2026-11-25T10:00:00Z`) or a duration back from now
//!   (`15m`, `2h`); `limit` 1–10000, default 100.
//! - `GET /machines` — the machines that have a log here, with their line counts.
//! - `/metrics`, `/healthz` — from the telemetry crate; ready once the hardware cache has
//!   synced (before that, no message can be attributed).
//!
//! Errors are JSON `{"error": "..."}` naming the parameter that is wrong.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use ironboot_proto::MacAddr;
use ironboot_proto::cache::HardwareCache;

use crate::store::Store;

pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 10_000;

#[derive(Clone)]
pub struct ApiState {
    pub store: Arc<Mutex<Store>>,
    pub cache: HardwareCache,
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/machines", get(list))
        .route("/machines/{mac}/logs", get(logs))
        .with_state(state)
}

fn json(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn error(status: StatusCode, msg: String) -> Response {
    json(status, serde_json::json!({ "error": msg }).to_string())
}

/// `since` as an absolute time: RFC 3339, or a duration ago.
pub fn parse_since(s: &str, now: SystemTime) -> Result<SystemTime, String> {
    if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        return Ok(t);
    }
    match humantime::parse_duration(s) {
        Ok(d) => Ok(now.checked_sub(d).unwrap_or(SystemTime::UNIX_EPOCH)),
        Err(_) => Err(format!(
            "since {s:?}: expected an RFC 3339 time (2026-11-25T10:00:00Z) or a duration (15m)"
        )),
    }
}

pub fn parse_limit(s: Option<&String>) -> Result<usize, String> {
    match s {
        None => Ok(DEFAULT_LIMIT),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            _ => Err(format!(
                "limit {v:?}: expected a number from 1 to {MAX_LIMIT}"
            )),
        },
    }
}

async fn logs(
    State(st): State<ApiState>,
    Path(mac): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let mac = match MacAddr::parse(&mac) {
        Ok(m) => m,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("mac {mac:?}: {e}")),
    };
    let since = match q
        .get("since")
        .map(|s| parse_since(s, SystemTime::now()))
        .transpose()
    {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let limit = match parse_limit(q.get("limit")) {
        Ok(l) => l,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    // The registry's current record decides which machine a MAC belongs to; the store's
    // own index answers for machines deleted since they logged.
    let registered = st.cache.by_mac(&mac);
    let found = {
        let store = st.store.lock().unwrap_or_else(|p| p.into_inner());
        let id = registered
            .as_ref()
            .map(|h| h.id.clone())
            .or_else(|| store.id_for(&mac).map(str::to_string));
        id.and_then(|id| store.query(&id, since, limit))
    };
    let (id, name, lines) = match (found, registered) {
        (Some(f), _) => (f.id, f.name, f.lines),
        (None, Some(hw)) => (hw.id.clone(), hw.name.clone(), Vec::new()),
        (None, None) => {
            return error(
                StatusCode::NOT_FOUND,
                format!("mac {mac}: no registered machine and no log for it"),
            );
        }
    };
    let mut body = String::with_capacity(128 + lines.iter().map(|l| l.len() + 1).sum::<usize>());
    body.push_str(&serde_json::json!({ "mac": mac.to_string(), "id": id, "name": name, "count": lines.len() }).to_string());
    body.pop(); // reopen the object to append the messages verbatim
    body.push_str(",\"messages\":[");
    for (i, l) in lines.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(l);
    }
    body.push_str("]}");
    json(StatusCode::OK, body)
}

async fn list(State(st): State<ApiState>) -> Response {
    let machines = st.store.lock().unwrap_or_else(|p| p.into_inner()).list();
    json(
        StatusCode::OK,
        serde_json::json!({ "machines": machines }).to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn since_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(10_000);
        assert_eq!(parse_since("15m", now), Ok(now - Duration::from_secs(900)));
        assert_eq!(
            parse_since("1970-01-01T00:00:10Z", now),
            Ok(SystemTime::UNIX_EPOCH + Duration::from_secs(10))
        );
        assert!(
            parse_since("yesterday", now)
                .unwrap_err()
                .starts_with("since")
        );
        assert_eq!(parse_limit(None), Ok(DEFAULT_LIMIT));
        assert!(parse_limit(Some(&"0".to_string())).is_err());
        assert!(parse_limit(Some(&"x".to_string())).is_err());
    }
}
