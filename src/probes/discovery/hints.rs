//! Hints, only where they apply: a runtime recognised in a process but built without probes,
//! and a probe that is attached but stays silent because a switch of its runtime is off. What
//! to recognise and what to say is data (`hints` in `assets/catalog.json`); this module
//! matches it and checks the switch where it can be read from outside (`/proc/PID/environ`,
//! `/proc/PID/cmdline`, what else is attached).

use super::select::glob;
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// The `hints` section of the catalog.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Hints {
    #[serde(default)]
    pub missing: Vec<MissingHint>,
    #[serde(default)]
    pub inert: Vec<InertHint>,
}

/// A runtime recognised by the name of its executable or of a library it maps, that has no
/// probe of `provider` in any object.
#[derive(Debug, Clone, Deserialize)]
pub struct MissingHint {
    pub runtime: String,
    /// Globs on the executable's file name.
    #[serde(default)]
    pub exe: Vec<String>,
    /// Globs on the file names of mapped objects.
    #[serde(default)]
    pub object: Vec<String>,
    /// The provider a build with probes has.
    pub provider: String,
    pub why: String,
    pub fix: String,
}

impl MissingHint {
    /// One line: what, why, and what gives probes.
    pub fn text(&self) -> String {
        format!(
            "{} without USDT probes: {}; {}",
            self.runtime, self.why, self.fix
        )
    }
}

/// A probe that fires only while a switch of its runtime is on.
#[derive(Debug, Clone, Deserialize)]
pub struct InertHint {
    /// Globs on `provider:name`.
    pub probes: Vec<String>,
    /// Only in objects whose file name matches this glob (a quirk of one version).
    #[serde(default)]
    pub object: Option<String>,
    #[serde(default)]
    pub switch: Switch,
    pub why: String,
    pub fix: String,
}

/// How to tell from outside whether the switch is on.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Switch {
    /// An environment variable of the process with this value (`USE_ZEND_DTRACE=1`).
    Env { name: String, value: String },
    /// Any of these command-line flags, in the process's arguments or in one of the
    /// environment variables the runtime also reads them from (`JAVA_TOOL_OPTIONS`).
    Flags {
        any: Vec<String>,
        #[serde(default)]
        env: Vec<String>,
    },
    /// Another probe attached at the same time (CPython 3.11's `python:line`).
    Attached { probe: String },
    /// Not visible from outside the process: the hint is given on silence alone.
    #[default]
    Unknown,
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// What a process is, as the missing-probe hints look at it.
pub struct ProcessFacts<'a> {
    /// The executable's path (or its name when only that is known).
    pub exe: &'a str,
    /// Paths of the objects it maps.
    pub objects: Vec<&'a str>,
    /// Providers with at least one probe in one of its objects.
    pub providers: HashSet<&'a str>,
}

impl Hints {
    /// The hint for a process running a known runtime that has no probes of its own.
    pub fn missing_for(&self, facts: &ProcessFacts) -> Option<&MissingHint> {
        let exe = file_name(facts.exe);
        self.missing.iter().find(|h| {
            let recognised = h.exe.iter().any(|g| glob(g, exe))
                || facts
                    .objects
                    .iter()
                    .any(|o| h.object.iter().any(|g| glob(g, file_name(o))));
            recognised && !facts.providers.contains(h.provider.as_str())
        })
    }

    /// The hint for probe `full_name` in the object at `path`, if one is known.
    pub fn inert_for(&self, full_name: &str, path: &str) -> Option<&InertHint> {
        self.inert_index(full_name, path).map(|i| &self.inert[i])
    }

    fn inert_index(&self, full_name: &str, path: &str) -> Option<usize> {
        self.inert.iter().position(|h| {
            h.probes.iter().any(|g| glob(g, full_name))
                && h.object.as_ref().is_none_or(|g| glob(g, file_name(path)))
        })
    }
}

/// A NUL-separated `/proc/PID/FILE` (environ, cmdline), or nothing if it cannot be read.
fn proc_strings(pid: u32, file: &str) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/{file}"))
        .map(|b| {
            b.split(|&c| c == 0)
                .filter(|s| !s.is_empty())
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn env_of(pid: u32) -> HashMap<String, String> {
    proc_strings(pid, "environ")
        .into_iter()
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.to_string(), v.to_string()))
        })
        .collect()
}

