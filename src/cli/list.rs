//! `usdtop list`: the USDT probes of ELF files, of processes, or of the whole machine.

use anyhow::Result;
use clap::Args;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;
use usdtop::probes::discovery::catalog::Catalog;
use usdtop::probes::discovery::hints::ProcessFacts;
use usdtop::probes::discovery::process::{ObjectKey, ProbeCache, ProcessProbes, SkipReason};
use usdtop::probes::discovery::select::{describe_matches, expand_path, glob};
use usdtop::probes::{ObjectProbes, Probe, Site};

const EXAMPLES: &str = "\
Examples:
  usdtop list /usr/lib/postgresql/15/bin/postgres     probes of an ELF file
  usdtop list -p $(pgrep -o postgres)                 every object a process maps
  usdtop list -p 123 -p 456                           several processes, grouped by object
  usdtop list -p 123 --objects                        every mapped object with probe counts
  usdtop list                                         every process on the machine
  usdtop list -P python /usr/bin/python3.11           only provider `python`
  usdtop list -n 'query__*' -p 123                    probe names matching a glob
  usdtop list -n 'postgresql:lwlock__*'               provider:name glob (contains ':')
  usdtop list --json /usr/bin/python3.11 | jq -r .name
  usdtop list -v '/srv/app/bin/worker*'               every file a (quoted) glob matches

Text output: one block per object, one line per probe (sites, semaphore), then one line per
site: its pc (as in `readelf -n`) and its argument specs (SIZE@OPERAND, negative SIZE = signed).
A probe whose note points outside an executable segment (pc) or a writable one (semaphore) gets
a `! warning:` line; usdtop refuses to attach it.

--json prints one object per probe per line:
  {\"path\", \"provider\", \"name\", \"semaphore\", \"semaphore_offset\",
   \"sites\": [{\"pc\", \"file_offset\", \"args\": [\"-4@%esi\", ...]}], \"pids\": [...],
   \"warnings\": [...]}
Numbers are plain decimal integers: pc and semaphore are the addresses written in the note
(what readelf prints, in hex), file_offset and semaphore_offset are file offsets (what a uprobe
and its ref_ctr_offset take); semaphore and semaphore_offset are null for probes without one.
`pids` is present only when listing processes, `warnings` only for probes with a corrupt note.

A process running a runtime recognised without probes (a Python built without --with-dtrace,
Node.js 19+, a JDK without hotspot probes) gets one `usdtop: hint:` line on stderr saying why and
what has probes (not an error).

Exit status: 0 when everything named could be read; 1 when a file or process could not be
(each failure is one line on stderr naming it; the others are still listed).";

#[derive(Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct ListArgs {
    /// ELF files (executables or shared libraries); a quoted glob (`*`, `?`) lists every
    /// regular file it matches. With neither PATH nor -p: every process.
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,

    /// List every object mapped by process PID (repeatable).
    #[arg(short, long = "pid", value_name = "PID")]
    pub pids: Vec<u32>,

    /// Only probes whose provider matches GLOB (`*` and `?` wildcards).
    #[arg(short = 'P', long, value_name = "GLOB")]
    pub provider: Option<String>,

    /// Only probes whose name matches GLOB; a GLOB with ':' matches `provider:name`.
    #[arg(short, long, value_name = "GLOB")]
    pub name: Option<String>,

    /// One JSON object per probe per line.
    #[arg(long)]
    pub json: bool,

    /// One line per object instead of per probe: path, probe and site counts (and pids),
    /// including mapped objects without probes.
    #[arg(long)]
    pub objects: bool,

    /// Also report skipped processes, objects that could not be read, and the files each
    /// PATH glob matched.
    #[arg(short, long)]
    pub verbose: bool,

    /// Benchmark aid: scan N times in this process (the first cold, the rest with a warm cache)
    /// and print each scan's duration on stderr.
    #[arg(long, hide = true, value_name = "N", default_value_t = 1)]
    pub repeat: u32,
}

/// Which probes to show.
struct NameGlobs {
    provider: Option<String>,
    name: Option<String>,
}

impl NameGlobs {
    fn matches(&self, probe: &Probe) -> bool {
        let provider_ok = self
            .provider
            .as_deref()
            .is_none_or(|g| glob(g, &probe.provider));
        let name_ok = self.name.as_deref().is_none_or(|g| {
            if g.contains(':') {
                glob(g, &probe.full_name())
            } else {
                glob(g, &probe.name)
            }
        });
        provider_ok && name_ok
    }
}

/// One object to print, with the processes that map it (None when named as a file).
struct Entry<'a> {
    path: &'a Path,
    object: &'a ObjectProbes,
    pids: Option<Vec<u32>>,
}

