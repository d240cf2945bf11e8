//! The sending side of one read transfer as a pure state machine: which blocks go out
//! when, given ACKs, errors and timeouts. The socket code in `transfer.rs` only feeds it
//! events and sends what it returns, so windowing, rollover and retransmission are tested
//! here without a network.
//!
//! Rules:
//! - Blocks are numbered 1..=N absolutely (u64) and sent as `N mod 65536`: after block
//!   65535 comes 0 (the rollover every common client implements).
//! - A window of `windowsize` blocks is sent; an ACK for any block of the outstanding
//!   window slides it to start after that block (RFC 7440: a partial ACK means the
//!   client saw a gap), and the next window is sent.
//! - An ACK that does not advance the window — a duplicate or a stale one — sends
//!   nothing. Only our own timer retransmits. That is what stops the Sorcerer's
//!   Apprentice (RFC 1123 §4.2.3.1): answering every duplicate ACK doubles the traffic
//!   on every delay, forever.
//! - The retransmit timeout adapts to the measured round trip (RFC 6298 style, Karn's
//!   rule: no samples from retransmitted windows), between a floor and the ceiling the
//!   client asked for with `timeout`, doubling on each consecutive timeout.

use std::time::{Duration, Instant};

/// Timer settings.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// First retransmit timeout, before any round trip was measured.
    pub initial_rto: Duration,
    /// Floor of the adaptive timeout.
    pub min_rto: Duration,
    /// Ceiling of the adaptive timeout (the client's `timeout` option if it sent one).
    pub max_rto: Duration,
    /// Consecutive timeouts after which the client is considered gone.
    pub max_retries: u32,
}

/// What the driver must do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send the OACK (again).
    SendOack,
    /// Send blocks `first..=last` (absolute numbers).
    SendBlocks { first: u64, last: u64 },
    /// Nothing to send; keep waiting.
    Wait,
    /// The last block was acknowledged.
    Complete,
    /// Too many consecutive timeouts.
    GiveUp,
}

/// Counters for logs and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Data packets sent, retransmissions included.
    pub packets: u64,
    /// Data or OACK packets sent again after a timeout or a partial ACK.
    pub retransmits: u64,
    /// ACKs that moved nothing (duplicates or stale).
    pub duplicate_acks: u64,
    pub timeouts: u64,
}

pub struct Sender {
    size: u64,
    blksize: u64,
    windowsize: u64,
    /// N: the last block number (a file whose size is a multiple of blksize ends with an
    /// empty block).
    last_block: u64,
    /// Highest block acknowledged (0 = only the OACK, or nothing yet).
    acked: u64,
    /// Highest block sent so far.
    sent: u64,
    /// Waiting for ACK 0 of our OACK.
    oack_pending: bool,
    timing: Timing,
    rto: Duration,
    srtt: Option<Duration>,
    rttvar: Duration,
    /// When the outstanding window (or OACK) went out, unless it was a retransmission.
    sample_from: Option<Instant>,
    consecutive_timeouts: u32,
    pub stats: Stats,
}

impl Sender {
    pub fn new(
        size: u64,
        blksize: u16,
        windowsize: u16,
        with_oack: bool,
        timing: Timing,
    ) -> Sender {
        let blksize = u64::from(blksize.max(1));
        let initial = timing
            .initial_rto
            .min(timing.max_rto)
            .max(timing.min_rto.min(timing.max_rto));
        Sender {
            size,
            blksize,
            windowsize: u64::from(windowsize.max(1)),
            last_block: size / blksize + 1,
            acked: 0,
            sent: 0,
            oack_pending: with_oack,
            timing,
            rto: initial,
            srtt: None,
            rttvar: Duration::ZERO,
            sample_from: None,
            consecutive_timeouts: 0,
            stats: Stats::default(),
        }
    }

    /// The first thing to send.
    pub fn start(&mut self, now: Instant) -> Action {
        self.sample_from = Some(now);
        if self.oack_pending {
            return Action::SendOack;
        }
        self.next_window(now, false)
    }

    /// The current retransmit timeout; the driver arms its timer with it after sending.
    pub fn rto(&self) -> Duration {
        self.rto
    }

    pub fn blocks_total(&self) -> u64 {
        self.last_block
    }

    /// Bytes of file data acknowledged so far.
    pub fn bytes_acked(&self) -> u64 {
        (self.acked * self.blksize).min(self.size)
    }

    pub fn is_waiting_for_oack_ack(&self) -> bool {
        self.oack_pending
    }

    /// Byte range of block `n` in the file.
    pub fn block_range(&self, n: u64) -> std::ops::Range<usize> {
        let start = ((n - 1) * self.blksize).min(self.size);
        let end = (n * self.blksize).min(self.size);
        start as usize..end as usize
    }

