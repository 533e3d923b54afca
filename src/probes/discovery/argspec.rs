//! Parser for x86-64 SDT argument specs (`-4@%esi`, `8@-144(%rbp)`, `-4@40+Sym(%rip)`, ...).
//!
//! The text in `.note.stapsdt` is `SIZE@OPERAND` separated by spaces, where SIZE is the byte
//! width (negative when signed) and OPERAND is a GNU-as AT&T operand. Parsing never panics:
//! malformed text is an [`ArgSpecError`], a well-formed operand we cannot read in BPF (a vector
//! register, say) is [`ArgLoc::Unsupported`] so the probe is still listed.

mod x86_64;

use std::fmt;
use thiserror::Error;
pub use x86_64::Reg;
use x86_64::{is_other_register, lookup_reg};

/// A register operand: which register, and which part of it (`%ah` is bits 8..16 of rax).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RegRef {
    pub reg: Reg,
    /// Width of the named register in bytes (8 for `%rax`, 4 for `%eax`, 1 for `%al`).
    pub width: u8,
    /// Right shift in bits before masking (8 for `%ah`..`%dh`, otherwise 0).
    pub shift: u8,
}

/// Where an argument's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgLoc {
    /// `$42`: an immediate.
    Const(i64),
    /// `%esi`: the value of a register.
    Reg(RegRef),
    /// `-144(%rbp)`: memory at register + offset.
    Mem { base: Reg, offset: i64 },
    /// `40+CheckpointStats(%rip)`: memory at a symbol's address + offset. `addr` is the
    /// symbol's link-time vaddr, filled in from the object's symbol table by `elf` (`None`
    /// until resolved, or when the object has no such symbol).
    RipSym {
        symbol: String,
        offset: i64,
        addr: Option<u64>,
    },
    /// `8(%rcx,%rdx,8)`: memory at base + index·scale + offset (base may be absent).
    Indexed {
        base: Option<Reg>,
        index: Reg,
        scale: u8,
        offset: i64,
    },
    /// A well-formed operand that we cannot read (e.g. `%xmm0`); the reason says why.
    Unsupported(String),
}

/// One argument of one probe site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgSpec {
    /// Size in bytes: 1, 2, 4 or 8.
    pub size: u8,
    pub signed: bool,
    pub loc: ArgLoc,
    /// The original text, e.g. `-4@%esi`, as readelf prints it.
    pub text: String,
}

impl fmt::Display for ArgSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ArgSpecError {
    #[error("argument `{0}` has no `SIZE@` prefix")]
    MissingSize(String),
    #[error("argument `{0}` has an invalid size (want ±1, ±2, ±4 or ±8)")]
    BadSize(String),
    #[error("argument `{0}` has an operand that is not valid AT&T syntax")]
    BadOperand(String),
}

/// Parse a whole `Arguments:` string (space separated) into one spec per argument.
pub fn parse_args(text: &str) -> Result<Vec<ArgSpec>, ArgSpecError> {
    split_args(text).map(parse_arg).collect()
}

