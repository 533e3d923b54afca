//! Planning a session from what was asked for: the pair and its key, the argument to split by,
//! the string arguments each probe must read, and whether the kernel can aggregate it.

use super::SessionError;
use crate::probes::discovery::catalog::{Catalog, Pair};
use crate::probes::discovery::select::ProbePattern;
use crate::probes::discovery::targets::{self, check_arg_index, Scope, Target};

/// Where events are aggregated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AggMode {
    Auto,
    Stream,
    Kernel,
}

/// Which argument, as typed by the user: `argN`, `N`, or a catalog argument name of `probe`.
/// A trailing `:int` / `:str` says how to read it (default: the catalog's type, else `default_str`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArgRef {
    pub index: usize,
    pub is_str: bool,
}

pub fn parse_arg_ref(
    text: &str,
    probe: &str,
    catalog: &Catalog,
    default_str: bool,
) -> Result<ArgRef, SessionError> {
    let (name, forced) = match text.rsplit_once(':') {
        Some((n, "int")) => (n, Some(false)),
        Some((n, "str")) => (n, Some(true)),
        _ => (text, None),
    };
    let digits = name.strip_prefix("arg").unwrap_or(name);
    let index = match digits.parse::<usize>() {
        Ok(i) => i,
        Err(_) => catalog
            .args(probe)
            .and_then(|args| args.iter().position(|a| a.name == name))
            .ok_or_else(|| SessionError::NotAnArgument {
                text: text.into(),
                probe: probe.into(),
            })?,
    };
    let catalog_str = catalog
        .args(probe)
        .and_then(|args| args.get(index))
        .map(|a| a.is_str);
    Ok(ArgRef {
        index,
        is_str: forced.or(catalog_str).unwrap_or(default_str),
    })
}

/// The pair to measure: the catalog's, or the one the arguments name, with --key applied.
pub fn build_pair(
    start: &ProbePattern,
    end: Option<&ProbePattern>,
    key: Option<&str>,
    catalog: &Catalog,
) -> Result<Pair, SessionError> {
    let start_name = start.full_name();
    let known = catalog.pairs().iter().find(|p| p.start == start_name);
    let mut pair = match (end, known) {
        (Some(end), Some(p)) if p.done == end.full_name() => p.clone(),
        (Some(end), _) => Pair {
            nested: call_shaped_names(&start_name, &end.full_name()),
            start: start_name.clone(),
            done: end.full_name(),
            start_key: None,
            done_key: None,
            label: None,
            enable: None,
        },
        (None, Some(p)) => p.clone(),
        (None, None) => match return_of(&start_name) {
            Some(done) => Pair {
                start: start_name.clone(),
                done,
                start_key: None,
                done_key: None,
                label: None,
                nested: true,
                enable: None,
            },
            None => return Err(SessionError::UnknownPair(start_name)),
        },
    };
    if let Some(key) = key {
        let (start_key, done_key) = parse_key(key, &pair, catalog)?;
        pair.start_key = Some(start_key.index);
        pair.done_key = Some(done_key.index);
    }
    Ok(pair)
}

/// Whether a pair the catalog does not know is call-shaped (its calls nest on a thread): its
/// probes are `P:…entry` and `P:…return` of one provider with the same stem
/// (`ruby:cmethod__entry` / `ruby:cmethod__return`). Catalog pairs say so themselves
/// (`"nested": true`).
pub fn call_shaped_names(start: &str, done: &str) -> bool {
    return_of(start).is_some_and(|r| r == done)
}

/// The return probe of an entry probe named `P:…entry`: `P:…return`.
fn return_of(start: &str) -> Option<String> {
    let stem = start.strip_suffix("entry")?;
    (stem.contains(':') && !stem.ends_with(':')).then(|| format!("{stem}return"))
}

/// The argument of a call-shaped pair's return that names the call as argument `start_arg` of
/// its entry does: the one of the same catalog name (PHP, Python, Ruby and the JVM pass the
/// same arguments to both), else the same index.
pub fn return_key(pair: &Pair, start_arg: usize, catalog: &Catalog) -> usize {
    let name = catalog
        .args(&pair.start)
        .and_then(|a| a.get(start_arg))
        .map(|a| a.name.as_str());
    name.and_then(|n| catalog.args(&pair.done)?.iter().position(|a| a.name == n))
        .unwrap_or(start_arg)
}

/// Why a call-shaped pair cannot be paired in the kernel with rows keyed by `by` (if it
/// cannot): the kernel pairs it on each thread's stack, keyed by a string.
pub fn calls_unsupported(pair: &Pair, by: Option<ArgRef>) -> Option<String> {
    if pair.start_key.is_some() {
        return Some("a call-shaped pair is paired on its thread's stack, not by --key".into());
    }
    match by {
        Some(b) if !b.is_str => Some("call-shaped pairs are split by a string argument".into()),
        _ => None,
    }
}

