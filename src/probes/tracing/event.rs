//! Decoded events: what a probe hit looks like once it has left the kernel.
//!
//! Values are kept exact: integers with the signedness their SDT spec gives them, strings as the
//! bytes the program passed. Making them safe for a terminal happens at the output edge
//! ([`terminal_safe`], [`StrValue::terminal_safe`]); JSON gets the exact value (see the
//! `Serialize` impl of [`ArgValue`]).

use serde::ser::{Serialize, SerializeMap, Serializer};
use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

/// Identity of an attached probe, shared by all its events.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, serde::Serialize)]
pub struct ProbeKey {
    /// The object the probe lives in (as opened, e.g. `/usr/bin/python3.11`).
    pub path: String,
    pub provider: String,
    pub name: String,
}

impl ProbeKey {
    pub fn full_name(&self) -> String {
        format!("{}:{}", self.provider, self.name)
    }
}

/// An integer argument, signed or unsigned as its spec says (`-4@` signed, `4@` unsigned).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Integer {
    Signed(i64),
    Unsigned(u64),
}

impl Integer {
    /// The SDT rule for every argument form, constants included: keep the low `size` bytes of
    /// `raw`, then sign-extend when `signed` (`-N@`), zero-extend otherwise (`N@`). gcc writes
    /// immediates signed (`1@$-16` for an `unsigned char` 240), so this is what makes them right.
    /// Sizes other than 1, 2 and 4 are taken as 8.
    pub fn from_raw(raw: u64, size: u8, signed: bool) -> Integer {
        let unused = match size {
            1 => 56,
            2 => 48,
            4 => 32,
            _ => 0,
        };
        if signed {
            Integer::Signed(((raw << unused) as i64) >> unused)
        } else {
            Integer::Unsigned((raw << unused) >> unused)
        }
    }

    /// The 64-bit two's-complement pattern (for hex display and in-kernel comparisons).
    pub fn bits(self) -> u64 {
        match self {
            Integer::Signed(v) => v as u64,
            Integer::Unsigned(v) => v,
        }
    }

    /// The value as a number, so that `Signed(5)` and `Unsigned(5)` compare equal.
    pub fn value(self) -> i128 {
        match self {
            Integer::Signed(v) => v as i128,
            Integer::Unsigned(v) => v as i128,
        }
    }

    /// Distance from zero.
    pub fn magnitude(self) -> u64 {
        match self {
            Integer::Signed(v) => v.unsigned_abs(),
            Integer::Unsigned(v) => v,
        }
    }

    pub fn is_negative(self) -> bool {
        matches!(self, Integer::Signed(v) if v < 0)
    }
}

impl fmt::Display for Integer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Integer::Signed(v) => v.fmt(f),
            Integer::Unsigned(v) => v.fmt(f),
        }
    }
}

/// JSON numbers are exact: unsigned values above 2^63 are written from the `u64`.
impl Serialize for Integer {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match *self {
            Integer::Signed(v) => s.serialize_i64(v),
            Integer::Unsigned(v) => s.serialize_u64(v),
        }
    }
}

/// A string argument as read: its bytes (not necessarily UTF-8, never escaped) and whether the
/// kernel cut it (longer than the per-argument limit).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct StrValue {
    pub bytes: Vec<u8>,
    pub truncated: bool,
}

impl StrValue {
    pub fn new(bytes: Vec<u8>, truncated: bool) -> StrValue {
        StrValue { bytes, truncated }
    }

    /// The exact text, if the bytes are UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.bytes).ok()
    }

    /// The text with U+FFFD for bytes that are not UTF-8 (for matching and folding).
    pub fn lossy(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.bytes)
    }

    /// What a terminal may show: [`terminal_safe`] bytes, then `…` when the string was cut.
    pub fn terminal_safe(&self) -> String {
        let mut s = terminal_safe(&self.bytes);
        if self.truncated {
            s.push_str(TRUNCATED_MARK);
        }
        s
    }
}

impl From<&str> for StrValue {
    fn from(s: &str) -> StrValue {
        StrValue::new(s.as_bytes().to_vec(), false)
    }
}

impl From<String> for StrValue {
    fn from(s: String) -> StrValue {
        StrValue::new(s.into_bytes(), false)
    }
}

