//! Choosing probes by name: `provider:name`, `PATH:provider:name`, globs (`postgresql:query__*`),
//! and the nearest names for a helpful error when nothing matches.

use super::elf::{ObjectProbes, Probe};

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

    pub fn matches(&self, probe: &Probe) -> bool {
        self.matches_name(&probe.provider, &probe.name)
    }

    /// Whether `provider:name` matches (the path, if any, is checked by the caller).
    pub fn matches_name(&self, provider: &str, name: &str) -> bool {
        glob(&self.provider, provider) && glob(&self.name, name)
    }

    /// The probes of `object` this pattern selects.
    pub fn select<'a>(&'a self, object: &'a ObjectProbes) -> impl Iterator<Item = &'a Probe> + 'a {
        object.probes.iter().filter(|p| self.matches(p))
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

/// Shell-style glob with `*` and `?` (no classes).
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
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
    fn nearest_names_come_closest_first() {
        let names = ["python:gc__start", "python:gc__done", "python:line"];
        assert_eq!(
            nearest("python:gc_start", names, 2),
            vec!["python:gc__start", "python:gc__done"]
        );
    }
}
