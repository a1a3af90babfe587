//! `shoal-tcp-bench`: what a hop costs a TCP connection, measured end to
//! end, so that a Service's cluster IP (through the node proxy) can be set
//! beside its pod's own address (`benches/proxy.sh` runs both):
//! - `serve --port P`: the backend, run as a pod's container;
//! - `connect`: connections opened, one byte each way, closed: setup cost;
//! - `rr`: 64-byte requests and answers on one connection: the added
//!   latency per exchange;
//! - `stream`: bytes from the server as fast as it sends them: throughput.
//!
//! The first byte a client sends picks what the server does: `c` answers
//! one byte and closes, `r` echoes 64-byte messages, `s` sends zeros until
//! the client goes.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const MESSAGE: usize = 64;

#[derive(Parser)]
#[command(name = "shoal-tcp-bench", about = "TCP setup, latency and throughput through a hop")]
struct Cli {
    #[command(subcommand)]
    command: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// The backend.
    Serve {
        #[arg(long, default_value_t = 8080)]
        port: u16,
    },
    /// Open, exchange one byte, close; as fast as `--clients` workers can.
    Connect(Target),
    /// 64-byte request and answer on one connection per worker.
    Rr(Target),
    /// Read what the server streams, one connection per worker.
    Stream(Target),
}

#[derive(clap::Args, Clone)]
struct Target {
    /// The server, ADDRESS:PORT.
    #[arg(long)]
    target: SocketAddr,
    #[arg(long, default_value_t = 1)]
    clients: usize,
    /// How long to run, in seconds.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
}

async fn serve(port: u16) -> anyhow::Result<()> {
    let listener = TcpListener::bind(("0.0.0.0", port)).await?;
    loop {
        let (mut stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        tokio::spawn(async move {
            let mut mode = [0u8; 1];
            if stream.read_exact(&mut mode).await.is_err() {
                return;
            }
            match mode[0] {
                b'c' => {
                    let _ = stream.write_all(b"k").await;
                }
                b'r' => {
                    let mut message = [0u8; MESSAGE];
                    while stream.read_exact(&mut message).await.is_ok() {
                        if stream.write_all(&message).await.is_err() {
                            break;
                        }
                    }
                }
                b's' => {
                    let zeros = vec![0u8; 256 * 1024];
                    while stream.write_all(&zeros).await.is_ok() {}
                }
                _ => {}
            }
        });
    }
}

/// What one worker saw.
struct Seen {
    latencies: Histogram<u64>,
    bytes: u64,
    errors: u64,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

async fn connect_once(target: SocketAddr) -> std::io::Result<()> {
    let mut stream = TcpStream::connect(target).await?;
    stream.set_nodelay(true)?;
    stream.write_all(b"c").await?;
    let mut answer = [0u8; 1];
    stream.read_exact(&mut answer).await?;
    Ok(())
}

async fn worker(mode: u8, target: SocketAddr, until: Instant) -> Seen {
    let mut seen = Seen { latencies: histogram(), bytes: 0, errors: 0 };
    if mode == b'c' {
        while Instant::now() < until {
            let start = Instant::now();
            match connect_once(target).await {
                Ok(()) => seen.latencies.saturating_record(start.elapsed().as_micros() as u64),
                Err(_) => seen.errors += 1,
            }
        }
        return seen;
    }
    let Ok(mut stream) = TcpStream::connect(target).await else {
        seen.errors += 1;
        return seen;
    };
    let _ = stream.set_nodelay(true);
    if stream.write_all(&[mode]).await.is_err() {
        seen.errors += 1;
        return seen;
    }
    let mut buffer = vec![0u8; if mode == b's' { 256 * 1024 } else { MESSAGE }];
    while Instant::now() < until {
        let start = Instant::now();
        let done = if mode == b'r' {
            match stream.write_all(&buffer).await {
                Ok(()) => stream.read_exact(&mut buffer).await.map(|_| MESSAGE),
                Err(e) => Err(e),
            }
        } else {
            stream.read(&mut buffer).await
        };
        match done {
            Ok(0) | Err(_) => {
                seen.errors += 1;
                break;
            }
            Ok(n) => {
                seen.bytes += n as u64;
                if mode == b'r' {
                    seen.latencies.saturating_record(start.elapsed().as_micros() as u64);
                }
            }
        }
    }
    seen
}

async fn run(mode: u8, target: &Target) -> anyhow::Result<()> {
    let start = Instant::now();
    let until = start + Duration::from_secs(target.seconds);
    let workers: Vec<_> = (0..target.clients).map(|_| tokio::spawn(worker(mode, target.target, until))).collect();
    let mut total = Seen { latencies: histogram(), bytes: 0, errors: 0 };
    for handle in workers {
        let seen = handle.await?;
        total.latencies.add(&seen.latencies)?;
        total.bytes += seen.bytes;
        total.errors += seen.errors;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let ms = |q: f64| total.latencies.value_at_quantile(q) as f64 / 1000.0;
    // One line of JSON, for benches/proxy.sh.
    println!(
        "{{\"ops\":{},\"per_second\":{:.1},\"mib_per_second\":{:.1},\"p50_ms\":{:.3},\"p99_ms\":{:.3},\"errors\":{}}}",
        total.latencies.len(),
        total.latencies.len() as f64 / elapsed,
        total.bytes as f64 / elapsed / (1024.0 * 1024.0),
        ms(0.5),
        ms(0.99),
        total.errors
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Mode::Serve { port } => serve(port).await,
        Mode::Connect(target) => run(b'c', &target).await,
        Mode::Rr(target) => run(b'r', &target).await,
        Mode::Stream(target) => run(b's', &target).await,
    }
}
