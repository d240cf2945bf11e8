//! Counters for everything the service receives, writes and drops.
//!
//! Each counter is kept twice: in the process-wide Prometheus recorder (for `/metrics`)
//! and in a per-instance atomic, so a test (or a launcher running several instances in
//! one process) can read exactly its own instance's figures. Both are plain atomic adds;
//! the metric handles are looked up once, not per message.

use std::sync::atomic::{AtomicU64, Ordering};

use metrics::{Counter, Gauge, counter, gauge};

pub struct Stat {
    local: AtomicU64,
    metric: Counter,
}

impl Stat {
    fn new(metric: Counter) -> Self {
        Stat {
            local: AtomicU64::new(0),
            metric,
        }
    }
    pub fn add(&self, n: u64) {
        if n > 0 {
            self.local.fetch_add(n, Ordering::Relaxed);
            self.metric.increment(n);
        }
    }
    pub fn inc(&self) {
        self.add(1);
    }
    pub fn get(&self) -> u64 {
        self.local.load(Ordering::Relaxed)
    }
}

/// All counters of one service instance. Metric names are listed in the README.
pub struct Stats {
    /// Datagrams / frames taken off the sockets (before any drop).
    pub received_udp: Stat,
    pub received_tcp: Stat,
    /// Dropped because the queue to the writer was full (UDP only: TCP waits instead).
    pub dropped_queue_full: Stat,
    /// Dropped because they held nothing but whitespace / NULs.
    pub dropped_empty: Stat,
    /// JSON lines handed to the output.
    pub written: Stat,
    pub parse_errors: Stat,
    /// Messages whose header parsed cleanly (RFC 5424 or 3164): written minus parse errors.
    pub parsed: Stat,
    pub invalid_utf8: Stat,
    pub truncated: Stat,
    /// Messages whose source IP is not a registered machine.
    pub unattributed: Stat,
    pub output_errors: Stat,
    pub rotations: Stat,
    pub tcp_accepted: Stat,
    /// Connections refused because `--tcp-max-connections` were open.
    pub tcp_rejected: Stat,
    pub udp_errors: Stat,
    pub store_evicted_machines: Stat,
    pub tcp_connections: Gauge,
    pub queue_depth: Gauge,
    pub queue_bytes: Gauge,
    pub store_machines: Gauge,
}

impl Stats {
    pub fn new() -> Self {
        Stats {
            received_udp: Stat::new(counter!("syslog_received_total", "transport" => "udp")),
            received_tcp: Stat::new(counter!("syslog_received_total", "transport" => "tcp")),
            dropped_queue_full: Stat::new(
                counter!("syslog_dropped_total", "reason" => "queue_full"),
            ),
            dropped_empty: Stat::new(counter!("syslog_dropped_total", "reason" => "empty")),
            written: Stat::new(counter!("syslog_written_total")),
            parse_errors: Stat::new(counter!("syslog_parse_errors_total")),
            parsed: Stat::new(counter!("syslog_parsed_total")),
            invalid_utf8: Stat::new(counter!("syslog_invalid_utf8_total")),
            truncated: Stat::new(counter!("syslog_truncated_total")),
            unattributed: Stat::new(counter!("syslog_unattributed_total")),
            output_errors: Stat::new(counter!("syslog_output_errors_total")),
            rotations: Stat::new(counter!("syslog_output_rotations_total")),
            tcp_accepted: Stat::new(counter!("syslog_tcp_connections_total")),
            tcp_rejected: Stat::new(counter!("syslog_tcp_rejected_total")),
            udp_errors: Stat::new(counter!("syslog_udp_receive_errors_total")),
            store_evicted_machines: Stat::new(counter!("syslog_store_evicted_machines_total")),
            tcp_connections: gauge!("syslog_tcp_connections"),
            queue_depth: gauge!("syslog_queue_depth"),
            queue_bytes: gauge!("syslog_queue_bytes"),
            store_machines: gauge!("syslog_store_machines"),
        }
    }

    pub fn received(&self) -> u64 {
        self.received_udp.get() + self.received_tcp.get()
    }

    /// Everything that did not become a written line.
    pub fn dropped(&self) -> u64 {
        self.dropped_queue_full.get() + self.dropped_empty.get()
    }
}

/// Registers every description (`# HELP`); call once the recorder is installed.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge};
    describe_counter!(
        "syslog_received_total",
        "Syslog messages taken off the sockets, by transport (udp, tcp), before any drop."
    );
    describe_counter!(
        "syslog_dropped_total",
        "Syslog messages dropped, by reason (queue_full: UDP overflow; empty: only whitespace or NULs)."
    );
    describe_counter!(
        "syslog_written_total",
        "Syslog messages written as JSON lines (parsed or kept raw)."
    );
    describe_counter!(
        "syslog_parsed_total",
        "Syslog messages whose header parsed cleanly (RFC 5424 or RFC 3164)."
    );
    describe_counter!(
        "syslog_parse_errors_total",
        "Syslog messages with an unreadable header, kept raw with parse_error."
    );
    describe_counter!(
        "syslog_invalid_utf8_total",
        "Syslog messages that were not valid UTF-8 (kept with replacement characters)."
    );
    describe_counter!(
        "syslog_truncated_total",
        "TCP syslog frames cut at --max-message."
    );
    describe_counter!(
        "syslog_unattributed_total",
        "Syslog messages whose source address is not a registered machine."
    );
    describe_counter!(
        "syslog_output_errors_total",
        "Failed writes or flushes of the syslog output."
    );
    describe_counter!(
        "syslog_output_rotations_total",
        "Rotations of the syslog output file."
    );
    describe_counter!(
        "syslog_tcp_connections_total",
        "TCP syslog connections accepted."
    );
    describe_counter!(
        "syslog_tcp_rejected_total",
        "TCP syslog connections refused because --tcp-max-connections were open."
    );
    describe_counter!(
        "syslog_udp_receive_errors_total",
        "Errors receiving on the UDP syslog socket."
    );
    describe_counter!(
        "syslog_store_evicted_machines_total",
        "Machines whose recent-log ring was evicted to stay within the store limits."
    );
    describe_gauge!("syslog_tcp_connections", "Open TCP syslog connections.");
    describe_gauge!("syslog_queue_depth", "Messages queued for the writer.");
    describe_gauge!(
        "syslog_queue_bytes",
        Unit::Bytes,
        "Bytes queued for the writer."
    );
    describe_gauge!(
        "syslog_store_machines",
        "Machines with recent log lines kept for the query API."
    );
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}