/// A whole UTF-8 string is a JSON string; a cut or non-UTF-8 one is
/// `{"text": "…", "truncated": bool}` plus `"hex"` (the exact bytes) when not UTF-8, `text`
/// then having U+FFFD in place of the bad bytes.
impl Serialize for StrValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let text = self.as_str();
        if let (Some(text), false) = (text, self.truncated) {
            return s.serialize_str(text);
        }
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("text", &self.lossy())?;
        m.serialize_entry("truncated", &self.truncated)?;
        if text.is_none() {
            m.serialize_entry("hex", &hex(&self.bytes))?;
        }
        m.end()
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
    out
}

/// Why an [`ArgValue::Unreadable`] string has no text (README quotes it).
pub const UNREADABLE_STRING: &str = "string not readable (unmapped pointer)";

/// Marker appended on a terminal to a string that was longer than the kernel read.
pub const TRUNCATED_MARK: &str = "…";

/// One decoded argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgValue {
    /// An integer, truncated to its spec's size and sign- or zero-extended.
    Int(Integer),
    /// A string argument, exactly as read (escape at the output edge).
    Str(StrValue),
    /// A string argument whose pointer was NULL.
    Null,
    /// A string argument whose pointer could not be read, even by faulting its page in
    /// ([`UNREADABLE_STRING`]; counted in `Stats::unreadable`).
    Unreadable,
    /// The argument form cannot be read in BPF (e.g. `8@%xmm0`); the text says why.
    Unsupported(String),
}

impl ArgValue {
    pub fn signed(v: i64) -> ArgValue {
        ArgValue::Int(Integer::Signed(v))
    }

    pub fn unsigned(v: u64) -> ArgValue {
        ArgValue::Int(Integer::Unsigned(v))
    }

    /// Terminal-safe text of the value as a label or grouping key (strings escaped and marked
    /// `…` when cut, as kernel-side top keys are); `None` when there is no value.
    pub fn key_text(&self) -> Option<String> {
        match self {
            ArgValue::Int(v) => Some(v.to_string()),
            ArgValue::Str(s) => Some(s.terminal_safe()),
            ArgValue::Null | ArgValue::Unreadable | ArgValue::Unsupported(_) => None,
        }
    }
}

/// The `--json` form: integers are numbers, strings as [`StrValue`] says, a NULL string is
/// `null`, anything that cannot be read `{"unsupported": "why"}` (README, `trace`).
impl Serialize for ArgValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let why = match self {
            ArgValue::Int(v) => return v.serialize(s),
            ArgValue::Str(v) => return v.serialize(s),
            ArgValue::Null => return s.serialize_none(),
            ArgValue::Unreadable => UNREADABLE_STRING,
            ArgValue::Unsupported(why) => why,
        };
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry("unsupported", why)?;
        m.end()
    }
}

/// One probe hit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// CLOCK_MONOTONIC nanoseconds (bpf_ktime_get_ns).
    pub ts_ns: u64,
    pub pid: u32,
    pub tid: u32,
    /// The thread's name, already made terminal-safe (it is not an argument).
    pub comm: String,
    pub probe: Arc<ProbeKey>,
    pub args: Vec<ArgValue>,
}

impl Event {
    /// Heap and inline bytes this event holds, roughly: what bounds the event queue.
    pub fn approx_bytes(&self) -> usize {
        let strings: usize = self
            .args
            .iter()
            .map(|a| match a {
                ArgValue::Int(_) | ArgValue::Null | ArgValue::Unreadable => 0,
                ArgValue::Str(s) => s.bytes.capacity(),
                ArgValue::Unsupported(s) => s.capacity(),
            })
            .sum();
        std::mem::size_of::<Event>()
            + self.comm.capacity()
            + self.args.capacity() * std::mem::size_of::<ArgValue>()
            + strings
    }
}

/// `bytes` as text a terminal shows literally: see [`escape_terminal_into`].
pub fn terminal_safe(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    escape_terminal_into(&mut out, bytes, &[]);
    out
}

