//! User-space side of in-kernel `top` with latency per key (bpf/toplat.bpf.h, `Mode::TopLat`):
//! gives the start and done probes their roles, and reads back per (start probe, string) counts
//! of completed requests, latency sums and buckets, and the requests the kernel could not key or
//! pair. Roles live in the pairing config map ([`KernelPairs`]), counters in `top_stats`
//! ([`KernelTop`]).

use super::kpair::{self, KernelPairs, KpairError, Role};
use super::ktop::{kernel_key_text, KernelTop, KtopError};
use crate::probes::tracing::abi::{
    RawPairKey, RawTopHkey, RawToplatAgg, RawToplatStart, Stat, TL_BUCKETS, TL_FIRST_BUCKET,
};
use crate::probes::tracing::engine::{Engine, ProbeId};
use aya::maps::{HashMap as BpfHashMap, MapData, MapError, PerCpuHashMap};
use std::collections::HashMap;
use thiserror::Error;

pub const MAP_STARTS: &str = "toplat_starts";
pub const MAP_AGGS: &str = "toplat_aggs";
/// Buckets per key: `kpair` buckets `FIRST_BUCKET..FIRST_BUCKET + BUCKETS` (256 ns to 2^40 ns,
/// 1/8 of a power of two wide), the first and last also holding what lies below and above.
pub const BUCKETS: usize = TL_BUCKETS;
const FIRST_BUCKET: usize = TL_FIRST_BUCKET;
/// Pair id in the kernel's start keys: one pair per program run.
const PAIR_ID: u16 = 0;

