//! What `usdtop export` serves: the figures of the last read of the kernel's maps, kept with a
//! bounded set of keys, and their Prometheus exposition (written by `prometheus-client`, which
//! also escapes label values).

use super::export_native::Native;
use super::export_native::SCHEMA;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::prometheus_protobuf;
use prometheus_client::encoding::{DescriptorEncoder, NativeHistogram, NativeHistogramBuckets};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use usdtop::aggregate::normalize_key;

/// The key label of the keys beyond `--max-keys`.
pub const OTHER: &str = "other";

/// One latency histogram: cumulative counts per bucket with the bucket's upper edge in
/// seconds (the last edge is +Inf), and the same counts as a native histogram.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    pub count: u64,
    pub sum_s: f64,
    /// (upper edge in seconds, hits in this bucket only), edges rising.
    pub buckets: Vec<(f64, u64)>,
    pub native: Native,
}

/// What the kernel counted for one key, summed as keys are folded or bounded.
pub trait Tally: Default {
    fn count(&self) -> u64;
    fn add(&mut self, other: &Self);
}

impl Tally for u64 {
    fn count(&self) -> u64 {
        *self
    }

    fn add(&mut self, other: &u64) {
        *self += other;
    }
}

/// A key's latencies in the kernel's buckets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelLatency {
    pub sum_ns: u64,
    pub buckets: Vec<u64>,
}

impl Tally for KernelLatency {
    /// The requests in its buckets (the kernel's own count may be read a moment apart).
    fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    fn add(&mut self, other: &KernelLatency) {
        self.sum_ns += other.sum_ns;
        if self.buckets.len() < other.buckets.len() {
            self.buckets.resize(other.buckets.len(), 0);
        }
        for (mine, theirs) in self.buckets.iter_mut().zip(&other.buckets) {
            *mine += theirs;
        }
    }
}

/// Sums tallies by label: the keys folded by shape (`top --fold`), or as they are.
pub fn by_label<T: Tally>(keys: Vec<(String, T)>, fold: bool) -> Vec<(String, T)> {
    if !fold {
        return keys;
    }
    let mut out: BTreeMap<String, T> = BTreeMap::new();
    for (k, t) in keys {
        out.entry(normalize_key(&k)).or_default().add(&t);
    }
    out.into_iter().collect()
}

/// The figures at the last read, cumulative since the attach.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    /// (object, provider, probe) → hits.
    pub hits: BTreeMap<(String, String, String), u64>,
    /// (pair, key) → latency histogram, keys already bounded.
    pub latency: BTreeMap<(String, String), Histogram>,
    /// (probe, key) → hits of a counted probe, keys already bounded.
    pub key_hits: BTreeMap<(String, String), u64>,
    pub ring_drops: u64,
    /// pair → requests or hits of keys the kernel had no room for.
    pub keys_overflow: BTreeMap<String, u64>,
    pub attached_sites: u64,
    /// Under `--max-overhead`: probe → seconds its sites were attached since its attach.
    pub attached_seconds: BTreeMap<String, f64>,
    pub reloads: Reloads,
}

/// How the reloads of the configuration went (as Prometheus reports its own).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reloads {
    pub failures: u64,
    pub last_successful: bool,
    /// Unix time of the last successful load (the start counts as one).
    pub last_success_s: f64,
}

impl Default for Reloads {
    fn default() -> Reloads {
        Reloads {
            failures: 0,
            last_successful: true,
            last_success_s: 0.0,
        }
    }
}

/// Keeps at most `max` keys of a pair as their own series, the rest summed as `other`. A key
/// once shown stays shown, so every series, `other` included, only grows (a counter that went
/// down would read as a restart); new keys are admitted busiest first while there is room.
#[derive(Debug)]
pub struct KeyBound {
    pub max: usize,
    shown: HashSet<String>,
}

impl KeyBound {
    pub fn new(max: usize) -> KeyBound {
        KeyBound {
            max,
            shown: HashSet::new(),
        }
    }

    /// The tallies of `keys` under their label: their own key, or `other`.
    pub fn bound<T: Tally>(&mut self, keys: Vec<(String, T)>) -> BTreeMap<String, T> {
        let mut fresh: Vec<&(String, T)> = keys
            .iter()
            .filter(|(k, _)| !self.shown.contains(k))
            .collect();
        fresh.sort_by(|a, b| b.1.count().cmp(&a.1.count()).then_with(|| a.0.cmp(&b.0)));
        for (k, _) in fresh {
            if self.shown.len() >= self.max {
                break;
            }
            self.shown.insert(k.clone());
        }
        let mut out: BTreeMap<String, T> = BTreeMap::new();
        for (k, t) in keys {
            let label = if self.shown.contains(&k) {
                k
            } else {
                OTHER.to_string()
            };
            out.entry(label).or_default().add(&t);
        }
        out
    }
}

