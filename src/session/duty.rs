//! Duty cycling under an overhead budget (`--max-overhead PCT`). A USDT hit costs the traced
//! program a trap whatever the BPF program does (DESIGN.md §3), so the only way to cost less
//! is to hit less: the probes are attached for a slice of each period and taken out for the
//! rest (one link close on the uprobe-multi path), and counts are scaled back up by the
//! fraction of time attached. Latencies are not scaled: a slice sees whole requests, and the
//! starts still waiting when a slice ends are forgotten ([`super::Step::Gap`]).
//!
//! The estimate: hits per second while attached × the cost of one hit, against the machine's
//! CPU time (its CPUs × 1 s per second). The cost of a hit is measured at start on a site in
//! usdtop itself ([`crate::probes::tracing::engine::Engine::measure_hit_cost`]) and multiplied
//! by [`REAL_WORLD_FACTOR`]: a trap in a tight loop finds every cache warm, a trap in a server
//! does not (here 0.5 µs against about 4 µs of machine CPU per hit under pgbench).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What a hit in a real server costs compared with one in a tight loop (DESIGN.md §3: 4 µs of
/// machine CPU per hit under pgbench -c 2, 0.5 µs in a tight loop, on the machines here).
pub const REAL_WORLD_FACTOR: f64 = 8.0;
/// The shortest slice attached: long enough for requests of a few ms to complete inside it.
pub const SLICE: Duration = Duration::from_millis(100);
/// Periods are at least this long; with a smaller fraction, longer (SLICE / fraction).
pub const PERIOD: Duration = Duration::from_secs(1);
/// The smallest fraction of time attached (a period of 10 s).
pub const MIN_FRACTION: f64 = 0.01;
/// While attached all the time, how often the rate is measured again.
const REESTIMATE: Duration = Duration::from_millis(250);

/// What `--max-overhead` asks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DutyOptions {
    /// The budget, a fraction of the machine's CPU (0.01 for `--max-overhead 1`).
    pub budget: f64,
    /// Attach for this fraction of each period whatever the estimate (tests, benchmarks).
    pub fixed: Option<f64>,
}

/// What the duty cycle asks of the session on a poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Toggle {
    Suspend,
    Resume,
}

/// Time attached so far, shared with whoever reports (scaling counts by it).
#[derive(Debug)]
pub struct Sampling {
    state: Mutex<SamplingState>,
    /// The budget and the cost model, for reports.
    pub budget: f64,
    pub hit_cost_ns: f64,
}

#[derive(Debug, Default)]
struct SamplingState {
    attached: Duration,
    on_since: Option<Instant>,
    /// The last estimate of the overhead of attaching all the time (a fraction of the CPU).
    full_overhead: f64,
}

impl Sampling {
    /// Time attached up to `now`.
    pub fn attached(&self, now: Instant) -> Duration {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.attached
            + s.on_since
                .map_or(Duration::ZERO, |t| now.saturating_duration_since(t))
    }

    /// The estimated overhead of attaching all the time, a fraction of the machine's CPU.
    pub fn full_overhead(&self) -> f64 {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .full_overhead
    }

    fn set_on(&self, now: Instant, on: bool) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = s.on_since.take() {
            s.attached += now.saturating_duration_since(t);
        }
        if on {
            s.on_since = Some(now);
        }
    }
}

/// The state machine: attached for `fraction` of each period.
#[derive(Debug)]
pub struct DutyCycle {
    options: DutyOptions,
    capacity_ns_per_s: f64,
    on: bool,
    since: Instant,
    fraction: f64,
    hits_at_on: u64,
    shared: Arc<Sampling>,
    began: Instant,
}

impl DutyCycle {
    /// Starts attached (the probes are attached when this is made) and measuring.
    pub fn new(options: DutyOptions, hit_cost: Duration, cpus: usize, now: Instant) -> DutyCycle {
        let hit_cost_ns = hit_cost.as_nanos() as f64 * REAL_WORLD_FACTOR;
        let shared = Arc::new(Sampling {
            state: Mutex::new(SamplingState::default()),
            budget: options.budget,
            hit_cost_ns,
        });
        shared.set_on(now, true);
        DutyCycle {
            options,
            capacity_ns_per_s: cpus.max(1) as f64 * 1e9,
            on: true,
            since: now,
            fraction: options.fixed.unwrap_or(1.0),
            hits_at_on: 0,
            shared,
            began: now,
        }
    }

    /// When the cycle began.
    pub fn began(&self) -> Instant {
        self.began
    }

    pub fn sampling(&self) -> Arc<Sampling> {
        self.shared.clone()
    }

