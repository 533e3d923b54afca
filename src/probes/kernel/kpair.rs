//! User-space side of in-kernel start/done pairing (bpf/pair.bpf.h, `Mode::Pair`): which probe
//! starts or ends which pair, and reading back per-pair counters and latency buckets. Sites are
//! attached by the [`Engine`] with `Mode::Pair`; until a probe is given a role here its hits are
//! only counted.

use crate::probes::tracing::abi::{
    RawPairCfg, RawPairKey, RawPairStart, MAX_ARGS, PAIR_BY_THREAD, PS_MATCHED, PS_NR, PS_REPLACED,
    PS_SAMPLED, PS_STARTS, PS_SUM_NS, PS_UNMATCHED,
};
pub use crate::probes::tracing::abi::{Role, MAX_PAIRS, PAIR_BUCKETS};
use crate::probes::tracing::engine::{Engine, ProbeId};
use aya::maps::{Array, HashMap as BpfHashMap, MapData, MapError, PerCpuArray, PerCpuValues};
use thiserror::Error;

pub const MAP_CFGS: &str = "pair_cfgs";
pub const MAP_STARTS: &str = "pair_starts";
pub const MAP_STATS: &str = "pair_stats";
pub const MAP_HIST: &str = "pair_hist";

#[derive(Debug, Error)]
pub enum KpairError {
    #[error("BPF map `{0}` is missing (already taken, or the program predates pairing)")]
    Missing(&'static str),
    #[error("BPF map `{map}`: {source}")]
    Map { map: &'static str, source: MapError },
    #[error("pair id {0} is out of range (at most {MAX_PAIRS} pairs)")]
    PairId(u16),
    #[error("key argument {0} cannot be read in the kernel (at most {MAX_ARGS} arguments)")]
    KeyArg(usize),
}

fn map_err(map: &'static str) -> impl FnOnce(MapError) -> KpairError {
    move |source| KpairError::Map { map, source }
}

/// The bucket a latency falls in (mirror of `pair_bucket` in bpf/pair.bpf.h): exact below 8 ns,
/// then 8 linear steps per power of two.
pub fn bucket_of(ns: u64) -> usize {
    if ns < 8 {
        return ns as usize;
    }
    let l = 63 - ns.leading_zeros() as usize;
    l * 8 + ((ns >> (l - 3)) & 7) as usize
}

/// The `[lo, hi)` range of bucket `i` (empty ranges for the unused indices 8..24).
pub fn bucket_range(i: usize) -> (u64, u64) {
    if i < 8 {
        return (i as u64, i as u64 + 1);
    }
    let (l, sub) = ((i / 8) as u32, (i % 8) as u64);
    if l < 3 {
        return (0, 0);
    }
    let lo = (8 + sub) << (l - 3);
    let hi = (9 + sub).checked_shl(l - 3).unwrap_or(u64::MAX);
    (lo, if hi < lo { u64::MAX } else { hi })
}

/// Counters and buckets of one pair, summed over CPUs, since it was configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelPairStats {
    pub starts: u64,
    pub matched: u64,
    pub unmatched_done: u64,
    /// A start that found an unfinished start with the same key (the older one is lost).
    pub replaced: u64,
    pub sum_ns: u64,
    /// Matched requests whose start and done were also streamed.
    pub sampled: u64,
    pub buckets: Vec<u64>,
}

impl KernelPairStats {
    /// What happened between `earlier` and `self` (for per-interval reports).
    pub fn since(&self, earlier: &KernelPairStats) -> KernelPairStats {
        KernelPairStats {
            starts: self.starts.saturating_sub(earlier.starts),
            matched: self.matched.saturating_sub(earlier.matched),
            unmatched_done: self.unmatched_done.saturating_sub(earlier.unmatched_done),
            replaced: self.replaced.saturating_sub(earlier.replaced),
            sum_ns: self.sum_ns.saturating_sub(earlier.sum_ns),
            sampled: self.sampled.saturating_sub(earlier.sampled),
            buckets: buckets_since(&self.buckets, &earlier.buckets),
        }
    }

