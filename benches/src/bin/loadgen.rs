//! Load generator for HTTP (through Envoy) and ext_authz gRPC `Check`.
//!
//! - `--rate N`: open loop at N requests/s spread over the connections;
//!   when the server falls behind, latency is measured from when each
//!   request was *due*, so a stalled server cannot hide its queueing
//!   (coordinated-omission correction); the generator's own timer slack
//!   (tokio timers tick in milliseconds) is not charged to the server.
//! - no `--rate`: closed loop, every connection sends as fast as answered;
//!   this finds the maximum throughput.
//!
//! Tokens come from `--tokens FILE` (one per line), used round-robin.
//! Prints one JSON summary line.
#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use dm_benches::{cpu_seconds, new_histogram, Summary};
use envoy_types::ext_authz::v3::pb::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty};
use tokio::sync::Mutex;

#[derive(Parser, Debug, Clone)]
struct Args {
    /// http://host:port/path (HTTP) or the gRPC address host:port with --grpc.
    #[arg(long)]
    target: String,
    #[arg(long)]
    grpc: bool,
    /// Requests per second (open loop); omit for closed loop.
    #[arg(long)]
    rate: Option<u64>,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Connections (HTTP) or concurrent streams (gRPC).
    #[arg(long, default_value_t = 16)]
    connections: usize,
    #[arg(long)]
    tokens: Option<String>,
    /// Stop after the token file is used once (every request a new token).
    #[arg(long)]
    once_per_token: bool,
    #[arg(long, default_value = "run")]
    label: String,
    /// PIDs whose CPU use is reported per request (e.g. envoy,authz).
    #[arg(long, value_delimiter = ',')]
    cpu_pids: Vec<u32>,
    #[arg(long, default_value_t = 1)]
    warmup_seconds: u64,
}

struct Shared {
    tokens: Vec<String>,
    next: AtomicU64,
    errors: AtomicU64,
    non_2xx: AtomicU64,
    hist: Mutex<Histogram<u64>>,
}

impl Shared {
    fn token(&self, once: bool) -> Option<&str> {
        if self.tokens.is_empty() {
            return Some("");
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) as usize;
        if once && i >= self.tokens.len() {
            return None;
        }
        Some(&self.tokens[i % self.tokens.len()])
    }
}

enum Conn {
    Http(
        hyper::client::conn::http1::SendRequest<Empty<bytes::Bytes>>,
        String,
        String,
    ),
    Grpc(AuthorizationClient<tonic::transport::Channel>),
}

impl Conn {
    async fn open(args: &Args) -> anyhow::Result<Conn> {
        if args.grpc {
            let client = AuthorizationClient::connect(format!("http://{}", args.target)).await?;
            return Ok(Conn::Grpc(client));
        }
        let url: hyper::Uri = args.target.parse()?;
        let host = url.host().unwrap_or("127.0.0.1").to_string();
        let port = url.port_u16().unwrap_or(80);
        let stream = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        let path = url
            .path_and_query()
            .map_or("/".to_string(), |p| p.to_string());
        Ok(Conn::Http(sender, format!("{host}:{port}"), path))
    }

    /// Ok(true) for an allow / 2xx.
    async fn send(&mut self, token: &str) -> anyhow::Result<bool> {
        match self {
            Conn::Http(sender, authority, path) => {
                sender.ready().await?;
                let mut req = hyper::Request::get(path.as_str()).header("host", authority.as_str());
                if !token.is_empty() {
                    req = req.header("authorization", format!("Bearer {token}"));
                }
                let response = sender.send_request(req.body(Empty::new())?).await?;
                let ok = response.status().is_success();
                response.into_body().collect().await?;
                Ok(ok)
            }
            Conn::Grpc(client) => {
                let token = (!token.is_empty()).then_some(token);
                let request =
                    sidecar::grpc::http_check_request("GET", "mesh.local", "/ai/chat", token);
                let response = client.check(request).await?.into_inner();
                Ok(matches!(
                    response.http_response,
                    Some(HttpResponse::OkResponse(_))
                ))
            }
        }
    }
}

