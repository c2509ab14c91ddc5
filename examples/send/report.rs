//! What a run prints: the answers by status and body, the failures, the
//! throughput and latency percentiles, and one `summary key=value …` line for
//! scripts.

use std::time::Duration;

use crate::load::Run;

/// Latency percentiles of the answered requests (nearest rank).
#[derive(Debug, Default, Clone, Copy)]
pub struct Latency {
    /// The median.
    pub p50: Duration,
    /// The 95th percentile.
    pub p95: Duration,
    /// The 99th percentile.
    pub p99: Duration,
    /// The slowest answer.
    pub max: Duration,
}

impl Latency {
    /// The percentiles of `latencies` (sorted in place); all zero when empty.
    pub fn of(latencies: &mut [Duration]) -> Self {
        latencies.sort_unstable();
        let rank = |p: f64| {
            let n = latencies.len();
            let index = ((p * n as f64).ceil() as usize).clamp(1, n.max(1)) - 1;
            latencies.get(index).copied().unwrap_or_default()
        };
        Self {
            p50: rank(0.50),
            p95: rank(0.95),
            p99: rank(0.99),
            max: latencies.last().copied().unwrap_or_default(),
        }
    }
}

/// The numbers of a run that the summary line and the exit code use.
#[derive(Debug)]
pub struct Summary {
    /// Requests started (answered or not).
    pub deliveries: u64,
    /// Answered requests per second of the run.
    pub per_second: f64,
    /// Latency of the answered requests.
    pub latency: Latency,
    /// Answers with a 2xx status.
    pub ok: u64,
    /// Answers with a 4xx status.
    pub status_4xx: u64,
    /// Answers with a 5xx status.
    pub status_5xx: u64,
    /// Requests without an answer.
    pub failed: u64,
}

impl Summary {
    /// Summarises `run` (sorting its latencies).
    pub fn of(run: &mut Run) -> Self {
        let tally = &mut run.tally;
        let in_class = |class: u16| {
            tally
                .answers
                .iter()
                .filter(|((status, _), _)| status / 100 == class)
                .map(|(_, n)| n)
                .sum()
        };
        let (ok, status_4xx, status_5xx) = (in_class(2), in_class(4), in_class(5));
        let answered = tally.answered();
        let failed = tally.failed();
        let seconds = run.elapsed.as_secs_f64();
        Self {
            deliveries: answered + failed,
            per_second: if seconds > 0.0 {
                answered as f64 / seconds
            } else {
                0.0
            },
            latency: Latency::of(&mut tally.latencies),
            ok,
            status_4xx,
            status_5xx,
            failed,
        }
    }

    /// Whether the run should exit non-zero: a request got no answer or a 5xx.
    pub fn has_failures(&self) -> bool {
        self.failed > 0 || self.status_5xx > 0
    }

    /// The machine-readable line: `summary deliveries=… per_second=… …`.
    pub fn line(&self) -> String {
        let us = |d: Duration| d.as_micros();
        format!(
            "summary deliveries={} per_second={:.1} p50_us={} p95_us={} p99_us={} max_us={} ok={} status_4xx={} status_5xx={} failed={}",
            self.deliveries,
            self.per_second,
            us(self.latency.p50),
            us(self.latency.p95),
            us(self.latency.p99),
            us(self.latency.max),
            self.ok,
            self.status_4xx,
            self.status_5xx,
            self.failed,
        )
    }
}

/// Prints the human-readable report of `run`.
pub fn print(run: &Run, summary: &Summary) {
    println!("answers (count, status, body):");
    if run.tally.answers.is_empty() {
        println!("  none");
    }
    for ((status, text), n) in &run.tally.answers {
        println!("  {n:>8}  {status}  {text}");
    }
    if !run.tally.failures.is_empty() {
        println!("no answer (count, cause):");
        for (cause, n) in &run.tally.failures {
            println!("  {n:>8}  {cause}");
        }
    }
    println!(
        "{} deliveries in {:.3} s: {:.1} answered/s",
        summary.deliveries,
        run.elapsed.as_secs_f64(),
        summary.per_second
    );
    let latency = summary.latency;
    println!(
        "latency: p50 {}  p95 {}  p99 {}  max {}",
        millis(latency.p50),
        millis(latency.p95),
        millis(latency.p99),
        millis(latency.max)
    );
}

fn millis(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let mut latencies: Vec<_> = (1..=100).rev().map(Duration::from_millis).collect();
        let latency = Latency::of(&mut latencies);
        assert_eq!(latency.p50, Duration::from_millis(50));
        assert_eq!(latency.p95, Duration::from_millis(95));
        assert_eq!(latency.p99, Duration::from_millis(99));
        assert_eq!(latency.max, Duration::from_millis(100));
        assert_eq!(Latency::of(&mut []).max, Duration::ZERO);
    }
}