    /// Non-empty buckets as (midpoint, count): the midpoint keeps a value inside the same
    /// power-of-two range, so power-of-two charts built from it are exact.
    pub fn samples(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        midpoints(&self.buckets, bucket_range)
    }
}

/// Bucket counts added between `earlier` and `now`.
pub fn buckets_since(now: &[u64], earlier: &[u64]) -> Vec<u64> {
    now.iter()
        .zip(earlier)
        .map(|(a, b)| a.saturating_sub(*b))
        .collect()
}

/// Non-empty `buckets` as (midpoint, count), bucket `i` spanning `range(i)`.
pub fn midpoints<'a>(
    buckets: &'a [u64],
    range: impl Fn(usize) -> (u64, u64) + 'a,
) -> impl Iterator<Item = (u64, u64)> + 'a {
    buckets
        .iter()
        .enumerate()
        .filter(|(_, c)| **c > 0)
        .map(move |(i, c)| {
            let (lo, hi) = range(i);
            (lo + (hi - lo) / 2, *c)
        })
}

/// The pairing maps of a loaded program.
pub struct KernelPairs {
    cfgs: Array<MapData, RawPairCfg>,
    starts: BpfHashMap<MapData, RawPairKey, RawPairStart>,
    stats: PerCpuArray<MapData, u64>,
    hist: PerCpuArray<MapData, u64>,
}

impl KernelPairs {
    /// Takes the pairing maps from the engine (once per engine).
    pub fn new(engine: &mut Engine) -> Result<KernelPairs, KpairError> {
        let mut take = |name: &'static str| engine.take_map(name).ok_or(KpairError::Missing(name));
        let cfgs = Array::try_from(take(MAP_CFGS)?).map_err(map_err(MAP_CFGS))?;
        let starts = BpfHashMap::try_from(take(MAP_STARTS)?).map_err(map_err(MAP_STARTS))?;
        let stats = PerCpuArray::try_from(take(MAP_STATS)?).map_err(map_err(MAP_STATS))?;
        let hist = PerCpuArray::try_from(take(MAP_HIST)?).map_err(map_err(MAP_HIST))?;
        Ok(KernelPairs {
            cfgs,
            starts,
            stats,
            hist,
        })
    }

    /// Makes `probe` (attached with `Mode::Pair`) the start or done of pair `pair_id`, matched by
    /// thread or by the integer argument `key_arg`; 1 request in `sample_every` is streamed
    /// (0 = none).
    pub fn set_role(
        &mut self,
        probe: ProbeId,
        pair_id: u16,
        role: Role,
        key_arg: Option<usize>,
        sample_every: u32,
    ) -> Result<(), KpairError> {
        if pair_id >= MAX_PAIRS {
            return Err(KpairError::PairId(pair_id));
        }
        let key_arg = match key_arg {
            None => PAIR_BY_THREAD,
            Some(i) if i < MAX_ARGS => i as u8,
            Some(i) => return Err(KpairError::KeyArg(i)),
        };
        let cfg = RawPairCfg {
            pair_id,
            role: role as u8,
            key_arg,
            sample_every,
        };
        self.cfgs.set(probe.0, cfg, 0).map_err(map_err(MAP_CFGS))
    }

    /// Takes `probe` out of every pair: its hits are only counted again.
    pub fn clear_role(&mut self, probe: ProbeId) -> Result<(), KpairError> {
        self.cfgs
            .set(probe.0, RawPairCfg::default(), 0)
            .map_err(map_err(MAP_CFGS))
    }

    /// Changes how many requests are streamed, without touching the pairing.
    pub fn set_sampling(&mut self, probe: ProbeId, sample_every: u32) -> Result<(), KpairError> {
        let mut cfg = self.cfgs.get(&probe.0, 0).map_err(map_err(MAP_CFGS))?;
        cfg.sample_every = sample_every;
        self.cfgs.set(probe.0, cfg, 0).map_err(map_err(MAP_CFGS))
    }

