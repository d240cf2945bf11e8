//! `dhcp-svc` — not built yet.
//!
//! This crate holds its place in the workspace layout (see the repository README). Its
//! service is tracked as issue 3; until then there is no binary and nothing to run.