pub fn run(args: ListArgs) -> Result<u8> {
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    match list(&args, &mut out).and_then(|code| out.flush().map(|_| code)) {
        Ok(code) => Ok(code),
        // `usdtop list | head` is not an error.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(0),
        Err(e) => Err(e.into()),
    }
}

fn list(args: &ListArgs, out: &mut impl Write) -> io::Result<u8> {
    let filter = NameGlobs {
        provider: args.provider.clone(),
        name: args.name.clone(),
    };
    let mut cache = ProbeCache::new();
    let mut failed = false;
    let mut last = None;
    for round in 0..args.repeat.max(1) {
        let started = Instant::now();
        let before = cache.stats();
        let scan = collect(args, &mut cache);
        if args.repeat > 1 {
            let after = cache.stats();
            eprintln!(
                "scan {}: {:.2} ms ({} processes, {} objects read, {} cache hits)",
                round + 1,
                started.elapsed().as_secs_f64() * 1e3,
                scan.processes.len(),
                after.misses - before.misses,
                after.hits - before.hits,
            );
        }
        last = Some(scan);
    }
    let scan = last.expect("at least one round");

    let mut entries: Vec<Entry> = Vec::new();
    for (path, result) in &scan.files {
        match result.as_ref() {
            Ok(object) => entries.push(Entry {
                path,
                object,
                pids: None,
            }),
            Err(e) => {
                eprintln!("usdtop: {}: {e}", path.display());
                failed = true;
            }
        }
    }
    for e in &scan.unmatched {
        eprintln!("usdtop: {e}");
        failed = true;
    }
    if args.verbose {
        for line in &scan.globs {
            eprintln!("usdtop: {line}");
        }
    }
    for (pid, reason) in &scan.missing_pids {
        eprintln!("usdtop: pid {pid}: {reason}");
        failed = true;
    }
    entries.extend(group_by_object(&scan.processes));

    let mut unreadable = 0usize;
    for p in &scan.processes {
        for o in &p.objects {
            if let Some(e) = o.error() {
                // An executable mapping that is not a readable ELF file (JIT code in a memfd,
                // a file whose mount vanished) is worth a line when asked for, and a count.
                unreadable += 1;
                if args.verbose || !args.pids.is_empty() {
                    eprintln!("usdtop: pid {}: {}: {e}", p.pid, o.object.path.display());
                }
            }
        }
    }
    if args.verbose {
        for s in &scan.skipped {
            eprintln!(
                "usdtop: skipped pid {} ({}): {}",
                s.0,
                s.1.as_deref().unwrap_or("?"),
                s.2
            );
        }
    }

    for line in runtime_hints(&scan.processes) {
        eprintln!("usdtop: hint: {line}");
    }

    if args.objects {
        write_objects(out, args.json, &scan, &filter)?;
        return Ok(u8::from(failed));
    }
    if args.json {
        for e in &entries {
            write_json(out, e, &filter)?;
        }
    } else {
        for e in &entries {
            write_text(out, e, &filter)?;
        }
        if scan.whole_machine {
            let objects = entries
                .iter()
                .filter(|e| e.object.probes.iter().any(|p| filter.matches(p)))
                .count();
            writeln!(
                out,
                "{objects} objects with probes in {} processes; {} processes skipped, \
                 {unreadable} objects unreadable (-v says why)",
                scan.processes.len(),
                scan.skipped.len()
            )?;
        }
    }
    Ok(u8::from(failed))
}

/// One line per runtime recognised without probes, naming the processes that run it.
fn runtime_hints(processes: &[ProcessProbes]) -> Vec<String> {
    let catalog = Catalog::builtin();
    let mut found: Vec<(String, Vec<(u32, &str)>)> = Vec::new();
    for p in processes {
        let Some(hint) = catalog.hints().missing_for(&process_facts(p)) else {
            continue;
        };
        let text = hint.text();
        match found.iter_mut().find(|(t, _)| *t == text) {
            Some((_, pids)) => pids.push((p.pid, &p.comm)),
            None => found.push((text, vec![(p.pid, &p.comm)])),
        }
    }
    found
        .into_iter()
        .map(|(text, pids)| {
            let who: Vec<String> = pids
                .iter()
                .map(|(pid, comm)| format!("{pid} ({comm})"))
                .collect();
            let word = if pids.len() == 1 { "pid" } else { "pids" };
            format!("{word} {}: {text}", who.join(", "))
        })
        .collect()
}

/// A scanned process as the hints look at it.
fn process_facts(p: &ProcessProbes) -> ProcessFacts<'_> {
    let objects = p
        .objects
        .iter()
        .filter_map(|o| o.object.path.to_str())
        .collect();
    let providers = p
        .objects
        .iter()
        .filter_map(|o| o.probes.as_ref().as_ref().ok())
        .flat_map(|o| o.probes.iter().map(|pr| pr.provider.as_str()))
        .collect();
    ProcessFacts {
        exe: p.exe.as_deref().and_then(|e| e.to_str()).unwrap_or(&p.comm),
        objects,
        providers,
    }
}