/// A `--key` option: `argN` (the same index on both probes), `argN:argM` (start:done), or a
/// catalog argument name; integers unless the catalog (or `:str`) says otherwise.
pub fn parse_key(
    key: &str,
    pair: &Pair,
    catalog: &Catalog,
) -> Result<(ArgRef, ArgRef), SessionError> {
    let (s, d) = key.split_once(':').unwrap_or((key, key));
    Ok((
        parse_arg_ref(s, &pair.start, catalog, false)?,
        parse_arg_ref(d, &pair.done, catalog, false)?,
    ))
}

/// The done probe of `pair`, in the object the done or start argument names if it names none.
pub fn done_spec(
    pair: &Pair,
    start: &ProbePattern,
    end: Option<&ProbePattern>,
) -> Result<ProbePattern, SessionError> {
    let mut done = ProbePattern::parse_exact(&pair.done)?;
    if done.path.is_none() {
        done.path = end.and_then(|e| e.path.clone()).or(start.path.clone());
    }
    Ok(done)
}

/// String arguments to read for a probe: the catalog's, plus those the user asked for.
pub fn strings_for(probe: &str, catalog: &Catalog, extra: &[ArgRef]) -> Vec<usize> {
    let mut s = catalog.string_args(probe);
    for a in extra {
        if a.is_str && !s.contains(&a.index) {
            s.push(a.index);
        }
    }
    s
}

/// Why a pair cannot be matched in the kernel by a start/done map, if it cannot: only by thread
/// or by an integer key (`key_is_str`: the user keyed it by a string argument). Call-shaped
/// (nested) pairs are paired on a stack per thread instead: see [`calls_unsupported`].
pub fn kernel_unsupported(pair: &Pair, catalog: &Catalog, key_is_str: bool) -> Option<String> {
    if pair.nested {
        return calls_unsupported(pair, None);
    }
    let str_key = |probe: &str, i: Option<usize>| {
        i.and_then(|i| catalog.args(probe).and_then(|a| a.get(i)).map(|a| a.is_str))
            .unwrap_or(false)
    };
    if key_is_str || str_key(&pair.start, pair.start_key) || str_key(&pair.done, pair.done_key) {
        return Some("string keys are compared in user space".into());
    }
    None
}

impl AggMode {
    /// Whether to aggregate in the kernel, given why it cannot (if it cannot); `Err(why)` when
    /// the kernel was demanded and cannot. `prefer_stream`: auto streams even if it could.
    pub fn in_kernel(
        self,
        unsupported: Option<String>,
        prefer_stream: bool,
    ) -> Result<bool, String> {
        match (self, unsupported) {
            (AggMode::Stream, _) => Ok(false),
            (AggMode::Kernel, Some(why)) => Err(why),
            (AggMode::Auto, None) if prefer_stream => Ok(false),
            (AggMode::Kernel, None) | (AggMode::Auto, None) => Ok(true),
            (AggMode::Auto, Some(_)) => Ok(false),
        }
    }
}

/// Finds every object holding each probe of `patterns`: in the named file (or the files a PATH
/// glob matches), else in the objects the process maps, else in the objects any running process
/// maps. One list per pattern, never empty; also the lines that say what a glob matched
/// (all of them when `verbose`).
pub fn resolve(
    patterns: &[&ProbePattern],
    pid: Option<u32>,
    verbose: bool,
) -> Result<(Vec<Vec<Target>>, Vec<String>), SessionError> {
    let patterns: Vec<ProbePattern> = patterns.iter().map(|&p| p.clone()).collect();
    let scope = match pid {
        Some(pid) => Scope::Pids(vec![pid]),
        None => Scope::AllProcesses,
    };
    let resolved = targets::resolve_patterns(&patterns, &scope)?;
    let report = resolved.report(&patterns, verbose);
    Ok((resolved.targets, report))
}

