//! cpu-pair-probe: how long one round trip between two CPUs takes right now.
//!
//! The benchmark's single-transfer comparison is a lockstep protocol (TFTP pays one
//! round trip between the server's and the client's CPU per window) against a stream
//! (HTTP pays a handful), so its ratio follows this machine's cross-CPU latency. In a VM
//! that latency depends on where the host puts the two vCPUs, and it changes over
//! minutes. This prints it, so a benchmark line can be read against it:
//! - `line`: a cache line handed back and forth between two threads that spin on it
//!   (the hardware's share);
//! - `udp`: a 1-byte datagram over loopback and back between two threads that poll
//!   their sockets with non-blocking receives (the kernel path a TFTP window's ACK and
//!   DATA take, without the payload).
//!
//! Prints one line of `key=value` pairs (medians, nanoseconds) for the script to parse.

use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "cpu-pair-probe",
    about = "Round-trip latency between two CPUs: a shared cache line, and a UDP datagram over loopback"
)]
struct Args {
    /// CPU of the first thread.
    #[arg(long, default_value_t = 0)]
    a: usize,
    /// CPU of the second thread.
    #[arg(long, default_value_t = 1)]
    b: usize,
    /// Cache-line round trips per sample.
    #[arg(long, default_value_t = 2000)]
    line_batch: u64,
    /// UDP round trips per sample.
    #[arg(long, default_value_t = 200)]
    udp_batch: u64,
    /// Samples of each; the median is printed.
    #[arg(long, default_value_t = 25)]
    samples: usize,
}

fn pin(cpu: usize) -> anyhow::Result<()> {
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu)?;
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)?;
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[repr(align(128))]
struct Line(AtomicU64);

/// Median ns per round trip of a cache line between the two CPUs.
fn line_round_trip(args: &Args) -> anyhow::Result<f64> {
    let line = Arc::new(Line(AtomicU64::new(0)));
    let total = args.line_batch * args.samples as u64;
    let echo = {
        let line = line.clone();
        let cpu = args.b;
        std::thread::spawn(move || -> anyhow::Result<()> {
            pin(cpu)?;
            // Answers every odd value with the next even one.
            for i in 0..total {
                let want = 2 * i + 1;
                while line.0.load(Ordering::Acquire) != want {
                    std::hint::spin_loop();
                }
                line.0.store(want + 1, Ordering::Release);
            }
            Ok(())
        })
    };
    pin(args.a)?;
    let mut samples = Vec::with_capacity(args.samples);
    let mut i = 0u64;
    for _ in 0..args.samples {
        let t0 = Instant::now();
        for _ in 0..args.line_batch {
            line.0.store(2 * i + 1, Ordering::Release);
            while line.0.load(Ordering::Acquire) != 2 * i + 2 {
                std::hint::spin_loop();
            }
            i += 1;
        }
        samples.push(t0.elapsed().as_nanos() as f64 / args.line_batch as f64);
    }
    echo.join()
        .map_err(|_| anyhow::anyhow!("echo thread panicked"))??;
    Ok(median(samples))
}

/// Busy-polls a non-blocking socket for one datagram.
fn recv_spin(s: &UdpSocket, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match s.recv(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::hint::spin_loop(),
            Err(e) => return Err(e),
        }
    }
}

/// Median ns per round trip of a 1-byte datagram over loopback between the two CPUs.
fn udp_round_trip(args: &Args) -> anyhow::Result<f64> {
    let a = UdpSocket::bind("127.0.0.1:0")?;
    let b = UdpSocket::bind("127.0.0.1:0")?;
    a.connect(b.local_addr()?)?;
    b.connect(a.local_addr()?)?;
    a.set_nonblocking(true)?;
    b.set_nonblocking(true)?;
    let total = args.udp_batch * args.samples as u64;
    let cpu = args.b;
    let echo = std::thread::spawn(move || -> anyhow::Result<()> {
        pin(cpu)?;
        let mut buf = [0u8; 16];
        for _ in 0..total {
            let n = recv_spin(&b, &mut buf)?;
            b.send(&buf[..n])?;
        }
        Ok(())
    });
    pin(args.a)?;
    let mut buf = [0u8; 16];
    let mut samples = Vec::with_capacity(args.samples);
    for _ in 0..args.samples {
        let t0 = Instant::now();
        for _ in 0..args.udp_batch {
            a.send(&[1])?;
            recv_spin(&a, &mut buf)?;
        }
        samples.push(t0.elapsed().as_nanos() as f64 / args.udp_batch as f64);
    }
    echo.join()
        .map_err(|_| anyhow::anyhow!("echo thread panicked"))??;
    Ok(median(samples))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.samples > 0 && args.line_batch > 0 && args.udp_batch > 0,
        "--samples and the batch sizes must be at least 1"
    );
    // Two spinning threads on one CPU hand over only when the scheduler preempts one.
    anyhow::ensure!(args.a != args.b, "--a and --b must be different CPUs");
    let line = line_round_trip(&args)?;
    let udp = udp_round_trip(&args)?;
    println!(
        "cpus={},{} line_ns={line:.0} udp_ns={udp:.0}",
        args.a, args.b
    );
    Ok(())
}
