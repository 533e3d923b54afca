//! Start/done pairing: turns a stream of events into completed latency samples using a catalog
//! [`Pair`]. Starts wait in a bounded table keyed by thread or by a key argument (per process);
//! a done takes its start out. Nothing is invented: a done without a start, a start that ages out
//! or is pushed out by the cap, and an unreadable key are each counted, never guessed at.

use super::key::arg_label;
use crate::probes::discovery::catalog::Pair;
use crate::probes::tracing::event::{ArgValue, Event, StrValue};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// Bounds on the starts waiting for their done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PairLimits {
    /// At most this many open starts; beyond it the oldest is dropped (counted as `evicted`).
    pub max_open: usize,
    /// A start older than this (relative to the newest event seen) is dropped (`expired`).
    pub max_age_ns: u64,
}

impl Default for PairLimits {
    fn default() -> Self {
        PairLimits {
            max_open: 10_000,
            max_age_ns: 60 * 1_000_000_000,
        }
    }
}

/// What happened to the events a [`Pairer`] has seen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PairStats {
    pub starts: u64,
    pub dones: u64,
    /// Dones matched with a start: the samples produced.
    pub matched: u64,
    /// Dones with no waiting start (tracing began mid-request, or the start was dropped).
    pub unmatched_done: u64,
    /// Starts dropped for being older than `max_age_ns`.
    pub expired: u64,
    /// Starts dropped because `max_open` starts were already waiting.
    pub evicted: u64,
    /// A non-nested start that replaced an unfinished start with the same key.
    pub replaced: u64,
    /// Events whose key argument is missing or unreadable.
    pub bad_key: u64,
    /// Starts waiting right now.
    pub open: u64,
    /// Starts forgotten because usdtop detached for a while (duty cycling): their dones, if
    /// any, came while nothing was attached, so they are never paired across the gap.
    pub gap_discarded: u64,
}

/// One completed start → done.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub latency_ns: u64,
    /// The start event, whole, for drill-down (its args, pid, tid, comm).
    pub start: Event,
    /// When the done fired (monotonic ns) and its arguments.
    pub done_ts_ns: u64,
    pub done_args: Vec<ArgValue>,
    /// The start's label argument (URL, query, URI, function) if the pair names one.
    pub label: Option<String>,
}

/// What a start and its done are matched by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum MatchKey {
    Thread {
        pid: u32,
        tid: u32,
    },
    /// By value, so a `4@` done matches a `-4@` start of the same number.
    IntArg {
        pid: u32,
        key: i128,
    },
    StrArg {
        pid: u32,
        key: StrValue,
    },
}

struct Open {
    seq: u64,
    event: Event,
}

/// Pairs the events of one [`Pair`].
pub struct Pairer {
    pair: Pair,
    start: (String, String),
    done: (String, String),
    limits: PairLimits,
    /// Waiting starts per key; more than one only for nested pairs (a stack, newest last).
    open: HashMap<MatchKey, Vec<Open>>,
    /// Insertion order of waiting starts, for age expiry and cap eviction (oldest first).
    order: BTreeMap<u64, (MatchKey, u64)>,
    next_seq: u64,
    newest_ts: u64,
    stats: PairStats,
}

fn split_name(full: &str) -> (String, String) {
    match full.split_once(':') {
        Some((p, n)) => (p.to_string(), n.to_string()),
        None => (String::new(), full.to_string()),
    }
}

impl Pairer {
    pub fn new(pair: Pair, limits: PairLimits) -> Pairer {
        Pairer {
            start: split_name(&pair.start),
            done: split_name(&pair.done),
            pair,
            limits,
            open: HashMap::new(),
            order: BTreeMap::new(),
            next_seq: 0,
            newest_ts: 0,
            stats: PairStats::default(),
        }
    }

    pub fn pair(&self) -> &Pair {
        &self.pair
    }

    /// Forgets every waiting start: the attachment had a gap, and a done seen after it must
    /// not be paired with a start from before it.
    pub fn forget_open(&mut self) {
        self.stats.gap_discarded += self.order.len() as u64;
        self.open.clear();
        self.order.clear();
    }

    pub fn stats(&self) -> PairStats {
        PairStats {
            open: self.order.len() as u64,
            ..self.stats
        }
    }

    /// Whether this event is the start or the done of the pair.
    pub fn wants(&self, ev: &Event) -> bool {
        self.is_start(ev) || self.is_done(ev)
    }

