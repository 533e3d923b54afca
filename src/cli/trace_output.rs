//! How `usdtop trace` prints events: one text line or one JSON object per event. Text lines are
//! assembled by hand into a reused buffer: at a million events a second, `format!` and a
//! catalog lookup per argument were most of the cost.

use serde::ser::SerializeMap;
use serde::Serialize;
use std::collections::HashMap;
use std::io::{self, Write};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use usdtop::probes::discovery::catalog::Catalog;
use usdtop::probes::tracing::clock::monotonic_ns;
use usdtop::probes::tracing::event::{escape_terminal_into, TRUNCATED_MARK, UNREADABLE_STRING};
use usdtop::probes::{ArgValue, Event, ProbeKey};

/// Formats events as text lines or JSON objects.
pub struct Printer<'a> {
    catalog: &'a Catalog,
    json: bool,
    /// Wall-clock ns minus monotonic ns, to print bpf_ktime_get_ns as a time of day.
    offset_ns: i128,
    /// Per probe (by its shared key): `provider:name` and the argument names.
    names: HashMap<*const ProbeKey, (Arc<ProbeKey>, String, Vec<String>)>,
    line: Vec<u8>,
    /// Reused buffer for escaping one string.
    scratch: String,
}

impl<'a> Printer<'a> {
    pub fn new(catalog: &'a Catalog, json: bool) -> Self {
        let mono = monotonic_ns() as i128;
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128);
        Printer {
            catalog,
            json,
            offset_ns: wall - mono,
            names: HashMap::new(),
            line: Vec::with_capacity(512),
            scratch: String::new(),
        }
    }

    /// `provider:name` and argument names of the event's probe (`argN` where unknown).
    fn names(&mut self, e: &Event) -> (&str, &[String]) {
        let catalog = self.catalog;
        let (_, full, args) = self.names.entry(Arc::as_ptr(&e.probe)).or_insert_with(|| {
            let full = e.probe.full_name();
            let known = catalog.args(&full).unwrap_or_default();
            let args = (0..e.args.len().max(known.len()))
                .map(|i| {
                    known
                        .get(i)
                        .map_or_else(|| format!("arg{i}"), |a| a.name.clone())
                })
                .collect();
            // The Arc is kept so the pointer key cannot be reused by another probe.
            (e.probe.clone(), full, args)
        });
        (full, args)
    }

    pub fn write(&mut self, out: &mut impl Write, e: &Event) -> io::Result<()> {
        if self.json {
            return self.write_json(out, e);
        }
        let wall = (e.ts_ns as i128 + self.offset_ns).max(0) as u64;
        let secs_of_day = (wall / 1_000_000_000) % 86_400;
        let mut line = std::mem::take(&mut self.line);
        line.clear();
        let mut scratch = std::mem::take(&mut self.scratch);
        zero_padded(&mut line, secs_of_day / 3600, 2);
        line.push(b':');
        zero_padded(&mut line, secs_of_day / 60 % 60, 2);
        line.push(b':');
        zero_padded(&mut line, secs_of_day % 60, 2);
        line.push(b'.');
        zero_padded(&mut line, wall % 1_000_000_000 / 1000, 6);
        line.push(b' ');
        right_aligned(&mut line, e.pid as u64, 7);
        line.push(b' ');
        right_aligned(&mut line, e.tid as u64, 7);
        line.push(b' ');
        line.extend_from_slice(e.comm.as_bytes());
        let width = e.comm.chars().count();
        line.extend(std::iter::repeat_n(b' ', 15usize.saturating_sub(width)));
        line.push(b' ');
        let (full, names) = self.names(e);
        line.extend_from_slice(full.as_bytes());
        for (a, name) in e.args.iter().zip(names) {
            line.push(b' ');
            line.extend_from_slice(name.as_bytes());
            line.push(b'=');
            match a {
                ArgValue::Int(v) => {
                    if v.is_negative() {
                        line.push(b'-');
                    }
                    decimal(&mut line, v.magnitude());
                }
                // Made terminal-safe here, at the output edge; quotes and backslashes inside
                // are escaped too so the value's end is unambiguous. A cut string is marked
                // after its closing quote.
                ArgValue::Str(s) => {
                    line.push(b'"');
                    scratch.clear();
                    escape_terminal_into(&mut scratch, &s.bytes, b"\"\\");
                    line.extend_from_slice(scratch.as_bytes());
                    line.push(b'"');
                    if s.truncated {
                        line.extend_from_slice(TRUNCATED_MARK.as_bytes());
                    }
                }
                ArgValue::Null => line.extend_from_slice(b"<NULL>"),
                ArgValue::Unreadable => {
                    line.extend_from_slice(b"<unsupported: ");
                    line.extend_from_slice(UNREADABLE_STRING.as_bytes());
                    line.push(b'>');
                }
                ArgValue::Unsupported(why) => {
                    line.extend_from_slice(b"<unsupported: ");
                    // The spec text comes from the traced binary's notes.
                    scratch.clear();
                    escape_terminal_into(&mut scratch, why.as_bytes(), &[]);
                    line.extend_from_slice(scratch.as_bytes());
                    line.push(b'>');
                }
            }
        }
        line.push(b'\n');
        let result = out.write_all(&line);
        self.line = line;
        self.scratch = scratch;
        result
    }

    fn write_json(&mut self, out: &mut impl Write, e: &Event) -> io::Result<()> {
        let (_, names) = self.names(e);
        // Values as ArgValue serializes them: exact numbers and strings (README, `trace`).
        let line = JsonEvent {
            ts_ns: e.ts_ns,
            pid: e.pid,
            tid: e.tid,
            comm: &e.comm,
            provider: &e.probe.provider,
            name: &e.probe.name,
            path: &e.probe.path,
            args: JsonArgs {
                names,
                values: &e.args,
            },
        };
        serde_json::to_writer(&mut *out, &line)?;
        writeln!(out)
    }
}

