//! What `usdtop export` serves, from the command line and the `-c` file together: where to
//! listen, which processes, and the probes (counted, or pairs measured). The file says for many
//! probes what the flags say for one (assets/usdtop.toml is a commented example).
//!
//! How they combine: the command line's probe (`--count` or `--latency`, with its `--done`,
//! `--key`, `--by`) is one more probe next to the file's. `--listen` and `-p` replace the file's
//! `listen` and `pids`. For `fold` and `max_keys`, a probe's own setting wins, then the command
//! line's, then the file's top level, then the default (no folding, 100 keys).

use anyhow::{bail, Result};
use serde::Deserialize;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use toml::Spanned;
use usdtop::probes::discovery::select::ProbePattern;

pub const DEFAULT_MAX_KEYS: usize = 100;
/// The origin of the command line's probe.
pub const CLI: &str = "the command line";

/// A mistake in the file: where, and what. Shown as `FILE:LINE:COLUMN: what`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    pub path: PathBuf,
    /// 1-based line and column, when the mistake has a place.
    pub at: Option<(usize, usize)>,
    pub what: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.at {
            Some((line, col)) => write!(f, "{}:{line}:{col}: {}", self.path.display(), self.what),
            None => write!(f, "{}: {}", self.path.display(), self.what),
        }
    }
}

impl std::error::Error for FileError {}

/// The file as written. Unknown fields are refused, so a typo is never silently ignored.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    listen: Option<Spanned<String>>,
    pids: Option<Spanned<Vec<u32>>>,
    max_keys: Option<Spanned<usize>>,
    fold: Option<bool>,
    #[serde(default)]
    count: Vec<Spanned<CountTable>>,
    #[serde(default)]
    latency: Vec<Spanned<LatencyTable>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CountTable {
    probe: Spanned<String>,
    by: Option<String>,
    fold: Option<bool>,
    max_keys: Option<Spanned<usize>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LatencyTable {
    start: Spanned<String>,
    done: Option<Spanned<String>>,
    key: Option<String>,
    by: Option<String>,
    fold: Option<bool>,
    max_keys: Option<Spanned<usize>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Hits of a probe by the --by key.
    Count,
    /// Latency from a start probe to its done, by the --by key.
    Latency,
}

/// One probe to serve, as asked: what identifies its attachment, and how its keys are served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSpec {
    pub kind: Kind,
    /// The counted probe, or the start of the pair.
    pub probe: String,
    pub done: Option<String>,
    pub key: Option<String>,
    pub by: Option<String>,
    pub fold: bool,
    /// Only these processes (and their children); empty: every process running the file.
    pub pids: Vec<u32>,
    pub max_keys: usize,
    /// Where it was asked: `the command line` or `FILE:LINE`.
    pub origin: String,
}

impl ProbeSpec {
    /// `probe` with nothing else said yet.
    fn asked(kind: Kind, probe: &str, origin: String) -> ProbeSpec {
        ProbeSpec {
            kind,
            probe: probe.to_string(),
            done: None,
            key: None,
            by: None,
            fold: false,
            pids: Vec::new(),
            max_keys: DEFAULT_MAX_KEYS,
            origin,
        }
    }

    /// Whether `other` asks for the same attachment (what a reload keeps attached, with its
    /// counters); `max_keys` and the origin may differ.
    pub fn same_attachment(&self, other: &ProbeSpec) -> bool {
        (
            self.kind,
            &self.probe,
            &self.done,
            &self.key,
            &self.by,
            self.fold,
            &self.pids,
        ) == (
            other.kind,
            &other.probe,
            &other.done,
            &other.key,
            &other.by,
            other.fold,
            &other.pids,
        )
    }
}

/// What the command line says (see [`super::export::ExportArgs`]).
#[derive(Debug, Clone, Default)]
pub struct Flags {
    pub listen: Option<SocketAddr>,
    pub pids: Vec<u32>,
    pub count: Option<String>,
    pub latency: Option<String>,
    pub done: Option<String>,
    pub key: Option<String>,
    pub by: Option<String>,
    pub fold: bool,
    pub max_keys: Option<usize>,
}

/// Everything to serve.
#[derive(Debug, Clone)]
pub struct Setup {
    pub listen: SocketAddr,
    pub pids: Vec<u32>,
    pub probes: Vec<ProbeSpec>,
}

/// The setup of the flags and, with `-c`, of the file read now.
pub fn setup(flags: &Flags, config: Option<&Path>) -> Result<Setup> {
    let file = match config {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| FileError {
                path: path.to_path_buf(),
                at: None,
                what: format!("cannot read it: {e}"),
            })?;
            Some(parse(path, &text)?)
        }
        None => None,
    };
    combine(flags, file)
}

/// The file's settings, checked, with the places of its probes.
struct Parsed {
    listen: Option<SocketAddr>,
    pids: Vec<u32>,
    max_keys: Option<usize>,
    fold: Option<bool>,
    /// The probes with their own fold and max_keys (None: not said in the table).
    probes: Vec<(ProbeSpec, Option<bool>, Option<usize>)>,
}