/// What one round of scanning found.
struct Scan {
    files: Vec<(PathBuf, usdtop::probes::discovery::process::CachedObject)>,
    processes: Vec<ProcessProbes>,
    missing_pids: Vec<(u32, SkipReason)>,
    skipped: Vec<(u32, Option<String>, SkipReason)>,
    whole_machine: bool,
    /// PATH globs that matched no file.
    unmatched: Vec<usdtop::probes::discovery::select::NoFileMatches>,
    /// What each PATH glob matched (for -v).
    globs: Vec<String>,
}

fn collect(args: &ListArgs, cache: &mut ProbeCache) -> Scan {
    let mut scan = Scan {
        files: Vec::new(),
        processes: Vec::new(),
        missing_pids: Vec::new(),
        skipped: Vec::new(),
        whole_machine: args.paths.is_empty() && args.pids.is_empty(),
        unmatched: Vec::new(),
        globs: Vec::new(),
    };
    for path in &args.paths {
        // A glob the shell did not expand (quoted, or it matched nothing there).
        let text = path.to_string_lossy();
        match expand_path(&text) {
            Ok(files) => {
                if files.len() != 1 || files[0] != *path {
                    scan.globs.push(describe_matches(&text, &files));
                }
                for f in files {
                    let probes = cache.file(&f);
                    scan.files.push((f, probes));
                }
            }
            Err(e) => scan.unmatched.push(e),
        }
    }
    for &pid in &args.pids {
        match cache.process(pid) {
            Ok(p) => scan.processes.push(p),
            Err(reason) => scan.missing_pids.push((pid, reason)),
        }
    }
    if scan.whole_machine {
        match cache.scan_all() {
            Ok(all) => {
                scan.processes = all.processes;
                scan.skipped = all
                    .skipped
                    .into_iter()
                    .map(|s| (s.pid, s.comm, s.reason))
                    .collect();
            }
            Err(e) => {
                eprintln!("usdtop: cannot list /proc: {e}");
                scan.missing_pids
                    .push((0, SkipReason::Unreadable(e.to_string())));
            }
        }
    }
    scan
}

/// Objects with probes, each once per (inode, mapped path), with the pids mapping it.
fn group_by_object(processes: &[ProcessProbes]) -> Vec<Entry<'_>> {
    let mut groups: BTreeMap<(&Path, ObjectKey), Entry> = BTreeMap::new();
    for p in processes {
        for o in p.with_probes() {
            let Ok(object) = o.probes.as_ref() else {
                continue;
            };
            let entry = groups
                .entry((o.object.path.as_path(), o.object.key))
                .or_insert_with(|| Entry {
                    path: &o.object.path,
                    object,
                    pids: Some(Vec::new()),
                });
            let pids = entry.pids.get_or_insert_with(Vec::new);
            if !pids.contains(&p.pid) {
                pids.push(p.pid);
            }
        }
    }
    let mut entries: Vec<Entry> = groups.into_values().collect();
    for e in &mut entries {
        if let Some(p) = &mut e.pids {
            p.sort_unstable();
        }
    }
    entries
}

#[derive(Serialize)]
struct JsonObject<'a> {
    path: &'a Path,
    probes: usize,
    sites: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pids: Option<Vec<u32>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// `--objects`: every object (files named, objects mapped by the processes), with counts of the
/// probes that pass the filter.
fn write_objects(
    out: &mut impl Write,
    json: bool,
    scan: &Scan,
    filter: &NameGlobs,
) -> io::Result<()> {
    let counts = |o: &ObjectProbes| {
        let probes: Vec<&Probe> = o.probes.iter().filter(|p| filter.matches(p)).collect();
        (probes.len(), probes.iter().map(|p| p.sites.len()).sum())
    };
    let mut rows: Vec<JsonObject> = Vec::new();
    for (path, result) in &scan.files {
        if let Ok(o) = result.as_ref() {
            let (probes, sites) = counts(o);
            rows.push(JsonObject {
                path,
                probes,
                sites,
                pids: None,
                error: None,
            });
        }
    }
    let mut groups: BTreeMap<(&Path, ObjectKey), JsonObject> = BTreeMap::new();
    for p in &scan.processes {
        for o in &p.objects {
            let (probes, sites, error) = match o.probes.as_ref() {
                Ok(obj) => {
                    let (n, s) = counts(obj);
                    (n, s, None)
                }
                Err(e) => (0, 0, Some(e.to_string())),
            };
            let row = groups
                .entry((o.object.path.as_path(), o.object.key))
                .or_insert_with(|| JsonObject {
                    path: &o.object.path,
                    probes,
                    sites,
                    pids: Some(Vec::new()),
                    error,
                });
            row.pids.get_or_insert_with(Vec::new).push(p.pid);
        }
    }
    rows.extend(groups.into_values());
    let width = rows
        .iter()
        .map(|r| r.path.as_os_str().len())
        .max()
        .unwrap_or(0);
    for r in &rows {
        if json {
            serde_json::to_writer(&mut *out, r)?;
            writeln!(out)?;
            continue;
        }
        write!(
            out,
            "{:<width$}  {:>10}  {:>10}",
            r.path.display(),
            plural(r.probes, "probe"),
            plural(r.sites, "site")
        )?;
        if let Some(pids) = &r.pids {
            let list: Vec<String> = pids.iter().map(u32::to_string).collect();
            write!(out, "  pids {}", list.join(" "))?;
        }
        if let Some(e) = &r.error {
            write!(out, "  [unreadable: {e}]")?;
        }
        writeln!(out)?;
    }
    Ok(())
}