    /// The period for an on-fraction: at least [`PERIOD`], long enough for a [`SLICE`].
    fn period(fraction: f64) -> Duration {
        PERIOD.max(SLICE.div_f64(fraction.max(MIN_FRACTION)))
    }

    /// Called on every pass of the loop with the probes' total hits so far; says when to take
    /// the probes out or put them back.
    pub fn poll(&mut self, now: Instant, hits: u64) -> Option<Toggle> {
        let elapsed = now.saturating_duration_since(self.since);
        let period = Self::period(self.fraction);
        if !self.on {
            if elapsed < period.mul_f64(1.0 - self.fraction) {
                return None;
            }
            self.on = true;
            self.since = now;
            self.hits_at_on = hits;
            return Some(Toggle::Resume);
        }
        let slice = if self.fraction >= 1.0 {
            REESTIMATE
        } else {
            period.mul_f64(self.fraction)
        };
        if elapsed < slice {
            return None;
        }
        let rate = hits.saturating_sub(self.hits_at_on) as f64 / elapsed.as_secs_f64();
        let full = rate * self.shared.hit_cost_ns / self.capacity_ns_per_s;
        self.shared
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .full_overhead = full;
        self.fraction = self.options.fixed.unwrap_or_else(|| {
            if full <= self.options.budget {
                1.0
            } else {
                (self.options.budget / full).clamp(MIN_FRACTION, 1.0)
            }
        });
        self.since = now;
        self.hits_at_on = hits;
        if self.fraction >= 1.0 {
            return None;
        }
        self.on = false;
        self.shared.set_on(now, false);
        Some(Toggle::Suspend)
    }

    /// The probes are back in (their links made): the attached clock runs from now. A resume
    /// takes a grace period or two in the kernel, during which the probes are not all in.
    pub fn resumed(&mut self, now: Instant) {
        self.since = now;
        self.shared.set_on(now, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cycle(budget: f64, fixed: Option<f64>, t0: Instant) -> DutyCycle {
        // 1 µs measured → 8 µs assumed per hit; 2 CPUs.
        let options = DutyOptions { budget, fixed };
        DutyCycle::new(options, Duration::from_micros(1), 2, t0)
    }

    #[test]
    fn a_rate_within_the_budget_stays_attached() {
        let t0 = Instant::now();
        let mut d = cycle(0.01, None, t0);
        // 1000 hits/s × 8 µs = 0.8 % of one CPU = 0.4 % of two: within 1 %.
        assert_eq!(d.poll(t0 + Duration::from_millis(250), 250), None);
        assert_eq!(d.poll(t0 + Duration::from_millis(500), 500), None);
        assert_eq!(
            d.sampling().attached(t0 + Duration::from_secs(1)),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn a_rate_over_the_budget_is_sampled_for_the_fraction_that_fits() {
        let t0 = Instant::now();
        let mut d = cycle(0.01, None, t0);
        // 10,000 hits/s × 8 µs = 8 % of 2 CPUs... 4 %: attach a quarter of the time.
        let t1 = t0 + Duration::from_millis(250);
        assert_eq!(d.poll(t1, 2500), Some(Toggle::Suspend));
        assert!((d.sampling().full_overhead() - 0.04).abs() < 1e-9);
        // Off for 750 ms of the 1 s period, then on for 250 ms.
        assert_eq!(d.poll(t1 + Duration::from_millis(700), 2500), None);
        let t2 = t1 + Duration::from_millis(750);
        assert_eq!(d.poll(t2, 2500), Some(Toggle::Resume));
        d.resumed(t2);
        assert_eq!(d.poll(t2 + Duration::from_millis(200), 4500), None);
        let t3 = t2 + Duration::from_millis(250);
        assert_eq!(d.poll(t3, 5000), Some(Toggle::Suspend));
        assert_eq!(d.sampling().attached(t3), Duration::from_millis(500));
    }

    #[test]
    fn a_tiny_budget_lengthens_the_period_but_keeps_a_whole_slice() {
        assert_eq!(DutyCycle::period(0.5), PERIOD);
        assert_eq!(DutyCycle::period(0.05), Duration::from_secs(2));
        assert_eq!(DutyCycle::period(0.0001), Duration::from_secs(10));
    }

    #[test]
    fn a_fixed_fraction_ignores_the_estimate() {
        let t0 = Instant::now();
        let mut d = cycle(0.01, Some(0.3), t0);
        // On for 300 ms of each second whatever the rate.
        assert_eq!(d.poll(t0 + Duration::from_millis(299), 0), None);
        assert_eq!(
            d.poll(t0 + Duration::from_millis(300), 0),
            Some(Toggle::Suspend)
        );
        assert_eq!(
            d.poll(t0 + Duration::from_millis(1000), 0),
            Some(Toggle::Resume)
        );
    }
}
