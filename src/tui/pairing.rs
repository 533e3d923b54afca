//! Where the followed start/done pair is paired: in user space from every event, or in the
//! kernel (per-CPU counters and latency buckets, with a sampled stream for the log and top
//! table) once the pair is hot. Auto moves an eligible pair into the kernel when its probes fire
//! more than `TARGET_STREAM_RATE` times a second; the kernel then adapts the sampling, as
//! `usdtop latency` does. It moves the pair back to user space (every request in the log
//! again) only after the rate has stayed under a quarter of that for `COOL_DOWN_NS`, so a
//! rate hovering near the threshold does not flap between the two.

use super::tracer::Tracer;
use crate::cli::latency::AggMode;
use crate::cli::latency_kernel::{kernel_unsupported, TARGET_STREAM_RATE};
use usdtop::app::{Action, App, AttachState};
use usdtop::probes::discovery::catalog::{Catalog, Pair};

/// How long a kernel-paired pair must stay cool before auto streams it again.
const COOL_DOWN_NS: u64 = 10_000_000_000;

/// Whether auto mode should stream a kernel-paired pair again, given its rate now and since
/// when it has been below the cool threshold; updates `cool_since`.
fn back_to_stream(rate: f64, now_ns: u64, cool_since: &mut Option<u64>) -> bool {
    if rate >= TARGET_STREAM_RATE / 4.0 {
        *cool_since = None;
        return false;
    }
    let since = *cool_since.get_or_insert(now_ns);
    now_ns.saturating_sub(since) >= COOL_DOWN_NS
}

pub struct PairingControl {
    mode: AggMode,
    /// The pair we last said cannot go into the kernel (said once per pair).
    refused: Option<Pair>,
    /// Since when the kernel-paired pair has been cool (auto mode).
    cool_since: Option<u64>,
}

impl PairingControl {
    pub fn new(mode: AggMode) -> PairingControl {
        PairingControl {
            mode,
            refused: None,
            cool_since: None,
        }
    }

    /// Runs a few times a second: follows pair changes, moves a hot pair into the kernel and
    /// passes the kernel's aggregates to the app.
    pub fn tick(&mut self, app: &mut App, tracer: &mut dyn Tracer, catalog: &Catalog, now_ns: u64) {
        let followed = app.live.pair().cloned();
        if tracer.kernel_pair().is_some() && tracer.kernel_pair() != followed.as_ref() {
            if let Err(why) = tracer.pair_in_stream() {
                app.update(Action::Error(format!("back to streaming: {why}")));
            }
        }
        if tracer.kernel_pair().is_none() && app.live.sampling.is_some() {
            app.update(Action::Sampling(None));
        }
        if let Some(report) = tracer.kernel_latency(now_ns) {
            match report {
                Ok((samples, sample_every)) => {
                    app.update(Action::KernelLatency {
                        now_ns,
                        samples,
                        sample_every,
                    });
                }
                Err(why) => {
                    app.update(Action::Error(format!("in-kernel pairing: {why}")));
                }
            }
            if let Some(pair) = followed.filter(|_| self.mode == AggMode::Auto) {
                let rate = pair_rate(app, &pair);
                if back_to_stream(rate, now_ns, &mut self.cool_since) {
                    self.cool_since = None;
                    match tracer.pair_in_stream() {
                        Ok(()) => app.update(Action::Status(format!(
                            "pairing {} in user space again ({rate:.0} hits/s); the log has every request",
                            pair.start
                        ))),
                        Err(why) => app.update(Action::Error(format!("back to streaming: {why}"))),
                    };
                }
            }
            return;
        }
        self.cool_since = None;
        let Some(pair) = followed else { return };
        if self.mode == AggMode::Stream || !both_attached(app, &pair) {
            return;
        }
        if let Some(why) = kernel_unsupported(&pair, catalog, false) {
            // Auto keeps such pairs in user space silently, as `latency` does.
            if self.mode == AggMode::Kernel && self.refused.as_ref() != Some(&pair) {
                app.update(Action::Error(format!(
                    "cannot pair {} in the kernel: {why}; pairing in user space",
                    pair.start
                )));
                self.refused = Some(pair);
            }
            return;
        }
        let rate = pair_rate(app, &pair);
        if self.mode == AggMode::Auto && rate <= TARGET_STREAM_RATE {
            return;
        }
        if self.refused.as_ref() == Some(&pair) {
            return;
        }
        match tracer.pair_in_kernel(&pair, None, now_ns) {
            Ok(()) => {
                app.update(Action::Sampling(Some(1)));
                app.update(Action::Status(format!(
                    "pairing {} in the kernel ({rate:.0} hits/s); the log is sampled",
                    pair.start
                )));
            }
            Err(why) => {
                app.update(Action::Error(format!(
                    "cannot pair {} in the kernel: {why}",
                    pair.start
                )));
                self.refused = Some(pair);
            }
        }
    }
}

fn both_attached(app: &App, pair: &Pair) -> bool {
    let attached = |name: &str| {
        app.attached
            .iter()
            .any(|(k, s)| k.full_name() == name && matches!(s, AttachState::Attached { .. }))
    };
    attached(&pair.start) && attached(&pair.done)
}

/// Hits per second of the pair's probes (all objects), from the kernel's counters.
fn pair_rate(app: &App, pair: &Pair) -> f64 {
    app.attached
        .keys()
        .filter(|k| {
            let n = k.full_name();
            n == pair.start || n == pair.done
        })
        .filter_map(|k| app.live.hit_rate(k))
        .map(|h| h.per_sec)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn a_pair_goes_back_to_streaming_only_after_staying_cool_for_the_whole_cool_down() {
        let mut since = None;
        let cool = TARGET_STREAM_RATE / 10.0;
        assert!(!back_to_stream(cool, 0, &mut since));
        assert!(!back_to_stream(cool, 9 * S, &mut since));
        assert!(back_to_stream(cool, 10 * S, &mut since));
    }

    #[test]
    fn a_burst_during_the_cool_down_starts_it_again() {
        let mut since = None;
        let cool = TARGET_STREAM_RATE / 10.0;
        assert!(!back_to_stream(cool, 0, &mut since));
        assert!(!back_to_stream(TARGET_STREAM_RATE, 5 * S, &mut since));
        assert!(!back_to_stream(cool, 6 * S, &mut since));
        assert!(!back_to_stream(cool, 15 * S, &mut since));
        assert!(back_to_stream(cool, 16 * S, &mut since));
    }

    #[test]
    fn a_rate_just_under_the_kernel_threshold_is_not_cool() {
        let mut since = None;
        let warm = TARGET_STREAM_RATE * 0.9;
        assert!(!back_to_stream(warm, 0, &mut since));
        assert!(!back_to_stream(warm, 60 * S, &mut since));
    }
}