    fn is_start(&self, ev: &Event) -> bool {
        ev.probe.provider == self.start.0 && ev.probe.name == self.start.1
    }

    fn is_done(&self, ev: &Event) -> bool {
        ev.probe.provider == self.done.0 && ev.probe.name == self.done.1
    }

    fn key(&self, ev: &Event, arg: Option<usize>) -> Option<MatchKey> {
        let Some(i) = arg else {
            return Some(MatchKey::Thread {
                pid: ev.pid,
                tid: ev.tid,
            });
        };
        match ev.args.get(i)? {
            ArgValue::Int(k) => Some(MatchKey::IntArg {
                pid: ev.pid,
                key: k.value(),
            }),
            ArgValue::Str(s) => Some(MatchKey::StrArg {
                pid: ev.pid,
                key: s.clone(),
            }),
            ArgValue::Null | ArgValue::Unreadable | ArgValue::Unsupported(_) => None,
        }
    }

    /// Feed one event; returns the sample it completes, if any. Events of other probes are
    /// ignored.
    pub fn push(&mut self, ev: &Event) -> Option<Sample> {
        let is_start = self.is_start(ev);
        let is_done = self.is_done(ev);
        if !is_start && !is_done {
            return None;
        }
        self.newest_ts = self.newest_ts.max(ev.ts_ns);
        self.expire();
        if is_start {
            self.stats.starts += 1;
            match self.key(ev, self.pair.start_key) {
                Some(key) => self.open_start(key, ev),
                None => self.stats.bad_key += 1,
            }
            None
        } else {
            self.stats.dones += 1;
            let Some(key) = self.key(ev, self.pair.done_key) else {
                self.stats.bad_key += 1;
                return None;
            };
            let Some(open) = self.take(&key) else {
                self.stats.unmatched_done += 1;
                return None;
            };
            self.stats.matched += 1;
            let label = self.pair.label.and_then(|i| arg_label(&open.event.args, i));
            Some(Sample {
                // Events of different CPUs may arrive slightly out of order; never negative.
                latency_ns: ev.ts_ns.saturating_sub(open.event.ts_ns),
                start: open.event,
                done_ts_ns: ev.ts_ns,
                done_args: ev.args.clone(),
                label,
            })
        }
    }

