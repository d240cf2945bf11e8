//! Metric names and the few helpers that record them, so every name lives in one place
//! (and in the README table).

use std::time::Duration;

use crate::sender::Stats;
use crate::transfer::Outcome;

/// Transfers in progress (gauge).
pub const ACTIVE: &str = "tftp_transfers_active";
/// Finished transfers by `outcome` (completed, size_probe, client_aborted, timeout,
/// shutdown, io_error).
pub const TRANSFERS: &str = "tftp_transfers_total";
/// Finished transfers that did not deliver the file (timeout, client_aborted, io_error,
/// shutdown) — the "failed" count an alert watches.
pub const FAILED: &str = "tftp_transfers_failed_total";
/// Requests answered with an ERROR, by `reason`.
pub const REFUSED: &str = "tftp_requests_refused_total";
/// Requests not answered at all, by `reason` (busy, client_limit, duplicate, socket_error).
pub const DROPPED_REQUESTS: &str = "tftp_requests_dropped_total";
/// Datagrams dropped, by `reason` (malformed kinds, truncated, unexpected, queue_full).
pub const DROPPED_PACKETS: &str = "tftp_packets_dropped_total";
/// File bytes put on the wire, retransmissions included.
pub const BYTES: &str = "tftp_bytes_sent_total";
/// Of those, the bytes sent zero-copy from a wire image (`sendfile`).
pub const ZERO_COPY_BYTES: &str = "tftp_zero_copy_bytes_sent_total";
/// Bytes held in wire images (gauge).
pub const WIRE_IMAGE_BYTES: &str = "tftp_wire_image_bytes";
/// Blocks (and OACKs) sent again.
pub const RETRANSMITS: &str = "tftp_retransmits_total";
/// Duration of finished transfers, by `outcome`.
pub const DURATION: &str = "tftp_transfer_duration_seconds";

/// Registers every description (`# HELP`); call once the recorder is installed.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(ACTIVE, "TFTP transfers in progress.");
    describe_counter!(
        TRANSFERS,
        "Finished TFTP transfers by outcome (completed, size_probe, client_aborted, timeout, shutdown, io_error)."
    );
    describe_counter!(
        FAILED,
        "Finished TFTP transfers that did not deliver the file (timeout, client_aborted, io_error, shutdown)."
    );
    describe_counter!(
        REFUSED,
        "TFTP requests answered with an ERROR packet, by reason."
    );
    describe_counter!(
        DROPPED_REQUESTS,
        "TFTP requests not answered at all, by reason (busy, client_limit, duplicate, socket_error)."
    );
    describe_counter!(DROPPED_PACKETS, "TFTP datagrams dropped, by reason.");
    describe_counter!(
        BYTES,
        Unit::Bytes,
        "File bytes sent over TFTP, retransmissions included."
    );
    describe_counter!(
        ZERO_COPY_BYTES,
        Unit::Bytes,
        "File bytes sent zero-copy from a wire image (sendfile); part of tftp_bytes_sent_total."
    );
    describe_gauge!(
        WIRE_IMAGE_BYTES,
        Unit::Bytes,
        "Bytes held in wire images (files laid out as DATA packets) for zero-copy sends."
    );
    describe_counter!(
        RETRANSMITS,
        "TFTP blocks (and OACKs) sent again after a timeout or duplicate ACK."
    );
    describe_histogram!(
        DURATION,
        Unit::Seconds,
        "Duration of finished TFTP transfers, by outcome."
    );
    bootfiles::Catalogue::describe_metrics();
}

pub fn transfer_started() {
    metrics::gauge!(ACTIVE).increment(1.0);
}

pub fn transfer_finished(outcome: Outcome, elapsed: Duration, stats: &Stats) {
    metrics::gauge!(ACTIVE).decrement(1.0);
    if !outcome.is_success() {
        metrics::counter!(FAILED).increment(1);
    }
    metrics::counter!(RETRANSMITS).increment(stats.retransmits);
    metrics::histogram!(DURATION, "outcome" => outcome.as_str()).record(elapsed.as_secs_f64());
    // Last, so that a reader who sees the transfer counted also sees its other figures.
    metrics::counter!(TRANSFERS, "outcome" => outcome.as_str()).increment(1);
}

pub fn refused(reason: &'static str) {
    metrics::counter!(REFUSED, "reason" => reason).increment(1);
}

pub fn request_dropped(reason: &'static str) {
    metrics::counter!(DROPPED_REQUESTS, "reason" => reason).increment(1);
}

pub fn packet_dropped(reason: &'static str) {
    metrics::counter!(DROPPED_PACKETS, "reason" => reason).increment(1);
}

/// The bytes-sent counter, looked up once per transfer (a lookup per window showed in
/// profiles of fast transfers).
pub fn bytes_sent_counter() -> metrics::Counter {
    metrics::counter!(BYTES)
}

/// The zero-copy share of it, likewise.
pub fn zero_copy_bytes_counter() -> metrics::Counter {
    metrics::counter!(ZERO_COPY_BYTES)
}

pub fn wire_image_bytes(total: u64) {
    metrics::gauge!(WIRE_IMAGE_BYTES).set(total as f64);
}