#[derive(Serialize)]
struct JsonEvent<'a> {
    ts_ns: u64,
    pid: u32,
    tid: u32,
    comm: &'a str,
    provider: &'a str,
    name: &'a str,
    path: &'a str,
    args: JsonArgs<'a>,
}

/// The arguments as one object, by name, in argument order.
struct JsonArgs<'a> {
    names: &'a [String],
    values: &'a [ArgValue],
}

impl Serialize for JsonArgs<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.values.len()))?;
        for (name, v) in self.names.iter().zip(self.values) {
            m.serialize_entry(name, v)?;
        }
        m.end()
    }
}

fn decimal(line: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    line.extend_from_slice(&digits[i..]);
}

fn zero_padded(line: &mut Vec<u8>, n: u64, width: usize) {
    let start = line.len();
    decimal(line, n);
    let len = line.len() - start;
    if len < width {
        line.splice(start..start, std::iter::repeat_n(b'0', width - len));
    }
}

fn right_aligned(line: &mut Vec<u8>, n: u64, width: usize) {
    let start = line.len();
    decimal(line, n);
    let len = line.len() - start;
    if len < width {
        line.splice(start..start, std::iter::repeat_n(b' ', width - len));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use usdtop::probes::tracing::event::StrValue;

    fn event(args: Vec<ArgValue>) -> Event {
        Event {
            ts_ns: 0,
            pid: 42,
            tid: 4243,
            comm: "postgres".into(),
            probe: Arc::new(ProbeKey {
                path: "/usr/lib/postgresql/15/bin/postgres".into(),
                provider: "postgresql".into(),
                name: "query__start".into(),
            }),
            args,
        }
    }

    #[test]
    fn a_text_line_names_arguments_from_the_catalog_and_quotes_strings() {
        let catalog = Catalog::builtin();
        let mut p = Printer::new(&catalog, false);
        let mut out = Vec::new();
        let e = event(vec![
            ArgValue::Str("select \"x\"".into()),
            ArgValue::signed(-12),
        ]);
        p.write(&mut out, &e).unwrap();
        let text = String::from_utf8(out).unwrap();
        let (time, rest) = text.split_at(15);
        assert_eq!(time.as_bytes()[2], b':');
        assert_eq!(time.as_bytes()[8], b'.');
        assert_eq!(
            rest,
            "      42    4243 postgres        postgresql:query__start query=\"select \\\"x\\\"\" arg1=-12\n"
        );
    }

    #[test]
    fn a_text_line_escapes_strings_marks_cut_ones_and_prints_unsigned_values() {
        let catalog = Catalog::builtin();
        let mut p = Printer::new(&catalog, false);
        let mut out = Vec::new();
        let e = event(vec![
            ArgValue::Str(StrValue::new(b"a\\b\x1b\xff\xe2\x80\xae".to_vec(), true)),
            ArgValue::unsigned(u64::MAX),
            ArgValue::signed(-1),
            ArgValue::Unsupported("8@%xmm0\x1b".into()),
        ]);
        p.write(&mut out, &e).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.ends_with(
                "query=\"a\\\\b\\x1b\\xff\\u{202e}\"… arg1=18446744073709551615 arg2=-1 \
                 arg3=<unsupported: 8@%xmm0\\x1b>\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_text_line_tells_a_null_string_from_an_unreadable_one() {
        let catalog = Catalog::builtin();
        let mut p = Printer::new(&catalog, false);
        let mut out = Vec::new();
        p.write(&mut out, &event(vec![ArgValue::Null, ArgValue::Unreadable]))
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.ends_with(
                "query=<NULL> arg1=<unsupported: string not readable (unmapped pointer)>\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn json_names_arguments_and_null_strings_are_null() {
        let catalog = Catalog::builtin();
        let mut p = Printer::new(&catalog, true);
        let mut out = Vec::new();
        p.write(&mut out, &event(vec![ArgValue::Null])).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["args"]["query"], serde_json::Value::Null);
        assert_eq!(
            (v["pid"].as_u64(), v["tid"].as_u64()),
            (Some(42), Some(4243))
        );
    }
}
