//! The catalog of known providers (`assets/catalog.json`): argument names, which arguments are
//! strings, and start/done pairs for latency. Data, not code: add a provider there.
//!
//! An argument is a name, `name:str` (a NUL-terminated C string), or `name:str[len]` (a string
//! given by pointer and length, not NUL-terminated: `len` names the argument of the same probe
//! that holds its length in bytes, as the JVM passes strings: `"name:str[name_len]", "name_len"`).

use super::hints::Hints;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::OnceLock;
use thiserror::Error;

const BUILTIN: &str = include_str!("../../../assets/catalog.json");

#[derive(Debug, Error)]
pub enum CatalogError {
    #[error("catalog is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("catalog argument `{arg}` of {probe}: {why}")]
    BadArg {
        probe: String,
        arg: String,
        why: String,
    },
    #[error("catalog pair {start} → {done}: {why}")]
    BadPair {
        start: String,
        done: String,
        why: String,
    },
}

/// One argument as the catalog names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgInfo {
    pub name: String,
    pub is_str: bool,
    /// A string given by pointer and length: the index of the argument holding its length.
    pub len_arg: Option<usize>,
}

/// A start/done pair whose distance in time is a latency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    /// `provider:name` of the start and done probes.
    pub start: String,
    pub done: String,
    /// Argument index that matches a start with its done (e.g. Node's fd); `None` = by thread.
    pub start_key: Option<usize>,
    pub done_key: Option<usize>,
    /// String argument of the start probe that names the request (URL, query, URI...).
    pub label: Option<usize>,
    /// Calls nest on one thread (function entry/return): match done with the newest start.
    pub nested: bool,
    /// Probes to attach as well, only so that the runtime fires this pair's probes.
    pub enable: Option<Enable>,
}

/// Probes a runtime needs attached (their semaphores raised) before it fires a pair's probes,
/// and why, in words a user can act on.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Enable {
    /// `provider:name` of each probe, in the same object as the pair.
    pub probes: Vec<String>,
    pub why: String,
}

#[derive(Debug, Clone, Default)]
pub struct Catalog {
    probes: HashMap<String, Vec<ArgInfo>>,
    pairs: Vec<Pair>,
    hints: Hints,
}

#[derive(Deserialize)]
struct RawCatalog {
    probes: HashMap<String, Vec<String>>,
    pairs: Vec<RawPair>,
    #[serde(default)]
    hints: Hints,
}

#[derive(Deserialize)]
struct RawPair {
    start: String,
    done: String,
    start_key: Option<String>,
    done_key: Option<String>,
    label: Option<String>,
    #[serde(default)]
    nested: bool,
    enable: Option<Enable>,
}

impl Catalog {
    /// The catalog compiled into the binary.
    pub fn builtin() -> Catalog {
        Catalog::shared().clone()
    }

