//! Text formatting for the front-ends: human-readable durations, cutting text to a column, and
//! a log-bucket bar chart (the TUI draws its own widgets from the same buckets).

use super::histogram::Bucket;

/// `s` cut to `width` characters, with `…` when cut.
pub fn fit(s: &str, width: usize) -> String {
    let n = s.chars().count();
    if n <= width {
        return s.to_string();
    }
    if width == 0 {
        return String::new();
    }
    let mut out: String = s.chars().take(width - 1).collect();
    out.push('…');
    out
}

/// A duration with three significant digits and a unit: `812ns`, `1.23us`, `45.6ms`, `2.00s`.
pub fn format_duration_ns(ns: u64) -> String {
    if ns < 1_000 {
        return format!("{ns}ns");
    }
    let (value, unit) = if ns < 1_000_000 {
        (ns as f64 / 1e3, "us")
    } else if ns < 1_000_000_000 {
        (ns as f64 / 1e6, "ms")
    } else {
        (ns as f64 / 1e9, "s")
    };
    // Three significant digits; a value that rounds up to 1000 is shown in the next unit.
    let text = if value < 9.995 {
        format!("{value:.2}")
    } else if value < 99.95 {
        format!("{value:.1}")
    } else if value < 999.5 || unit == "s" {
        format!("{value:.0}")
    } else {
        return format_duration_ns(if unit == "us" {
            1_000_000
        } else {
            1_000_000_000
        });
    };
    format!("{text}{unit}")
}

/// A bar chart, one line per bucket: `  1.02us -> 2.05us  │      12 │█████     │`, bars scaled
/// to the largest count with eighth-block precision. Empty input → empty string.
pub fn render_bars(buckets: &[Bucket], bar_width: usize) -> String {
    let max = buckets.iter().map(|b| b.count).max().unwrap_or(0);
    let count_width = buckets
        .iter()
        .map(|b| b.count.to_string().len())
        .max()
        .unwrap_or(1)
        .max(5);
    let mut out = String::new();
    if buckets.is_empty() {
        return out;
    }
    out.push_str(&format!(
        "{:>20}  {:>count_width$}  distribution\n",
        "latency", "count"
    ));
    for b in buckets {
        let range = format!(
            "{:>8} -> {:<8}",
            format_duration_ns(b.lo_ns),
            format_duration_ns(b.hi_ns)
        );
        out.push_str(&format!(
            "{range}  {:>count_width$}  |{}|\n",
            b.count,
            bar(b.count, max, bar_width)
        ));
    }
    out
}

fn bar(count: u64, max: u64, width: usize) -> String {
    const PARTIAL: [char; 8] = [' ', '▏', '▎', '▍', '▌', '▋', '▊', '▉'];
    if max == 0 || width == 0 {
        return " ".repeat(width);
    }
    let eighths = (count as u128 * width as u128 * 8 / max as u128) as usize;
    let mut s = "█".repeat(eighths / 8);
    let mut used = eighths / 8;
    if eighths % 8 != 0 {
        s.push(PARTIAL[eighths % 8]);
        used += 1;
    } else if count > 0 && eighths == 0 {
        // A non-empty bucket is never drawn as empty.
        s.push('▏');
        used += 1;
    }
    s.push_str(&" ".repeat(width.saturating_sub(used)));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_keys_are_clipped_with_a_mark() {
        assert_eq!(fit("SELECT abc", 6), "SELEC…");
        assert_eq!(fit("short", 6), "short");
    }

    #[test]
    fn durations_keep_three_significant_digits_and_a_unit() {
        assert_eq!(format_duration_ns(0), "0ns");
        assert_eq!(format_duration_ns(999), "999ns");
        assert_eq!(format_duration_ns(1_000), "1.00us");
        assert_eq!(format_duration_ns(1_234), "1.23us");
        assert_eq!(format_duration_ns(12_345), "12.3us");
        assert_eq!(format_duration_ns(123_456), "123us");
        assert_eq!(format_duration_ns(1_230_000), "1.23ms");
        assert_eq!(format_duration_ns(5_000_000), "5.00ms");
        assert_eq!(format_duration_ns(2_000_000_000), "2.00s");
        assert_eq!(format_duration_ns(3_600_000_000_000), "3600s");
    }

    #[test]
    fn values_that_round_up_move_to_the_next_unit() {
        assert_eq!(format_duration_ns(999_999), "1.00ms");
        assert_eq!(format_duration_ns(999_999_999), "1.00s");
    }

    #[test]
    fn the_largest_bucket_fills_the_bar_and_small_ones_stay_visible() {
        let buckets = [
            Bucket {
                lo_ns: 1024,
                hi_ns: 2048,
                count: 1000,
            },
            Bucket {
                lo_ns: 2048,
                hi_ns: 4096,
                count: 1,
            },
            Bucket {
                lo_ns: 4096,
                hi_ns: 8192,
                count: 0,
            },
        ];
        let text = render_bars(&buckets, 10);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].contains("count"));
        assert!(lines[1].contains("1.02us -> 2.05us"), "{text}");
        assert!(lines[1].contains("|██████████|"), "{text}");
        assert!(lines[2].contains("|▏         |"), "{text}");
        assert!(lines[3].contains("|          |"), "{text}");
    }

    #[test]
    fn no_buckets_render_nothing() {
        assert_eq!(render_bars(&[], 40), "");
    }
}
