//! `usdtop export`: a long-running session whose figures, always aggregated in the kernel, are
//! served to Prometheus over HTTP (`/metrics`, `/healthz`). Its probes come from the command
//! line and a `-c` file (export_config); each is attached in an engine of its own
//! (export_probes), so SIGHUP can reload the file: probes no longer named are detached, new ones
//! attached, and the others keep their kernel counters.

use super::export_config::{self, Flags, Kind, ProbeSpec, Setup, CLI};
use super::export_http::serve;
use super::export_metrics::{Figures, Reloads, Shared};
use super::export_probes::{self, Planned, Served};
use super::headless;
use crate::stop;
use anyhow::{Context, Result};
use clap::{ArgGroup, Args};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};
use usdtop::probes::discovery::catalog::Catalog;
use usdtop::session::duty::DutyOptions;
use usdtop::session::{all_exited, SessionError, POLL};

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("probe").args(["count", "latency"])))]
#[command(group(
    ArgGroup::new("what").required(true).multiple(true).args(["count", "latency", "config"])
))]
#[command(after_help = "Examples:
  usdtop export --listen 127.0.0.1:9464 --latency php:request__startup --by uri --fold
  usdtop export --listen 127.0.0.1:9464 --latency /srv/app:app:req__start --done app:req__done --by arg1
  usdtop export --listen 127.0.0.1:9464 -p 4242 -p 4243 --count app:tick --by arg1
  usdtop export -c /etc/usdtop.toml          # many probes; kill -HUP reloads it")]
pub struct ExportArgs {
    /// Where to serve /metrics and /healthz: `HOST:PORT` (port 0: any free port, said on
    /// stderr). Replaces the -c file's `listen`.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Only this process (and the processes it forks); repeat for several. Without, every
    /// process running the probes' files, including those started later. Replaces `pids`.
    #[arg(short = 'p', long = "pid", value_parser = super::numbers::at_least_one::<u32>)]
    pub pids: Vec<u32>,
    /// Count the hits of this probe by the --by key.
    #[arg(long)]
    pub count: Option<String>,
    /// Measure latency from this start probe to its done (the catalog's, or --done).
    #[arg(long)]
    pub latency: Option<String>,
    /// The done probe of a --latency pair the catalog does not know.
    #[arg(long, requires = "latency")]
    pub done: Option<String>,
    /// Pair a start with its done by an argument instead of by thread (as `top --key`).
    #[arg(long, requires = "latency")]
    pub key: Option<String>,
    /// The argument to split by: `argN` or a catalog argument name (default: the catalog
    /// pair's label, else the probe's first string argument).
    #[arg(long, requires = "probe")]
    pub by: Option<String>,
    /// Group keys by shape as `top --fold` does (/users/42 and /users/7 are /users/N).
    #[arg(long)]
    pub fold: bool,
    /// Most keys per probe served as their own series; the rest are summed as key="other"
    /// [default: 100].
    #[arg(long, value_parser = super::numbers::at_least_one::<usize>)]
    pub max_keys: Option<usize>,
    /// Keep what the probes cost below PCT percent of the machine's CPU by attaching them for
    /// a slice of each period (see `usdtop latency --help`); counters then count what the
    /// slices saw, and `usdtop_attached_seconds_total{probe}` says for how long each was
    /// attached. Needs the uprobe-multi path.
    #[arg(long, value_name = "PCT", value_parser = super::numbers::percent)]
    pub max_overhead: Option<f64>,
    /// A TOML file naming many probes (see assets/usdtop.toml); SIGHUP reloads it.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Say which files a PATH glob matched.
    #[arg(short, long)]
    pub verbose: bool,
    /// Seconds between reads of the kernel's maps (bench/export.sh reads fast to pack hours of
    /// reads into minutes).
    #[arg(long, hide = true, default_value_t = 1.0, value_parser = super::numbers::seconds)]
    pub read_every: f64,
}

impl ExportArgs {
    fn flags(&self) -> Flags {
        Flags {
            listen: self.listen,
            pids: self.pids.clone(),
            count: self.count.clone(),
            latency: self.latency.clone(),
            done: self.done.clone(),
            key: self.key.clone(),
            by: self.by.clone(),
            fold: self.fold,
            max_keys: self.max_keys,
        }
    }
}

/// Why probes could not be served, and the exit status at start: 2 for what the file says
/// (it is wrong or names what cannot be found), 1 otherwise (as for the command line).
struct Failed {
    status: u8,
    why: String,
}