async fn worker(
    args: Arc<Args>,
    shared: Arc<Shared>,
    index: usize,
    start: Instant,
    end: Instant,
    record_from: Instant,
) -> anyhow::Result<()> {
    let mut conn = Conn::open(&args).await?;
    let mut local = new_histogram();
    let interval = args
        .rate
        .map(|r| Duration::from_secs_f64(args.connections as f64 / r.max(1) as f64));
    // Stagger the open-loop schedule across connections.
    let mut last_done = start;
    let mut due = start
        + interval.map_or(Duration::ZERO, |i| {
            i.mul_f64(index as f64 / args.connections as f64)
        });
    loop {
        if interval.is_some() {
            let now = Instant::now();
            if due > now {
                tokio::time::sleep_until(due.into()).await;
            }
        } else {
            due = Instant::now();
        }
        if due >= end {
            break;
        }
        let Some(token) = shared.token(args.once_per_token) else {
            break;
        };
        // Count from the due time only when the server made us late (the
        // previous answer came after it); a late timer is our own delay.
        let measure_from = if last_done > due { due } else { Instant::now() };
        let result = conn.send(token).await;
        last_done = Instant::now();
        let latency = last_done.saturating_duration_since(measure_from);
        match result {
            Ok(ok) => {
                if due >= record_from {
                    let _ = local.record(latency.as_micros().max(1) as u64);
                    if !ok {
                        shared.non_2xx.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Err(_) => {
                shared.errors.fetch_add(1, Ordering::Relaxed);
                conn = Conn::open(&args).await?;
            }
        }
        if let Some(interval) = interval {
            due += interval;
        }
    }
    shared.hist.lock().await.add(&local).ok();
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Arc::new(Args::parse());
    let tokens = match &args.tokens {
        Some(path) => std::fs::read_to_string(path)?
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect(),
        None => Vec::new(),
    };
    let shared = Arc::new(Shared {
        tokens,
        next: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        non_2xx: AtomicU64::new(0),
        hist: Mutex::new(new_histogram()),
    });
    let start = Instant::now() + Duration::from_millis(200);
    let record_from = start + Duration::from_secs(args.warmup_seconds);
    let end = record_from + Duration::from_secs(args.seconds);
    let mut cpu_before = Vec::new();
    let mut handles = Vec::new();
    for i in 0..args.connections {
        handles.push(tokio::spawn(worker(
            args.clone(),
            shared.clone(),
            i,
            start,
            end,
            record_from,
        )));
    }
    tokio::time::sleep_until(record_from.into()).await;
    for pid in &args.cpu_pids {
        cpu_before.push(cpu_seconds(*pid).unwrap_or(0.0));
    }
    let measured_start = Instant::now();
    for h in handles {
        h.await??;
    }
    let elapsed = measured_start
        .elapsed()
        .min(Duration::from_secs(args.seconds))
        .max(Duration::from_millis(1));
    let hist = shared.hist.lock().await;
    let summary = Summary::new(
        &args.label,
        if args.rate.is_some() {
            "open"
        } else {
            "closed"
        },
        args.rate,
        &hist,
        shared.errors.load(Ordering::Relaxed),
        shared.non_2xx.load(Ordering::Relaxed),
        elapsed,
    );
    let mut json = serde_json::to_value(&summary)?;
    let cpu: Vec<f64> = args
        .cpu_pids
        .iter()
        .zip(cpu_before)
        .map(|(pid, before)| {
            let used = cpu_seconds(*pid).unwrap_or(before) - before;
            used / summary.requests.max(1) as f64 * 1e6
        })
        .collect();
    json["cpu_us_per_request"] = serde_json::json!(cpu);
    println!("{json}");
    Ok(())
}