/// Whether the switch is on in process `pid` (`None`: cannot tell, e.g. it is gone).
fn switch_on(switch: &Switch, pid: u32) -> Option<bool> {
    match switch {
        Switch::Env { name, value } => {
            if !Path::new(&format!("/proc/{pid}/environ")).exists() {
                return None;
            }
            Some(env_of(pid).get(name) == Some(value))
        }
        Switch::Flags { any, env } => {
            let args = proc_strings(pid, "cmdline");
            if args.is_empty() {
                return None;
            }
            let vars = env_of(pid);
            let from_env = env
                .iter()
                .filter_map(|e| vars.get(e))
                .flat_map(|v| v.split_whitespace().map(str::to_string));
            let all: Vec<String> = args.into_iter().chain(from_env).collect();
            Some(any.iter().any(|f| all.contains(f)))
        }
        Switch::Attached { .. } | Switch::Unknown => None,
    }
}

/// The processes that map the file at `path` (from `/proc/PID/maps`), for a probe attached to
/// a file rather than to processes.
pub fn pids_mapping(path: &str) -> Vec<u32> {
    let Ok(pids) = super::process::all_pids() else {
        return Vec::new();
    };
    pids.into_iter()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/maps"))
                .is_ok_and(|maps| maps.lines().any(|l| l.ends_with(path)))
        })
        .collect()
}

impl InertHint {
    /// Why probe `full_name` (or several, comma-separated) is silent, if this hint applies: the switch is off in one of
    /// `pids` (the processes that run it), or the probe it needs is not among `attached`, or
    /// the switch cannot be seen from outside. `None` when the switch is on (or there is no
    /// process to look at), so the hint is never given where it does not apply.
    pub fn applies(&self, full_name: &str, pids: &[u32], attached: &[String]) -> Option<String> {
        let said = format!(
            "{full_name}: no hits in {} s: {}; {}",
            SILENCE_NS / 1_000_000_000,
            self.why,
            self.fix
        );
        match &self.switch {
            Switch::Attached { probe } => (!attached.contains(probe)).then_some(said),
            Switch::Unknown => (!pids.is_empty()).then_some(said),
            s => {
                let off = pids.iter().find(|&&pid| switch_on(s, pid) == Some(false))?;
                Some(format!("{said} (pid {off} runs without it)"))
            }
        }
    }
}

/// How long an attached probe may stay silent before its hint is looked for.
pub const SILENCE_NS: u64 = 5_000_000_000;

/// An attached probe and its hits so far, as the watch sees it.
#[derive(Debug, Clone)]
pub struct ProbeHits<'a> {
    /// The object it is attached in.
    pub path: &'a str,
    /// `provider:name`.
    pub full_name: String,
    pub hits: u64,
}

/// Watches attached probes for silence and gives each probe's hint at most once.
#[derive(Debug, Default)]
pub struct InertWatch {
    /// When each (path, probe) was first seen attached without hits (monotonic ns).
    silent_since: HashMap<(String, String), u64>,
    /// Probes already decided (hit, or looked at once).
    done: HashSet<(String, String)>,
}

impl InertWatch {
    /// Looks at the attached probes and their hit counts at `now_ns`; returns the hints due
    /// now. `pids_of` gives the processes a probe (by path) is traced in; when it gives none,
    /// every process mapping the probe's file is looked at.
    pub fn check(
        &mut self,
        hints: &Hints,
        now_ns: u64,
        probes: &[ProbeHits],
        pids_of: impl Fn(&str) -> Vec<u32>,
    ) -> Vec<String> {
        let attached: Vec<String> = probes.iter().map(|p| p.full_name.clone()).collect();
        // Probes due now, by hint (entry and return silent for one reason: said once) and by
        // object (whose processes are looked at).
        let mut due: Vec<(usize, &str, Vec<&str>)> = Vec::new();
        for p in probes {
            let id = (p.path.to_string(), p.full_name.clone());
            if self.done.contains(&id) {
                continue;
            }
            let Some(which) = hints.inert_index(&p.full_name, p.path) else {
                self.done.insert(id);
                continue;
            };
            if p.hits > 0 {
                self.done.insert(id);
                continue;
            }
            let since = *self.silent_since.entry(id.clone()).or_insert(now_ns);
            if now_ns.saturating_sub(since) < SILENCE_NS {
                continue;
            }
            self.done.insert(id);
            match due
                .iter_mut()
                .find(|(w, path, _)| *w == which && *path == p.path)
            {
                Some((_, _, names)) => names.push(&p.full_name),
                None => due.push((which, p.path, vec![&p.full_name])),
            }
        }
        let mut out = Vec::new();
        for (which, path, names) in due {
            let mut pids = pids_of(path);
            if pids.is_empty() {
                pids = pids_mapping(path);
            }
            out.extend(hints.inert[which].applies(&names.join(", "), &pids, &attached));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probes::discovery::catalog::Catalog;

    fn facts<'a>(exe: &'a str, objects: &[&'a str], providers: &[&'a str]) -> ProcessFacts<'a> {
        ProcessFacts {
            exe,
            objects: objects.to_vec(),
            providers: providers.iter().copied().collect(),
        }
    }