/// The bucket edges a pair's histograms are served with: only around the kernel buckets that
/// ever held a latency (their lower and upper edge), and +Inf. Serving all 256 kernel buckets
/// would make every key 258 series; an edge once served stays, so the counts of every bucket
/// series only grow, and `histogram_quantile` keeps the kernel's resolution where it matters.
#[derive(Debug, Default)]
pub struct Edges {
    used: BTreeSet<usize>,
}

impl Edges {
    /// Notes the non-empty buckets of a key (call for every key before [`Edges::served`]).
    pub fn note(&mut self, buckets: &[u64]) {
        for (i, n) in buckets.iter().enumerate() {
            if *n > 0 {
                self.used.extend(i.checked_sub(1));
                self.used.insert(i);
            }
        }
    }

    /// The kernel buckets of a key merged into the served ones: (upper edge, hits in it).
    pub fn served(&self, buckets: &[u64], upper_edge: impl Fn(usize) -> f64) -> Vec<(f64, u64)> {
        let last = buckets.len().saturating_sub(1);
        let mut out = Vec::new();
        let mut pending = 0;
        for (i, n) in buckets.iter().enumerate() {
            pending += n;
            if i == last {
                out.push((f64::INFINITY, pending));
            } else if self.used.contains(&i) {
                out.push((upper_edge(i), pending));
                pending = 0;
            }
        }
        out
    }
}

/// The figures a scrape reads, shared between the session loop and the HTTP server.
#[derive(Debug, Clone, Default)]
pub struct Shared(pub Arc<Mutex<Figures>>);

impl Shared {
    pub fn set(&self, figures: Figures) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = figures;
    }

    fn get(&self) -> Figures {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

type NoLabels = prometheus_client::encoding::NoLabelSet;

impl Collector for Shared {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let f = self.get();
        let mut family = encoder.encode_descriptor(
            "usdt_probe_hits",
            "Hits of a USDT probe since usdtop attached it (after the process filter).",
            None,
            MetricType::Counter,
        )?;
        for ((object, provider, probe), n) in &f.hits {
            let labels = [
                ("object", object.as_str()),
                ("provider", provider.as_str()),
                ("probe", probe.as_str()),
            ];
            counter(&mut family.encode_family(&labels)?, *n)?;
        }
        let mut family = encoder.encode_descriptor(
            "usdt_probe_key_hits",
            "Hits of a counted probe by its --by key (provider:name as probe).",
            None,
            MetricType::Counter,
        )?;
        for ((probe, key), n) in &f.key_hits {
            let labels = [("probe", probe.as_str()), ("key", key.as_str())];
            counter(&mut family.encode_family(&labels)?, *n)?;
        }
        let mut family = encoder.encode_descriptor(
            "usdt_latency_seconds",
            "Latency from a start probe to its done probe, by the --by key, in the kernel's \
             buckets (1/8 of a power of two wide); native: schema 5, see README.",
            None,
            MetricType::Histogram,
        )?;
        for ((pair, key), h) in &f.latency {
            let labels = [("pair", pair.as_str()), ("key", key.as_str())];
            let sparse = h.native.sparse();
            let native = NativeHistogram {
                schema: SCHEMA,
                zero_threshold: h.native.zero_threshold,
                zero_count: h.native.zero_count,
                negative: NativeHistogramBuckets {
                    spans: &[],
                    deltas: &[],
                },
                positive: NativeHistogramBuckets {
                    spans: &sparse.spans,
                    deltas: &sparse.deltas,
                },
                created: None,
            };
            family
                .encode_family(&labels)?
                .encode_histogram_with_native::<NoLabels>(
                    h.sum_s, h.count, &h.buckets, None, native,
                )?;
        }
        let mut family = encoder.encode_descriptor(
            "usdtop_ring_drops",
            "Events the kernel could not put in the full ring buffer.",
            None,
            MetricType::Counter,
        )?;
        counter(&mut family, f.ring_drops)?;
        let mut family = encoder.encode_descriptor(
            "usdtop_keys_overflow",
            "Requests or hits of keys the kernel's map had no room for.",
            None,
            MetricType::Counter,
        )?;
        for (pair, n) in &f.keys_overflow {
            counter(&mut family.encode_family(&[("pair", pair.as_str())])?, *n)?;
        }
        let mut family = encoder.encode_descriptor(
            "usdtop_attached_sites",
            "Probe sites attached now.",
            None,
            MetricType::Gauge,
        )?;
        family.encode_gauge(&(f.attached_sites as i64))?;
        if !f.attached_seconds.is_empty() {
            let mut family = encoder.encode_descriptor(
                "usdtop_attached_seconds",
                "Seconds a probe's sites were attached (--max-overhead duty-cycles them): its \
                 hits over these seconds estimate the rate all the time.",
                None,
                MetricType::Counter,
            )?;
            for (probe, s) in &f.attached_seconds {
                family
                    .encode_family(&[("probe", probe.as_str())])?
                    .encode_counter::<NoLabels, _, u64>(s, None)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "usdtop_config_reload_failures",
            "Reloads of the -c file (SIGHUP) that failed; the running configuration stayed.",
            None,
            MetricType::Counter,
        )?;
        counter(&mut family, f.reloads.failures)?;
        let mut family = encoder.encode_descriptor(
            "usdtop_config_last_reload_successful",
            "Whether the last load of the configuration succeeded (1) or failed (0).",
            None,
            MetricType::Gauge,
        )?;
        family.encode_gauge(&i64::from(f.reloads.last_successful))?;
        let mut family = encoder.encode_descriptor(
            "usdtop_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful load of the configuration.",
            None,
            MetricType::Gauge,
        )?;
        family.encode_gauge(&f.reloads.last_success_s)?;
        let mut family = encoder.encode_descriptor(
            "usdtop_build_info",
            "The usdtop version serving these metrics (always 1).",
            None,
            MetricType::Gauge,
        )?;
        family
            .encode_family(&[("version", env!("CARGO_PKG_VERSION"))])?
            .encode_gauge(&1i64)?;
        Ok(())
    }
}

fn counter(
    family: &mut prometheus_client::encoding::MetricEncoder,
    n: u64,
) -> Result<(), std::fmt::Error> {
    family.encode_counter::<NoLabels, _, u64>(&n, None)
}

fn registry(shared: &Shared) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(shared.clone()));
    registry
}

