//! Resolving probe patterns to targets: which probe, in which object, opened through which path.
//!
//! Every command that attaches by name (`trace`, `latency`, `top`) goes through [`resolve`]:
//! build a pool of candidate objects (the files the patterns name, then the objects of the given
//! processes or of every running process), keep each (device, inode) once, and match each
//! pattern against the pool. The open path follows one rule, [`attach_path`], which the TUI's
//! discovery uses too.

use super::elf::{ObjectProbes, Probe};
use super::process::{MappedObject, ObjectKey, ProbeCache, SkipReason};
use super::select::{nearest, ProbePattern};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use thiserror::Error;

/// Where patterns without a PATH are looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// The objects these processes map.
    Pids(Vec<i32>),
    /// The objects any running process maps.
    AllProcesses,
}

/// One probe in one object, ready to attach.
#[derive(Debug, Clone)]
pub struct Target {
    pub object: Arc<ObjectProbes>,
    /// Where the uprobe opens the file (see [`attach_path`]).
    pub open_path: PathBuf,
    pub probe_index: usize,
}

impl Target {
    pub fn probe(&self) -> &Probe {
        &self.object.probes[self.probe_index]
    }

    fn same(&self, other: &Target) -> bool {
        Arc::ptr_eq(&self.object, &other.object) && self.probe_index == other.probe_index
    }
}

