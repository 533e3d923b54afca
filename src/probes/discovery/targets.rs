//! Resolving probe patterns to targets: which probe, in which object, opened through which path.
//!
//! Every command that attaches by name (`trace`, `latency`, `top`) goes through [`resolve`]:
//! build a pool of candidate objects (the files the patterns name, then the objects of the given
//! processes or of every running process), keep each (device, inode) once, and match each
//! pattern against the pool. The open path follows one rule, [`attach_path`], which the TUI's
//! discovery uses too.

use super::elf::{BadProbe, ObjectProbes, Probe};
use super::process::{MappedObject, ObjectKey, ProbeCache, SkipReason};
use super::select::{
    describe_matches, expand_path, has_glob, nearest, NoFileMatches, ProbePattern,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use thiserror::Error;

/// Where patterns without a PATH are looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// The objects these processes map.
    Pids(Vec<u32>),
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
    Process { pid: u32, why: SkipReason },
    #[error("scanning processes: {0}")]
    Scan(#[source] std::io::Error),
    /// A PATH with wildcards that names no file.
    #[error(transparent)]
    NoFile(#[from] NoFileMatches),
    /// A matched probe whose note points outside the segments it must be in.
    #[error("{}: {bad}", path.display())]
    Refused { path: PathBuf, bad: BadProbe },
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

/// What the patterns resolved to.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The targets of each pattern, in pattern order; every list is non-empty.
    pub targets: Vec<Vec<Target>>,
    /// The files each pattern's PATH names (more than one for a glob), None without a PATH.
    pub files: Vec<Option<Vec<PathBuf>>>,
    /// Files a PATH glob matched that are not readable ELF objects (a script or a data file
    /// next to the binaries), and why; left out of `files`.
    pub skipped: Vec<(PathBuf, String)>,
}

impl Resolved {
    /// What the PATH globs did, for stderr: with `verbose`, one line per glob naming the files
    /// it matched and one per file skipped; without, only a count of the files skipped.
    pub fn report(&self, patterns: &[ProbePattern], verbose: bool) -> Vec<String> {
        if !verbose {
            return match self.skipped.len() {
                0 => Vec::new(),
                n => vec![format!(
                    "{n} file(s) a PATH glob matched have no readable probes and were skipped \
                     (-v names them)"
                )],
            };
        }
        let mut lines: Vec<String> = patterns
            .iter()
            .zip(&self.files)
            .filter_map(|(p, files)| {
                let path = p.path.as_deref().filter(|p| has_glob(p))?;
                Some(describe_matches(path, files.as_deref()?))
            })
            .collect();
        // The done probe of a pair usually names the start's PATH: say it once.
        lines.dedup();
        lines.extend(
            self.skipped
                .iter()
                .map(|(path, why)| format!("skipped {}: {why}", path.display())),
        );
        lines
    }
}

/// The targets of [`resolve_patterns`], without the files.
fn resolve_each(patterns: &[ProbePattern], scope: &Scope) -> Result<Vec<Vec<Target>>, TargetError> {
    Ok(resolve_patterns(patterns, scope)?.targets)
}

/// The targets of each pattern, in pattern order; every list is non-empty. A pattern with a
/// PATH looks only in that file, or in the files its glob matches (by device and inode, so a
/// symlink and its target agree); the others look in the objects of `scope`. A probe whose
/// note is corrupt ([`Probe::attachable`]) is an error, so nothing is attached. Also says
/// which files each PATH named.
pub fn resolve_patterns(patterns: &[ProbePattern], scope: &Scope) -> Result<Resolved, TargetError> {
    let mut cache = ProbeCache::new();
    let mut pool = Pool::default();
    let mut files: Vec<Option<Vec<PathBuf>>> = Vec::new();
    let mut skipped = Vec::new();
    for pattern in patterns {
        let Some(path) = pattern.path.as_deref() else {
            files.push(None);
            continue;
        };
        let matched = expand_path(path)?;
        let glob = matched.len() > 1 || matched[0] != Path::new(path);
        let mut readable = Vec::new();
        for file in matched {
            let why = match cache.file(&file).as_ref() {
                Ok(o) => {
                    pool.add(o, file.clone(), ObjectKey::of_path(&file).ok());
                    readable.push(file);
                    continue;
                }
                Err(e) => e.to_string(),
            };
            // A file named outright must be readable; one a glob matched among others is
            // skipped (and reported), unless no file it matched is.
            if !glob {
                return Err(TargetError::Unreadable { path: file, why });
            }
            skipped.push((file, why));
        }
        if readable.is_empty() {
            let (path, why) = skipped.pop().expect("a glob matches a file");
            return Err(TargetError::Unreadable { path, why });
        }
        files.push(Some(readable));
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
    let targets: Vec<Vec<Target>> = patterns
        .iter()
        .zip(&files)
        .map(|(p, f)| matches(p, f.as_deref(), &pool, scope))
        .collect::<Result<_, _>>()?;
    for t in targets.iter().flatten() {
        t.probe().attachable().map_err(|bad| TargetError::Refused {
            path: t.open_path.clone(),
            bad,
        })?;
    }
    Ok(Resolved {
        targets,
        files,
        skipped,
    })
}

/// The distinct targets of all patterns (a probe two patterns match comes once), in order.
pub fn resolve(patterns: &[ProbePattern], scope: &Scope) -> Result<Vec<Target>, TargetError> {
    Ok(distinct(resolve_each(patterns, scope)?))
}

/// The targets of all lists, each once, in order.
pub fn distinct(lists: Vec<Vec<Target>>) -> Vec<Target> {
    let mut out: Vec<Target> = Vec::new();
    for t in lists.into_iter().flatten() {
        if !out.iter().any(|o| o.same(&t)) {
            out.push(t);
        }
    }
    out
}

/// An argument index beyond what a probe has at one of its sites.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{probe} has {counts}; {option} is not one of them")]
pub struct ArgIndexError {
    pub probe: String,
    /// The argument count(s) of its sites, in words.
    pub counts: String,
    /// The option as the user wrote it, e.g. `--by arg99`.
    pub option: String,
}

/// Checks that argument `index` exists at every site of every probe in `targets` (sites of one
/// probe may differ, and reading past a site's arguments would read garbage), before anything
/// is attached. `option` names the option for the message, e.g. `--str 9` or `--by arg9`.
pub fn check_arg_index(
    targets: &[Target],
    index: usize,
    option: &str,
) -> Result<(), ArgIndexError> {
    let mut names: Vec<String> = Vec::new();
    for t in targets {
        let name = t.probe().full_name();
        if !names.contains(&name) {
            names.push(name);
        }
    }
    for name in names {
        let mut counts: Vec<usize> = targets
            .iter()
            .filter(|t| t.probe().full_name() == name)
            .flat_map(|t| t.probe().sites.iter().map(|s| s.arg_count()))
            .collect();
        counts.sort_unstable();
        counts.dedup();
        let (Some(&least), Some(&most)) = (counts.first(), counts.last()) else {
            continue;
        };
        if index >= least {
            return Err(ArgIndexError {
                probe: name,
                counts: count_words(least, most),
                option: option.to_string(),
            });
        }
    }
    Ok(())
}

/// `3 arguments (arg0..arg2)`, or for sites that differ `2 to 4 arguments depending on the
/// site (arg0..arg1 at every site)`.
fn count_words(least: usize, most: usize) -> String {
    let range = |n: usize| match n {
        0 => "none".to_string(),
        1 => "arg0".to_string(),
        n => format!("arg0..arg{}", n - 1),
    };
    if least == most {
        match least {
            0 => "no arguments".into(),
            1 => "1 argument (arg0)".into(),
            n => format!("{n} arguments ({})", range(n)),
        }
    } else {
        format!(
            "{least} to {most} arguments depending on the site ({} at every site)",
            range(least)
        )
    }
}

fn matches(
    pattern: &ProbePattern,
    files: Option<&[PathBuf]>,
    pool: &Pool,
    scope: &Scope,
) -> Result<Vec<Target>, TargetError> {
    let only: Option<Vec<(&Path, Option<ObjectKey>)>> = files.map(|files| {
        files
            .iter()
            .map(|p| (p.as_path(), ObjectKey::of_path(p).ok()))
            .collect()
    });
    let candidates: Vec<&Candidate> = pool
        .0
        .iter()
        .filter(|c| match &only {
            None => true,
            Some(files) => files.iter().any(|(path, key)| match key {
                Some(key) => c.key == Some(*key),
                None => c.open_path == *path,
            }),
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

    /// `path`, after failing the test if it is missing (a test that skips cannot fail).
    fn require(path: &'static str) -> &'static str {
        let package = match path {
            POSTGRES => "postgresql-15",
            PYTHON => "python3.11",
            _ => "the package that provides it",
        };
        assert!(
            Path::new(path).exists(),
            "{path} is not installed: it comes with {package}; `bash .ci/install-deps` installs \
             everything the tests need"
        );
        path
    }

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
        let p = pattern(&format!("{}:postgresql:query__*", require(POSTGRES)));
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
        require(PYTHON);
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
        let dir = std::env::temp_dir().join(format!("usdtop-link-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let link = dir.join("python");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(require(PYTHON), &link).unwrap();
        let both = [
            pattern(&format!("{}:python:gc__start", link.display())),
            pattern(&format!("{PYTHON}:python:gc__done")),
        ];
        let each = resolve_each(&both, &Scope::AllProcesses);
        std::fs::remove_dir_all(&dir).unwrap();
        let each = each.unwrap();
        assert_eq!(names(&each[0]), ["python:gc__start"]);
        assert_eq!(names(&each[1]), ["python:gc__done"]);
        assert!(Arc::ptr_eq(&each[0][0].object, &each[1][0].object));
    }

    #[test]
    fn an_argument_index_is_checked_at_every_site_of_the_probe() {
        require(POSTGRES);
        // sort__start has four sites; each has 6 arguments in PostgreSQL 15.
        let sort = resolve(
            &[pattern(&format!("{POSTGRES}:postgresql:sort__start"))],
            &Scope::AllProcesses,
        )
        .unwrap();
        assert!(check_arg_index(&sort, 5, "--by arg5").is_ok());
        let err = check_arg_index(&sort, 6, "--by arg6").unwrap_err();
        assert_eq!(
            err.to_string(),
            "postgresql:sort__start has 6 arguments (arg0..arg5); --by arg6 is not one of them"
        );
    }

    #[test]
    fn argument_counts_that_differ_between_sites_are_named_as_a_range() {
        assert_eq!(
            count_words(2, 4),
            "2 to 4 arguments depending on the site (arg0..arg1 at every site)"
        );
        assert_eq!(
            count_words(0, 1),
            "0 to 1 arguments depending on the site (none at every site)"
        );
        assert_eq!(count_words(0, 0), "no arguments");
        assert_eq!(count_words(1, 1), "1 argument (arg0)");
    }

    #[test]
    fn a_path_glob_that_matches_nothing_names_the_pattern() {
        let err =
            resolve(&[pattern("/nonexistent-dir-*/x:a:b")], &Scope::AllProcesses).unwrap_err();
        assert!(matches!(err, TargetError::NoFile(_)), "{err:?}");
        assert_eq!(err.to_string(), "no file matches `/nonexistent-dir-*/x`");
    }

    #[test]
    fn a_path_that_is_not_elf_is_a_named_error() {
        let err = resolve(&[pattern("/etc/passwd:x:y")], &Scope::AllProcesses).unwrap_err();
        assert!(matches!(err, TargetError::Unreadable { .. }), "{err:?}");
        assert!(err.to_string().contains("not an ELF file"), "{err}");
    }

    #[test]
    fn a_misspelled_probe_names_the_nearest_ones() {
        let err = resolve(
            &[pattern(&format!("{}:python:gc_start", require(PYTHON)))],
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
            &Scope::Pids(vec![i32::MAX as u32 - 1]),
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
