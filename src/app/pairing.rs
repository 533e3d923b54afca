//! Where the followed start/done pair is paired: in user space from every event, or in the
//! kernel (per-CPU counters and latency buckets, with a sampled stream for the log and top
//! table) once the pair is hot. Auto moves an eligible pair into the kernel when its probes fire
//! more than the target stream rate; the kernel then adapts the sampling, as `usdtop latency`
//! does. It moves the pair back to user space (every request in the log again) only after the
//! rate has stayed under a quarter of that for `COOL_DOWN_NS`, so a rate hovering near the
//! threshold does not flap between the two.
//!
//! The policy only decides: it reads the app's state and returns [`Command`]s; the runtime moves
//! the probes and reports the outcome back as an action (`PairedInKernel`, `PairedInStream`).

use super::action::Command;
use super::state::{App, AttachState};
use crate::probes::discovery::catalog::Pair;

/// How long a kernel-paired pair must stay cool before auto streams it again.
const COOL_DOWN_NS: u64 = 10_000_000_000;

/// The `--pairing` choice: the session layer's aggregation mode (auto: in user space until the
/// pair is hot, then in the kernel; stream: always in user space; kernel: whenever it can).
pub use crate::session::AggMode as PairingMode;

/// The policy's memory between ticks.
#[derive(Debug, Clone)]
pub struct PairingPolicy {
    mode: PairingMode,
    /// Hits a second above which auto pairs in the kernel.
    target_rate: f64,
    /// The pair we last said cannot go into the kernel (said once per pair).
    refused: Option<Pair>,
    /// Since when the kernel-paired pair has been cool (auto mode).
    cool_since: Option<u64>,
}

/// What the kernel paired since the previous report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelLatency {
    /// Latencies as (latency ns, count): the histogram's data.
    pub samples: Vec<(u64, u64)>,
    /// The streamed sampling, 1 request in n (0: nothing is streamed, the log is off).
    pub sample_every: u32,
    /// Call-shaped pairs: the calls of each key (function), the top table's rows.
    pub keys: Vec<KernelKey>,
    /// Call-shaped pairs: returns that did not pair with their own entry.
    pub mismatched: u64,
}

/// Calls of one key paired in the kernel since the previous report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelKey {
    pub key: String,
    pub count: u64,
    /// Latencies as (latency ns, count).
    pub samples: Vec<(u64, u64)>,
}

impl PairingPolicy {
    pub fn new(mode: PairingMode, target_rate: f64) -> PairingPolicy {
        PairingPolicy {
            mode,
            target_rate,
            refused: None,
            cool_since: None,
        }
    }

    /// Whether auto mode should stream a kernel-paired pair again, given its rate now; tracks
    /// since when it has been below the cool threshold.
    fn back_to_stream(&mut self, rate: f64, now_ns: u64) -> bool {
        if rate >= self.target_rate / 4.0 {
            self.cool_since = None;
            return false;
        }
        let since = *self.cool_since.get_or_insert(now_ns);
        now_ns.saturating_sub(since) >= COOL_DOWN_NS
    }
}

impl App {
    /// A few times a second: the pair in the kernel (if any) must still be the followed one.
    pub(super) fn pairing_tick(&mut self, kernel_pair: Option<Pair>, now_ns: u64) -> Vec<Command> {
        let mut out = Vec::new();
        if kernel_pair.is_some() && kernel_pair.as_ref() != self.live.pair() {
            out.push(Command::PairInStream { cooled: None });
        }
        out.push(Command::ReadKernelPairing { now_ns });
        out
    }

    /// The kernel's aggregates since the last tick (`None`: nothing is paired in the kernel);
    /// moves a hot pair into the kernel or a cool one back out.
    pub(super) fn pairing_report(
        &mut self,
        now_ns: u64,
        report: Option<Result<KernelLatency, String>>,
        kernel_unsupported: Option<String>,
    ) -> Vec<Command> {
        let followed = self.live.pair().cloned();
        let Some(report) = report else {
            if self.live.sampling.is_some() {
                self.live.set_sampling(None);
            }
            return self.maybe_pair_in_kernel(followed, now_ns, kernel_unsupported);
        };
        match report {
            Ok(k) => self.live.push_kernel_latency(now_ns, &k),
            Err(why) => self.error(format!("in-kernel pairing: {why}")),
        }
        let Some(pair) = followed.filter(|_| self.pairing.mode == PairingMode::Auto) else {
            return Vec::new();
        };
        let rate = self.pair_rate(&pair);
        if !self.pairing.back_to_stream(rate, now_ns) {
            return Vec::new();
        }
        self.pairing.cool_since = None;
        vec![Command::PairInStream {
            cooled: Some((pair.start, rate)),
        }]
    }