/// Split an argument string on whitespace, except inside parentheses (`8@(%rcx, %rdx,8)`
/// is written without spaces by gas, but be lenient).
fn split_args(text: &str) -> impl Iterator<Item = &str> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut start: Option<usize> = None;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            _ => {}
        }
        if c.is_whitespace() && depth <= 0 {
            if let Some(s) = start.take() {
                parts.push(&text[s..i]);
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(s) = start {
        parts.push(&text[s..]);
    }
    parts.into_iter()
}

/// Parse one `SIZE@OPERAND` argument.
fn parse_arg(text: &str) -> Result<ArgSpec, ArgSpecError> {
    let (size_text, operand) = text
        .split_once('@')
        .ok_or_else(|| ArgSpecError::MissingSize(text.to_string()))?;
    let size: i64 = size_text
        .parse()
        .map_err(|_| ArgSpecError::BadSize(text.to_string()))?;
    let (signed, size) = match size {
        -8 | -4 | -2 | -1 => (true, (-size) as u8),
        8 | 4 | 2 | 1 => (false, size as u8),
        _ => return Err(ArgSpecError::BadSize(text.to_string())),
    };
    let loc = parse_operand(operand).ok_or_else(|| ArgSpecError::BadOperand(text.to_string()))?;
    Ok(ArgSpec {
        size,
        signed,
        loc,
        text: text.to_string(),
    })
}

fn parse_operand(op: &str) -> Option<ArgLoc> {
    let op = op.trim();
    if op.is_empty() {
        return None;
    }
    if let Some(imm) = op.strip_prefix('$') {
        if let Some(v) = parse_int(imm) {
            return Some(ArgLoc::Const(v));
        }
        // `$sym` / `$sym+8`: a link-time address as an immediate (non-PIC code). Well formed;
        // we keep no variant for it, so list it as unreadable rather than reject the site.
        if imm.trim().is_empty() {
            return None;
        }
        return match parse_displacement(imm)? {
            (_, Some(_)) => Some(ArgLoc::Unsupported(format!(
                "symbol address immediate `{op}`"
            ))),
            (v, None) => Some(ArgLoc::Const(v)),
        };
    }
    if let Some(name) = op.strip_prefix('%') {
        return parse_register_operand(name);
    }
    // Memory: DISP(BASE[,INDEX[,SCALE]]) where DISP is empty, a number, a symbol, or
    // number+symbol / symbol+number / symbol-number.
    let open = op.find('(')?;
    if !op.ends_with(')') {
        return None;
    }
    let disp = &op[..open];
    let inner = &op[open + 1..op.len() - 1];
    let parts: Vec<&str> = inner.split(',').map(str::trim).collect();
    let (offset, symbol) = parse_displacement(disp)?;
    match parts.as_slice() {
        [base] => {
            let base = parse_full_reg(base)?;
            match (base, symbol) {
                (Ok(Reg::Rip), Some(symbol)) => Some(ArgLoc::RipSym {
                    symbol,
                    offset,
                    addr: None,
                }),
                (Ok(Reg::Rip), None) => Some(ArgLoc::Unsupported(format!(
                    "rip-relative operand `{op}` names no symbol"
                ))),
                (Ok(_), Some(_)) => Some(ArgLoc::Unsupported(format!(
                    "symbol displacement off a non-rip base in `{op}`"
                ))),
                (Ok(base), None) => Some(ArgLoc::Mem { base, offset }),
                (Err(why), _) => Some(ArgLoc::Unsupported(why)),
            }
        }
        [base, index] | [base, index, _] => {
            let scale = match parts.get(2) {
                Some(s) => match parse_int(s)? {
                    v @ (1 | 2 | 4 | 8) => v as u8,
                    _ => return None,
                },
                None => 1,
            };
            let base = if base.is_empty() {
                None
            } else {
                match parse_full_reg(base)? {
                    Ok(Reg::Rip) | Err(_) => {
                        return Some(ArgLoc::Unsupported(format!("unusable base in `{op}`")))
                    }
                    Ok(r) => Some(r),
                }
            };
            let index = match parse_full_reg(index)? {
                Ok(Reg::Rip) | Ok(Reg::Rsp) | Err(_) => {
                    return Some(ArgLoc::Unsupported(format!("unusable index in `{op}`")))
                }
                Ok(r) => r,
            };
            if symbol.is_some() {
                return Some(ArgLoc::Unsupported(format!(
                    "symbol displacement with an index in `{op}`"
                )));
            }
            Some(ArgLoc::Indexed {
                base,
                index,
                scale,
                offset,
            })
        }
        _ => None,
    }
}

/// `-144`, `40+Sym`, `Sym+40`, `Sym-8`, `Sym`, or empty.
fn parse_displacement(disp: &str) -> Option<(i64, Option<String>)> {
    let disp = disp.trim();
    if disp.is_empty() {
        return Some((0, None));
    }
    if let Some(v) = parse_int(disp) {
        return Some((v, None));
    }
    // Split at the first '+' or '-' that is not leading.
    let split = disp
        .char_indices()
        .skip(1)
        .find(|&(_, c)| c == '+' || c == '-')
        .map(|(i, _)| i);
    let (a, b) = match split {
        Some(i) => (&disp[..i], Some(&disp[i..])),
        None => (disp, None),
    };
    match b {
        None => is_symbol(a).then(|| (0, Some(a.to_string()))),
        Some(rest) => {
            let rest_val = rest.strip_prefix('+').unwrap_or(rest);
            if let (Some(n), true) = (parse_int(a), is_symbol(rest_val)) {
                Some((n, Some(rest_val.to_string())))
            } else if let (true, Some(n)) = (is_symbol(a), parse_int(rest_val)) {
                Some((n, Some(a.to_string())))
            } else {
                None
            }
        }
    }
}

fn is_symbol(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == '.')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '$' | '@'))
}