/// Appends `bytes` to `out` so that a terminal shows them and is not driven by them: `\n`,
/// `\t`, `\r`; other ASCII controls and DEL as `\xNN`; C1 controls, the line and paragraph
/// separators and invisible format characters (Unicode category Cf: bidi overrides and
/// isolates such as U+202E, zero-width spaces and joiners, U+FEFF...) as `\u{NNNN}`; bytes that
/// are not UTF-8 as `\xNN`. Printable text, backslashes included, passes unchanged, so the
/// result is itself unchanged by a second pass. ASCII bytes in `also` get a backslash before
/// them (a quoted output escapes `"` and `\`).
pub fn escape_terminal_into(out: &mut String, bytes: &[u8], also: &[u8]) {
    use std::fmt::Write;
    for chunk in bytes.utf8_chunks() {
        let valid = chunk.valid();
        let mut clean = 0;
        for (i, c) in valid.char_indices() {
            let quoted = c.is_ascii() && also.contains(&(c as u8));
            if !quoted && !needs_escape(c) {
                continue;
            }
            out.push_str(&valid[clean..i]);
            clean = i + c.len_utf8();
            match c {
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                c if quoted => {
                    out.push('\\');
                    out.push(c);
                }
                c if (c as u32) < 0x80 => {
                    let _ = write!(out, "\\x{:02x}", c as u32);
                }
                c => {
                    let _ = write!(out, "\\u{{{:x}}}", c as u32);
                }
            }
        }
        out.push_str(&valid[clean..]);
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
}

/// Control characters (C0, DEL, C1), line/paragraph separators and format characters (Cf).
fn needs_escape(c: char) -> bool {
    c.is_control() || c == '\u{2028}' || c == '\u{2029}' || is_format_char(c)
}

/// Unicode general category Cf (format characters, Unicode 15.1): invisible, and some (the
/// bidi controls) reorder what surrounds them on screen.
fn is_format_char(c: char) -> bool {
    const CF: &[(u32, u32)] = &[
        (0x00ad, 0x00ad),
        (0x0600, 0x0605),
        (0x061c, 0x061c),
        (0x06dd, 0x06dd),
        (0x070f, 0x070f),
        (0x0890, 0x0891),
        (0x08e2, 0x08e2),
        (0x180e, 0x180e),
        (0x200b, 0x200f),
        (0x202a, 0x202e),
        (0x2060, 0x2064),
        (0x2066, 0x206f),
        (0xfeff, 0xfeff),
        (0xfff9, 0xfffb),
        (0x110bd, 0x110bd),
        (0x110cd, 0x110cd),
        (0x13430, 0x1343f),
        (0x1bca0, 0x1bca3),
        (0x1d173, 0x1d17a),
        (0xe0001, 0xe0001),
        (0xe0020, 0xe007f),
    ];
    let c = c as u32;
    c >= 0xad && CF.iter().any(|&(lo, hi)| (lo..=hi).contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_cut_to_their_size_then_extended_by_their_sign() {
        // The immediates gcc writes for unsigned constants (`1@$-16` is 240). The last is
        // 17867739004052632048, not the 17867738004053532144 issue 14 says.
        assert_eq!(
            Integer::from_raw(-16i64 as u64, 1, false),
            Integer::Unsigned(240)
        );
        assert_eq!(
            Integer::from_raw(-3600i64 as u64, 2, false),
            Integer::Unsigned(61936)
        );
        assert_eq!(
            Integer::from_raw(-202182160i64 as u64, 4, false),
            Integer::Unsigned(4092785136)
        );
        assert_eq!(
            Integer::from_raw(-579005069656919568i64 as u64, 8, false),
            Integer::Unsigned(0xf7f6_f5f4_f3f2_f1f0)
        );
        assert_eq!(Integer::from_raw(0xf0, 1, true), Integer::Signed(-16));
        assert_eq!(Integer::from_raw(u64::MAX, 8, true), Integer::Signed(-1));
        assert_eq!(
            Integer::from_raw(u64::MAX, 8, false),
            Integer::Unsigned(u64::MAX)
        );
        assert_eq!(
            Integer::from_raw(0xffff_ffff_0000_0005, 4, false),
            Integer::Unsigned(5)
        );
    }

    #[test]
    fn integers_print_and_serialize_with_their_sign() {
        assert_eq!(
            Integer::Unsigned(u64::MAX).to_string(),
            "18446744073709551615"
        );
        assert_eq!(Integer::Signed(-1).to_string(), "-1");
        assert_eq!(
            serde_json::to_string(&ArgValue::unsigned(u64::MAX)).unwrap(),
            "18446744073709551615"
        );
        assert_eq!(serde_json::to_string(&ArgValue::signed(-1)).unwrap(), "-1");
        assert_eq!(Integer::Signed(5).value(), Integer::Unsigned(5).value());
    }

    #[test]
    fn control_bidi_and_format_characters_are_escaped_for_a_terminal() {
        assert_eq!(terminal_safe(b"a\x1b[31mb\n\x7f"), "a\\x1b[31mb\\n\\x7f");
        assert_eq!(terminal_safe("é\u{9b}".as_bytes()), "é\\u{9b}");
        assert_eq!(terminal_safe(b"plain /x?y=1 \\x1b"), "plain /x?y=1 \\x1b");
        for c in [
            '\u{202a}',
            '\u{202b}',
            '\u{202c}',
            '\u{202d}',
            '\u{202e}',
            '\u{2066}',
            '\u{2067}',
            '\u{2068}',
            '\u{2069}',
            '\u{200e}',
            '\u{200f}',
            '\u{061c}',
            '\u{200b}',
            '\u{200c}',
            '\u{200d}',
            '\u{feff}',
            '\u{2028}',
            '\u{2029}',
            '\u{e0041}',
        ] {
            let s = format!("a{c}b");
            assert_eq!(
                terminal_safe(s.as_bytes()),
                format!("a\\u{{{:x}}}b", c as u32)
            );
        }
        // Visible non-ASCII text is left alone.
        assert_eq!(
            terminal_safe("/plain/ünïcode/日本".as_bytes()),
            "/plain/ünïcode/日本"
        );
    }

    #[test]
    fn bytes_that_are_not_utf8_are_shown_as_hex_escapes() {
        assert_eq!(terminal_safe(b"a\xffb\xe2\x80"), "a\\xffb\\xe2\\x80");
    }

    #[test]
    fn escaping_twice_changes_nothing_more() {
        let once = terminal_safe(b"x\x1b\xe2\x80\xae\n\xc2\x9b\xff");
        assert_eq!(terminal_safe(once.as_bytes()), once);
    }

    #[test]
    fn quoting_escapes_the_requested_ascii_bytes() {
        let mut out = String::new();
        escape_terminal_into(&mut out, b"say \"hi\\\"\n", b"\"\\");
        assert_eq!(out, "say \\\"hi\\\\\\\"\\n");
    }

    #[test]
    fn json_carries_the_exact_string_and_a_lossless_form_for_other_bytes() {
        let exact = ArgValue::Str("a\x1b[2J\n\u{202e}".into());
        assert_eq!(
            serde_json::to_string(&exact).unwrap(),
            "\"a\\u001b[2J\\n\u{202e}\""
        );
        let bad = ArgValue::Str(StrValue::new(b"a\xffb".to_vec(), false));
        assert_eq!(
            serde_json::to_value(&bad).unwrap(),
            serde_json::json!({"text": "a\u{fffd}b", "truncated": false, "hex": "61ff62"})
        );
        let cut = ArgValue::Str(StrValue::new(b"abc".to_vec(), true));
        assert_eq!(
            serde_json::to_value(&cut).unwrap(),
            serde_json::json!({"text": "abc", "truncated": true})
        );
        assert_eq!(
            serde_json::to_value(ArgValue::Null).unwrap(),
            serde_json::Value::Null
        );
        assert_eq!(
            serde_json::to_value(ArgValue::Unreadable).unwrap(),
            serde_json::json!({"unsupported": "string not readable (unmapped pointer)"})
        );
        let xmm = ArgValue::Unsupported("8@%xmm0: vector".into());
        assert_eq!(
            serde_json::to_value(&xmm).unwrap(),
            serde_json::json!({"unsupported": "8@%xmm0: vector"})
        );
    }

    proptest::proptest! {
        #[test]
        fn escaped_text_has_nothing_a_terminal_would_act_on(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
            text in "\\PC{0,16}[\u{0}-\u{9f}\u{200b}-\u{206f}\u{feff}]{0,8}",
        ) {
            for input in [bytes.as_slice(), text.as_bytes()] {
                let out = terminal_safe(input);
                proptest::prop_assert!(!out.chars().any(needs_escape), "{:?}", out);
                proptest::prop_assert_eq!(terminal_safe(out.as_bytes()), out.clone());
            }
        }

        #[test]
        fn json_strings_give_back_every_byte(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
            truncated in proptest::bool::ANY,
        ) {
            let v = StrValue::new(bytes.clone(), truncated);
            let json: serde_json::Value =
                serde_json::from_str(&serde_json::to_string(&v).unwrap()).unwrap();
            let back = match &json {
                serde_json::Value::String(s) => s.as_bytes().to_vec(),
                obj => {
                    proptest::prop_assert_eq!(&obj["truncated"], truncated);
                    match obj["hex"].as_str() {
                        Some(h) => (0..h.len())
                            .step_by(2)
                            .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
                            .collect(),
                        None => obj["text"].as_str().unwrap().as_bytes().to_vec(),
                    }
                }
            };
            proptest::prop_assert_eq!(back, bytes);
        }
    }
}