/// Checks an argument the user named (`option`, e.g. `--by arg9`) against every site of the
/// probes it is read from, before anything is attached.
pub fn check_arg(targets: &[Target], arg: ArgRef, option: &str) -> Result<(), SessionError> {
    Ok(check_arg_index(targets, arg.index, option)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(s: &str) -> ProbePattern {
        ProbePattern::parse_exact(s).unwrap()
    }

    #[test]
    fn a_catalog_pair_is_named_by_its_start_alone() {
        let c = Catalog::builtin();
        let p = build_pair(&spec("postgresql:query__start"), None, None, &c).unwrap();
        assert_eq!(p.done, "postgresql:query__done");
        assert_eq!(p.label, Some(0));
    }

    #[test]
    fn an_unknown_start_without_a_done_is_a_clear_error() {
        let c = Catalog::builtin();
        let e = build_pair(&spec("app:begin"), None, None, &c).unwrap_err();
        assert!(e.to_string().contains("name its done probe"), "{e}");
    }

    #[test]
    fn key_pairs_by_the_given_arguments() {
        let c = Catalog::builtin();
        let p = build_pair(
            &spec("app:req__start"),
            Some(&spec("app:req__done")),
            Some("arg0"),
            &c,
        )
        .unwrap();
        assert_eq!((p.start_key, p.done_key), (Some(0), Some(0)));
        let p = build_pair(
            &spec("node:http__server__request"),
            Some(&spec("node:http__server__response")),
            Some("arg6:arg3"),
            &c,
        )
        .unwrap();
        assert_eq!((p.start_key, p.done_key), (Some(6), Some(3)));
    }

    #[test]
    fn arguments_are_named_by_index_or_by_catalog_name() {
        let c = Catalog::builtin();
        let fd = parse_arg_ref("fd", "node:http__server__request", &c, true).unwrap();
        assert_eq!(
            fd,
            ArgRef {
                index: 6,
                is_str: false
            }
        );
        let url = parse_arg_ref("arg5", "node:http__server__request", &c, false).unwrap();
        assert_eq!(
            url,
            ArgRef {
                index: 5,
                is_str: true
            }
        );
        let unknown = parse_arg_ref("1", "x:y", &c, true).unwrap();
        assert_eq!(
            unknown,
            ArgRef {
                index: 1,
                is_str: true
            }
        );
        let forced = parse_arg_ref("arg1:int", "x:y", &c, true).unwrap();
        assert!(!forced.is_str);
        assert!(parse_arg_ref("nope", "node:http__server__request", &c, true).is_err());
    }

    #[test]
    fn the_kernel_pairs_by_thread_or_integer_and_not_nested() {
        let c = Catalog::builtin();
        let plain = build_pair(&spec("postgresql:query__start"), None, None, &c).unwrap();
        assert_eq!(kernel_unsupported(&plain, &c, false), None);
        assert!(kernel_unsupported(&plain, &c, true).is_some());
        let nested = Pair {
            nested: true,
            ..plain
        };
        assert_eq!(kernel_unsupported(&nested, &c, false), None);
        let keyed = Pair {
            start_key: Some(1),
            ..nested.clone()
        };
        assert!(kernel_unsupported(&keyed, &c, false).is_some());
        let line = ArgRef {
            index: 2,
            is_str: false,
        };
        assert!(calls_unsupported(&nested, Some(line)).is_some());
    }

    #[test]
    fn entry_and_return_probes_of_one_provider_are_call_shaped() {
        assert!(call_shaped_names(
            "ruby:cmethod__entry",
            "ruby:cmethod__return"
        ));
        assert!(call_shaped_names(
            "hotspot:method__entry",
            "hotspot:method__return"
        ));
        assert!(!call_shaped_names(
            "ruby:cmethod__entry",
            "ruby:method__return"
        ));
        assert!(!call_shaped_names("app:req__start", "app:req__done"));
        assert!(!call_shaped_names("app:entry", "other:return"));
        assert!(!call_shaped_names("entry", "return"));
    }

    #[test]
    fn an_entry_probe_the_catalog_does_not_pair_pairs_with_its_return() {
        let c = Catalog::builtin();
        let p = build_pair(&spec("someruntime:method__entry"), None, None, &c).unwrap();
        assert_eq!(p.done, "someruntime:method__return");
        assert!(p.nested);
        let named = build_pair(
            &spec("app:fn__entry"),
            Some(&spec("app:fn__return")),
            None,
            &c,
        )
        .unwrap();
        assert!(named.nested);
    }

    #[test]
    fn catalog_call_pairs_are_nested_and_their_return_is_keyed_by_the_same_name() {
        let c = Catalog::builtin();
        for start in ["php:function__entry", "python:function__entry"] {
            let p = build_pair(&spec(start), None, None, &c).unwrap();
            assert!(p.nested, "{start}");
            let label = p.label.unwrap();
            assert_eq!(return_key(&p, label, &c), label, "{start}");
        }
        let odd = Pair {
            start: "x:a__entry".into(),
            done: "x:a__return".into(),
            start_key: None,
            done_key: None,
            label: None,
            nested: true,
            enable: None,
        };
        assert_eq!(return_key(&odd, 3, &c), 3);
    }

    #[test]
    fn kernel_mode_demands_the_kernel_and_auto_falls_back() {
        let why = || Some("why".to_string());
        assert_eq!(AggMode::Kernel.in_kernel(why(), false), Err("why".into()));
        assert_eq!(AggMode::Auto.in_kernel(why(), false), Ok(false));
        assert_eq!(AggMode::Auto.in_kernel(None, false), Ok(true));
        assert_eq!(AggMode::Auto.in_kernel(None, true), Ok(false));
        assert_eq!(AggMode::Kernel.in_kernel(None, true), Ok(true));
        assert_eq!(AggMode::Stream.in_kernel(None, false), Ok(false));
    }
}