    fn maybe_pair_in_kernel(
        &mut self,
        followed: Option<Pair>,
        now_ns: u64,
        kernel_unsupported: Option<String>,
    ) -> Vec<Command> {
        self.pairing.cool_since = None;
        let Some(pair) = followed else {
            return Vec::new();
        };
        if self.pairing.mode == PairingMode::Stream || !self.both_attached(&pair) {
            return Vec::new();
        }
        if let Some(why) = kernel_unsupported {
            // Auto keeps such pairs in user space silently, as `latency` does.
            if self.pairing.mode == PairingMode::Kernel
                && self.pairing.refused.as_ref() != Some(&pair)
            {
                self.error(format!(
                    "cannot pair {} in the kernel: {why}; pairing in user space",
                    pair.start
                ));
                self.pairing.refused = Some(pair);
            }
            return Vec::new();
        }
        let rate = self.pair_rate(&pair);
        if self.pairing.mode == PairingMode::Auto && rate <= self.pairing.target_rate {
            return Vec::new();
        }
        if self.pairing.refused.as_ref() == Some(&pair) {
            return Vec::new();
        }
        vec![Command::PairInKernel { pair, rate, now_ns }]
    }

    /// The outcome of [`Command::PairInKernel`].
    pub(super) fn paired_in_kernel(&mut self, pair: Pair, rate: f64, result: Result<(), String>) {
        match result {
            // A call-shaped pair streams nothing: its rows come from the kernel's call stacks.
            Ok(()) if pair.nested => {
                self.live.set_sampling(Some(0));
                self.info(format!(
                    "pairing {} in the kernel per call ({rate:.0} hits/s); the log is off",
                    pair.start
                ));
            }
            Ok(()) => {
                self.live.set_sampling(Some(1));
                self.info(format!(
                    "pairing {} in the kernel ({rate:.0} hits/s); the log is sampled",
                    pair.start
                ));
            }
            Err(why) => {
                self.error(format!("cannot pair {} in the kernel: {why}", pair.start));
                self.pairing.refused = Some(pair);
            }
        }
    }

    /// The outcome of [`Command::PairInStream`].
    pub(super) fn paired_in_stream(
        &mut self,
        cooled: Option<(String, f64)>,
        result: Result<(), String>,
    ) {
        match (result, cooled) {
            (Err(why), _) => self.error(format!("back to streaming: {why}")),
            (Ok(()), Some((start, rate))) => self.info(format!(
                "pairing {start} in user space again ({rate:.0} hits/s); the log has every request"
            )),
            (Ok(()), None) => {}
        }
    }

    fn both_attached(&self, pair: &Pair) -> bool {
        let attached = |name: &str| {
            self.attached
                .iter()
                .any(|(k, s)| k.full_name() == name && matches!(s, AttachState::Attached { .. }))
        };
        attached(&pair.start) && attached(&pair.done)
    }

    /// Hits per second of the pair's probes (all objects), from the kernel's counters.
    fn pair_rate(&self, pair: &Pair) -> f64 {
        self.attached
            .keys()
            .filter(|k| {
                let n = k.full_name();
                n == pair.start || n == pair.done
            })
            .filter_map(|k| self.live.hit_rate(k))
            .map(|h| h.per_sec)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;
    const TARGET: f64 = 20_000.0;

    fn policy() -> PairingPolicy {
        PairingPolicy::new(PairingMode::Auto, TARGET)
    }

    #[test]
    fn a_pair_goes_back_to_streaming_only_after_staying_cool_for_the_whole_cool_down() {
        let mut p = policy();
        let cool = TARGET / 10.0;
        assert!(!p.back_to_stream(cool, 0));
        assert!(!p.back_to_stream(cool, 9 * S));
        assert!(p.back_to_stream(cool, 10 * S));
    }

    #[test]
    fn a_burst_during_the_cool_down_starts_it_again() {
        let mut p = policy();
        let cool = TARGET / 10.0;
        assert!(!p.back_to_stream(cool, 0));
        assert!(!p.back_to_stream(TARGET, 5 * S));
        assert!(!p.back_to_stream(cool, 6 * S));
        assert!(!p.back_to_stream(cool, 15 * S));
        assert!(p.back_to_stream(cool, 16 * S));
    }

    #[test]
    fn a_rate_just_under_the_kernel_threshold_is_not_cool() {
        let mut p = policy();
        let warm = TARGET * 0.9;
        assert!(!p.back_to_stream(warm, 0));
        assert!(!p.back_to_stream(warm, 60 * S));
    }
}