#[derive(Debug, Error)]
pub enum TargetError {
    /// A file named in a pattern could not be read as an ELF object.
    #[error("cannot read probes of {}: {why}", path.display())]
    Unreadable { path: PathBuf, why: String },
    #[error("process {pid}: {why} (is it running? see `ps -p {pid}`)")]
    Process { pid: i32, why: SkipReason },
    #[error("scanning processes: {0}")]
    Scan(#[source] std::io::Error),
    /// Nothing matched, and the place looked in has no probes at all.
    #[error("no probe matches `{pattern}` in {place}: it has no USDT probes")]
    NoProbes { pattern: String, place: String },
    /// Nothing matched; `nearest` are the closest probe names there are.
    #[error("no probe matches `{pattern}` in {place}; nearest: {}", nearest.join(", "))]
    NoMatch {
        pattern: String,
        place: String,
        nearest: Vec<String>,
    },
}

/// Where to open a mapped object for the uprobe: its plain path when that is the same file in
/// our mount namespace (it stays valid after the process that maps it exits), otherwise the
/// path through the process (`/proc/PID/root/...` for containers, map_files for deleted files).
pub fn attach_path(o: &MappedObject) -> PathBuf {
    if ObjectKey::of_path(&o.path).is_ok_and(|k| k == o.key) {
        o.path.clone()
    } else {
        o.open_path()
    }
}

/// A candidate object: its probes, where to open it, and its identity on disk.
struct Candidate {
    object: Arc<ObjectProbes>,
    open_path: PathBuf,
    key: Option<ObjectKey>,
}

/// Candidate objects, each (device, inode) once: the first way it was reached wins.
#[derive(Default)]
struct Pool(Vec<Candidate>);

impl Pool {
    fn add(&mut self, object: &ObjectProbes, open_path: PathBuf, key: Option<ObjectKey>) {
        if key.is_none() || !self.0.iter().any(|c| c.key == key) {
            self.0.push(Candidate {
                object: Arc::new(object.clone()),
                open_path,
                key,
            });
        }
    }
}

/// The targets of each pattern, in pattern order; every list is non-empty. A pattern with a
/// PATH looks only in that file (by device and inode, so a symlink and its target agree);
/// the others look in the objects of `scope`.
pub fn resolve_each(
    patterns: &[ProbePattern],
    scope: &Scope,
) -> Result<Vec<Vec<Target>>, TargetError> {
    let mut cache = ProbeCache::new();
    let mut pool = Pool::default();
    for path in patterns.iter().filter_map(|p| p.path.as_deref()) {
        let path = Path::new(path);
        match cache.file(path).as_ref() {
            Ok(o) => pool.add(o, path.to_path_buf(), ObjectKey::of_path(path).ok()),
            Err(e) => {
                return Err(TargetError::Unreadable {
                    path: path.to_path_buf(),
                    why: e.to_string(),
                })
            }
        }
    }
    if patterns.iter().any(|p| p.path.is_none()) {
        match scope {
            Scope::Pids(pids) => {
                for &pid in pids {
                    let objects = cache
                        .probes_of_pid(pid)
                        .map_err(|why| TargetError::Process { pid, why })?;
                    for o in objects {
                        if let Ok(obj) = o.probes.as_ref() {
                            pool.add(obj, attach_path(&o.object), Some(o.object.key));
                        }
                    }
                }
            }
            Scope::AllProcesses => {
                let scan = cache.scan_all().map_err(TargetError::Scan)?;
                for proc in scan.processes {
                    for o in proc.with_probes() {
                        if let Ok(obj) = o.probes.as_ref() {
                            pool.add(obj, attach_path(&o.object), Some(o.object.key));
                        }
                    }
                }
            }
        }
    }
    patterns.iter().map(|p| matches(p, &pool, scope)).collect()
}

/// The distinct targets of all patterns (a probe two patterns match comes once), in order.
pub fn resolve(patterns: &[ProbePattern], scope: &Scope) -> Result<Vec<Target>, TargetError> {
    let mut out: Vec<Target> = Vec::new();
    for t in resolve_each(patterns, scope)?.into_iter().flatten() {
        if !out.iter().any(|o| o.same(&t)) {
            out.push(t);
        }
    }
    Ok(out)
}

fn matches(pattern: &ProbePattern, pool: &Pool, scope: &Scope) -> Result<Vec<Target>, TargetError> {
    let only = pattern.path.as_deref().map(|p| {
        let p = Path::new(p);
        (p, ObjectKey::of_path(p).ok())
    });
    let candidates: Vec<&Candidate> = pool
        .0
        .iter()
        .filter(|c| match only {
            None => true,
            Some((_, Some(key))) => c.key == Some(key),
            Some((path, None)) => c.open_path == path,
        })
        .collect();
    let targets: Vec<Target> = candidates
        .iter()
        .flat_map(|c| {
            c.object
                .probes
                .iter()
                .enumerate()
                .filter(|(_, probe)| pattern.matches(probe))
                .map(|(i, _)| Target {
                    object: c.object.clone(),
                    open_path: c.open_path.clone(),
                    probe_index: i,
                })
        })
        .collect();
    if !targets.is_empty() {
        return Ok(targets);
    }
    let place = match (&pattern.path, scope) {
        (Some(p), _) => p.clone(),
        (None, Scope::Pids(pids)) => format!("the objects of process(es) {pids:?}"),
        (None, Scope::AllProcesses) => {
            "the objects of running processes (use -p PID or PATH:provider:name)".into()
        }
    };
    let names: Vec<String> = candidates
        .iter()
        .flat_map(|c| c.object.probes.iter().map(Probe::full_name))
        .collect();
    let near = nearest(
        &format!("{}:{}", pattern.provider, pattern.name),
        names.iter().map(String::as_str),
        3,
    );
    let pattern = pattern.to_string();
    Err(if near.is_empty() {
        TargetError::NoProbes { pattern, place }
    } else {
        TargetError::NoMatch {
            pattern,
            place,
            nearest: near,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const POSTGRES: &str = "/usr/lib/postgresql/15/bin/postgres";
    const PYTHON: &str = "/usr/bin/python3.11";

    fn pattern(text: &str) -> ProbePattern {
        ProbePattern::parse(text).unwrap()
    }

    fn names(targets: &[Target]) -> Vec<String> {
        let mut v: Vec<String> = targets.iter().map(|t| t.probe().full_name()).collect();
        v.sort();
        v
    }

    #[test]
    fn a_glob_in_a_named_file_gives_every_probe_it_matches_opened_by_that_path() {
        if !Path::new(POSTGRES).exists() {
            eprintln!("skipping: {POSTGRES} is not installed");
            return;
        }
        let p = pattern(&format!("{POSTGRES}:postgresql:query__*"));
        let targets = resolve(&[p], &Scope::AllProcesses).unwrap();
        let got = names(&targets);
        assert!(
            got.contains(&"postgresql:query__start".to_string()),
            "{got:?}"
        );
        assert!(
            got.contains(&"postgresql:query__done".to_string()),
            "{got:?}"
        );
        assert!(got.iter().all(|n| n.starts_with("postgresql:query__")));
        assert!(targets.iter().all(|t| t.open_path == Path::new(POSTGRES)));
    }

    #[test]
    fn a_probe_two_patterns_match_is_a_target_once_but_listed_for_each() {
        if !Path::new(PYTHON).exists() {
            eprintln!("skipping: {PYTHON} is not installed");
            return;
        }
        let both = [
            pattern(&format!("{PYTHON}:python:gc__*")),
            pattern(&format!("{PYTHON}:python:gc__start")),
        ];
        let each = resolve_each(&both, &Scope::AllProcesses).unwrap();
        assert_eq!(names(&each[0]), ["python:gc__done", "python:gc__start"]);
        assert_eq!(names(&each[1]), ["python:gc__start"]);
        let all = resolve(&both, &Scope::AllProcesses).unwrap();
        assert_eq!(names(&all), ["python:gc__done", "python:gc__start"]);
    }

    #[test]
    fn a_symlink_and_its_target_name_the_same_object() {
        let link = "/usr/bin/python3";
        let key = |p: &str| ObjectKey::of_path(Path::new(p)).ok();
        if key(PYTHON).is_none() || key(link) != key(PYTHON) {
            eprintln!("skipping: {link} is not {PYTHON}");
            return;
        }
        let both = [
            pattern(&format!("{link}:python:gc__start")),
            pattern(&format!("{PYTHON}:python:gc__done")),
        ];
        let each = resolve_each(&both, &Scope::AllProcesses).unwrap();
        assert_eq!(names(&each[0]), ["python:gc__start"]);
        assert_eq!(names(&each[1]), ["python:gc__done"]);
        assert!(Arc::ptr_eq(&each[0][0].object, &each[1][0].object));
    }

    #[test]
    fn a_path_that_is_not_elf_is_a_named_error() {
        let err = resolve(&[pattern("/etc/passwd:x:y")], &Scope::AllProcesses).unwrap_err();
        assert!(matches!(err, TargetError::Unreadable { .. }), "{err:?}");
        assert!(err.to_string().contains("not an ELF file"), "{err}");
    }

    #[test]
    fn a_misspelled_probe_names_the_nearest_ones() {
        if !Path::new(PYTHON).exists() {
            eprintln!("skipping: {PYTHON} is not installed");
            return;
        }
        let err = resolve(
            &[pattern(&format!("{PYTHON}:python:gc_start"))],
            &Scope::AllProcesses,
        )
        .unwrap_err();
        match &err {
            TargetError::NoMatch { nearest, .. } => assert_eq!(nearest[0], "python:gc__start"),
            other => panic!("want NoMatch, got {other:?}"),
        }
        assert!(
            err.to_string().contains("nearest: python:gc__start"),
            "{err}"
        );
    }

    #[test]
    fn a_file_without_probes_says_so() {
        // coreutils carry no .note.stapsdt.
        let p = pattern("/usr/bin/true:a:b");
        let err = resolve(&[p], &Scope::AllProcesses).unwrap_err();
        assert!(matches!(err, TargetError::NoProbes { .. }), "{err:?}");
        assert!(err.to_string().ends_with("it has no USDT probes"), "{err}");
    }

    #[test]
    fn a_process_that_is_gone_is_a_named_error() {
        let err = resolve(
            &[pattern("python:gc__start")],
            &Scope::Pids(vec![i32::MAX - 1]),
        )
        .unwrap_err();
        assert!(matches!(err, TargetError::Process { .. }), "{err:?}");
        assert!(err.to_string().contains("exited"), "{err}");
    }

    #[test]
    fn an_object_opens_by_its_plain_path_when_that_is_the_mapped_file() {
        let me = std::env::current_exe().unwrap();
        let key = ObjectKey::of_path(&me).unwrap();
        let mapped = MappedObject {
            path: me.clone(),
            deleted: false,
            key,
            open_paths: vec![PathBuf::from("/proc/self/root").join(me.strip_prefix("/").unwrap())],
            start: 0,
        };
        assert_eq!(attach_path(&mapped), me);
        // Another inode at that path (a container's file, or one replaced since): go through
        // the process's view instead.
        let other = MappedObject {
            key: ObjectKey {
                dev: key.dev,
                inode: key.inode + 1,
            },
            ..mapped.clone()
        };
        assert_eq!(attach_path(&other), mapped.open_paths[0]);
    }
}