pub fn run(args: ExportArgs) -> Result<u8> {
    // SIGHUP reloads from here on, the attach included (the reload follows it).
    stop::install_reload_on_hup().context("installing signal handlers")?;
    let flags = args.flags();
    let setup = match export_config::setup(&flags, args.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("usdtop: {e:#}");
            return Ok(2);
        }
    };
    let catalog = Catalog::builtin();
    let planned = match plan_all(&setup.probes, &[], &catalog, args.verbose) {
        Ok(p) => p,
        Err(f) => {
            eprintln!("usdtop: {}", f.why);
            return Ok(f.status);
        }
    };
    // Bound before attaching: a port in use is said at once.
    let listener = std::net::TcpListener::bind(setup.listen)
        .with_context(|| format!("listening on {}", setup.listen))?;
    let addr = listener.local_addr()?;
    let mut exporter = Exporter {
        args,
        flags,
        catalog,
        setup,
        served: Vec::new(),
        shared: Shared::default(),
        reloads: Reloads {
            last_success_s: unix_now(),
            ..Reloads::default()
        },
    };
    match attach_all(planned, exporter.duty()) {
        Ok(served) => exporter.served = served,
        Err(Attached::Stopped) => return Ok(0),
        Err(Attached::Failed(why)) => {
            eprintln!("usdtop: {why}");
            return Ok(1);
        }
    }
    exporter.publish();
    serve(listener, exporter.shared.clone())?;
    let sites: usize = exporter.served.iter().map(Served::sites).sum();
    let reload = match &exporter.args.config {
        Some(path) => format!(", SIGHUP reloads {}", path.display()),
        None => String::new(),
    };
    eprintln!(
        "Tracing {} probe(s) ({sites} sites), serving http://{addr}/metrics ... SIGTERM or \
         Ctrl-C ends{reload}.",
        exporter.served.len()
    );
    exporter.run();
    // A service manager's SIGTERM is the normal end of an exporter.
    Ok(0)
}

struct Exporter {
    args: ExportArgs,
    flags: Flags,
    catalog: Catalog,
    /// The configuration running.
    setup: Setup,
    served: Vec<Served>,
    shared: Shared,
    reloads: Reloads,
}

impl Exporter {
    /// The overhead budget every probe is duty-cycled under, if any.
    fn duty(&self) -> Option<DutyOptions> {
        self.args.max_overhead.map(|pct| DutyOptions {
            budget: pct / 100.0,
            fixed: None,
        })
    }

    /// Reads the kernel every second (`--read-every`) until a stop signal, or until every -p process exited;
    /// reloads on SIGHUP. Dropping the probes at the end detaches them.
    fn run(&mut self) {
        let every = Duration::from_secs_f64(self.args.read_every);
        let mut next_read = Instant::now() + every;
        while !stop::requested() {
            if stop::reload_requested() {
                self.reload();
            }
            for s in &mut self.served {
                s.duty_tick();
            }
            if Instant::now() >= next_read {
                next_read = Instant::now() + every;
                self.publish();
                for s in &mut self.served {
                    s.changes()
                        .into_iter()
                        .for_each(|c| headless::notice(c.to_string()));
                }
                if all_exited(&self.setup.pids) {
                    eprintln!("usdtop: traced process(es) exited");
                    break;
                }
            }
            std::thread::sleep(POLL.min(every));
        }
        stop::say_why_stopped();
        self.served.clear();
    }

    /// Reads every probe's figures and hands them to the scrapes.
    fn publish(&mut self) {
        let mut f = Figures {
            reloads: self.reloads,
            ..Figures::default()
        };
        for s in &mut self.served {
            s.read(&mut f);
        }
        self.shared.set(f);
    }

    /// SIGHUP: loads the -c file again. A failure keeps everything as it runs and says why.
    fn reload(&mut self) {
        let Some(path) = self.args.config.clone() else {
            eprintln!("usdtop: SIGHUP: there is no -c file to reload; serving on");
            return;
        };
        let said = match self.try_reload() {
            Ok((kept, added, removed)) => {
                self.reloads.last_successful = true;
                self.reloads.last_success_s = unix_now();
                format!(
                    "reloaded {}: {kept} probe(s) kept, {added} attached, {removed} detached",
                    path.display()
                )
            }
            Err(why) => {
                self.reloads.failures += 1;
                self.reloads.last_successful = false;
                format!(
                    "reloading {} failed; the running configuration stays: {why}",
                    path.display()
                )
            }
        };
        // Served before it is said: whoever reads the line finds the metrics up to date.
        self.publish();
        eprintln!("usdtop: {said}");
    }