fn parse_int(s: &str) -> Option<i64> {
    let s = s.trim();
    let (neg, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if body.is_empty() {
        return None;
    }
    let magnitude = if let Some(hex) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        u64::from_str_radix(hex, 16).ok()?
    } else {
        if !body.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        body.parse::<u64>().ok()?
    };
    // Two's complement wrap, as gas does for 64-bit immediates.
    Some(if neg {
        (magnitude as i64).wrapping_neg()
    } else {
        magnitude as i64
    })
}

/// `%name` as a register operand.
fn parse_register_operand(name: &str) -> Option<ArgLoc> {
    if let Some(r) = lookup_reg(name) {
        return Some(ArgLoc::Reg(r));
    }
    if is_other_register(name) {
        return Some(ArgLoc::Unsupported(format!(
            "register %{name} cannot be read from pt_regs"
        )));
    }
    None
}

/// A base/index register inside parentheses: must be a 64-bit GPR or %rip.
/// Outer `None` = not a register at all (malformed); inner `Err` = a register we cannot use.
fn parse_full_reg(text: &str) -> Option<Result<Reg, String>> {
    let name = text.strip_prefix('%')?;
    if name == "rip" {
        return Some(Ok(Reg::Rip));
    }
    match lookup_reg(name) {
        Some(r) if r.width == 8 => Some(Ok(r.reg)),
        Some(_) => Some(Err(format!("32-bit addressing with %{name}"))),
        None if is_other_register(name) => Some(Err(format!("register %{name} as an address"))),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(text: &str) -> ArgLoc {
        parse_arg(text).unwrap().loc
    }

    fn reg(reg: Reg, width: u8) -> ArgLoc {
        ArgLoc::Reg(RegRef {
            reg,
            width,
            shift: 0,
        })
    }

    #[test]
    fn size_prefix_gives_width_and_signedness() {
        let a = parse_arg("-4@%esi").unwrap();
        assert_eq!((a.size, a.signed), (4, true));
        let a = parse_arg("8@%rdi").unwrap();
        assert_eq!((a.size, a.signed), (8, false));
        assert_eq!(a.text, "8@%rdi");
    }

    #[test]
    fn registers_of_every_width() {
        assert_eq!(loc("8@%rdi"), reg(Reg::Rdi, 8));
        assert_eq!(loc("-4@%esi"), reg(Reg::Rsi, 4));
        assert_eq!(loc("-4@%r14d"), reg(Reg::R14, 4));
        assert_eq!(loc("2@%r9w"), reg(Reg::R9, 2));
        assert_eq!(loc("1@%r12b"), reg(Reg::R12, 1));
        assert_eq!(loc("1@%r12l"), reg(Reg::R12, 1));
        assert_eq!(loc("2@%ax"), reg(Reg::Rax, 2));
        assert_eq!(loc("1@%al"), reg(Reg::Rax, 1));
        assert_eq!(loc("1@%dil"), reg(Reg::Rdi, 1));
        assert_eq!(loc("1@%sil"), reg(Reg::Rsi, 1));
        assert_eq!(loc("1@%bpl"), reg(Reg::Rbp, 1));
        assert_eq!(loc("1@%spl"), reg(Reg::Rsp, 1));
        assert_eq!(loc("8@%rsp"), reg(Reg::Rsp, 8));
        assert_eq!(
            loc("1@%ah"),
            ArgLoc::Reg(RegRef {
                reg: Reg::Rax,
                width: 1,
                shift: 8
            })
        );
    }

    #[test]
    fn every_register_name_parses() {
        for r in ["rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp"] {
            let e = format!("e{}", &r[1..]);
            let w = r[1..].to_string();
            for name in [r.to_string(), e, w] {
                assert!(lookup_reg(&name).is_some(), "{name}");
            }
        }
        for n in 8..=15 {
            for suffix in ["", "d", "w", "b"] {
                assert!(lookup_reg(&format!("r{n}{suffix}")).is_some());
            }
        }
        for name in [
            "al", "bl", "cl", "dl", "ah", "bh", "ch", "dh", "sil", "dil", "bpl", "spl",
        ] {
            assert!(lookup_reg(name).is_some(), "{name}");
        }
    }

    #[test]
    fn constants() {
        assert_eq!(loc("-4@$1"), ArgLoc::Const(1));
        assert_eq!(loc("8@$0"), ArgLoc::Const(0));
        assert_eq!(loc("-4@$-1"), ArgLoc::Const(-1));
        assert_eq!(loc("8@$0x10"), ArgLoc::Const(16));
    }

    #[test]
    fn memory_at_register_plus_offset() {
        assert_eq!(
            loc("8@-144(%rbp)"),
            ArgLoc::Mem {
                base: Reg::Rbp,
                offset: -144
            }
        );
        assert_eq!(
            loc("-4@112(%rsp)"),
            ArgLoc::Mem {
                base: Reg::Rsp,
                offset: 112
            }
        );
        assert_eq!(
            loc("8@(%rsp)"),
            ArgLoc::Mem {
                base: Reg::Rsp,
                offset: 0
            }
        );
        assert_eq!(
            loc("8@16(%r12)"),
            ArgLoc::Mem {
                base: Reg::R12,
                offset: 16
            }
        );
    }

    #[test]
    fn base_index_scale() {
        assert_eq!(
            loc("8@(%rcx,%rdx,8)"),
            ArgLoc::Indexed {
                base: Some(Reg::Rcx),
                index: Reg::Rdx,
                scale: 8,
                offset: 0
            }
        );
        assert_eq!(
            loc("4@-8(%rax,%rbx)"),
            ArgLoc::Indexed {
                base: Some(Reg::Rax),
                index: Reg::Rbx,
                scale: 1,
                offset: -8
            }
        );
        assert_eq!(
            loc("4@16(,%rbx,4)"),
            ArgLoc::Indexed {
                base: None,
                index: Reg::Rbx,
                scale: 4,
                offset: 16
            }
        );
    }

    #[test]
    fn symbol_relative_to_rip() {
        assert_eq!(
            loc("-4@NBuffers(%rip)"),
            ArgLoc::RipSym {
                symbol: "NBuffers".into(),
                offset: 0,
                addr: None
            }
        );
        assert_eq!(
            loc("-4@40+CheckpointStats(%rip)"),
            ArgLoc::RipSym {
                symbol: "CheckpointStats".into(),
                offset: 40,
                addr: None
            }
        );
        assert_eq!(
            loc("8@counter+8(%rip)"),
            ArgLoc::RipSym {
                symbol: "counter".into(),
                offset: 8,
                addr: None
            }
        );
        assert_eq!(
            loc("8@_ZN3foo3barE-8(%rip)"),
            ArgLoc::RipSym {
                symbol: "_ZN3foo3barE".into(),
                offset: -8,
                addr: None
            }
        );
    }

    #[test]
    fn symbol_address_immediates_are_unsupported_but_listed() {
        assert!(matches!(loc("8@$.LC0"), ArgLoc::Unsupported(_)));
        assert!(matches!(loc("8@$buf+4"), ArgLoc::Unsupported(_)));
        assert!(parse_arg("8@$").is_err());
        assert!(parse_arg("8@$1+").is_err());
    }

    #[test]
    fn vector_registers_are_unsupported_but_listed() {
        let a = parse_arg("8@%xmm0").unwrap();
        assert!(matches!(a.loc, ArgLoc::Unsupported(_)));
        assert_eq!(a.text, "8@%xmm0");
        assert!(matches!(loc("4@(%eax)"), ArgLoc::Unsupported(_)));
    }

    #[test]
    fn whole_argument_strings() {
        let args = parse_args("-4@$0 -4@%ecx 8@-144(%rbp) 1@-57(%rbp)").unwrap();
        assert_eq!(args.len(), 4);
        assert!(parse_args("").unwrap().is_empty());
        let nine = "8@%rdi 8@%rsi 8@%rdx 8@%rcx 8@%r8 8@%r9 8@(%rsp) 8@8(%rsp) 8@16(%rsp)";
        assert_eq!(parse_args(nine).unwrap().len(), 9);
    }

    #[test]
    fn malformed_text_is_an_error() {
        for bad in [
            "%rdi",
            "3@%rdi",
            "x@%rdi",
            "8@",
            "8@%foo",
            "8@(%rdi",
            "8@$",
            "8@1(%rdi,%rsi,3)",
            "8@@",
            "8@()",
        ] {
            assert!(parse_arg(bad).is_err(), "{bad} should be an error");
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_text_never_panics(s in "\\PC{0,64}") {
            let _ = parse_args(&s);
        }

        #[test]
        fn spec_shaped_text_never_panics(
            s in "-?[0-9]{1,2}@[-$%(),+0-9a-zA-Z_]{0,24}"
        ) {
            let _ = parse_args(&s);
        }
    }
}