fn parse(path: &Path, text: &str) -> Result<Parsed, FileError> {
    let err = |span: Option<std::ops::Range<usize>>, what: String| FileError {
        path: path.to_path_buf(),
        at: span.map(|s| line_col(text, s.start)),
        what,
    };
    let file: File = toml::from_str(text).map_err(|e| err(e.span(), e.message().to_string()))?;
    let listen = file
        .listen
        .map(|l| {
            l.get_ref().parse::<SocketAddr>().map_err(|_| {
                err(
                    Some(l.span()),
                    format!("listen = \"{}\" is not HOST:PORT", l.get_ref()),
                )
            })
        })
        .transpose()?;
    let at_least_one = |n: &Option<Spanned<usize>>, what: &str| match n {
        Some(n) if *n.get_ref() == 0 => {
            Err(err(Some(n.span()), format!("{what} must be at least 1")))
        }
        _ => Ok(n.as_ref().map(|n| *n.get_ref())),
    };
    let max_keys = at_least_one(&file.max_keys, "max_keys")?;
    let pids = match file.pids {
        Some(p) if p.get_ref().contains(&0) => {
            return Err(err(Some(p.span()), "pids: 0 is not a process id".into()))
        }
        Some(p) => p.into_inner(),
        None => Vec::new(),
    };
    let origin = |span: std::ops::Range<usize>| {
        format!("{}:{}", path.display(), line_col(text, span.start).0)
    };
    let check = |s: &Spanned<String>, field: &str| {
        ProbePattern::parse_exact(s.get_ref())
            .map(|_| ())
            .map_err(|e| {
                err(
                    Some(s.span()),
                    format!("{field} = \"{}\": {e}", s.get_ref()),
                )
            })
    };
    let mut probes = Vec::new();
    for t in &file.count {
        let c = t.get_ref();
        check(&c.probe, "probe")?;
        let spec = ProbeSpec {
            by: c.by.clone(),
            ..ProbeSpec::asked(Kind::Count, c.probe.get_ref(), origin(t.span()))
        };
        probes.push((spec, c.fold, at_least_one(&c.max_keys, "max_keys")?));
    }
    for t in &file.latency {
        let l = t.get_ref();
        check(&l.start, "start")?;
        if let Some(d) = &l.done {
            check(d, "done")?;
        }
        let spec = ProbeSpec {
            done: l.done.as_ref().map(|d| d.get_ref().clone()),
            key: l.key.clone(),
            by: l.by.clone(),
            ..ProbeSpec::asked(Kind::Latency, l.start.get_ref(), origin(t.span()))
        };
        probes.push((spec, l.fold, at_least_one(&l.max_keys, "max_keys")?));
    }
    Ok(Parsed {
        listen,
        pids,
        max_keys,
        fold: file.fold,
        probes,
    })
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, col)
}