    fn sum(values: Result<PerCpuValues<u64>, MapError>) -> u64 {
        values.map(|v| v.iter().sum()).unwrap_or(0)
    }

    /// Counter `stat` (a `PS_*` index) of pair `pair_id`, summed over CPUs.
    pub fn stat(&self, pair_id: u16, stat: u32) -> u64 {
        Self::sum(self.stats.get(&(pair_id as u32 * PS_NR + stat), 0))
    }

    pub fn read(&self, pair_id: u16) -> KernelPairStats {
        let stat = |i: u32| self.stat(pair_id, i);
        let hbase = pair_id as u32 * PAIR_BUCKETS as u32;
        KernelPairStats {
            starts: stat(PS_STARTS),
            matched: stat(PS_MATCHED),
            unmatched_done: stat(PS_UNMATCHED),
            replaced: stat(PS_REPLACED),
            sum_ns: stat(PS_SUM_NS),
            sampled: stat(PS_SAMPLED),
            buckets: (0..PAIR_BUCKETS as u32)
                .map(|i| Self::sum(self.hist.get(&(hbase + i), 0)))
                .collect(),
        }
    }

    /// Forgets the starts of `pair_id` waiting for their done (after a gap in the attachment:
    /// a done after it must not pair with a start before it); returns how many.
    pub fn clear_starts(&mut self, pair_id: u16) -> u64 {
        let waiting: Vec<RawPairKey> = self
            .starts
            .iter()
            .filter_map(Result::ok)
            .filter(|(k, s)| k.pair_id == pair_id as u32 && s.ts_ns != 0)
            .map(|(k, _)| k)
            .collect();
        waiting
            .iter()
            .filter(|k| self.starts.remove(k).is_ok())
            .count() as u64
    }

    /// Starts of `pair_id` waiting for their done right now. Per-thread entries stay in the map
    /// after their done with `ts_ns == 0` (the BPF side reuses them), so those are not counted.
    pub fn open_starts(&self, pair_id: u16) -> u64 {
        self.starts
            .iter()
            .filter_map(Result::ok)
            .filter(|(k, s)| k.pair_id == pair_id as u32 && s.ts_ns != 0)
            .count() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_latency_lies_in_the_range_of_its_bucket() {
        let mut v = 0u64;
        while v < u64::MAX / 3 {
            let (lo, hi) = bucket_range(bucket_of(v));
            assert!(lo <= v && v < hi, "{v} not in [{lo}, {hi})");
            assert!(bucket_of(v) < PAIR_BUCKETS);
            v = v + v / 4 + 1;
        }
        let (lo, hi) = bucket_range(bucket_of(u64::MAX));
        assert!(lo > 0 && hi == u64::MAX);
    }

    #[test]
    fn buckets_are_at_most_an_eighth_of_their_value_wide() {
        for i in 24..PAIR_BUCKETS {
            let (lo, hi) = bucket_range(i);
            if hi == u64::MAX {
                continue;
            }
            assert!((hi - lo) * 8 <= lo, "bucket {i}: [{lo}, {hi})");
        }
        assert_eq!(bucket_range(bucket_of(1_000_000)), (983_040, 1_048_576));
    }

    #[test]
    fn midpoints_stay_in_their_power_of_two() {
        let s = KernelPairStats {
            starts: 0,
            matched: 2,
            unmatched_done: 0,
            replaced: 0,
            sum_ns: 0,
            sampled: 0,
            buckets: {
                let mut b = vec![0; PAIR_BUCKETS];
                b[bucket_of(4095)] = 1;
                b[bucket_of(4096)] = 1;
                b
            },
        };
        let mids: Vec<u64> = s.samples().map(|(m, _)| m).collect();
        assert!(mids[0] < 4096 && mids[0] >= 2048, "{mids:?}");
        assert!(mids[1] >= 4096 && mids[1] < 8192, "{mids:?}");
    }
}
