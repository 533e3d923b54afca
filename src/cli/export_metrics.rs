//! What `usdtop export` serves: the figures of the last read of the kernel's maps, kept with a
//! bounded set of keys, and their Prometheus exposition (written by `prometheus-client`, which
//! also escapes label values).

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, Mutex};

/// The key label of the keys beyond `--max-keys`.
pub const OTHER: &str = "other";

/// One latency histogram: cumulative counts per bucket with the bucket's upper edge in
/// seconds (the last edge is +Inf).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    pub count: u64,
    pub sum_s: f64,
    /// (upper edge in seconds, hits in this bucket only), edges rising.
    pub buckets: Vec<(f64, u64)>,
}

impl Histogram {
    fn add(&mut self, other: &Histogram) {
        self.count += other.count;
        self.sum_s += other.sum_s;
        if self.buckets.is_empty() {
            self.buckets = other.buckets.clone();
            return;
        }
        for (mine, theirs) in self.buckets.iter_mut().zip(&other.buckets) {
            mine.1 += theirs.1;
        }
    }
}

/// The figures at the last read, cumulative since the attach.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    /// (object, provider, probe) → hits.
    pub hits: BTreeMap<(String, String, String), u64>,
    /// (pair, key) → latency histogram, keys already bounded.
    pub latency: BTreeMap<(String, String), Histogram>,
    pub ring_drops: u64,
    /// pair → requests or hits of keys the kernel had no room for.
    pub keys_overflow: BTreeMap<String, u64>,
    pub attached_sites: u64,
}

/// Keeps at most `max` keys of a pair as their own series, the rest summed as `other`. A key
/// once shown stays shown, so every series, `other` included, only grows (a counter that went
/// down would read as a restart); new keys are admitted busiest first while there is room.
#[derive(Debug)]
pub struct KeyBound {
    max: usize,
    shown: HashSet<String>,
}

impl KeyBound {
    pub fn new(max: usize) -> KeyBound {
        KeyBound {
            max,
            shown: HashSet::new(),
        }
    }

    /// The histograms of `keys` under their label: their own key, or `other`.
    pub fn bound(&mut self, keys: Vec<(String, Histogram)>) -> BTreeMap<String, Histogram> {
        let mut fresh: Vec<&(String, Histogram)> = keys
            .iter()
            .filter(|(k, _)| !self.shown.contains(k))
            .collect();
        fresh.sort_by(|a, b| b.1.count.cmp(&a.1.count).then_with(|| a.0.cmp(&b.0)));
        for (k, _) in fresh {
            if self.shown.len() >= self.max {
                break;
            }
            self.shown.insert(k.clone());
        }
        let mut out: BTreeMap<String, Histogram> = BTreeMap::new();
        for (k, h) in keys {
            let label = if self.shown.contains(&k) {
                k
            } else {
                OTHER.to_string()
            };
            out.entry(label).or_default().add(&h);
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

impl Collector for Shared {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let f = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
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
            family
                .encode_family(&labels)?
                .encode_counter::<prometheus_client::encoding::NoLabelSet, _, u64>(n, None)?;
        }
        let mut family = encoder.encode_descriptor(
            "usdt_latency_seconds",
            "Latency from a start probe to its done probe, by the --by key, in the kernel's \
             buckets (1/8 of a power of two wide).",
            None,
            MetricType::Histogram,
        )?;
        for ((pair, key), h) in &f.latency {
            let labels = [("pair", pair.as_str()), ("key", key.as_str())];
            family
                .encode_family(&labels)?
                .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                    h.sum_s, h.count, &h.buckets, None,
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
            family
                .encode_family(&[("pair", pair.as_str())])?
                .encode_counter::<prometheus_client::encoding::NoLabelSet, _, u64>(n, None)?;
        }
        let mut family = encoder.encode_descriptor(
            "usdtop_attached_sites",
            "Probe sites attached now.",
            None,
            MetricType::Gauge,
        )?;
        family.encode_gauge(&(f.attached_sites as i64))?;
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
    family.encode_counter::<prometheus_client::encoding::NoLabelSet, _, u64>(&n, None)
}

/// The OpenMetrics text of the figures.
pub fn exposition(shared: &Shared) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(shared.clone()));
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist(count: u64) -> Histogram {
        Histogram {
            count,
            sum_s: count as f64 * 0.005,
            buckets: vec![(0.004, 0), (0.006, count), (f64::INFINITY, 0)],
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
            ("/a".into(), hist(1)),
            ("/b".into(), hist(10)),
            ("/c".into(), hist(5)),
        ]);
        assert_eq!(
            first.keys().cloned().collect::<Vec<_>>(),
            ["/b", "/c", OTHER]
        );
        assert_eq!(first[OTHER].count, 1);
        // /a becomes the busiest, but /b and /c keep their series; other still grows.
        let later = bound.bound(vec![
            ("/a".into(), hist(100)),
            ("/b".into(), hist(11)),
            ("/c".into(), hist(5)),
            ("/d".into(), hist(2)),
        ]);
        assert_eq!(later[OTHER].count, 102);
        assert_eq!(later["/b"].count, 11);
    }
}
