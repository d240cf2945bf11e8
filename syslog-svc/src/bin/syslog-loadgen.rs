//! Load generator for `bench/syslog-bench.sh`: sends COUNT RFC 5424 messages (with
//! structured data, ≈ 170 bytes) over UDP or TCP at a fixed rate or as fast as it can,
//! from an optional source address, and prints what it sent and how long it took.
//!
//! `syslog-loadgen udp|tcp TARGET COUNT [RATE|max] [BIND_IP]`
//!
//! UDP goes out as UDP GSO sends of up to 64 equally long datagrams (one system call, one
//! route lookup and one buffer for all of them), so the generator is not what limits the
//! rates the bench can test; every server still receives one datagram per message.
//! TARGET `sink` (UDP only) sends to a socket of its own that nobody reads — the kernel
//! drops what overflows it — which measures how fast the generator itself can send on
//! this machine.

use std::io::{BufWriter, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use nix::sys::socket::{setsockopt, sockopt};

/// Datagrams per send (UDP GSO takes at most 64 segments).
const SEND_BATCH: usize = 64;

fn message(buf: &mut Vec<u8>, seq: u64) {
    buf.clear();
    let _ = write!(
        buf,
        "<14>1 2026-11-25T12:00:00.000000Z node1 installer 4242 STEP [meta@32473 seq=\"{seq:010}\" phase=\"partition\"] partitioning /dev/sda: created 3 partitions, seq {seq:010}"
    );
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(
        args.len() >= 4,
        "usage: syslog-loadgen udp|tcp TARGET COUNT [RATE|max] [BIND_IP]"
    );
    // `sink`: a socket of our own that nobody reads (see the module comment).
    let _sink;
    let target: SocketAddr = if args[2] == "sink" {
        let s = UdpSocket::bind("127.0.0.1:0")?;
        let addr = s.local_addr()?;
        _sink = s;
        addr
    } else {
        args[2].parse()?
    };
    let count: u64 = args[3].parse()?;
    let rate: Option<u64> = match args.get(4).map(String::as_str) {
        None | Some("max") => None,
        Some(r) => Some(r.parse()?),
    };
    let bind = args.get(5).cloned().unwrap_or_else(|| "127.0.0.1".into());
    let start = Instant::now();
    let mut buf = Vec::with_capacity(512);
    // Pacing in 1 ms ticks: send what the rate allows by now, then sleep to the next tick.
    let due = |elapsed: Duration| {
        rate.map_or(u64::MAX, |r| (elapsed.as_secs_f64() * r as f64) as u64 + 1)
    };
    let mut errors = 0u64;
    match args[1].as_str() {
        "udp" => {
            let sock = UdpSocket::bind(format!("{bind}:0"))?;
            sock.connect(target)?;
            // Every message has the same length, so a batch goes out as one UDP GSO send
            // (the kernel cuts it into one datagram per message before any socket sees
            // it). Without GSO (kernels before 4.18), one send per datagram.
            message(&mut buf, 0);
            let len = buf.len();
            let gso = setsockopt(&sock, sockopt::UdpGsoSegment, &(len as i32)).is_ok();
            let mut batch = Vec::with_capacity(SEND_BATCH * len);
            let mut seq = 0;
            while seq < count {
                let allowed = due(start.elapsed()).min(count);
                while seq < allowed {
                    let n = (allowed - seq).min(SEND_BATCH as u64);
                    batch.clear();
                    for i in 0..n {
                        message(&mut buf, seq + i);
                        debug_assert_eq!(buf.len(), len);
                        batch.extend_from_slice(&buf);
                    }
                    let sends: Vec<&[u8]> = if gso {
                        vec![&batch[..]]
                    } else {
                        batch.chunks(len).collect()
                    };
                    for datagrams in sends {
                        // ECONNREFUSED from an earlier ICMP error and the like: those
                        // datagrams count as failed; go on with the next.
                        if sock.send(datagrams).is_err() {
                            errors += (datagrams.len() / len) as u64;
                        }
                    }
                    seq += n;
                }
                if seq < count && rate.is_some() {
                    std::thread::sleep(Duration::from_micros(500));
                }
            }
        }
        "tcp" => {
            let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
            sock.bind(&format!("{bind}:0").parse::<SocketAddr>()?.into())?;
            sock.connect(&target.into())?;
            let stream: TcpStream = sock.into();
            let mut w = BufWriter::with_capacity(64 * 1024, stream);
            let mut seq = 0;
            while seq < count {
                let allowed = due(start.elapsed()).min(count);
                while seq < allowed {
                    message(&mut buf, seq);
                    // Octet-counting framing (RFC 6587 §3.4.1), as rsyslog's omfwd sends.
                    write!(w, "{} ", buf.len())?;
                    w.write_all(&buf)?;
                    seq += 1;
                }
                if seq < count && rate.is_some() {
                    w.flush()?;
                    std::thread::sleep(Duration::from_micros(500));
                }
            }
            w.flush()?;
        }
        other => anyhow::bail!("unknown transport {other}"),
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "sent={count} errors={errors} seconds={secs:.3} rate={:.0}",
        count as f64 / secs
    );
    Ok(())
}
