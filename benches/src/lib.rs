//! Shared pieces of the benchmark tools: latency recording with
//! coordinated-omission correction and a JSON summary.
#![forbid(unsafe_code)]

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies in microseconds, 1 µs to 60 s, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    match Histogram::new_with_bounds(1, 60_000_000, 3) {
        Ok(h) => h,
        Err(e) => panic!("histogram bounds are constant and valid: {e}"),
    }
}

#[derive(Debug, Serialize)]
pub struct Summary {
    pub label: String,
    pub mode: String,
    pub target_rps: Option<u64>,
    pub requests: u64,
    pub errors: u64,
    pub non_2xx: u64,
    pub seconds: f64,
    pub achieved_rps: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

impl Summary {
    pub fn new(
        label: &str,
        mode: &str,
        target_rps: Option<u64>,
        hist: &Histogram<u64>,
        errors: u64,
        non_2xx: u64,
        elapsed: Duration,
    ) -> Self {
        let requests = hist.len();
        Summary {
            label: label.to_string(),
            mode: mode.to_string(),
            target_rps,
            requests,
            errors,
            non_2xx,
            seconds: elapsed.as_secs_f64(),
            achieved_rps: requests as f64 / elapsed.as_secs_f64().max(1e-9),
            p50_us: hist.value_at_quantile(0.50),
            p90_us: hist.value_at_quantile(0.90),
            p99_us: hist.value_at_quantile(0.99),
            p999_us: hist.value_at_quantile(0.999),
            max_us: hist.max(),
        }
    }
}

/// CPU seconds (user + system) a process has used so far, from /proc.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}
