//! The load runner: `concurrency` workers repeat one operation until a deadline, each timing
//! its requests into its own latency histogram; the histograms are merged at the end.
//!
//! ```text
//! probe (1 request) ─ fails ─▶ "not available: <the server's answer>"
//!   │ ok
//!   ▼
//! warm-up (a tenth of the duration, at most 1 s, not recorded)
//!   ▼
//! measured phase: server CPU (/proc/<pid>/stat) and harness CPU sampled before and after,
//!                 every worker: loop { seq += 1; t0; op(seq).await; record(now - t0) }
//! ```
//!
//! An operation returns how many items (Observations, pages) one request carried, so that
//! throughput is reported both in requests and in items per second.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};

use crate::client::OpError;
use crate::server;

/// Highest latency the histograms hold, in microseconds (larger ones are recorded as this).
const MAX_LATENCY_MICROS: u64 = 3_600_000_000;

/// How a measurement is run.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Length of the measured phase.
    pub duration: Duration,
}

/// Latency percentiles, in milliseconds.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

impl Latency {
    pub fn from_histogram(histogram: &Histogram<u64>) -> Option<Latency> {
        if histogram.is_empty() {
            return None;
        }
        let ms = |micros: u64| micros as f64 / 1000.0;
        Some(Latency {
            p50: ms(histogram.value_at_quantile(0.50)),
            p95: ms(histogram.value_at_quantile(0.95)),
            p99: ms(histogram.value_at_quantile(0.99)),
            max: ms(histogram.max()),
            mean: histogram.mean() / 1000.0,
        })
    }
}

/// What a measured phase produced.
#[derive(Debug)]
pub struct Run {
    /// Successful requests.
    pub requests: u64,
    /// Failed requests (non-2xx answers, transport errors).
    pub errors: u64,
    /// Items carried by the successful requests.
    pub items: u64,
    pub elapsed: Duration,
    pub histogram: Histogram<u64>,
    /// The first failure, to tell what went wrong.
    pub first_error: Option<String>,
    /// CPU seconds the server used during the phase, when its process is known.
    pub server_cpu_seconds: Option<f64>,
    /// CPU seconds the harness itself used during the phase.
    pub client_cpu_seconds: Option<f64>,
}

impl Run {
    pub fn requests_per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn items_per_second(&self) -> f64 {
        self.items as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// One worker's tally.
struct Tally {
    requests: u64,
    errors: u64,
    items: u64,
    histogram: Histogram<u64>,
    first_error: Option<String>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            requests: 0,
            errors: 0,
            items: 0,
            histogram: Histogram::new_with_bounds(1, MAX_LATENCY_MICROS, 3)
                .expect("constant histogram bounds are valid"),
            first_error: None,
        }
    }
}

/// The progress bar of a timed phase.
fn timed_bar(label: &str, duration: Duration) -> ProgressBar {
    let bar = ProgressBar::new(duration.as_millis().max(1) as u64);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>34} [{bar:30.cyan/blue}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix(label.to_owned());
    bar
}

/// A bar over a known number of items (seeding).
pub fn count_bar(label: &str, total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix:>34} [{bar:30.cyan/blue}] {human_pos}/{human_len} {per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_prefix(label.to_owned());
    bar
}

/// Runs `op` at `plan.concurrency` for `plan.duration` after a probe and a warm-up.
///
/// Returns `Err(reason)` when the probe fails: the feature is not available on this server.
pub async fn measure<F, Fut>(
    label: &str,
    plan: Plan,
    server_pid: Option<u32>,
    op: F,
) -> Result<Run, String>
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<u64, OpError>> + Send + 'static,
{
    let op = Arc::new(op);
    let seq = Arc::new(AtomicU64::new(0));
    let probe = op(seq.fetch_add(1, Ordering::Relaxed)).await;
    if let Err(error) = probe {
        return Err(error.0);
    }
    let warm_up = (plan.duration / 10).min(Duration::from_secs(1));
    phase(&op, &seq, plan.concurrency, warm_up, None).await;

    let server_before = server_pid.and_then(server::cpu_seconds);
    let client_before = server::own_cpu_seconds();
    let bar = timed_bar(label, plan.duration);
    let mut run = phase(&op, &seq, plan.concurrency, plan.duration, Some(&bar)).await;
    bar.finish_and_clear();
    run.server_cpu_seconds = match (server_before, server_pid.and_then(server::cpu_seconds)) {
        (Some(before), Some(after)) => Some(after - before),
        _ => None,
    };
    run.client_cpu_seconds = match (client_before, server::own_cpu_seconds()) {
        (Some(before), Some(after)) => Some(after - before),
        _ => None,
    };
    Ok(run)
}