#[derive(Debug, Error)]
pub enum KtoplatError {
    #[error("BPF map `{0}` is missing (already taken, or the program predates it)")]
    Missing(&'static str),
    #[error("BPF map `{map}`: {source}")]
    Map { map: &'static str, source: MapError },
    #[error(transparent)]
    Pairs(#[from] KpairError),
    #[error(transparent)]
    Top(#[from] KtopError),
}

/// The `[lo, hi)` range of bucket `i` of a key (the last one is open above: latencies beyond
/// its `lo` are clamped into it).
pub fn bucket_range(i: usize) -> (u64, u64) {
    let (lo, hi) = kpair::bucket_range(FIRST_BUCKET + i.min(BUCKETS - 1));
    match i {
        0 => (0, hi),
        _ if i >= BUCKETS - 1 => (lo, u64::MAX),
        _ => (lo, hi),
    }
}

/// The bucket of a latency (mirror of the clamping in `toplat_record`, for the tests).
#[cfg(test)]
pub(crate) fn bucket_of(ns: u64) -> usize {
    kpair::bucket_of(ns)
        .saturating_sub(FIRST_BUCKET)
        .min(BUCKETS - 1)
}

/// Completed requests of one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLatency {
    pub count: u64,
    pub sum_ns: u64,
    pub buckets: Vec<u64>,
}

impl KeyLatency {
    /// Non-empty buckets as (midpoint, count): latencies within 1/16 of the value, the
    /// resolution percentiles computed from them have.
    pub fn samples(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        kpair::midpoints(&self.buckets, bucket_range)
    }

    fn since(&self, earlier: Option<&KeyLatency>) -> KeyLatency {
        let Some(e) = earlier else {
            return self.clone();
        };
        KeyLatency {
            count: self.count.saturating_sub(e.count),
            sum_ns: self.sum_ns.saturating_sub(e.sum_ns),
            buckets: kpair::buckets_since(&self.buckets, &e.buckets),
        }
    }
}

/// Takes the per-key aggregates map from the engine.
pub(super) fn take_aggs(engine: &mut Engine) -> Result<Aggs, KtoplatError> {
    let map = engine
        .take_map(MAP_AGGS)
        .ok_or(KtoplatError::Missing(MAP_AGGS))?;
    PerCpuHashMap::try_from(map).map_err(|source| KtoplatError::Map {
        map: MAP_AGGS,
        source,
    })
}

/// The per-key aggregates map (`toplat_aggs`), shared with call-shaped pairs (kcalls.rs).
pub(super) type Aggs = PerCpuHashMap<MapData, RawTopHkey, RawToplatAgg>;

/// Completed requests per key text of the keys of `start_ids`, summed over CPUs.
pub(super) fn read_keys(aggs: &Aggs, start_ids: &[ProbeId]) -> HashMap<String, KeyLatency> {
    let mut keys: HashMap<String, KeyLatency> = HashMap::new();
    for (key, values) in aggs.iter().filter_map(Result::ok) {
        if !start_ids.iter().any(|id| id.0 == key.probe_id) {
            continue;
        }
        // Only CPUs that saw the key hold its string (the others' copies are zeroed).
        let Some(first) = values.iter().find(|v| v.v.count > 0) else {
            continue;
        };
        let k = keys
            .entry(kernel_key_text(&first.v.str, key.flags))
            .or_insert_with(|| KeyLatency {
                count: 0,
                sum_ns: 0,
                buckets: vec![0; BUCKETS],
            });
        for v in values.iter() {
            k.count += v.v.count;
            k.sum_ns += v.sum_ns;
            for (total, n) in k.buckets.iter_mut().zip(v.buckets.iter()) {
                *total += n;
            }
        }
    }
    keys
}

/// What each key completed between `earlier` and `now`; keys without new requests are left out.
pub(super) fn keys_since(
    now: &HashMap<String, KeyLatency>,
    earlier: &HashMap<String, KeyLatency>,
) -> HashMap<String, KeyLatency> {
    now.iter()
        .map(|(k, v)| (k.clone(), v.since(earlier.get(k))))
        .filter(|(_, v)| v.count > 0)
        .collect()
}

/// Cumulative figures of one pair since it was configured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelTopLatency {
    /// Completed requests per key text (terminal-safe, `…` when cut).
    pub keys: HashMap<String, KeyLatency>,
    /// Completed requests whose start had no readable string.
    pub unreadable: u64,
    /// Completed requests of a new key while the kernel map was full (not in `keys`).
    pub overflow: u64,
    /// Dones without a start.
    pub unmatched_done: u64,
    /// Starts that found an open start with the same key (the older one is lost).
    pub replaced: u64,
}

impl KernelTopLatency {
    /// What happened between `earlier` and `self`; keys without new requests are left out.
    pub fn since(&self, earlier: &KernelTopLatency) -> KernelTopLatency {
        KernelTopLatency {
            keys: keys_since(&self.keys, &earlier.keys),
            unreadable: self.unreadable.saturating_sub(earlier.unreadable),
            overflow: self.overflow.saturating_sub(earlier.overflow),
            unmatched_done: self.unmatched_done.saturating_sub(earlier.unmatched_done),
            replaced: self.replaced.saturating_sub(earlier.replaced),
        }
    }

    /// Requests whose done found their start.
    pub fn matched(&self) -> u64 {
        self.keys.values().map(|k| k.count).sum::<u64>() + self.unreadable + self.overflow
    }
}

/// The maps of a loaded program that in-kernel top with latency uses.
pub struct KernelTopLat {
    // Holds the role config map: the roles set in `new` are the pair's.
    _pairs: KernelPairs,
    top: KernelTop,
    starts: BpfHashMap<MapData, RawPairKey, RawToplatStart>,
    aggs: Aggs,
    start_ids: Vec<ProbeId>,
    done_ids: Vec<ProbeId>,
}

impl KernelTopLat {
    /// Takes the maps from the engine (once per engine; the pairing and top maps go with them)
    /// and makes `start_ids` and `done_ids` (attached with `Mode::TopLat`) a pair matched by
    /// thread, or by the integer arguments `keys` (start, done).
    pub fn new(
        engine: &mut Engine,
        start_ids: Vec<ProbeId>,
        done_ids: Vec<ProbeId>,
        keys: (Option<usize>, Option<usize>),
    ) -> Result<KernelTopLat, KtoplatError> {
        let mut pairs = KernelPairs::new(engine)?;
        let top = KernelTop::new(engine)?;
        let mut take =
            |name: &'static str| engine.take_map(name).ok_or(KtoplatError::Missing(name));
        let map_err = |map| move |source| KtoplatError::Map { map, source };
        let starts = BpfHashMap::try_from(take(MAP_STARTS)?).map_err(map_err(MAP_STARTS))?;

        let aggs = take_aggs(engine)?;
        // Dones first: a start configured before its done could wait for a done that is not
        // yet recognised.
        for id in &done_ids {
            pairs.set_role(*id, PAIR_ID, Role::Done, keys.1, 0)?;
        }
        for id in &start_ids {
            pairs.set_role(*id, PAIR_ID, Role::Start, keys.0, 0)?;
        }
        Ok(KernelTopLat {
            _pairs: pairs,
            top,
            starts,
            aggs,
            start_ids,
            done_ids,
        })
    }

    /// Everything counted since the pair was configured.
    pub fn read(&self) -> KernelTopLatency {
        let mut out = KernelTopLatency {
            keys: read_keys(&self.aggs, &self.start_ids),
            ..KernelTopLatency::default()
        };
        let all: Vec<ProbeId> = self
            .start_ids
            .iter()
            .chain(&self.done_ids)
            .copied()
            .collect();
        out.unreadable = self.top.stat(&all, Stat::Unreadable);
        out.overflow = self.top.stat(&all, Stat::Overflow);
        out.unmatched_done = self.top.stat(&all, Stat::Unmatched);
        out.replaced = self.top.stat(&all, Stat::Replaced);
        out
    }

    /// Forgets the requests started and not yet done (after a gap in the attachment: a done
    /// after it must not pair with a start before it).
    pub fn clear_starts(&mut self) {
        let waiting: Vec<RawPairKey> = self
            .starts
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, s)| s.ts_ns != 0 && self.start_ids.iter().any(|id| id.0 == s.k.probe_id))
            .map(|(k, _)| k)
            .collect();
        for k in waiting {
            let _ = self.starts.remove(&k);
        }
    }