    fn open_start(&mut self, key: MatchKey, ev: &Event) {
        if !self.pair.nested {
            if let Some(old) = self.open.remove(&key) {
                for o in old {
                    self.order.remove(&o.seq);
                    self.stats.replaced += 1;
                }
            }
        }
        while self.order.len() >= self.limits.max_open.max(1) {
            self.drop_oldest();
            self.stats.evicted += 1;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.order.insert(seq, (key.clone(), ev.ts_ns));
        self.open.entry(key).or_default().push(Open {
            seq,
            event: ev.clone(),
        });
    }

    /// The newest waiting start for `key` (for non-nested pairs there is at most one).
    fn take(&mut self, key: &MatchKey) -> Option<Open> {
        let stack = self.open.get_mut(key)?;
        let open = stack.pop()?;
        if stack.is_empty() {
            self.open.remove(key);
        }
        self.order.remove(&open.seq);
        Some(open)
    }

    fn drop_oldest(&mut self) {
        let Some((seq, (key, _))) = self.order.pop_first() else {
            return;
        };
        if let Some(stack) = self.open.get_mut(&key) {
            stack.retain(|o| o.seq != seq);
            if stack.is_empty() {
                self.open.remove(&key);
            }
        }
    }

    /// Drop starts older than the age limit, relative to the newest event seen.
    fn expire(&mut self) {
        let horizon = self.newest_ts.saturating_sub(self.limits.max_age_ns);
        while let Some((_, (_, ts))) = self.order.first_key_value() {
            if *ts >= horizon {
                break;
            }
            self.drop_oldest();
            self.stats.expired += 1;
        }
    }

    /// Advance time without an event (e.g. on a UI tick) so stale starts expire.
    pub fn tick(&mut self, now_ns: u64) {
        self.newest_ts = self.newest_ts.max(now_ns);
        self.expire();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probes::discovery::catalog::Catalog;
    use crate::probes::tracing::event::ProbeKey;
    use std::sync::Arc;

    fn ev(probe: &str, ts_ns: u64, pid: u32, tid: u32, args: Vec<ArgValue>) -> Event {
        let (provider, name) = probe.split_once(':').unwrap();
        Event {
            ts_ns,
            pid,
            tid,
            comm: "t".into(),
            probe: Arc::new(ProbeKey {
                path: "/bin/x".into(),
                provider: provider.into(),
                name: name.into(),
            }),
            args,
        }
    }

    fn s(v: &str) -> ArgValue {
        ArgValue::Str(v.into())
    }

    fn pairer(start: &str) -> Pairer {
        let pair = Catalog::builtin().pair_for(start).unwrap().clone();
        Pairer::new(pair, PairLimits::default())
    }

    #[test]
    fn a_start_and_its_done_on_one_thread_make_one_sample_with_the_start_label() {
        let mut p = pairer("postgresql:query__start");
        let start = ev("postgresql:query__start", 1_000, 7, 7, vec![s("SELECT 1")]);
        assert!(p.push(&start).is_none());
        let sample = p
            .push(&ev(
                "postgresql:query__done",
                6_000,
                7,
                7,
                vec![s("SELECT 1")],
            ))
            .unwrap();
        assert_eq!(sample.latency_ns, 5_000);
        assert_eq!(sample.label.as_deref(), Some("SELECT 1"));
        assert_eq!(sample.start, start);
        assert_eq!(sample.done_ts_ns, 6_000);
        assert_eq!(p.stats().matched, 1);
        assert_eq!(p.stats().open, 0);
    }

    #[test]
    fn a_done_without_a_start_is_counted_not_invented() {
        let mut p = pairer("postgresql:query__start");
        assert!(p
            .push(&ev("postgresql:query__done", 5, 7, 7, vec![s("q")]))
            .is_none());
        assert_eq!(p.stats().unmatched_done, 1);
        assert_eq!(p.stats().matched, 0);
    }

    #[test]
    fn threads_are_paired_separately() {
        let mut p = pairer("postgresql:query__start");
        p.push(&ev("postgresql:query__start", 0, 1, 1, vec![s("a")]));
        p.push(&ev("postgresql:query__start", 10, 2, 2, vec![s("b")]));
        let b = p
            .push(&ev("postgresql:query__done", 15, 2, 2, vec![]))
            .unwrap();
        let a = p
            .push(&ev("postgresql:query__done", 100, 1, 1, vec![]))
            .unwrap();
        assert_eq!((b.label.as_deref(), b.latency_ns), (Some("b"), 5));
        assert_eq!((a.label.as_deref(), a.latency_ns), (Some("a"), 100));
    }

    #[test]
    fn node_requests_pair_by_fd_across_threads_of_one_process_only() {
        let mut p = pairer("node:http__server__request");
        let req = |ts, pid, tid, fd, url: &str| {
            ev(
                "node:http__server__request",
                ts,
                pid,
                tid,
                vec![
                    ArgValue::signed(0),
                    ArgValue::signed(0),
                    s("127.0.0.1"),
                    ArgValue::signed(80),
                    s("GET"),
                    s(url),
                    ArgValue::signed(fd),
                ],
            )
        };
        let resp = |ts, pid, tid, fd| {
            ev(
                "node:http__server__response",
                ts,
                pid,
                tid,
                vec![
                    ArgValue::signed(0),
                    s("127.0.0.1"),
                    ArgValue::signed(80),
                    // An unsigned spec (`4@`) on the done side still matches by value.
                    ArgValue::unsigned(fd as u64),
                ],
            )
        };
        p.push(&req(0, 100, 100, 11, "/a"));
        p.push(&req(1, 100, 100, 12, "/b"));
        p.push(&req(2, 200, 200, 11, "/other-process"));
        let b = p.push(&resp(50, 100, 101, 12)).unwrap();
        assert_eq!((b.label.as_deref(), b.latency_ns), (Some("/b"), 49));
        let a = p.push(&resp(60, 100, 102, 11)).unwrap();
        assert_eq!((a.label.as_deref(), a.latency_ns), (Some("/a"), 60));
        assert!(
            p.push(&resp(70, 100, 100, 11)).is_none(),
            "fd 11 already done"
        );
        assert_eq!(p.stats().unmatched_done, 1);
        assert_eq!(p.stats().open, 1, "the other process's request still waits");
    }

    #[test]
    fn nested_calls_match_the_newest_start_on_the_thread() {
        let mut p = pairer("python:function__entry");
        let entry = |ts, f: &str| {
            ev(
                "python:function__entry",
                ts,
                1,
                1,
                vec![s("x.py"), s(f), ArgValue::signed(1)],
            )
        };
        let ret = |ts| ev("python:function__return", ts, 1, 1, vec![]);
        p.push(&entry(0, "outer"));
        p.push(&entry(10, "inner"));
        let inner = p.push(&ret(15)).unwrap();
        let outer = p.push(&ret(100)).unwrap();
        assert_eq!(
            (inner.label.as_deref(), inner.latency_ns),
            (Some("inner"), 5)
        );
        assert_eq!(
            (outer.label.as_deref(), outer.latency_ns),
            (Some("outer"), 100)
        );
    }

    #[test]
    fn a_second_start_before_the_done_replaces_the_first_and_is_counted() {
        let mut p = pairer("postgresql:query__start");
        p.push(&ev("postgresql:query__start", 0, 1, 1, vec![s("lost")]));
        p.push(&ev("postgresql:query__start", 10, 1, 1, vec![s("kept")]));
        let sample = p
            .push(&ev("postgresql:query__done", 12, 1, 1, vec![]))
            .unwrap();
        assert_eq!(sample.label.as_deref(), Some("kept"));
        assert_eq!(p.stats().replaced, 1);
    }

    #[test]
    fn stale_starts_expire_and_a_late_done_is_then_unmatched() {
        let mut p = Pairer::new(
            Catalog::builtin()
                .pair_for("postgresql:query__start")
                .unwrap()
                .clone(),
            PairLimits {
                max_open: 100,
                max_age_ns: 1_000,
            },
        );
        p.push(&ev("postgresql:query__start", 0, 1, 1, vec![s("slow")]));
        p.push(&ev("postgresql:query__start", 1_500, 2, 2, vec![s("new")]));
        assert_eq!(p.stats().expired, 1);
        assert_eq!(p.stats().open, 1);
        assert!(p
            .push(&ev("postgresql:query__done", 1_600, 1, 1, vec![]))
            .is_none());
        assert_eq!(p.stats().unmatched_done, 1);
        p.tick(10_000);
        assert_eq!(p.stats().open, 0);
        assert_eq!(p.stats().expired, 2);
    }

    #[test]
    fn starts_whose_done_never_comes_stay_bounded_by_the_cap() {
        let mut p = Pairer::new(
            Catalog::builtin()
                .pair_for("postgresql:query__start")
                .unwrap()
                .clone(),
            PairLimits {
                max_open: 50,
                max_age_ns: u64::MAX,
            },
        );
        for tid in 0..10_000u32 {
            p.push(&ev("postgresql:query__start", tid as u64, 1, tid, vec![]));
        }
        let st = p.stats();
        assert_eq!(st.open, 50);
        assert_eq!(st.evicted, 10_000 - 50);
        // The newest survive: thread 9999's done still matches, thread 0's does not.
        assert!(p
            .push(&ev("postgresql:query__done", 20_000, 1, 9_999, vec![]))
            .is_some());
        assert!(p
            .push(&ev("postgresql:query__done", 20_000, 1, 0, vec![]))
            .is_none());
    }

    #[test]
    fn an_unreadable_key_argument_is_counted() {
        let mut p = pairer("node:http__server__request");
        p.push(&ev(
            "node:http__server__request",
            0,
            1,
            1,
            vec![ArgValue::Unsupported("%xmm0".into())],
        ));
        assert_eq!(p.stats().bad_key, 1);
        assert_eq!(p.stats().open, 0);
    }

    #[test]
    fn events_of_other_probes_are_ignored() {
        let mut p = pairer("postgresql:query__start");
        assert!(p
            .push(&ev("postgresql:transaction__start", 0, 1, 1, vec![]))
            .is_none());
        assert_eq!(p.stats(), PairStats::default());
    }

    #[test]
    fn a_done_that_arrives_before_its_start_timestamp_has_zero_latency_not_negative() {
        let mut p = pairer("postgresql:query__start");
        p.push(&ev("postgresql:query__start", 100, 1, 1, vec![]));
        let sample = p
            .push(&ev("postgresql:query__done", 90, 1, 1, vec![]))
            .unwrap();
        assert_eq!(sample.latency_ns, 0);
    }
}
