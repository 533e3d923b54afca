//! Choosing probes by name: `provider:name`, `PATH:provider:name`, globs (`postgresql:query__*`),
//! and the nearest names for a helpful error when nothing matches.

use super::elf::Probe;
use std::path::{Component, Path, PathBuf};
use thiserror::Error;

/// A parsed probe pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbePattern {
    /// Only probes in this object (a path containing `/`), if given.
    pub path: Option<String>,
    pub provider: String,
    pub name: String,
}

impl ProbePattern {
    /// `provider:name` or `PATH:provider:name`; either part may be a glob (`*`, `?`).
    /// A bare `name` means any provider.
    pub fn parse(text: &str) -> Option<ProbePattern> {
        let mut parts = text.rsplitn(3, ':');
        let name = parts.next()?.to_string();
        let provider = parts.next().map(str::to_string);
        let path = parts.next().map(str::to_string);
        if name.is_empty() || provider.as_deref() == Some("") || path.as_deref() == Some("") {
            return None;
        }
        // `PATH:name` is not a form we accept: a provider is required with a path.
        if provider.as_deref().is_some_and(|p| p.contains('/')) {
            return None;
        }
        Some(ProbePattern {
            path,
            provider: provider.unwrap_or_else(|| "*".into()),
            name,
        })
    }

    /// As [`ProbePattern::parse`], saying what is wrong.
    pub fn parse_text(text: &str) -> Result<ProbePattern, PatternError> {
        ProbePattern::parse(text).ok_or_else(|| PatternError::NotAProbe(text.into()))
    }

    /// Exactly one probe: `provider:name` or `PATH:provider:name` with no glob in the provider
    /// or the name (a PATH may still be a glob: copies of one program). For the commands that
    /// aggregate one probe or one pair.
    pub fn parse_exact(text: &str) -> Result<ProbePattern, PatternError> {
        if !text.contains(':') {
            return Err(PatternError::NotAProbe(text.into()));
        }
        let pattern = ProbePattern::parse_text(text)?;
        if has_glob(&pattern.provider) || has_glob(&pattern.name) {
            return Err(PatternError::Glob(text.into()));
        }
        Ok(pattern)
    }

    /// `provider:name`, without the path.
    pub fn full_name(&self) -> String {
        format!("{}:{}", self.provider, self.name)
    }

    pub fn matches(&self, probe: &Probe) -> bool {
        self.matches_name(&probe.provider, &probe.name)
    }

    /// Whether `provider:name` matches (the path, if any, is checked by the caller).
    pub fn matches_name(&self, provider: &str, name: &str) -> bool {
        glob(&self.provider, provider) && glob(&self.name, name)
    }
}

impl std::fmt::Display for ProbePattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(p) = &self.path {
            write!(f, "{p}:")?;
        }
        write!(f, "{}:{}", self.provider, self.name)
    }
}

/// Why a probe name was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PatternError {
    #[error("`{0}` is not a probe: write provider:name or PATH:provider:name")]
    NotAProbe(String),
    #[error(
        "`{0}` is a glob: name exactly one probe (provider:name; only a PATH may be a glob, \
         matching copies of one program)"
    )]
    Glob(String),
}

/// Whether `text` has a glob wildcard (`*` or `?`).
pub fn has_glob(text: &str) -> bool {
    text.contains(['*', '?'])
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("no file matches `{pattern}`")]
pub struct NoFileMatches {
    pub pattern: String,
}

/// The regular files a path with wildcards names (as bpftrace takes them: files on disk, not
/// processes), sorted. A path without wildcards, or one that exists as written, is itself.
/// Like a shell, `*` and `?` do not match a leading `.` and never cross a `/`; directories,
/// FIFOs and devices a glob matches are left out (a glob means the executables in it).
pub fn expand_path(pattern: &str) -> Result<Vec<PathBuf>, NoFileMatches> {
    let literal = Path::new(pattern);
    if !has_glob(pattern) || std::fs::symlink_metadata(literal).is_ok() {
        return Ok(vec![literal.to_path_buf()]);
    }
    let mut found = vec![PathBuf::new()];
    for part in literal.components() {
        let Component::Normal(part) = part else {
            // `/`, `.` and `..` are taken as written.
            found.iter_mut().for_each(|f| f.push(part));
            continue;
        };
        let part = part.to_string_lossy();
        if !has_glob(&part) {
            found.iter_mut().for_each(|f| f.push(&*part));
            continue;
        }
        let mut next = Vec::new();
        for dir in &found {
            let read = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir.as_path()
            };
            // An unreadable directory matches nothing, as in a shell.
            let Ok(entries) = std::fs::read_dir(read) else {
                continue;
            };
            let mut names: Vec<String> = entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| (!n.starts_with('.') || part.starts_with('.')) && glob(&part, n))
                .collect();
            names.sort();
            next.extend(names.into_iter().map(|n| dir.join(n)));
        }
        found = next;
    }
    found.retain(|f| std::fs::metadata(f).is_ok_and(|m| m.is_file()));
    if found.is_empty() {
        return Err(NoFileMatches {
            pattern: pattern.to_string(),
        });
    }
    Ok(found)
}

