//! What a front-end asks for, planned once: the probes named, the pair and its keys, the
//! argument rows are keyed by, kernel or stream, and the sites to attach with the string
//! arguments each must read. Nothing is attached here.

use super::plan::{
    build_pair, calls_unsupported, check_arg, done_spec, kernel_unsupported, parse_arg_ref,
    parse_key, resolve, return_key, strings_for, AggMode, ArgRef,
};
use super::SessionError;
use crate::probes::discovery::catalog::{Catalog, Pair};
use crate::probes::discovery::select::ProbePattern;
use crate::probes::discovery::targets::Target;
use crate::probes::tracing::bpf::Mode;

/// Where the probes are looked for, and how much to say about it.
#[derive(Debug, Clone, Copy)]
pub struct Place {
    /// Only this process (else the named files, else every running process).
    pub pid: Option<u32>,
    /// Say every file a PATH glob matched.
    pub verbose: bool,
}

/// A probe or a pair as typed: for `latency` the pair `start` (-> `done`, unless the catalog
/// pairs `start`), for `top` the probe whose values are counted (with latency to `done`).
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    pub start: &'a str,
    pub done: Option<&'a str>,
    /// `--key`: pair by an argument instead of by thread.
    pub key: Option<&'a str>,
    /// `--by`: the argument of the start to split by.
    pub by: Option<&'a str>,
    pub mode: AggMode,
}

/// A top table of a probe's values, with latency when it starts a pair.
#[derive(Debug, Clone, Copy)]
pub struct TopAsk<'a> {
    pub ask: Ask<'a>,
    /// Count hits only, even when the probe starts a known pair.
    pub no_pair: bool,
    /// One row per kind of key (numbers and literals folded): streams in auto mode.
    pub fold: bool,
}

/// What to attach, and how.
pub struct Plan {
    /// Start sites first (`n_start` of them), then done sites, each with its string arguments.
    pub targets: Vec<(Target, Vec<usize>)>,
    pub n_start: usize,
    pub in_kernel: bool,
    pub mode: Mode,
    /// Probes attached only so that the runtime fires the pair's probes (their hits are only
    /// counted), and why (the catalog's words); see [`crate::probes::discovery::catalog::Enable`].
    pub enable: Vec<Target>,
    pub enable_why: Option<String>,
}

pub struct LatencyPlan {
    pub pair: Pair,
    pub by: Option<ArgRef>,
    pub plan: Plan,
}

pub struct TopPlan {
    /// `provider:name` of the probe.
    pub name: String,
    pub pair: Option<Pair>,
    pub by: ArgRef,
    pub plan: Plan,
}

/// Plans a latency measurement; `notice` gets the lines saying what a PATH glob matched.
pub fn plan_latency(
    ask: &Ask,
    place: Place,
    catalog: &Catalog,
    notice: impl FnMut(String),
) -> Result<LatencyPlan, SessionError> {
    let start = ProbePattern::parse_exact(ask.start)?;
    let end = ask.done.map(ProbePattern::parse_exact).transpose()?;
    let pair = build_pair(&start, end.as_ref(), ask.key, catalog)?;
    let done = done_spec(&pair, &start, end.as_ref())?;
    let by = ask
        .by
        .map(|b| parse_arg_ref(b, &pair.start, catalog, true))
        .transpose()?;
    let key = ask.key.map(|k| parse_key(k, &pair, catalog)).transpose()?;
    let mut start_extra: Vec<ArgRef> = by.into_iter().collect();
    let mut done_extra = Vec::new();
    let mut key_is_str = false;
    if let Some((s, d)) = key {
        key_is_str = s.is_str || d.is_str;
        start_extra.push(s);
        done_extra.push(d);
    }
    if pair.nested {
        return plan_calls(ask, pair, by, (&start, &done), place, catalog, notice);
    }
    let in_kernel = ask
        .mode
        .in_kernel(kernel_unsupported(&pair, catalog, key_is_str), false)
        .map_err(|why| SessionError::KernelRefused {
            what: "pair",
            probe: pair.start.clone(),
            why,
        })?;
    let (start_targets, done_targets) = find_pair(&start, Some(&done), place, notice)?;
    if let (Some(b), Some(text)) = (by, ask.by) {
        check_arg(&start_targets, b, &format!("--by {text}"))?;
    }
    check_key(ask.key, key, &start_targets, &done_targets)?;
    let start_strings = strings_for(&pair.start, catalog, &start_extra);
    let done_strings = strings_for(&pair.done, catalog, &done_extra);
    let plan = Plan::new(
        start_targets,
        start_strings,
        done_targets,
        done_strings,
        in_kernel,
        if in_kernel { Mode::Pair } else { Mode::Stream },
    );
    Ok(LatencyPlan { pair, by, plan })
}

