//! What a report says and scales when the probes were attached only part of the time (duty
//! cycling under `--max-overhead`, src/session/duty.rs): counts and rates are scaled back up by
//! the fraction of time attached; latencies are not.

use std::time::{Duration, Instant};
use usdtop::session::duty::Sampling;

/// The time attached at the start of the current report interval, and when it started.
pub struct Interval {
    since: (Duration, Instant),
}

impl Interval {
    pub fn start() -> Interval {
        Interval::start_at(Instant::now())
    }

    /// An interval that began at `began` (nothing attached before it).
    pub fn start_at(began: Instant) -> Interval {
        Interval {
            since: (Duration::ZERO, began),
        }
    }

    /// What the interval ending now was attached; the next begins now unless `last`.
    pub fn end(&mut self, s: &Sampling, last: bool) -> Sampled {
        let now = Instant::now();
        let attached_now = s.attached(now);
        let attached = attached_now.saturating_sub(self.since.0);
        let wall = now.saturating_duration_since(self.since.1);
        if !last {
            self.since = (attached_now, now);
        }
        Sampled::new(s, attached, wall)
    }
}

/// How much of a report's interval the probes were attached (duty cycling), and how its
/// counts are scaled.
pub struct Sampled {
    /// Attached time / wall time.
    fraction: f64,
    /// What attaching all the time would cost, estimated (a fraction of the machine's CPU).
    full_overhead: f64,
    budget: f64,
    hit_cost_ns: f64,
}

impl Sampled {
    pub fn new(s: &Sampling, attached: Duration, wall: Duration) -> Sampled {
        let fraction = if wall.is_zero() {
            1.0
        } else {
            (attached.as_secs_f64() / wall.as_secs_f64()).clamp(0.0, 1.0)
        };
        Sampled {
            fraction,
            full_overhead: s.full_overhead(),
            budget: s.budget,
            hit_cost_ns: s.hit_cost_ns,
        }
    }

    /// A count seen, scaled to the whole interval.
    pub fn count(&self, seen: u64) -> u64 {
        (seen as f64 * self.scale()).round() as u64
    }

    /// A rate over the interval's wall time, scaled as the counts are.
    pub fn rate(&self, seen: f64) -> f64 {
        seen * self.scale()
    }

    fn scale(&self) -> f64 {
        if self.fraction > 0.0 {
            1.0 / self.fraction
        } else {
            1.0
        }
    }

    /// The `sampled` object of a JSON report; `seen` is the count before scaling.
    pub fn json(&self, seen: u64) -> serde_json::Value {
        serde_json::json!({
            "fraction": self.fraction,
            "scaled_by": self.scale(),
            "count_seen": seen,
            "estimated_overhead_pct": self.full_overhead * 100.0,
            "max_overhead_pct": self.budget * 100.0,
            "hit_cost_ns": self.hit_cost_ns,
        })
    }

    pub fn text(&self) -> String {
        if self.fraction >= 0.999 {
            return format!(
                "attached all the time: the probes cost an estimated {:.2}% of the CPU (budget {:.2}%)\n",
                self.full_overhead * 100.0,
                self.budget * 100.0
            );
        }
        format!(
            "sampled {:.0}% of the time (attached all the time the probes would cost an estimated {:.2}% of the CPU, budget {:.2}%): counts scaled by {:.2}, latencies as seen\n",
            self.fraction * 100.0,
            self.full_overhead * 100.0,
            self.budget * 100.0,
            self.scale()
        )
    }
}