/// The argument strings of a site, as written in the note.
fn site_args(site: &Site) -> Vec<&str> {
    match &site.args {
        Ok(args) => args.iter().map(|a| a.text.as_str()).collect(),
        Err(_) => site.args_text.split_whitespace().collect(),
    }
}

#[derive(Serialize)]
struct JsonSite<'a> {
    pc: u64,
    file_offset: u64,
    args: Vec<&'a str>,
}

#[derive(Serialize)]
struct JsonProbe<'a> {
    path: &'a Path,
    provider: &'a str,
    name: &'a str,
    semaphore: Option<u64>,
    semaphore_offset: Option<u64>,
    sites: Vec<JsonSite<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pids: Option<&'a [u32]>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
}

fn write_json(out: &mut impl Write, e: &Entry, filter: &NameGlobs) -> io::Result<()> {
    for probe in e.object.probes.iter().filter(|p| filter.matches(p)) {
        let line = JsonProbe {
            path: e.path,
            provider: &probe.provider,
            name: &probe.name,
            semaphore: probe.semaphore,
            semaphore_offset: probe.semaphore_offset,
            sites: probe
                .sites
                .iter()
                .map(|s| JsonSite {
                    pc: s.pc,
                    file_offset: s.file_offset,
                    args: site_args(s),
                })
                .collect(),
            pids: e.pids.as_deref(),
            warnings: probe.warnings.iter().map(|w| w.to_string()).collect(),
        };
        serde_json::to_writer(&mut *out, &line)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

fn write_text(out: &mut impl Write, e: &Entry, filter: &NameGlobs) -> io::Result<()> {
    let probes: Vec<&Probe> = e
        .object
        .probes
        .iter()
        .filter(|p| filter.matches(p))
        .collect();
    let filtering = filter.provider.is_some() || filter.name.is_some();
    if probes.is_empty() && (e.pids.is_some() || filtering) {
        return Ok(());
    }
    let sites: usize = probes.iter().map(|p| p.sites.len()).sum();
    let kind = if e.object.position_independent {
        "PIE/shared"
    } else {
        "fixed address"
    };
    write!(
        out,
        "{}  ({kind}; {}, {})",
        e.path.display(),
        plural(probes.len(), "probe"),
        plural(sites, "site")
    )?;
    if let Some(pids) = &e.pids {
        let list: Vec<String> = pids.iter().map(u32::to_string).collect();
        write!(out, "  pids {}", list.join(" "))?;
    }
    writeln!(out)?;
    if probes.is_empty() {
        writeln!(out, "  (no USDT probes)")?;
    }
    let name_width = probes
        .iter()
        .map(|p| p.provider.len() + 1 + p.name.len())
        .max()
        .unwrap_or(0);
    let site_width = probes
        .iter()
        .map(|p| plural(p.sites.len(), "site").len())
        .max()
        .unwrap_or(0);
    let pc_width = probes
        .iter()
        .flat_map(|p| &p.sites)
        .map(|s| format!("{:#x}", s.pc).len())
        .max()
        .unwrap_or(0);
    for p in probes {
        let sema = match p.semaphore {
            Some(s) => format!("semaphore {s:#x}"),
            None => "no semaphore".to_string(),
        };
        writeln!(
            out,
            "  {:<name_width$}  {:>site_width$}  {sema}",
            p.full_name(),
            plural(p.sites.len(), "site"),
        )?;
        for w in &p.warnings {
            writeln!(out, "      ! warning: {w}; usdtop will not attach it")?;
        }
        for s in &p.sites {
            let pc = format!("{:#x}", s.pc);
            let args = if s.args_text.is_empty() {
                "(no arguments)".to_string()
            } else {
                site_args(s).join(" ")
            };
            write!(out, "      {pc:>pc_width$}  {args}")?;
            if let Err(why) = &s.args {
                write!(out, "  [cannot parse: {why}]")?;
            }
            writeln!(out)?;
        }
    }
    Ok(())
}