fn combine(flags: &Flags, file: Option<Parsed>) -> Result<Setup> {
    let (file_listen, file_pids, file_max, file_fold, file_probes) = match file {
        Some(p) => (p.listen, p.pids, p.max_keys, p.fold, p.probes),
        None => (None, Vec::new(), None, None, Vec::new()),
    };
    let Some(listen) = flags.listen.or(file_listen) else {
        bail!("where should metrics be served? give --listen HOST:PORT (or listen in the -c file)")
    };
    let pids = match flags.pids.is_empty() {
        true => file_pids,
        false => flags.pids.clone(),
    };
    // A probe's own setting, then the command line's, then the file's top level.
    let cli_fold = flags.fold.then_some(true);
    let resolve = |own_fold: Option<bool>, own_max: Option<usize>| {
        (
            own_fold.or(cli_fold).or(file_fold).unwrap_or(false),
            own_max
                .or(flags.max_keys)
                .or(file_max)
                .unwrap_or(DEFAULT_MAX_KEYS),
        )
    };
    let mut probes = Vec::new();
    let cli = match (&flags.count, &flags.latency) {
        (Some(p), _) => Some((Kind::Count, p)),
        (None, Some(p)) => Some((Kind::Latency, p)),
        (None, None) => None,
    };
    if let Some((kind, probe)) = cli {
        let (fold, max_keys) = resolve(None, None);
        probes.push(ProbeSpec {
            done: flags.done.clone(),
            key: flags.key.clone(),
            by: flags.by.clone(),
            fold,
            pids: pids.clone(),
            max_keys,
            ..ProbeSpec::asked(kind, probe, CLI.into())
        });
    }
    for (mut spec, own_fold, own_max) in file_probes {
        (spec.fold, spec.max_keys) = resolve(own_fold, own_max);
        spec.pids = pids.clone();
        if let Some(twin) = probes.iter().find(|p| p.same_attachment(&spec)) {
            bail!(
                "{}: the same probe as {} (give it once)",
                spec.origin,
                twin.origin
            );
        }
        probes.push(spec);
    }
    if probes.is_empty() {
        bail!("nothing to serve: give --count PROBE or --latency START, or probes in the -c file");
    }
    Ok(Setup {
        listen,
        pids,
        probes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Result<Parsed, FileError> {
        parse(Path::new("usdtop.toml"), text)
    }

    fn setup_of(flags: &Flags, text: &str) -> Result<Setup> {
        combine(flags, Some(parsed(text).unwrap()))
    }

    fn error(text: &str) -> String {
        parsed(text).err().expect("an error").to_string()
    }

    #[test]
    fn the_example_file_in_assets_is_valid() {
        let text = include_str!("../../assets/usdtop.toml");
        let s = setup_of(&Flags::default(), text).unwrap();
        assert!(s.probes.len() >= 3, "{s:?}");
        assert!(s.probes.iter().any(|p| p.kind == Kind::Count));
        assert!(s.probes.iter().any(|p| p.fold));
    }

    #[test]
    fn mistakes_name_the_file_line_and_column() {
        assert_eq!(
            error("listen = \"127.0.0.1:9464\"\n[[latency]]\nstrat = \"a:b\"\n"),
            "usdtop.toml:3:1: unknown field `strat`, expected one of `start`, `done`, `key`, \
             `by`, `fold`, `max_keys`"
        );
        assert_eq!(
            error("[[count]]\nprobe = \"a:b\"\nmax_keys = 0\n"),
            "usdtop.toml:3:12: max_keys must be at least 1"
        );
        assert_eq!(
            error("listen = \"localhost\"\n"),
            "usdtop.toml:1:10: listen = \"localhost\" is not HOST:PORT"
        );
        assert_eq!(
            error("[[count]]\nby = \"arg1\"\n"),
            "usdtop.toml:1:1: missing field `probe`"
        );
        assert_eq!(
            error("pids = [\"x\"]\n"),
            "usdtop.toml:1:9: invalid type: string \"x\", expected u32"
        );
        let bad_probe = error("\n[[latency]]\nstart = \"no colon\"\n");
        assert!(
            bad_probe.starts_with("usdtop.toml:3:9: start = \"no colon\": "),
            "{bad_probe}"
        );
    }

    #[test]
    fn the_command_line_probe_joins_the_files_and_its_listen_and_pids_win() {
        let flags = Flags {
            listen: Some("127.0.0.1:1".parse().unwrap()),
            pids: vec![7],
            latency: Some("app:req__start".into()),
            done: Some("app:req__done".into()),
            ..Flags::default()
        };
        let s = setup_of(
            &flags,
            "listen = \"127.0.0.1:2\"\npids = [3]\n[[count]]\nprobe = \"app:tick\"\n",
        )
        .unwrap();
        assert_eq!(s.listen.port(), 1);
        assert_eq!(s.pids, [7]);
        assert_eq!(s.probes.len(), 2);
        assert_eq!(s.probes[0].origin, "the command line");
        assert_eq!(s.probes[1].origin, "usdtop.toml:3");
        assert!(s.probes.iter().all(|p| p.pids == [7]));
    }

    #[test]
    fn a_probes_own_setting_wins_then_the_command_line_then_the_files_top_level() {
        let text = "listen = \"127.0.0.1:2\"\nmax_keys = 5\nfold = true\n\
                    [[count]]\nprobe = \"a:x\"\n\
                    [[count]]\nprobe = \"a:y\"\nmax_keys = 9\nfold = false\n";
        let s = setup_of(&Flags::default(), text).unwrap();
        let got: Vec<_> = s.probes.iter().map(|p| (p.fold, p.max_keys)).collect();
        assert_eq!(got, [(true, 5), (false, 9)]);
        let flags = Flags {
            max_keys: Some(7),
            ..Flags::default()
        };
        let s = setup_of(&flags, text).unwrap();
        let got: Vec<_> = s.probes.iter().map(|p| (p.fold, p.max_keys)).collect();
        assert_eq!(got, [(true, 7), (false, 9)]);
    }

    #[test]
    fn the_same_probe_twice_and_nothing_at_all_are_refused() {
        let twice =
            "listen = \"127.0.0.1:2\"\n[[count]]\nprobe = \"a:x\"\n\n[[count]]\nprobe = \"a:x\"\n";
        let e = setup_of(&Flags::default(), twice).unwrap_err().to_string();
        assert_eq!(
            e,
            "usdtop.toml:5: the same probe as usdtop.toml:2 (give it once)"
        );
        let e = setup_of(&Flags::default(), "listen = \"127.0.0.1:2\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("nothing to serve"), "{e}");
        let e = combine(&Flags::default(), None).unwrap_err().to_string();
        assert!(e.contains("--listen"), "{e}");
    }

    #[test]
    fn only_what_changes_the_attachment_makes_another_probe() {
        let text = "listen = \"127.0.0.1:2\"\n[[latency]]\nstart = \"a:s\"\ndone = \"a:d\"\n";
        let a = setup_of(&Flags::default(), text).unwrap().probes.remove(0);
        let mut b = a.clone();
        b.max_keys = 3;
        b.origin = "elsewhere".into();
        assert!(a.same_attachment(&b));
        b.by = Some("arg1".into());
        assert!(!a.same_attachment(&b));
    }
}
