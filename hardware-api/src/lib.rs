//! The ironboot hardware registry.
//!
//! Every boot service asks this registry who a machine is; operators tell it, with
//! `hwctl` or any gRPC client. The crate reads top-down:
//!
//! - [`validate`]: what a record must look like before it is stored (and which field
//!   is wrong when it does not);
//! - [`store`]: storage behind one trait, with the embedded redb engine — uniqueness,
//!   revisions and the change log in one transaction;
//! - [`auth`]: bearer tokens with `read` and `write` roles;
//! - [`service`]: the gRPC handlers, including the resumable watch stream;
//! - [`encoded_get`]: GetHardware, the hot path, sent from each record's stored encoding;
//! - [`server`]: flags, TLS, health, reflection and graceful shutdown around them;
//! - [`metrics`]: calls by method and status code, store size, on the admin listener;
//! - [`manifest`]: the YAML/JSON forms operators write (ours and Tinkerbell's), used by
//!   `hwctl`;
//! - [`hwctl`]: the operator CLI itself (the `hwctl` binary is a thin wrapper);
//! - [`testing`]: an in-process registry for the boot services' integration tests.

pub mod auth;
pub mod encoded_get;
pub mod hwctl;
pub mod manifest;
pub mod metrics;
pub mod selector;
pub mod server;
pub mod service;
pub mod store;
pub mod testing;
pub mod validate;