    /// Requests started and not yet done (per-thread entries emptied by their done are not).
    pub fn open_starts(&self) -> u64 {
        self.starts
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, s)| s.ts_ns != 0 && self.start_ids.iter().any(|id| id.0 == s.k.probe_id))
            .count() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_the_c_structs() {
        assert_eq!(std::mem::size_of::<RawToplatStart>(), 8 + 16 + 72);
        assert_eq!(std::mem::size_of::<RawToplatAgg>(), 72 + 8 + 8 * BUCKETS);
    }

    #[test]
    fn buckets_cover_every_latency_and_clamp_at_both_ends() {
        let mut v = 0u64;
        while v < u64::MAX / 3 {
            let (lo, hi) = bucket_range(bucket_of(v));
            assert!(lo <= v && v < hi, "{v} not in [{lo}, {hi})");
            v = v + v / 4 + 1;
        }
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(255), 0);
        assert_eq!(bucket_range(0).0, 0);
        assert_eq!(bucket_of(256), 0, "256 ns is the first bucket's own range");
        assert!(bucket_of(288) > 0);
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
        assert_eq!(bucket_range(BUCKETS - 1), (15 << 36, u64::MAX));
    }

    #[test]
    fn bucket_midpoints_are_within_a_sixteenth_of_the_latency() {
        for ns in [300u64, 1_000, 123_456, 1_000_000, 3_000_000, 5_000_000_000] {
            let mut k = KeyLatency {
                count: 1,
                sum_ns: ns,
                buckets: vec![0; BUCKETS],
            };
            k.buckets[bucket_of(ns)] = 1;
            let (mid, n) = k.samples().next().unwrap();
            assert_eq!(n, 1);
            assert!(mid.abs_diff(ns) <= ns / 16, "{ns} ns -> {mid}");
        }
    }

    #[test]
    fn an_interval_holds_only_its_own_requests() {
        let key = |count: u64| KeyLatency {
            count,
            sum_ns: count * 10,
            buckets: {
                let mut b = vec![0; BUCKETS];
                b[3] = count;
                b
            },
        };
        let mut a = KernelTopLatency::default();
        a.keys.insert("/a".into(), key(5));
        a.keys.insert("/b".into(), key(2));
        let mut b = a.clone();
        b.keys.insert("/a".into(), key(8));
        b.keys.insert("/c".into(), key(1));
        b.unmatched_done = 2;
        let d = b.since(&a);
        assert_eq!(d.keys.len(), 2, "{d:?}");
        assert_eq!(d.keys["/a"], key(3));
        assert_eq!(d.keys["/c"], key(1));
        assert_eq!((d.unmatched_done, d.matched()), (2, 4));
    }
}