/// The OpenMetrics text of the figures (classic histograms only).
pub fn exposition(shared: &Shared) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry(shared));
    out
}

/// The delimited protobuf exposition of the figures: histograms both classic and native.
pub fn exposition_protobuf(shared: &Shared) -> Vec<u8> {
    // Encoding into memory fails only on a metric the encoder refuses (none here).
    prometheus_protobuf::encode_to_vec(&registry(shared)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist(count: u64) -> Histogram {
        Histogram {
            count,
            sum_s: count as f64 * 0.005,
            buckets: vec![(0.004, 0), (0.006, count), (f64::INFINITY, 0)],
            native: Native {
                zero_threshold: 288e-9,
                zero_count: 0,
                buckets: vec![(-245, count)],
            },
        }
    }

    fn text(f: Figures) -> String {
        exposition(&Shared(Arc::new(Mutex::new(f))))
    }

    #[test]
    fn the_metric_names_and_labels_are_the_ones_dashboards_rely_on() {
        let mut f = Figures::default();
        f.hits
            .insert(("/bin/app".into(), "app".into(), "req".into()), 7);
        f.latency
            .insert(("app:req__start".into(), "/a".into()), hist(3));
        f.ring_drops = 2;
        f.keys_overflow.insert("app:req__start".into(), 4);
        f.attached_sites = 5;
        let t = text(f);
        for line in [
            r#"usdt_probe_hits_total{object="/bin/app",provider="app",probe="req"} 7"#,
            r#"usdt_latency_seconds_count{pair="app:req__start",key="/a"} 3"#,
            r#"usdt_latency_seconds_bucket{le="0.006",pair="app:req__start",key="/a"} 3"#,
            r#"usdt_latency_seconds_bucket{le="+Inf",pair="app:req__start",key="/a"} 3"#,
            "usdtop_ring_drops_total 2",
            r#"usdtop_keys_overflow_total{pair="app:req__start"} 4"#,
            "usdtop_attached_sites 5",
            &format!(
                r#"usdtop_build_info{{version="{}"}} 1"#,
                env!("CARGO_PKG_VERSION")
            ),
            "# TYPE usdt_latency_seconds histogram",
        ] {
            assert!(t.lines().any(|l| l == line), "no line {line} in\n{t}");
        }
    }

    #[test]
    fn label_values_are_escaped() {
        let mut f = Figures::default();
        f.latency
            .insert(("p:s".into(), "say \"hi\"\\\n".into()), hist(1));
        let t = text(f);
        assert!(t.contains(r#"key="say \"hi\"\\\n""#), "{t}");
    }

    #[test]
    fn histogram_buckets_are_cumulative_with_the_kernel_edges() {
        use usdtop::probes::kernel::ktoplat::{bucket_range, BUCKETS};
        // Edges rise by 1/8 of a power of two: 4.72 ms, 5.24 ms, ... around 5 ms.
        let edges: Vec<u64> = (0..BUCKETS - 1).map(|i| bucket_range(i).1).collect();
        assert!(edges.windows(2).all(|w| w[0] < w[1]));
        assert!(edges.contains(&(5 << 20)), "5/8 of 2^23 ns is an edge");
        let mut f = Figures::default();
        f.latency.insert(
            ("p:s".into(), String::new()),
            Histogram {
                count: 3,
                sum_s: 0.0,
                buckets: vec![(0.001, 1), (0.002, 2), (f64::INFINITY, 0)],
                native: Native::default(),
            },
        );
        let t = text(f);
        assert!(t.contains(r#"usdt_latency_seconds_bucket{le="0.001",pair="p:s",key=""} 1"#));
        assert!(t.contains(r#"usdt_latency_seconds_bucket{le="0.002",pair="p:s",key=""} 3"#));
    }

    #[test]
    fn only_edges_around_buckets_ever_used_are_served_and_they_stay() {
        let edge = |i: usize| i as f64;
        let mut edges = Edges::default();
        let mut a = vec![0; 8];
        a[4] = 3;
        edges.note(&a);
        assert_eq!(
            edges.served(&a, edge),
            [(3.0, 0), (4.0, 3), (f64::INFINITY, 0)]
        );
        // Later a key lands in bucket 6: edges 5 and 6 join, 3 and 4 stay.
        let mut b = vec![0; 8];
        b[6] = 2;
        b[7] = 1;
        edges.note(&b);
        assert_eq!(
            edges.served(&b, edge),
            [(3.0, 0), (4.0, 0), (5.0, 0), (6.0, 2), (f64::INFINITY, 1)]
        );
        assert_eq!(edges.served(&a, edge)[1], (4.0, 3));
    }

    #[test]
    fn max_keys_keeps_the_busiest_and_sums_the_rest_as_other_which_never_shrinks() {
        let mut bound = KeyBound::new(2);
        let first = bound.bound(vec![
            ("/a".into(), 1u64),
            ("/b".into(), 10),
            ("/c".into(), 5),
        ]);
        assert_eq!(
            first.keys().cloned().collect::<Vec<_>>(),
            ["/b", "/c", OTHER]
        );
        assert_eq!(first[OTHER], 1);
        // /a becomes the busiest, but /b and /c keep their series; other still grows.
        let later = bound.bound(vec![
            ("/a".into(), 100u64),
            ("/b".into(), 11),
            ("/c".into(), 5),
            ("/d".into(), 2),
        ]);
        assert_eq!(later[OTHER], 102);
        assert_eq!(later["/b"], 11);
    }

    #[test]
    fn folding_sums_keys_of_one_shape_as_top_fold_does() {
        let keys = vec![
            ("/users/42".to_string(), 2u64),
            ("/users/7".to_string(), 3),
            ("/about".to_string(), 1),
        ];
        assert_eq!(
            by_label(keys.clone(), true),
            [("/about".to_string(), 1), ("/users/N".to_string(), 5)]
        );
        assert_eq!(by_label(keys.clone(), false), keys);
    }

    #[test]
    fn the_protobuf_exposition_carries_classic_and_native_buckets_and_the_same_names() {
        let mut f = Figures::default();
        f.hits
            .insert(("/bin/app".into(), "app".into(), "req".into()), 7);
        f.latency
            .insert(("app:req__start".into(), "/a".into()), hist(3));
        let shared = Shared(Arc::new(Mutex::new(f)));
        // The messages as the encoder builds them, before the delimited framing.
        let fams = prometheus_protobuf::encode(&registry(&shared)).unwrap();
        let names: Vec<&str> = fams.iter().map(|f| f.name.as_str()).collect();
        assert!(names.contains(&"usdt_probe_hits_total"), "{names:?}");
        let lat = fams
            .iter()
            .find(|f| f.name == "usdt_latency_seconds")
            .unwrap();
        let h = lat.metric[0].histogram.as_ref().unwrap();
        assert_eq!(h.sample_count, 3);
        assert_eq!(h.schema, SCHEMA);
        assert_eq!(h.zero_threshold, 288e-9);
        assert_eq!(h.positive_delta, [3]);
        assert_eq!(h.positive_span[0].offset, -245);
        assert_eq!(h.bucket.len(), 3, "classic buckets too");
        assert!(!exposition_protobuf(&shared).is_empty());
    }
}
