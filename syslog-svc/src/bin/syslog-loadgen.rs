//! Load generator for `bench/syslog-bench.sh`: sends COUNT RFC 5424 messages (with
//! structured data, ≈ 170 bytes) over UDP or TCP at a fixed rate or as fast as it can,
//! from an optional source address, and prints what it sent and how long it took.
//!
//! `syslog-loadgen udp|tcp TARGET COUNT [RATE|max] [BIND_IP]`
//!
//! UDP goes out with `sendmmsg`, up to 64 datagrams per system call, so the generator is
//! not what limits the rates the bench can test. TARGET `sink` (UDP only) sends to a
//! socket of its own that nobody reads — the kernel drops what overflows it — which
//! measures how fast the generator itself can send on this machine.

use std::io::{BufWriter, IoSlice, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, sendmmsg};

/// Datagrams per `sendmmsg`.
const SEND_BATCH: usize = 64;

fn message(buf: &mut Vec<u8>, seq: u64) {
    buf.clear();
    let _ = write!(
        buf,
        "<14>1 2026-11-25T12:00:00.000000Z node1 installer 4242 STEP [meta@32473 seq=\"{seq}\" phase=\"partition\"] partitioning /dev/sda: created 3 partitions, seq {seq}"
    );
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(args.len() >= 4, "usage: syslog-loadgen udp|tcp TARGET COUNT [RATE|max] [BIND_IP]");
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
    let due = |elapsed: Duration| rate.map_or(u64::MAX, |r| (elapsed.as_secs_f64() * r as f64) as u64 + 1);
    let mut errors = 0u64;
    match args[1].as_str() {
        "udp" => {
            let sock = UdpSocket::bind(format!("{bind}:0"))?;
            sock.connect(target)?;
            let mut bufs: Vec<Vec<u8>> = (0..SEND_BATCH).map(|_| Vec::with_capacity(256)).collect();
            let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(SEND_BATCH, None);
            let no_addr: [Option<SockaddrStorage>; SEND_BATCH] = [None; SEND_BATCH];
            let mut seq = 0;
            while seq < count {
                let allowed = due(start.elapsed()).min(count);
                while seq < allowed {
                    let n = (allowed - seq).min(SEND_BATCH as u64) as usize;
                    for (i, b) in bufs[..n].iter_mut().enumerate() {
                        message(b, seq + i as u64);
                    }
                    let mut done = 0;
                    while done < n {
                        let slices: Vec<[IoSlice<'_>; 1]> = bufs[done..n].iter().map(|b| [IoSlice::new(b)]).collect();
                        match sendmmsg(sock.as_raw_fd(), &mut headers, &slices, &no_addr[..n - done], [], MsgFlags::empty()) {
                            Ok(r) => done += r.count().max(1),
                            Err(_) => {
                                // ECONNREFUSED from an earlier ICMP error and the like: that
                                // datagram counts as failed, go on with the next.
                                errors += 1;
                                done += 1;
                            }
                        }
                    }
                    seq += n as u64;
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
    println!("sent={count} errors={errors} seconds={secs:.3} rate={:.0}", count as f64 / secs);
    Ok(())
}