    /// The 16-bit number block `n` carries on the wire.
    pub fn wire_block(n: u64) -> u16 {
        (n & 0xffff) as u16
    }

    /// Sends the window after `acked`.
    fn next_window(&mut self, now: Instant, retransmit: bool) -> Action {
        if self.acked >= self.last_block {
            return Action::Complete;
        }
        let first = self.acked + 1;
        let last = (self.acked + self.windowsize).min(self.last_block);
        let count = last - first + 1;
        self.stats.packets += count;
        // Blocks already sent once count as retransmissions.
        let resent = self.sent.min(last).saturating_sub(first - 1);
        self.stats.retransmits += resent;
        self.sent = self.sent.max(last);
        self.sample_from = if retransmit || resent > 0 {
            None
        } else {
            Some(now)
        };
        Action::SendBlocks { first, last }
    }

    /// An ACK with wire number `block` arrived.
    pub fn on_ack(&mut self, block: u16, now: Instant) -> Action {
        if self.oack_pending {
            if block == 0 {
                self.oack_pending = false;
                self.progress(now);
                return self.next_window(now, false);
            }
            self.stats.duplicate_acks += 1;
            return Action::Wait;
        }
        // Which outstanding block does the wire number name? Candidates are acked+1..=sent,
        // at most one window long (< 65536), so the 16-bit distance is unambiguous.
        let delta = u64::from(block.wrapping_sub(Self::wire_block(self.acked)));
        let target = self.acked + delta;
        if delta == 0 || target > self.sent {
            self.stats.duplicate_acks += 1;
            return Action::Wait;
        }
        self.acked = target;
        self.progress(now);
        self.next_window(now, false)
    }

    /// Our timer fired with nothing new from the client.
    pub fn on_timeout(&mut self, now: Instant) -> Action {
        self.stats.timeouts += 1;
        self.consecutive_timeouts += 1;
        if self.consecutive_timeouts > self.timing.max_retries {
            return Action::GiveUp;
        }
        self.rto = (self.rto * 2).min(self.timing.max_rto);
        self.sample_from = None;
        if self.oack_pending {
            self.stats.retransmits += 1;
            return Action::SendOack;
        }
        self.next_window(now, true)
    }

