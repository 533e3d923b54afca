//! Text helpers for drawing: escaping untrusted strings, fitting them into columns, and
//! formatting event arguments with their catalog names.

use crate::app::LogEntry;
use crate::probes::discovery::catalog::Catalog;
use crate::probes::tracing::event::{terminal_safe, Integer, UNREADABLE_STRING};
use crate::probes::ArgValue;
use std::fmt::Write;

/// Makes a string from a traced program safe to put on the screen: control characters (ESC,
/// CR, BEL, C1 controls...), bidi overrides and other invisible format characters become
/// visible escapes ([`terminal_safe`]). Applied at draw time to everything a traced process
/// controls; events carry their strings unescaped.
pub fn sanitize(s: &str) -> String {
    terminal_safe(s.as_bytes())
}

/// The one cut-to-width of the front-ends (the headless tables use it too).
pub use crate::aggregate::fit;

/// `s` cut from the left (paths: the file name matters most).
pub fn fit_left(s: &str, width: usize) -> String {
    let n = s.chars().count();
    if n <= width {
        return s.to_string();
    }
    if width == 0 {
        return String::new();
    }
    let mut out = String::from("…");
    out.extend(s.chars().skip(n - (width - 1)));
    out
}

/// Pads or cuts to exactly `width` characters.
pub fn col(s: &str, width: usize) -> String {
    format!("{:<width$}", fit(s, width))
}

/// Right-aligned in `width` characters.
pub fn rcol(s: &str, width: usize) -> String {
    format!("{:>width$}", fit(s, width))
}

/// Arguments as `name=value`, names from the catalog (`arg0`... otherwise), leaving out `skip`
/// (the label, shown on its own). The most telling come first: strings, numbers, then pointers
/// (shown in hex), so a narrow pane still shows what the request was.
pub fn format_args(catalog: &Catalog, e: &LogEntry, skip: Option<usize>) -> String {
    let names = catalog.args(&e.probe.full_name());
    let name_of = |i: usize| {
        names
            .and_then(|n| n.get(i))
            .map(|n| n.name.clone())
            .unwrap_or_else(|| format!("arg{i}"))
    };
    // Short strings first (a method before an address, a name before a path).
    let rank = |i: usize, a: &ArgValue| -> (u8, usize) {
        match a {
            ArgValue::Str(s) => (1, s.bytes.len()),
            ArgValue::Int(v) if looks_like_pointer(&name_of(i), *v) => (3, 0),
            _ => (2, 0),
        }
    };
    let mut order: Vec<usize> = (0..e.args.len()).filter(|&i| Some(i) != skip).collect();
    order.sort_by_key(|&i| (rank(i, &e.args[i]), i));
    let mut out = String::new();
    for i in order {
        if !out.is_empty() {
            out.push(' ');
        }
        let name = name_of(i);
        let _ = write!(out, "{name}=");
        match &e.args[i] {
            ArgValue::Int(v) if looks_like_pointer(&name, *v) => {
                let _ = write!(out, "{:#x}", v.bits());
            }
            ArgValue::Int(v) => {
                let _ = write!(out, "{v}");
            }
            ArgValue::Str(s) => out.push_str(&s.terminal_safe()),
            ArgValue::Null => out.push_str("<NULL>"),
            ArgValue::Unreadable => {
                let _ = write!(out, "<{UNREADABLE_STRING}>");
            }
            ArgValue::Unsupported(why) => {
                let _ = write!(out, "<{}>", sanitize(why));
            }
        }
    }
    out
}

fn looks_like_pointer(name: &str, v: Integer) -> bool {
    matches!(name, "req" | "conn" | "object" | "typeinfo") && v.magnitude() > 0xffff
}

/// Time of day (UTC) of a monotonic timestamp, given the realtime−monotonic offset.
pub fn time_of_day(ts_ns: u64, wall_offset_ns: i64) -> String {
    let wall = (ts_ns as i64).saturating_add(wall_offset_ns).max(0) as u64;
    let ms = (wall / 1_000_000) % 1000;
    let secs = wall / 1_000_000_000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        (secs / 3600) % 24,
        (secs / 60) % 60,
        secs % 60,
        ms
    )
}

/// A rate: `0`, `3.5`, `120`, `12.3k`.
pub fn rate(per_s: f64) -> String {
    if per_s <= 0.0 {
        "0".into()
    } else if per_s < 10.0 {
        format!("{per_s:.1}")
    } else if per_s < 10_000.0 {
        format!("{per_s:.0}")
    } else {
        format!("{:.1}k", per_s / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_from_a_traced_program_are_made_visible_not_executed() {
        assert_eq!(sanitize("/a\x1b[2J/b"), "/a\\x1b[2J/b");
        assert_eq!(sanitize("bell\x07 cr\r"), "bell\\x07 cr\\r");
        assert_eq!(sanitize("c1\u{9b}31m"), "c1\\u{9b}31m");
        assert_eq!(
            sanitize("rtl\u{202e}txt\u{200b}"),
            "rtl\\u{202e}txt\\u{200b}"
        );
        assert_eq!(sanitize("/plain/ünïcode"), "/plain/ünïcode");
    }

    #[test]
    fn fitting_cuts_with_an_ellipsis() {
        assert_eq!(fit("abcdef", 4), "abc…");
        assert_eq!(fit_left("/usr/lib/libfoo.so", 10), "…libfoo.so");
        assert_eq!(col("ab", 4), "ab  ");
        assert_eq!(rcol("ab", 4), "  ab");
    }
}
