//! Bench support: choose the clock criterion measures with.
//!
//! `HOOKGATE_BENCH_CLOCK=cpu` measures the benchmark thread's CPU time
//! (`CLOCK_THREAD_CPUTIME_ID`) instead of wall time. On a machine shared with other
//! busy processes, wall time counts the periods the thread waits for a core, which
//! swamps differences of a few percent; CPU time counts only the work done. On an
//! idle machine both clocks agree for these single-threaded, compute-bound loops.
//! Outside Unix the variable is ignored and wall time is used.
#![allow(unsafe_code)] // one libc call, see `thread_cpu_nanos`

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{Criterion, Throughput};

/// The criterion configuration every bench uses.
pub fn criterion() -> Criterion<Clock> {
    Criterion::default().with_measurement(clock())
}

/// The clock `HOOKGATE_BENCH_CLOCK` selects, for benches that time calls themselves.
pub fn clock() -> Clock {
    let cpu = cfg!(unix) && std::env::var("HOOKGATE_BENCH_CLOCK").is_ok_and(|v| v == "cpu");
    if cpu {
        Clock::ThreadCpu
    } else {
        Clock::Wall
    }
}

/// Wall time (criterion's default) or the current thread's CPU time.
#[derive(Debug, Clone, Copy)]
pub enum Clock {
    /// Elapsed real time.
    Wall,
    /// CPU time consumed by the benchmark thread.
    ThreadCpu,
}

/// Nanoseconds of CPU time the calling thread has used.
#[cfg(unix)]
fn thread_cpu_nanos() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec and the clock id is a constant the
    // kernel supports on every Linux since 2.6.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "CLOCK_THREAD_CPUTIME_ID is unavailable");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Never called: [`criterion`] picks wall time outside Unix.
#[cfg(not(unix))]
fn thread_cpu_nanos() -> u64 {
    unreachable!("the thread CPU clock is only selected on Unix")
}

/// A reading of either clock, in nanoseconds.
pub enum Start {
    Wall(std::time::Instant),
    Cpu(u64),
}

impl Measurement for Clock {
    type Intermediate = Start;
    type Value = u64;

    fn start(&self) -> Start {
        match self {
            Clock::Wall => Start::Wall(std::time::Instant::now()),
            Clock::ThreadCpu => Start::Cpu(thread_cpu_nanos()),
        }
    }

    fn end(&self, start: Start) -> u64 {
        match start {
            Start::Wall(at) => at.elapsed().as_nanos() as u64,
            Start::Cpu(at) => thread_cpu_nanos() - at,
        }
    }

    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }

    fn zero(&self) -> u64 {
        0
    }

    fn to_f64(&self, value: &u64) -> f64 {
        *value as f64
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        self
    }
}

/// Formats nanoseconds exactly as criterion's wall-time formatter does.
impl ValueFormatter for Clock {
    fn scale_values(&self, typical: f64, values: &mut [f64]) -> &'static str {
        WallTime.formatter().scale_values(typical, values)
    }

    fn scale_throughputs(
        &self,
        typical: f64,
        throughput: &Throughput,
        values: &mut [f64],
    ) -> &'static str {
        WallTime
            .formatter()
            .scale_throughputs(typical, throughput, values)
    }

    fn scale_for_machines(&self, values: &mut [f64]) -> &'static str {
        WallTime.formatter().scale_for_machines(values)
    }
}