    /// The built-in catalog, parsed once for the whole process.
    pub fn shared() -> &'static Catalog {
        static SHARED: OnceLock<Catalog> = OnceLock::new();
        SHARED.get_or_init(|| {
            Catalog::parse(BUILTIN).expect("assets/catalog.json is checked by tests")
        })
    }

    pub fn parse(text: &str) -> Result<Catalog, CatalogError> {
        let raw: RawCatalog = serde_json::from_str(text)?;
        let mut probes: HashMap<String, Vec<ArgInfo>> = HashMap::new();
        for (probe, args) in raw.probes {
            let args = parse_args(&probe, &args)?;
            probes.insert(probe, args);
        }
        let index_of = |probe: &str,
                        arg: &Option<String>,
                        p: &RawPair|
         -> Result<Option<usize>, CatalogError> {
            let Some(arg) = arg else { return Ok(None) };
            probes
                .get(probe)
                .and_then(|args| args.iter().position(|a| &a.name == arg))
                .map(Some)
                .ok_or_else(|| CatalogError::BadPair {
                    start: p.start.clone(),
                    done: p.done.clone(),
                    why: format!("{probe} has no argument `{arg}`"),
                })
        };
        let mut pairs = Vec::new();
        for p in &raw.pairs {
            pairs.push(Pair {
                start: p.start.clone(),
                done: p.done.clone(),
                start_key: index_of(&p.start, &p.start_key, p)?,
                done_key: index_of(&p.done, &p.done_key, p)?,
                label: index_of(&p.start, &p.label, p)?,
                nested: p.nested,
                enable: p.enable.clone(),
            });
        }
        Ok(Catalog {
            probes,
            pairs,
            hints: raw.hints,
        })
    }

    /// Argument names of `provider:name`, if known.
    pub fn args(&self, full_name: &str) -> Option<&[ArgInfo]> {
        self.probes.get(full_name).map(Vec::as_slice)
    }

    /// Indices of the arguments of `provider:name` that are C strings.
    pub fn string_args(&self, full_name: &str) -> Vec<usize> {
        self.args(full_name)
            .map(|args| {
                args.iter()
                    .enumerate()
                    .filter(|(_, a)| a.is_str)
                    .map(|(i, _)| i)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The strings of `provider:name` given by pointer and length: (string argument, length
    /// argument) index pairs.
    pub fn str_lengths(&self, full_name: &str) -> Vec<(usize, usize)> {
        self.args(full_name)
            .map(|args| {
                args.iter()
                    .enumerate()
                    .filter_map(|(i, a)| a.len_arg.map(|l| (i, l)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The pair a probe starts or ends, if any.
    pub fn pair_for(&self, full_name: &str) -> Option<&Pair> {
        self.pairs
            .iter()
            .find(|p| p.start == full_name || p.done == full_name)
    }

    pub fn pairs(&self) -> &[Pair] {
        &self.pairs
    }

    /// What to say about runtimes without probes and probes kept silent by a switch (the
    /// catalog's `hints` section, see [`super::hints`]).
    pub fn hints(&self) -> &Hints {
        &self.hints
    }
}

/// One probe's arguments: `name`, `name:str` or `name:str[len]` (see the module doc).
fn parse_args(probe: &str, args: &[String]) -> Result<Vec<ArgInfo>, CatalogError> {
    let bad = |arg: &str, why: String| CatalogError::BadArg {
        probe: probe.into(),
        arg: arg.into(),
        why,
    };
    let mut infos = Vec::with_capacity(args.len());
    let mut lengths = Vec::new();
    for a in args {
        let (name, kind) = a.split_once(':').unwrap_or((a, ""));
        let len = match kind {
            "" => None,
            "str" => Some(None),
            _ => match kind.strip_prefix("str[").and_then(|k| k.strip_suffix(']')) {
                Some(len) => Some(Some(len)),
                None => return Err(bad(a, "the type must be `str` or `str[LEN_ARG]`".into())),
            },
        };
        if let Some(Some(len)) = len {
            lengths.push((infos.len(), a, len));
        }
        infos.push(ArgInfo {
            name: name.to_string(),
            is_str: len.is_some(),
            len_arg: None,
        });
    }
    for (i, a, len) in lengths {
        let l = infos
            .iter()
            .position(|x| x.name == len)
            .ok_or_else(|| bad(a, format!("no argument `{len}` holds its length")))?;
        if infos[l].is_str {
            return Err(bad(a, format!("its length `{len}` is a string")));
        }
        infos[i].len_arg = Some(l);
    }
    Ok(infos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalog_parses_and_pairs_name_real_arguments() {
        let c = Catalog::builtin();
        assert_eq!(c.string_args("node:http__server__request"), vec![2, 4, 5]);
        let p = c.pair_for("node:http__server__response").unwrap();
        assert_eq!(
            (p.start_key, p.done_key, p.label),
            (Some(6), Some(3), Some(5))
        );
        let q = c.pair_for("postgresql:query__start").unwrap();
        assert_eq!((q.start_key, q.label), (None, Some(0)));
        assert!(c.pair_for("php:request__startup").is_some());
    }

    #[test]
    fn cpython_function_probes_say_they_need_the_line_probe() {
        let c = Catalog::builtin();
        let p = c.pair_for("python:function__entry").unwrap();
        let enable = p.enable.as_ref().unwrap();
        assert_eq!(enable.probes, vec!["python:line".to_string()]);
        assert!(enable.why.contains("gh-98894"), "{}", enable.why);
    }

    #[test]
    fn pointer_and_length_strings_name_their_length_argument() {
        let c = Catalog::builtin();
        assert_eq!(c.string_args("hotspot:thread__start"), vec![0]);
        assert_eq!(c.str_lengths("hotspot:thread__start"), vec![(0, 1)]);
        assert_eq!(
            c.str_lengths("hotspot:method__entry"),
            vec![(1, 2), (3, 4), (5, 6)]
        );
        let args = c.args("hotspot:thread__start").unwrap();
        assert_eq!(
            (args[0].name.as_str(), args[1].name.as_str()),
            ("name", "name_len")
        );
        assert!(c.str_lengths("ruby:cmethod__entry").is_empty());
        assert_eq!(c.string_args("ruby:cmethod__entry"), vec![0, 1, 2]);
    }

    #[test]
    fn a_length_that_is_missing_or_a_string_or_a_bad_type_is_an_error() {
        for args in [
            r#"["s:str[n]"]"#,
            r#"["s:str[n]", "n:str"]"#,
            r#"["s:str[n", "n"]"#,
            r#"["s:int", "n"]"#,
        ] {
            let text = format!(r#"{{"probes": {{"a:b": {args}}}, "pairs": []}}"#);
            let e = Catalog::parse(&text).unwrap_err();
            assert!(matches!(e, CatalogError::BadArg { .. }), "{args}: {e}");
        }
    }

    #[test]
    fn a_pair_naming_an_unknown_argument_is_an_error() {
        let text = r#"{"probes": {"a:b": ["x"]}, "pairs": [{"start": "a:b", "done": "a:c", "label": "y"}]}"#;
        assert!(matches!(
            Catalog::parse(text),
            Err(CatalogError::BadPair { .. })
        ));
    }
}