/// Plans the latency of a call-shaped pair (entry/return probes that nest): in the kernel on a
/// stack per thread, keyed by `by` (else the catalog's label) on both probes, or streamed.
fn plan_calls(
    ask: &Ask,
    pair: Pair,
    by: Option<ArgRef>,
    (start, done): (&ProbePattern, &ProbePattern),
    place: Place,
    catalog: &Catalog,
    notice: impl FnMut(String),
) -> Result<LatencyPlan, SessionError> {
    let in_kernel = ask
        .mode
        .in_kernel(calls_unsupported(&pair, by), false)
        .map_err(|why| SessionError::KernelRefused {
            what: "pair",
            probe: pair.start.clone(),
            why,
        })?;
    let (start_targets, done_targets) = find_pair(start, Some(done), place, notice)?;
    if let (Some(b), Some(text)) = (by, ask.by) {
        check_arg(&start_targets, b, &format!("--by {text}"))?;
    }
    let (start_strings, done_strings) = if in_kernel {
        call_keys(&pair, by, catalog, &done_targets)?
    } else {
        let extra: Vec<ArgRef> = by.into_iter().collect();
        (
            strings_for(&pair.start, catalog, &extra),
            strings_for(&pair.done, catalog, &[]),
        )
    };
    let mut plan = Plan::new(
        start_targets,
        start_strings,
        done_targets,
        done_strings,
        in_kernel,
        if in_kernel { Mode::Calls } else { Mode::Stream },
    );
    plan.enable_for(&pair, start, place)?;
    Ok(LatencyPlan { pair, by, plan })
}

/// The string arguments a call-shaped pair reads in the kernel: the key of its calls (`by`, else
/// the catalog's label) on the entry, and the argument naming the call on the return (checked
/// at every site of the return). None without a string key: calls are then paired by depth.
fn call_keys(
    pair: &Pair,
    by: Option<ArgRef>,
    catalog: &Catalog,
    done_targets: &[Target],
) -> Result<(Vec<usize>, Vec<usize>), SessionError> {
    let label = pair.label.filter(|&i| {
        catalog
            .args(&pair.start)
            .and_then(|a| a.get(i))
            .is_some_and(|a| a.is_str)
    });
    let Some(key) = by.map(|b| b.index).or(label) else {
        return Ok((Vec::new(), Vec::new()));
    };
    let ret = ArgRef {
        index: return_key(pair, key, catalog),
        is_str: true,
    };
    check_arg(
        done_targets,
        ret,
        &format!("arg{} (naming the call on {})", ret.index, pair.done),
    )?;
    Ok((vec![key], vec![ret.index]))
}

/// Plans a top table; `notice` gets the lines saying what a PATH glob matched.
pub fn plan_top(
    top: &TopAsk,
    place: Place,
    catalog: &Catalog,
    notice: impl FnMut(String),
) -> Result<TopPlan, SessionError> {
    let ask = &top.ask;
    let spec = ProbePattern::parse_exact(ask.start)?;
    let name = spec.full_name();
    let end = ask.done.map(ProbePattern::parse_exact).transpose()?;
    let pair = if top.no_pair {
        None
    } else if end.is_some() || ask.key.is_some() {
        Some(build_pair(&spec, end.as_ref(), ask.key, catalog)?)
    } else {
        catalog.pairs().iter().find(|p| p.start == name).cloned()
    };
    let by = match ask.by {
        Some(b) => parse_arg_ref(b, &name, catalog, true)?,
        None => {
            let index = pair
                .as_ref()
                .and_then(|p| p.label)
                .or_else(|| catalog.string_args(&name).first().copied())
                .ok_or_else(|| SessionError::NoKey(name.clone()))?;
            parse_arg_ref(&index.to_string(), &name, catalog, true)?
        }
    };
    let key = match (ask.key, &pair) {
        (Some(k), Some(p)) => Some(parse_key(k, p, catalog)?),
        _ => None,
    };
    let pair_key_is_str = key.is_some_and(|(s, d)| s.is_str || d.is_str);
    let done = pair
        .as_ref()
        .map(|p| done_spec(p, &spec, end.as_ref()))
        .transpose()?;
    // The kernel counts rows by string; with a pair it must also be able to match it.
    let unsupported = if by.is_str {
        pair.as_ref().and_then(|p| match p.nested {
            true => calls_unsupported(p, Some(by)),
            false => kernel_unsupported(p, catalog, pair_key_is_str),
        })
    } else {
        Some("integer keys are grouped in user space".into())
    };
    // Folding in the kernel would keep every distinct raw string and run out of keys.
    let in_kernel =
        ask.mode
            .in_kernel(unsupported, top.fold)
            .map_err(|why| SessionError::KernelRefused {
                what: "count",
                probe: name.clone(),
                why,
            })?;
    let (start_targets, done_targets) = find_pair(&spec, done.as_ref(), place, notice)?;
    let by_option = match ask.by {
        Some(text) => format!("--by {text}"),
        None => format!("the default key arg{} (give --by)", by.index),
    };
    check_arg(&start_targets, by, &by_option)?;
    check_key(ask.key, key, &start_targets, &done_targets)?;
    // In the kernel the key is the site's only string argument, and a done reads none (its
    // key is an integer or the thread) but for a call's return, which names its call.
    let (start_strings, done_strings) = match (&pair, in_kernel) {
        (Some(p), true) if p.nested => call_keys(p, Some(by), catalog, &done_targets)?,
        (_, true) => (vec![by.index], Vec::new()),
        (Some(p), false) => (
            strings_for(&name, catalog, &[by]),
            catalog.string_args(&p.done),
        ),
        (None, false) => (strings_for(&name, catalog, &[by]), Vec::new()),
    };
    let mode = match (in_kernel, &pair) {
        (false, _) => Mode::Stream,
        (true, None) => Mode::Top,
        (true, Some(p)) if p.nested => Mode::Calls,
        (true, Some(_)) => Mode::TopLat,
    };
    let mut plan = Plan::new(
        start_targets,
        start_strings,
        done_targets,
        done_strings,
        in_kernel,
        mode,
    );
    if let Some(p) = &pair {
        plan.enable_for(p, &spec, place)?;
    }
    Ok(TopPlan {
        name,
        pair,
        by,
        plan,
    })
}