async fn phase<F, Fut>(
    op: &Arc<F>,
    seq: &Arc<AtomicU64>,
    concurrency: usize,
    duration: Duration,
    bar: Option<&ProgressBar>,
) -> Run
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<u64, OpError>> + Send + 'static,
{
    let start = Instant::now();
    let deadline = start + duration;
    let done = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::with_capacity(concurrency);
    for _ in 0..concurrency.max(1) {
        let op = Arc::clone(op);
        let seq = Arc::clone(seq);
        let done = Arc::clone(&done);
        workers.push(tokio::spawn(async move {
            let mut tally = Tally::new();
            while Instant::now() < deadline {
                let n = seq.fetch_add(1, Ordering::Relaxed);
                let sent = Instant::now();
                let result = op(n).await;
                let micros = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
                match result {
                    Ok(items) => {
                        tally.requests += 1;
                        tally.items += items;
                        tally.histogram.saturating_record(micros.clamp(1, MAX_LATENCY_MICROS));
                    }
                    Err(error) => {
                        tally.errors += 1;
                        tally.first_error.get_or_insert(error.0);
                    }
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            tally
        }));
    }
    let ticker = bar.map(|bar| {
        let bar = bar.clone();
        let done = Arc::clone(&done);
        tokio::spawn(async move {
            loop {
                let elapsed = start.elapsed();
                let n = done.load(Ordering::Relaxed);
                bar.set_position(elapsed.as_millis() as u64);
                bar.set_message(format!(
                    "{n} requests, {:.0}/s",
                    n as f64 / elapsed.as_secs_f64().max(1e-3)
                ));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    });
    let mut total = Tally::new();
    for worker in workers {
        // A worker only ends by leaving its loop; a panic in one is a bug of the harness.
        let Ok(tally) = worker.await else { continue };
        total.requests += tally.requests;
        total.errors += tally.errors;
        total.items += tally.items;
        let _ = total.histogram.add(&tally.histogram);
        if total.first_error.is_none() {
            total.first_error = tally.first_error;
        }
    }
    let elapsed = start.elapsed();
    if let Some(ticker) = ticker {
        ticker.abort();
    }
    Run {
        requests: total.requests,
        errors: total.errors,
        items: total.items,
        elapsed,
        histogram: total.histogram,
        first_error: total.first_error,
        server_cpu_seconds: None,
        client_cpu_seconds: None,
    }
}

/// Runs `op(0..total)` with `concurrency` in flight, stopping at the first failure (seeding:
/// a failure there means the harness cannot go on).
pub async fn for_each<F, Fut>(
    label: &str,
    total: u64,
    concurrency: usize,
    op: F,
) -> anyhow::Result<Duration>
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<u64, OpError>> + Send + 'static,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicU64::new(0));
    let bar = count_bar(label, total);
    let start = Instant::now();
    let mut workers = Vec::with_capacity(concurrency);
    for _ in 0..concurrency.max(1) {
        let op = Arc::clone(&op);
        let next = Arc::clone(&next);
        let bar = bar.clone();
        workers.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total {
                    return Ok(());
                }
                match op(n).await {
                    Ok(items) => bar.inc(items),
                    Err(error) => {
                        // Let the other workers stop at their next step.
                        next.store(total, Ordering::Relaxed);
                        return Err(error);
                    }
                }
            }
        }));
    }
    let mut failure = None;
    for worker in workers {
        match worker.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                failure.get_or_insert(error.0);
            }
            Err(join) => {
                failure.get_or_insert(format!("a worker failed: {join}"));
            }
        }
    }
    bar.finish_and_clear();
    match failure {
        Some(message) => Err(anyhow::anyhow!("{label}: {message}")),
        None => Ok(start.elapsed()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn measures_a_local_operation() {
        let plan = Plan { concurrency: 4, duration: Duration::from_millis(200) };
        let run = measure("test", plan, None, |n| async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            if n % 10 == 9 { Err(OpError("HTTP 500: boom".into())) } else { Ok(2) }
        })
        .await
        .expect("the probe succeeds");
        assert!(run.requests > 10);
        assert!(run.errors > 0);
        assert_eq!(run.items, run.requests * 2);
        assert!(Latency::from_histogram(&run.histogram).is_some_and(|l| l.p50 >= 1.0));
    }

    #[tokio::test]
    async fn a_failing_probe_means_not_available() {
        let plan = Plan { concurrency: 1, duration: Duration::from_millis(50) };
        let result =
            measure("test", plan, None, |_| async { Err(OpError("HTTP 404: no".into())) }).await;
        assert_eq!(result.err().as_deref(), Some("HTTP 404: no"));
    }

    #[tokio::test]
    async fn for_each_visits_every_index_and_stops_on_failure() {
        let seen = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&seen);
        for_each("test", 100, 8, move |_| {
            let counter = Arc::clone(&counter);
            async move {
                counter.fetch_add(1, Ordering::Relaxed);
                Ok(1)
            }
        })
        .await
        .expect("no failure");
        assert_eq!(seen.load(Ordering::Relaxed), 100);
        let failed = for_each("test", 100, 8, |n| async move {
            if n == 50 { Err(OpError("HTTP 400: bad".into())) } else { Ok(1) }
        })
        .await;
        assert!(failed.is_err_and(|e| e.to_string().contains("HTTP 400")));
    }
}