    fn progress(&mut self, now: Instant) {
        self.consecutive_timeouts = 0;
        if let Some(t0) = self.sample_from.take() {
            let rtt = now.saturating_duration_since(t0);
            match self.srtt {
                None => {
                    self.srtt = Some(rtt);
                    self.rttvar = rtt / 2;
                }
                Some(srtt) => {
                    let diff = srtt.abs_diff(rtt);
                    self.rttvar = (self.rttvar * 3 + diff) / 4;
                    self.srtt = Some((srtt * 7 + rtt) / 8);
                }
            }
        }
        if let Some(srtt) = self.srtt {
            self.rto = (srtt + self.rttvar * 4).clamp(
                self.timing.min_rto,
                self.timing.max_rto.max(self.timing.min_rto),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timing = Timing {
        initial_rto: Duration::from_millis(500),
        min_rto: Duration::from_millis(50),
        max_rto: Duration::from_secs(2),
        max_retries: 3,
    };

    fn now() -> Instant {
        Instant::now()
    }

    #[test]
    fn lockstep_without_options() {
        let mut s = Sender::new(1000, 512, 1, false, T);
        let t = now();
        assert_eq!(s.start(t), Action::SendBlocks { first: 1, last: 1 });
        assert_eq!(s.on_ack(1, t), Action::SendBlocks { first: 2, last: 2 });
        assert_eq!(s.block_range(2), 512..1000);
        assert_eq!(s.on_ack(2, t), Action::Complete);
        assert_eq!(s.stats.retransmits, 0);
    }

    #[test]
    fn exact_multiple_ends_with_empty_block() {
        let mut s = Sender::new(1024, 512, 1, false, T);
        assert_eq!(s.blocks_total(), 3);
        assert_eq!(s.block_range(3), 1024..1024);
        let mut s0 = Sender::new(0, 512, 1, false, T);
        assert_eq!(s0.start(now()), Action::SendBlocks { first: 1, last: 1 });
        assert_eq!(s0.block_range(1), 0..0);
        assert_eq!(s0.on_ack(1, now()), Action::Complete);
        let _ = s.start(now());
    }

    #[test]
    fn oack_then_windows() {
        let mut s = Sender::new(10 * 100, 100, 4, true, T);
        let t = now();
        assert_eq!(s.start(t), Action::SendOack);
        assert_eq!(s.on_ack(5, t), Action::Wait);
        assert_eq!(s.on_ack(0, t), Action::SendBlocks { first: 1, last: 4 });
        assert_eq!(s.on_ack(4, t), Action::SendBlocks { first: 5, last: 8 });
        // Partial ACK: the client lost block 7; resend from 7.
        assert_eq!(s.on_ack(6, t), Action::SendBlocks { first: 7, last: 10 });
        assert_eq!(s.stats.retransmits, 2);
        assert_eq!(
            s.on_ack(10, t),
            Action::SendBlocks {
                first: 11,
                last: 11
            }
        );
        assert_eq!(s.on_ack(11, t), Action::Complete);
    }

    #[test]
    fn duplicate_acks_never_send() {
        let mut s = Sender::new(5000, 512, 1, false, T);
        let t = now();
        s.start(t);
        assert_eq!(s.on_ack(1, t), Action::SendBlocks { first: 2, last: 2 });
        for _ in 0..10 {
            assert_eq!(s.on_ack(1, t), Action::Wait);
        }
        // An ACK for a block not yet sent is ignored too.
        assert_eq!(s.on_ack(5, t), Action::Wait);
        assert_eq!(s.stats.duplicate_acks, 11);
        assert_eq!(s.stats.packets, 2);
    }

    #[test]
    fn timeouts_resend_then_give_up() {
        let mut s = Sender::new(5000, 512, 2, false, T);
        let t = now();
        s.start(t);
        assert_eq!(s.on_timeout(t), Action::SendBlocks { first: 1, last: 2 });
        assert_eq!(s.rto(), Duration::from_secs(1));
        assert_eq!(s.on_timeout(t), Action::SendBlocks { first: 1, last: 2 });
        assert_eq!(s.rto(), Duration::from_secs(2), "capped");
        assert_eq!(s.on_timeout(t), Action::SendBlocks { first: 1, last: 2 });
        assert_eq!(s.on_timeout(t), Action::GiveUp);
        assert_eq!(s.stats.retransmits, 6);
    }

    #[test]
    fn progress_resets_retries_and_adapts_rto() {
        let mut s = Sender::new(100_000, 512, 1, false, T);
        let t = now();
        s.start(t);
        s.on_timeout(t);
        s.on_timeout(t);
        // Karn: the ACK of a retransmitted block gives no sample.
        s.on_ack(1, t + Duration::from_millis(3));
        assert_eq!(s.rto(), Duration::from_secs(2));
        s.on_ack(2, t + Duration::from_millis(4));
        assert_eq!(
            s.rto(),
            T.min_rto,
            "1 ms round trips put the timer at its floor"
        );
        for _ in 0..2 {
            s.on_timeout(t);
        }
        assert_ne!(
            s.on_timeout(t),
            Action::GiveUp,
            "retries count consecutive timeouts only"
        );
    }

    #[test]
    fn rollover_past_65535_blocks() {
        // 70,000 blocks of 8 bytes.
        let blocks = 70_000u64;
        let mut s = Sender::new(blocks * 8 - 3, 8, 8, false, T);
        let t = now();
        let mut a = s.start(t);
        let mut wire_seen = Vec::new();
        loop {
            match a {
                Action::SendBlocks { last, .. } => {
                    wire_seen.push(Sender::wire_block(last));
                    a = s.on_ack(Sender::wire_block(last), t);
                }
                Action::Complete => break,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(s.bytes_acked(), blocks * 8 - 3);
        assert!(wire_seen.contains(&0), "block 65536 goes out as 0");
        assert_eq!(s.stats.retransmits, 0);
    }

    #[test]
    fn rollover_with_partial_ack_across_the_wrap() {
        let mut s = Sender::new(70_000 * 8, 8, 8, false, T);
        let t = now();
        let mut a = s.start(t);
        // Drive to just before the wrap.
        while let Action::SendBlocks { last, .. } = a {
            if last >= 65_530 {
                break;
            }
            a = s.on_ack(Sender::wire_block(last), t);
        }
        let Action::SendBlocks { first, last } = a else {
            panic!()
        };
        assert!(first <= 65_535 && last >= 65_530);
        // ACK next window end (crosses 65535 → 0).
        let a = s.on_ack(Sender::wire_block(last), t);
        let Action::SendBlocks {
            first: f2,
            last: l2,
        } = a
        else {
            panic!()
        };
        assert_eq!(f2, last + 1);
        // Partial ACK with a wire number past the wrap.
        let mid = f2 + 2;
        assert!(mid > 65_535);
        assert_eq!(
            s.on_ack(Sender::wire_block(mid), t),
            Action::SendBlocks {
                first: mid + 1,
                last: (mid + 8).min(70_001)
            }
        );
        let _ = l2;
    }
}