    /// Plans and attaches what is new first, so a failure changes nothing; then swaps.
    /// Returns the probes kept, attached and detached.
    fn try_reload(&mut self) -> Result<(usize, usize, usize), String> {
        let setup = export_config::setup(&self.flags, self.args.config.as_deref())
            .map_err(|e| format!("{e:#}"))?;
        if setup.listen != self.setup.listen {
            return Err(format!(
                "listen changed from {} to {}: restart usdtop export to serve elsewhere",
                self.setup.listen, setup.listen
            ));
        }
        let mut kept: Vec<(usize, ProbeSpec)> = Vec::new();
        let mut fresh: Vec<ProbeSpec> = Vec::new();
        for spec in setup.probes.iter().cloned() {
            match self
                .served
                .iter()
                .position(|s| s.spec.same_attachment(&spec))
            {
                Some(i) => kept.push((i, spec)),
                None => fresh.push(spec),
            }
        }
        let staying: Vec<(Kind, String, String)> = kept
            .iter()
            .map(|(i, _)| {
                let s = &self.served[*i];
                (s.spec.kind, s.name.clone(), s.spec.origin.clone())
            })
            .collect();
        let planned =
            plan_all(&fresh, &staying, &self.catalog, self.args.verbose).map_err(|f| f.why)?;
        let attached = match attach_all(planned, self.duty()) {
            Ok(a) => a,
            // The stop flag is up: the loop ends next.
            Err(Attached::Stopped) => return Err("a stop signal came during the attach".into()),
            Err(Attached::Failed(why)) => return Err(why),
        };
        let (added, old) = (attached.len(), std::mem::take(&mut self.served));
        let mut gone = Vec::new();
        for (i, mut s) in old.into_iter().enumerate() {
            match kept.iter().find(|(k, _)| *k == i) {
                Some((_, spec)) => {
                    s.set_max_keys(spec.max_keys);
                    s.spec.origin = spec.origin.clone();
                    self.served.push(s);
                }
                None => gone.push(s),
            }
        }
        let kept = self.served.len();
        self.served.extend(attached);
        self.setup = setup;
        // The removed probes' series leave the scrapes before their (slow) detach.
        self.publish();
        let removed = gone.len();
        drop(gone);
        Ok((kept, added, removed))
    }
}

/// Plans `probes`, refusing two with one label (their series would be one); `staying` are the
/// (kind, label, origin) of probes already served that stay.
fn plan_all(
    probes: &[ProbeSpec],
    staying: &[(Kind, String, String)],
    catalog: &Catalog,
    verbose: bool,
) -> Result<Vec<Planned>, Failed> {
    let mut labels: Vec<(Kind, String, String)> = staying.to_vec();
    let mut out = Vec::new();
    for spec in probes {
        let named = |why: String| Failed {
            status: if spec.origin == CLI { 1 } else { 2 },
            why: at(&spec.origin, why),
        };
        let p = export_probes::plan(spec, catalog, verbose).map_err(|e| named(e.to_string()))?;
        if let Some((_, _, other)) = labels
            .iter()
            .find(|(kind, name, _)| *kind == spec.kind && *name == p.name)
        {
            return Err(named(format!(
                "{} is served by {other} already (its series would mix): give it once",
                p.name
            )));
        }
        labels.push((spec.kind, p.name.clone(), spec.origin.clone()));
        out.push(p);
    }
    Ok(out)
}

enum Attached {
    /// A stop signal came during the attach; what was attached is undone.
    Stopped,
    Failed(String),
}

/// Attaches every planned probe, or none (those attached are detached again on a failure).
fn attach_all(planned: Vec<Planned>, duty: Option<DutyOptions>) -> Result<Vec<Served>, Attached> {
    let mut served = Vec::new();
    for p in planned {
        let origin = p.spec.origin.clone();
        match export_probes::attach(p, duty) {
            Ok(s) => served.push(s),
            Err(SessionError::Interrupted(engine)) => {
                eprintln!(
                    "usdtop: {} while attaching; detaching",
                    stop::signal_name().unwrap_or("a signal")
                );
                drop(engine);
                return Err(Attached::Stopped);
            }
            Err(e) => {
                let why = format!("{:#}", anyhow::Error::from(e));
                return Err(Attached::Failed(at(&origin, why)));
            }
        }
    }
    Ok(served)
}

/// `why`, after where the probe was named when that is the file.
fn at(origin: &str, why: String) -> String {
    match origin {
        CLI => why,
        _ => format!("{origin}: {why}"),
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