    #[test]
    fn a_python_without_its_provider_gets_the_missing_probes_hint() {
        let hints = Catalog::builtin().hints().clone();
        let pyenv = "/root/.pyenv/versions/3.11.9/bin/python3.11";
        let h = hints.missing_for(&facts(pyenv, &[pyenv], &[])).unwrap();
        assert!(h.text().contains("--with-dtrace"), "{}", h.text());
        let debian = "/usr/bin/python3.11";
        assert!(hints
            .missing_for(&facts(debian, &[debian], &["python"]))
            .is_none());
        assert!(hints
            .missing_for(&facts("/usr/bin/bash", &["/usr/bin/bash"], &[]))
            .is_none());
    }

    #[test]
    fn node_and_a_jvm_are_recognised_by_executable_and_library() {
        let hints = Catalog::builtin().hints().clone();
        let node = hints
            .missing_for(&facts("/usr/bin/node", &[], &[]))
            .unwrap();
        assert!(node.text().contains("43652"), "{}", node.text());
        let lib = "/usr/lib/jvm/x/lib/server/libjvm.so";
        let jvm = hints
            .missing_for(&facts("/usr/bin/java", &[lib], &[]))
            .unwrap();
        assert_eq!(jvm.provider, "hotspot");
        assert!(hints
            .missing_for(&facts("/usr/bin/java", &[lib], &["hotspot"]))
            .is_none());
    }

    #[test]
    fn inert_hints_name_the_switch_and_only_apply_where_it_is_off() {
        let hints = Catalog::builtin().hints().clone();
        let php = hints
            .inert_for("php:function__entry", "/usr/bin/php8.2")
            .unwrap();
        assert!(matches!(&php.switch, Switch::Env { name, .. } if name == "USE_ZEND_DTRACE"));
        assert!(hints
            .inert_for("php:request__startup", "/usr/bin/php8.2")
            .is_none());
        // CPython's quirk is 3.11's, and attaching python:line is the switch.
        let py = hints
            .inert_for("python:function__entry", "/usr/bin/python3.11")
            .unwrap();
        assert!(py
            .applies("python:function__entry", &[], &["python:line".into()])
            .is_none());
        let said = py.applies("python:function__entry", &[], &[]).unwrap();
        assert!(said.contains("python:line"), "{said}");
        assert!(hints
            .inert_for("python:function__entry", "/usr/bin/python3.12")
            .is_none());
        for probe in [
            "hotspot:method__entry",
            "hotspot:object__alloc",
            "hotspot:monitor__wait",
            "ruby:method__entry",
        ] {
            assert!(hints.inert_for(probe, "/x/libjvm.so").is_some(), "{probe}");
        }
    }

    #[test]
    fn a_switch_is_read_from_the_process_environment_and_command_line() {
        // This test process: no USE_ZEND_DTRACE, and its own argv[0] is a flag it "has".
        let me = std::process::id();
        let env = Switch::Env {
            name: "USE_ZEND_DTRACE".into(),
            value: "1".into(),
        };
        assert_eq!(switch_on(&env, me), Some(false));
        let path = Switch::Env {
            name: "PATH".into(),
            value: std::env::var("PATH").unwrap(),
        };
        assert_eq!(switch_on(&path, me), Some(true));
        let argv0 = std::env::args().next().unwrap();
        let flags = Switch::Flags {
            any: vec!["-XX:+DTraceMethodProbes".into(), argv0],
            env: vec![],
        };
        assert_eq!(switch_on(&flags, me), Some(true));
        assert_eq!(switch_on(&env, u32::MAX), None);
    }

    #[test]
    fn the_watch_waits_for_silence_and_says_each_hint_once() {
        let hints = Catalog::builtin().hints().clone();
        let probe = |name: &str, hits| ProbeHits {
            path: "/usr/bin/python3.11",
            full_name: format!("python:{name}"),
            hits,
        };
        let mut w = InertWatch::default();
        let silent = vec![
            probe("function__entry", 0),
            probe("function__return", 0),
            probe("gc__start", 0),
        ];
        let none = |_: &str| Vec::new();
        assert!(w.check(&hints, 1_000, &silent, none).is_empty());
        let later = 1_000 + SILENCE_NS;
        let said = w.check(&hints, later, &silent, none);
        assert_eq!(said.len(), 1, "one line for one cause: {said:?}");
        assert!(
            said[0].starts_with("python:function__entry, python:function__return: no hits"),
            "{said:?}"
        );
        assert!(w.check(&hints, later * 2, &silent, none).is_empty());
        // A probe that fires is never hinted.
        let mut w = InertWatch::default();
        let firing = [probe("function__entry", 3)];
        assert!(w.check(&hints, 0, &firing, none).is_empty());
        assert!(w.check(&hints, SILENCE_NS * 2, &firing, none).is_empty());
    }
}
