//! tftp-load: N concurrent TFTP downloads against any server, verified, timed.
//!
//! The benchmark's client (the packaged clients cannot ask for windowsize, and starting
//! hundreds of processes measures process start-up, not the server). Prints one line of
//! `key=value` pairs that the benchmark script parses.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use tftp_svc::client::{self, ClientOptions};

#[derive(Parser, Debug)]
#[command(
    name = "tftp-load",
    about = "Concurrent TFTP downloads, verified and timed"
)]
struct Args {
    /// Server address.
    server: SocketAddr,
    /// File to request.
    file: String,
    /// Concurrent downloads.
    #[arg(short = 'c', long, default_value_t = 1)]
    concurrency: usize,
    /// Total downloads (default: the concurrency).
    #[arg(short = 'n', long)]
    count: Option<usize>,
    #[arg(long)]
    blksize: Option<u16>,
    #[arg(long)]
    windowsize: Option<u16>,
    /// Send tsize 0.
    #[arg(long)]
    tsize: bool,
    /// Compare every download with this file.
    #[arg(long)]
    expect: Option<PathBuf>,
    /// Client retransmit timeout.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1s")]
    rto: Duration,
    /// Run for this long instead of a fixed count: every client downloads in a loop, and
    /// throughput counts all bytes received (finished transfers or not).
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Local address to send from.
    #[arg(long)]
    bind: Option<SocketAddr>,
    /// Runtime worker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Wait for packets the way firmware does: poll the socket with non-blocking receives
    /// for up to this long (e.g. `10ms`) before sleeping in the runtime. UEFI and iPXE poll
    /// the NIC in a busy loop and never sleep, so a blocking client pays a thread wake-up
    /// per window that no firmware pays. Burns its CPU while waiting: use it for single
    /// downloads (`-c 1`) on a CPU of their own.
    #[arg(long, value_parser = humantime::parse_duration)]
    spin: Option<Duration>,
    /// Count the data without keeping it, as `curl -o /dev/null` does (not with --expect).
    #[arg(long, conflicts_with = "expect")]
    discard: bool,
    /// Receive with Linux UDP GRO: the kernel hands over a run of the server's DATA
    /// packets in one receive, as TCP hands curl up to 100 KB at a time; every packet is
    /// still checked on its own.
    #[arg(long)]
    gro: bool,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let rt = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()
    };
    let Ok(rt) = rt else {
        eprintln!("cannot start runtime");
        return std::process::ExitCode::FAILURE;
    };
    rt.block_on(run(args))
}

async fn run(args: Args) -> std::process::ExitCode {
    let expect = match &args.expect {
        Some(p) => match std::fs::read(p) {
            Ok(b) => Some(Arc::new(b)),
            Err(e) => {
                eprintln!("cannot read {}: {e}", p.display());
                return std::process::ExitCode::FAILURE;
            }
        },
        None => None,
    };
    let total = if args.duration.is_some() {
        usize::MAX
    } else {
        args.count.unwrap_or(args.concurrency)
    };
    let progress = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicUsize::new(0));
    let next = Arc::new(AtomicUsize::new(0));
    let opts = ClientOptions {
        blksize: args.blksize,
        windowsize: args.windowsize,
        tsize: args.tsize,
        rto: args.rto,
        retries: 10,
        bind: args.bind,
        progress: Some(progress.clone()),
        spin: args.spin,
        discard: args.discard,
        gro: args.gro,
        ..ClientOptions::default()
    };
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency.max(1) {
        let next = next.clone();
        let failures = failures.clone();
        let opts = opts.clone();
        let expect = expect.clone();
        let file = args.file.clone();
        let server = args.server;
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < total {
                let r = client::get(server, &file, &opts).await;
                out.push(match r {
                    Ok(d) => {
                        let ok = expect
                            .as_ref()
                            .is_none_or(|e| e.as_slice() == d.data.as_slice());
                        let neg = format!(
                            "{}/{}",
                            d.oack_value("blksize").unwrap_or("512"),
                            d.oack_value("windowsize").unwrap_or("1")
                        );
                        (
                            ok,
                            d.size,
                            d.elapsed,
                            d.retransmits,
                            neg,
                            if ok {
                                String::new()
                            } else {
                                "content mismatch".into()
                            },
                            Some(d.server),
                        )
                    }
                    Err(e) => (
                        false,
                        0,
                        Duration::ZERO,
                        0,
                        String::new(),
                        e.to_string(),
                        None,
                    ),
                });
                if out.last().is_some_and(|r| !r.0) {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
            }
            out
        }));
    }
    let mut results = Vec::new();
    let mut wall = Duration::ZERO;
    if let Some(d) = args.duration {
        // Fixed time: count what arrived, stop everyone.
        tokio::time::sleep(d).await;
        wall = started.elapsed();
        let bytes = progress.load(Ordering::Relaxed);
        for t in &tasks {
            t.abort();
        }
        let done = next
            .load(Ordering::Relaxed)
            .saturating_sub(args.concurrency);
        println!(
            "ok={done} failed={} bytes={bytes} wall_s={:.3} mbps={:.2} p50_ms=0 p99_ms=0 client_retransmits=0 negotiated={} server=",
            failures.load(Ordering::Relaxed),
            wall.as_secs_f64(),
            bytes as f64 / 1e6 / wall.as_secs_f64(),
            negotiated_probe(&args, &opts).await,
        );
        return std::process::ExitCode::SUCCESS;
    }
    for t in tasks {
        if let Ok(r) = t.await {
            results.extend(r);
        }
    }
    if wall.is_zero() {
        wall = started.elapsed();
    }
    let ok = results.iter().filter(|r| r.0).count();
    let failed = results.len() - ok;
    let bytes: u64 = results.iter().map(|r| r.1).sum();
    let mut times: Vec<Duration> = results.iter().filter(|r| r.0).map(|r| r.2).collect();
    times.sort();
    let pct = |p: f64| {
        times
            .get(((times.len() as f64 - 1.0) * p).round() as usize)
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(0.0)
    };
    let retrans: u64 = results.iter().map(|r| r.3).sum();
    let negotiated = results
        .iter()
        .find(|r| r.0)
        .map(|r| r.4.clone())
        .unwrap_or_default();
    let answered = results
        .iter()
        .find_map(|r| r.6)
        .map(|a| a.to_string())
        .unwrap_or_default();
    if let Some(err) = results.iter().find(|r| !r.0).map(|r| r.5.clone()) {
        eprintln!("first failure: {err}");
    }
    println!(
        "ok={ok} failed={failed} bytes={bytes} wall_s={:.3} mbps={:.2} p50_ms={:.2} p99_ms={:.2} client_retransmits={retrans} negotiated={negotiated} server={answered}",
        wall.as_secs_f64(),
        bytes as f64 / 1e6 / wall.as_secs_f64().max(1e-9),
        pct(0.5),
        pct(0.99),
    );
    if failed == 0 {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}

/// What the server grants for these options (one extra short request).
async fn negotiated_probe(args: &Args, opts: &ClientOptions) -> String {
    let probe = ClientOptions {
        probe_only: true,
        tsize: true,
        progress: None,
        ..opts.clone()
    };
    match client::get(args.server, &args.file, &probe).await {
        Ok(d) => format!(
            "{}/{}",
            d.oack_value("blksize").unwrap_or("512"),
            d.oack_value("windowsize").unwrap_or("1")
        ),
        Err(_) => "?".into(),
    }
}