impl Plan {
    fn new(
        start_targets: Vec<Target>,
        start_strings: Vec<usize>,
        done_targets: Vec<Target>,
        done_strings: Vec<usize>,
        in_kernel: bool,
        mode: Mode,
    ) -> Plan {
        let n_start = start_targets.len();
        let mut targets: Vec<_> = start_targets
            .into_iter()
            .map(|t| (t, start_strings.clone()))
            .collect();
        targets.extend(done_targets.into_iter().map(|t| (t, done_strings.clone())));
        Plan {
            targets,
            n_start,
            in_kernel,
            mode,
            enable: Vec::new(),
            enable_why: None,
        }
    }

    /// Adds the probes `pair` needs attached too (the catalog's `enable`), in the objects of
    /// `start`, where the runtime has them.
    fn enable_for(
        &mut self,
        pair: &Pair,
        start: &ProbePattern,
        place: Place,
    ) -> Result<(), SessionError> {
        let Some(enable) = &pair.enable else {
            return Ok(());
        };
        let mut patterns = Vec::new();
        for name in &enable.probes {
            let mut p = ProbePattern::parse_exact(name)?;
            p.path = start.path.clone();
            patterns.push(p);
        }
        let refs: Vec<&ProbePattern> = patterns.iter().collect();
        let (found, _) = resolve(&refs, place.pid, false)?;
        self.enable = found.into_iter().flatten().collect();
        self.enable_why = Some(enable.why.clone());
        Ok(())
    }
}

/// The sites of a start probe and of its done probe (none without one).
fn find_pair(
    start: &ProbePattern,
    done: Option<&ProbePattern>,
    place: Place,
    mut notice: impl FnMut(String),
) -> Result<(Vec<Target>, Vec<Target>), SessionError> {
    let mut patterns = vec![start];
    patterns.extend(done);
    let (found, lines) = resolve(&patterns, place.pid, place.verbose)?;
    lines.into_iter().for_each(&mut notice);
    let mut found = found.into_iter();
    Ok((
        found.next().unwrap_or_default(),
        found.next().unwrap_or_default(),
    ))
}

/// Checks a `--key` against the sites of both ends of the pair.
fn check_key(
    text: Option<&str>,
    key: Option<(ArgRef, ArgRef)>,
    start_targets: &[Target],
    done_targets: &[Target],
) -> Result<(), SessionError> {
    if let (Some((s, d)), Some(text)) = (key, text) {
        check_arg(start_targets, s, &format!("--key {text}"))?;
        check_arg(done_targets, d, &format!("--key {text}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place() -> Place {
        Place {
            pid: None,
            verbose: false,
        }
    }

    fn ask(start: &str) -> Ask<'_> {
        Ask {
            start,
            done: None,
            key: None,
            by: None,
            mode: AggMode::Auto,
        }
    }

    fn top(ask: Ask) -> TopAsk {
        TopAsk {
            ask,
            no_pair: false,
            fold: false,
        }
    }

    #[test]
    fn the_kernel_refuses_integer_rows_before_anything_is_looked_for() {
        let ask = top(Ask {
            by: Some("arg0:int"),
            mode: AggMode::Kernel,
            ..ask("app:req")
        });
        let e = plan_top(&ask, place(), &Catalog::builtin(), |_| {})
            .err()
            .unwrap();
        assert_eq!(
            e.to_string(),
            "cannot count app:req in the kernel: integer keys are grouped in user space"
        );
    }

    #[test]
    fn a_probe_without_a_string_argument_needs_a_by() {
        let e = plan_top(&top(ask("app:req")), place(), &Catalog::builtin(), |_| {})
            .err()
            .unwrap();
        assert_eq!(
            e.to_string(),
            "which argument of app:req should rows be keyed by? give --by argN"
        );
    }

    #[test]
    fn a_latency_of_a_glob_is_refused() {
        let e = plan_latency(&ask("app:req__*"), place(), &Catalog::builtin(), |_| {})
            .err()
            .unwrap();
        assert!(matches!(e, SessionError::Pattern(_)), "{e}");
    }
}
