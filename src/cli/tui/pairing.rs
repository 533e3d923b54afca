//! Where the followed start/done pair is paired: in user space from every event, or in the
//! kernel (per-CPU counters and latency buckets, with a sampled stream for the log and top
//! table) once the pair is hot. Auto moves an eligible pair into the kernel when its probes fire
//! more than `TARGET_STREAM_RATE` times a second, and stays there (no flapping); the kernel
//! then adapts the sampling, as `usdtop latency` does.

use super::tracer::Tracer;
use crate::cli::latency::AggMode;
use crate::cli::latency_kernel::{kernel_unsupported, TARGET_STREAM_RATE};
use usdtop::app::{Action, App, AttachState};
use usdtop::probes::catalog::{Catalog, Pair};

pub struct PairingControl {
    mode: AggMode,
    /// The pair we last said cannot go into the kernel (said once per pair).
    refused: Option<Pair>,
}

impl PairingControl {
    pub fn new(mode: AggMode) -> PairingControl {
        PairingControl {
            mode,
            refused: None,
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
            return;
        }
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