/// What a glob in a path matched, for `-v`: ``/srv/w*` matches 2 files: /srv/w1, /srv/w2`.
pub fn describe_matches(pattern: &str, files: &[PathBuf]) -> String {
    let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    let count = match files.len() {
        1 => "1 file".to_string(),
        n => format!("{n} files"),
    };
    format!("`{pattern}` matches {count}: {}", names.join(", "))
}

/// One element of a glob.
#[derive(Debug, Clone, PartialEq, Eq)]
enum GlobToken {
    Char(char),
    /// `?`
    One,
    /// `*`
    Star,
    /// `[abc]`, `[a-z]`, `[!x]` (`^` negates too): inclusive ranges.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl GlobToken {
    fn matches(&self, c: char) -> bool {
        match self {
            GlobToken::Char(x) => *x == c,
            GlobToken::One => true,
            GlobToken::Star => false,
            GlobToken::Class { negated, ranges } => {
                ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated
            }
        }
    }
}

/// The tokens of a glob; a `[` without its `]` is itself.
fn glob_tokens(pattern: &str) -> Vec<GlobToken> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' => out.push(GlobToken::Star),
            '?' => out.push(GlobToken::One),
            '[' => {
                if let Some((token, next)) = glob_class(&chars, i + 1) {
                    out.push(token);
                    i = next;
                    continue;
                }
                out.push(GlobToken::Char('['));
            }
            c => out.push(GlobToken::Char(c)),
        }
        i += 1;
    }
    out
}

/// The class starting after `[` at `start`, and where the pattern goes on after its `]`.
fn glob_class(chars: &[char], start: usize) -> Option<(GlobToken, usize)> {
    let mut i = start;
    let negated = matches!(chars.get(i), Some('!' | '^'));
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    // A `]` first in the class is a member, as in a shell.
    let first = i;
    while let Some(&c) = chars.get(i) {
        if c == ']' && i > first {
            return Some((GlobToken::Class { negated, ranges }, i + 1));
        }
        match (chars.get(i + 1), chars.get(i + 2)) {
            (Some('-'), Some(&hi)) if hi != ']' => {
                ranges.push((c, hi));
                i += 3;
            }
            _ => {
                ranges.push((c, c));
                i += 1;
            }
        }
    }
    None
}

/// Shell-style glob: `*`, `?` and classes (`[0-9]`, `[!a]`).
pub fn glob(pattern: &str, text: &str) -> bool {
    let p = glob_tokens(pattern);
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == GlobToken::Star {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi].matches(t[ti]) {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|tok| *tok == GlobToken::Star)
}

/// Up to `n` of `candidates` closest to `wanted` (edit distance), closest first.
pub fn nearest<'a>(
    wanted: &str,
    candidates: impl IntoIterator<Item = &'a str>,
    n: usize,
) -> Vec<String> {
    let mut scored: Vec<(usize, &str)> = candidates
        .into_iter()
        .map(|c| (distance(wanted, c), c))
        .collect();
    scored.sort();
    scored.dedup_by(|a, b| a.1 == b.1);
    scored
        .into_iter()
        .take(n)
        .map(|(_, c)| c.to_string())
        .collect()
}

fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exact_probe_takes_an_optional_path() {
        let p = ProbePattern::parse_exact("postgresql:query__start").unwrap();
        assert_eq!(
            (p.path.clone(), p.full_name()),
            (None, "postgresql:query__start".into())
        );
        let p = ProbePattern::parse_exact("/usr/bin/php8.2:php:request__startup").unwrap();
        assert_eq!(p.path.as_deref(), Some("/usr/bin/php8.2"));
        assert_eq!(p.name, "request__startup");
        for bad in ["nocolon", "a:", ":b"] {
            assert_eq!(
                ProbePattern::parse_exact(bad),
                Err(PatternError::NotAProbe(bad.into()))
            );
        }
    }

    #[test]
    fn an_exact_probe_is_not_a_glob_but_its_path_may_be() {
        let glob = |t: &str| Err(PatternError::Glob(t.into()));
        let t = "postgresql:query__*";
        assert_eq!(ProbePattern::parse_exact(t), glob(t));
        let t = "/usr/bin/php8.2:php:request__?tartup";
        assert_eq!(ProbePattern::parse_exact(t), glob(t));
        assert!(ProbePattern::parse_exact("/opt/a*b/x:php:request__startup").is_ok());
    }

    #[test]
    fn patterns_take_an_optional_path_and_globs() {
        let p = ProbePattern::parse("/usr/bin/python3.11:python:gc__*").unwrap();
        assert_eq!(p.path.as_deref(), Some("/usr/bin/python3.11"));
        assert!(glob(&p.name, "gc__start") && glob(&p.name, "gc__done"));
        assert!(!glob(&p.name, "line"));
        let q = ProbePattern::parse("postgresql:query__start").unwrap();
        assert_eq!((q.path, q.provider.as_str()), (None, "postgresql"));
        assert_eq!(ProbePattern::parse("gc__start").unwrap().provider, "*");
        assert!(ProbePattern::parse("/bin/x:name").is_none());
        assert!(ProbePattern::parse("a::b").is_none());
    }

    #[test]
    fn globs_match_like_a_shell() {
        assert!(glob("*", ""));
        assert!(glob("q*__s?art", "query__parse__start"));
        assert!(!glob("q*__s?art", "query__parse__done"));
        assert!(glob("query__*", "query__start"));
        assert!(glob("q?ery", "query"));
        assert!(glob("*__done", "query__done"));
        assert!(glob("postgresql:*start*", "postgresql:query__start"));
        assert!(glob("a*b*c", "aXbYbZc"));
        assert!(!glob("query__*", "transaction__start"));
        assert!(!glob("abc", "abcd"));
        assert!(!glob("a*b", "a"));
    }

    #[test]
    fn glob_classes_match_one_character_of_a_set_or_range() {
        assert!(glob("python[0-9]*", "python3.11"));
        assert!(!glob("python[0-9]*", "python-config"));
        assert!(glob("[!l]*", "python"));
        assert!(!glob("[!l]*", "libc.so.6"));
        assert!(glob("[]x]", "]"));
        assert!(glob("a[bc]d", "acd"));
        // An unclosed `[` is a plain character.
        assert!(glob("a[b", "a[b"));
        assert!(!glob("a[b", "ab"));
    }

    #[test]
    fn a_path_glob_expands_to_the_regular_files_it_matches_in_order() {
        let dir = std::env::temp_dir().join(format!("usdtop-glob-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub.d")).unwrap();
        for f in ["worker-b", "worker-a", ".worker-hidden", "other"] {
            std::fs::write(dir.join(f), b"x").unwrap();
        }
        std::fs::write(dir.join("sub.d/worker-c"), b"x").unwrap();
        let d = dir.display();
        let got = expand_path(&format!("{d}/worker*")).unwrap();
        assert_eq!(got, [dir.join("worker-a"), dir.join("worker-b")]);
        let deeper = expand_path(&format!("{d}/s?b.*/worker-?")).unwrap();
        assert_eq!(deeper, [dir.join("sub.d/worker-c")]);
        // The directory `sub.d` is not a file to read probes from.
        assert_eq!(
            expand_path(&format!("{d}/*")).unwrap(),
            [
                dir.join("other"),
                dir.join("worker-a"),
                dir.join("worker-b")
            ]
        );
        let none = expand_path(&format!("{d}/nothing*")).unwrap_err();
        assert_eq!(none.to_string(), format!("no file matches `{d}/nothing*`"));
        // No wildcard: the path as written, whether or not it exists (its reader says why).
        assert_eq!(
            expand_path("/no/such").unwrap(),
            [PathBuf::from("/no/such")]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn nearest_names_come_closest_first() {
        let names = ["python:gc__start", "python:gc__done", "python:line"];
        assert_eq!(
            nearest("python:gc_start", names, 2),
            vec!["python:gc__start", "python:gc__done"]
        );
    }
}
