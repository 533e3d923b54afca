//! The catalog of known providers (`assets/catalog.json`): argument names, which arguments are
//! C strings, and start/done pairs for latency. Data, not code: add a provider there.

use serde::Deserialize;
use std::collections::HashMap;
use thiserror::Error;

const BUILTIN: &str = include_str!("../../../assets/catalog.json");

#[derive(Debug, Error)]
pub enum CatalogError {
    #[error("catalog is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
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
}

#[derive(Deserialize)]
struct RawCatalog {
    probes: HashMap<String, Vec<String>>,
    pairs: Vec<RawPair>,
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
        Catalog::parse(BUILTIN).expect("assets/catalog.json is checked by tests")
    }

    pub fn parse(text: &str) -> Result<Catalog, CatalogError> {
        let raw: RawCatalog = serde_json::from_str(text)?;
        let probes: HashMap<String, Vec<ArgInfo>> = raw
            .probes
            .into_iter()
            .map(|(probe, args)| {
                let args = args
                    .into_iter()
                    .map(|a| match a.strip_suffix(":str") {
                        Some(name) => ArgInfo {
                            name: name.to_string(),
                            is_str: true,
                        },
                        None => ArgInfo {
                            name: a,
                            is_str: false,
                        },
                    })
                    .collect();
                (probe, args)
            })
            .collect();
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
        Ok(Catalog { probes, pairs })
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

    /// The pair a probe starts or ends, if any.
    pub fn pair_for(&self, full_name: &str) -> Option<&Pair> {
        self.pairs
            .iter()
            .find(|p| p.start == full_name || p.done == full_name)
    }

    pub fn pairs(&self) -> &[Pair] {
        &self.pairs
    }
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
    fn a_pair_naming_an_unknown_argument_is_an_error() {
        let text = r#"{"probes": {"a:b": ["x"]}, "pairs": [{"start": "a:b", "done": "a:c", "label": "y"}]}"#;
        assert!(matches!(
            Catalog::parse(text),
            Err(CatalogError::BadPair { .. })
        ));
    }
}
