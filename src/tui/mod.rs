//! The interactive runtime around `src/app` (the arguments are parsed in `cli::tui`):
//! a tokio loop that feeds it keys (crossterm), process lists (discovery thread), event batches
//! (the tracer's channel) and ticks, executes the commands it returns, and draws with `src/ui`
//! at a steady frame rate while things change (rarely when idle).

mod discovery;
mod terminal;
mod tracer;

use anyhow::Context;
use crossterm::event::{Event as TermEvent, EventStream};
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use usdtop::app::{Action, App, Command, PairingMode, PairingPolicy, Pane, ProcessScan};
use usdtop::demo::{Demo, LoadConfig};
use usdtop::probes::discovery::catalog::Catalog;
use usdtop::probes::discovery::hints::{InertWatch, ProbeHits};
use usdtop::probes::discovery::select::{describe_matches, expand_path, has_glob, ProbePattern};
use usdtop::probes::tracing::clock::{clock_ns, monotonic_ns};
use usdtop::ui::{self, keymap, Theme};

use crate::stop;
use discovery::ObjectIndex;
use tracer::{AttachRequest, Tracer};
use usdtop::probes::discovery::watch::Watch;
use usdtop::probes::ProbeKey;
use usdtop::session::{kernel_unsupported, TARGET_STREAM_RATE};

/// What the explorer starts with (the command line's `usdtop` without a subcommand).
#[derive(Debug, Clone)]
pub struct Options {
    /// Start with this process selected, and attach `attach` in it.
    pub pid: Option<u32>,
    /// Probe patterns to attach once their process is listed.
    pub attach: Vec<String>,
    /// Run the built-in demo workload in this process, its request probes attached.
    pub demo: bool,
    /// Requests per second of the demo's load generator.
    pub demo_rate: f64,
    /// Where the followed start/done pair is paired.
    pub pairing: PairingMode,
}

/// Frame interval while something changes (~15 fps).
const FRAME: Duration = Duration::from_millis(66);
/// Redraw at least this often when idle (clock, rates).
const IDLE_REDRAW: Duration = Duration::from_secs(1);
const DEMO_PROBES: [&str; 2] = ["node:http__server__request", "node:http__server__response"];

/// Runs the explorer until `q`, Ctrl-C or a stop signal; the exit status.
pub fn run(args: Options) -> anyhow::Result<u8> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    rt.block_on(run_loop(args))
}

/// Probes to attach once their process shows up in the process list.
struct StartupAttach {
    names: Vec<String>,
    pid: Option<u32>,
    /// Process lists seen; after the first full one, missing probes are reported.
    lists_seen: u32,
    lists_needed: u32,
}

async fn run_loop(args: Options) -> anyhow::Result<u8> {
    let catalog = Arc::new(Catalog::builtin());
    let mut app = App::new(catalog.clone());
    // Configuration, before the first action.
    app.wall_offset_ns = wall_offset_ns();
    app.pairing = PairingPolicy::new(args.pairing, TARGET_STREAM_RATE);
    // What to tell the app once the runner is there to carry out its answers.
    let mut first = Vec::new();

    let _demo = if args.demo {
        let demo = Demo::start(
            0,
            Some(LoadConfig {
                rate: args.demo_rate,
                ..LoadConfig::default()
            }),
        )
        .context("starting the demo server")?;
        first.push(Action::Status(format!(
            "demo: HTTP server on http://{} with a load generator ({} req/s)",
            demo.server.addr(),
            args.demo_rate
        )));
        Some(demo)
    } else {
        None
    };
    let target_pid = if args.demo {
        Some(std::process::id())
    } else {
        args.pid
    };
    first.extend(target_pid.map(Action::SelectProcess));
    let mut startup = StartupAttach {
        names: if args.demo {
            DEMO_PROBES.iter().map(|s| s.to_string()).collect()
        } else {
            args.attach.clone()
        },
        pid: target_pid,
        lists_seen: 0,
        lists_needed: if target_pid.is_some() { 2 } else { 1 },
    };
    if args.demo || (!startup.names.is_empty()) {
        first.push(Action::Focus(Pane::Histogram));
    }

    let (tracer, unavailable) = make_tracer();
    first.extend(unavailable);
    app.attach_path = tracer.attach_path();
    let mut runner = Runner {
        tracer,
        index: Default::default(),
        catalog,
        changes: Watch::new(),
        silence: InertWatch::default(),
        traced_pids: HashMap::new(),
    };
    for action in first {
        runner.dispatch(&mut app, action);
    }
    let mut events_rx = runner.tracer.take_events();

    let (disc_tx, mut disc_rx) = mpsc::channel::<Vec<ProcessScan>>(4);
    discovery::spawn(target_pid, disc_tx, runner.index.clone());

    let theme = Theme::from_env();
    // Caught before the terminal changes: from here on no signal kills usdtop with the
    // alternate screen and mouse reporting left on.
    stop::install().context("catching signals")?;
    let mut guard = terminal::TerminalGuard::enter().context("setting up the terminal")?;
    let mut keys = EventStream::new();
    let mut ticker = tokio::time::interval(FRAME);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut frames = FrameStats::default();
    let mut dirty = true;
    let mut last_draw = Instant::now() - IDLE_REDRAW;
    let mut last_counts = Instant::now();
    let mut last_pairing = Instant::now();

    loop {
        if stop::requested() {
            break;
        }
        let mut quit = false;
        tokio::select! {
            ev = keys.next() => match ev {
                Some(Ok(TermEvent::Key(k))) => {
                    if let Some(a) = keymap::map_key(k, &app) {
                        quit = runner.dispatch(&mut app, a);
                    }
                    dirty = true;
                }
                Some(Ok(TermEvent::Mouse(m))) => {
                    if let Some(a) = keymap::map_mouse(m) {
                        quit = runner.dispatch(&mut app, a);
                        dirty = true;
                    }
                }
                Some(Ok(TermEvent::Resize(..))) => dirty = true,
                Some(Ok(_)) => {}
                // The terminal went away: nothing more can be shown.
                Some(Err(_)) | None => break,
            },
            batch = recv_events(&mut events_rx) => match batch {
                Some(batch) => {
                    quit = runner.dispatch(&mut app, Action::Events(batch));
                    dirty = true;
                }
                None => events_rx = None,
            },
            scans = disc_rx.recv() => {
                if let Some(scans) = scans {
                    quit = runner.dispatch(&mut app, Action::Scanned(scans));
                    let commands = startup_attach(&mut app, &mut startup);
                    quit |= runner.run(&mut app, commands);
                    dirty = true;
                }
            },
            _ = ticker.tick() => {
                quit = runner.dispatch(&mut app, Action::Tick { now_ns: monotonic_ns() });
                if let Some(t) = runner.tracer.duty_tick() {
                    if t.gap {
                        quit |= runner.dispatch(&mut app, Action::Gap);
                    }
                    quit |= runner.dispatch(&mut app, Action::Sampled {
                        fraction: t.fraction,
                        full_overhead: t.full_overhead,
                    });
                }
                if last_counts.elapsed() >= Duration::from_secs(1) {
                    let c = runner.tracer.counts();
                    for hint in runner.silence_hints(&c.hits) {
                        quit |= runner.dispatch(&mut app, hint);
                    }
                    quit |= runner.dispatch(&mut app, Action::ProbeCounts {
                        hits: c.hits,
                        dropped: c.dropped,
                        too_slow: c.too_slow,
                        unreadable: c.unreadable,
                    });
                    last_counts = Instant::now();
                    for change in runner.changes.changes() {
                        quit |= runner.dispatch(&mut app, Action::Status(change.to_string()));
                        dirty = true;
                    }
                }
                // As often as `latency` adapts its sampling.
                if last_pairing.elapsed() >= Duration::from_millis(250) {
                    let kernel_pair = runner.tracer.kernel_pair().cloned();
                    quit |= runner.dispatch(&mut app, Action::PairingTick {
                        now_ns: monotonic_ns(),
                        kernel_pair,
                    });
                    last_pairing = Instant::now();
                    dirty = true;
                }
                if dirty || last_draw.elapsed() >= IDLE_REDRAW {
                    if let Ok(size) = guard.terminal.size() {
                        let area = ratatui::layout::Rect::new(0, 0, size.width, size.height);
                        let resize = Action::Resize {
                            page_rows: size.height as usize / 3,
                            hist_rows: ui::histogram_rows(area, &app),
                        };
                        quit |= runner.dispatch(&mut app, resize);
                    }
                    let t0 = Instant::now();
                    guard.terminal.draw(|f| ui::draw(f, &app, &theme))?;
                    frames.record(t0.elapsed());
                    last_draw = Instant::now();
                    dirty = false;
                }
            },
        }
        if quit {
            drop(guard);
            frames.report();
            return Ok(0);
        }
        if app.quit {
            break;
        }
    }
    drop(guard);
    frames.report();
    // 0 after q or the Ctrl-C key; 128 + the signal's number after an external signal.
    Ok(stop::exit_status())
}

async fn recv_events(
    rx: &mut Option<usdtop::probes::tracing::queue::EventStream>,
) -> Option<Vec<usdtop::probes::Event>> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The BPF engine, or a stand-in that explains why there is none (the explorer still works),
/// with the action that tells the app so.
fn make_tracer() -> (Box<dyn Tracer>, Option<Action>) {
    match tracer::BpfTracer::start() {
        Ok(t) => (Box::new(t), None),
        Err(why) => (
            Box::new(tracer::Unavailable(why.clone())),
            Some(Action::AttachUnavailable(why)),
        ),
    }
}

/// Runs start-up attaches once the process they are for is listed.
fn startup_attach(app: &mut App, s: &mut StartupAttach) -> Vec<Command> {
    if s.names.is_empty() {
        return Vec::new();
    }
    s.lists_seen += 1;
    let mut out = Vec::new();
    let mut missing = Vec::new();
    for text in std::mem::take(&mut s.names) {
        let Some(mut pattern) = ProbePattern::parse(&text) else {
            out.extend(app.update(Action::Error(format!(
                "cannot attach `{text}`: write provider:name or PATH:provider:name"
            ))));
            continue;
        };
        // A PATH glob names files (copies of a program): one pattern per file it matches.
        let paths = match pattern.path.as_deref().map(expand_path).transpose() {
            Ok(None) => vec![None],
            Ok(Some(files)) => {
                if pattern.path.as_deref().is_some_and(has_glob) && s.lists_seen == 1 {
                    let glob = pattern.path.as_deref().unwrap_or_default();
                    out.extend(app.update(Action::Status(describe_matches(glob, &files))));
                }
                files.into_iter().map(Some).collect()
            }
            Err(e) => {
                out.extend(app.update(Action::Error(format!("cannot attach `{text}`: {e}"))));
                continue;
            }
        };
        let listed = s.pid.is_none_or(|pid| app.explorer.has_process(pid));
        let mut found = false;
        for path in paths {
            // Objects are listed by their real paths; a symlink or relative path names the same.
            pattern.path =
                path.map(|p| std::fs::canonicalize(&p).unwrap_or(p).display().to_string());
            if let Some(commands) = listed
                .then(|| app.attach_matching(&pattern, s.pid))
                .flatten()
            {
                out.extend(commands);
                found = true;
            }
        }
        if !found {
            missing.push(text);
        }
    }
    if s.lists_seen >= s.lists_needed && !missing.is_empty() {
        let whom = s
            .pid
            .map(|p| format!("process {p}"))
            .unwrap_or_else(|| "any process".into());
        out.extend(app.update(Action::Error(format!(
            "cannot attach {}: not found in {whom}",
            missing.join(", ")
        ))));
    } else {
        s.names = missing;
    }
    out
}

/// Carries out what the app asks: the tracer, the object index and the file watch live here.
struct Runner {
    tracer: Box<dyn Tracer>,
    index: ObjectIndex,
    catalog: Arc<Catalog>,
    /// The attached files and processes, for a deploy or an exec under the explorer.
    changes: Watch,
    /// Attached probes that stay silent, for the catalog's hints.
    silence: InertWatch,
    /// The processes each object's probes were attached for (by path; none: all processes).
    traced_pids: HashMap<String, Vec<u32>>,
}

impl Runner {
    /// Hints for attached probes silent for a few seconds because a runtime switch is off.
    fn silence_hints(&mut self, hits: &[(Arc<ProbeKey>, u64)]) -> Vec<Action> {
        let probes: Vec<ProbeHits> = hits
            .iter()
            .map(|(k, n)| ProbeHits {
                path: &k.path,
                full_name: k.full_name(),
                hits: *n,
            })
            .collect();
        let traced = &self.traced_pids;
        self.silence
            .check(self.catalog.hints(), monotonic_ns(), &probes, |path| {
                traced.get(path).cloned().unwrap_or_default()
            })
            .into_iter()
            .map(|line| Action::Status(format!("hint: {line}")))
            .collect()
    }

    /// Gives the app one action and carries out every command it answers with, and the
    /// commands the outcomes lead to; true when the app asked to quit.
    fn dispatch(&mut self, app: &mut App, action: Action) -> bool {
        let commands = app.update(action);
        self.run(app, commands)
    }

    /// Carries out `commands` in order, each outcome going back through `update` at once.
    fn run(&mut self, app: &mut App, commands: Vec<Command>) -> bool {
        let mut quit = false;
        for cmd in commands {
            match self.execute(cmd, app) {
                Some(outcome) => quit |= self.dispatch(app, outcome),
                None => quit = true,
            }
        }
        quit
    }

    /// Runs one command; the action that reports its outcome (`None`: quit).
    fn execute(&mut self, cmd: Command, app: &App) -> Option<Action> {
        Some(match cmd {
            Command::Attach { probe, pid } => {
                let result = self.attach(&probe, pid);
                match result {
                    Ok(sites) => Action::Attached { probe, sites },
                    Err(why) => Action::AttachFailed { probe, why },
                }
            }
            Command::Detach { probe } => match self.tracer.detach(&probe) {
                Ok(()) => Action::Detached { probe },
                Err(why) => Action::Error(format!("detaching {}: {why}", probe.full_name())),
            },
            Command::PairInKernel { pair, rate, now_ns } => {
                let result = self.tracer.pair_in_kernel(&pair, None, now_ns);
                Action::PairedInKernel { pair, rate, result }
            }
            Command::PairInStream { cooled } => Action::PairedInStream {
                cooled,
                result: self.tracer.pair_in_stream(),
            },
            Command::ReadKernelPairing { now_ns } => Action::PairingReport {
                now_ns,
                report: self.tracer.kernel_latency(now_ns),
                kernel_unsupported: app
                    .live
                    .pair()
                    .and_then(|p| kernel_unsupported(p, &self.catalog, false)),
            },
            Command::SetBudget(budget) => Action::BudgetSet {
                budget,
                result: self.tracer.set_budget(budget),
            },
            Command::Quit => return None,
        })
    }

    fn attach(&mut self, probe: &ProbeKey, pid: Option<u32>) -> Result<usize, String> {
        let entry = self.index.lock().unwrap().get(&probe.path).cloned();
        let result = match entry.as_ref().map(|(open, obj)| (open, obj.as_ref())) {
            None => Err(format!("{} is not (or no longer) scanned", probe.path)),
            Some((_, Err(e))) => Err(e.to_string()),
            Some((open, Ok(obj))) => match obj
                .probes
                .iter()
                .find(|p| p.provider == probe.provider && p.name == probe.name)
            {
                None => Err(format!("{} has no probe {}", probe.path, probe.full_name())),
                Some(p) => self.tracer.attach(AttachRequest {
                    object: obj,
                    open_path: (*open != probe.path).then(|| open.into()),
                    probe: p,
                    pid,
                    strings: self.catalog.string_args(&probe.full_name()),
                }),
            },
        };
        if result.is_ok() {
            // Watched for a deploy over the file and for an exec of the process.
            if let Some((open, _)) = &entry {
                if !open.starts_with("/proc") {
                    self.changes.file(open.as_ref());
                }
            }
            if let Some(pid) = pid {
                self.changes.process(pid);
                let pids = self.traced_pids.entry(probe.path.clone()).or_default();
                if !pids.contains(&pid) {
                    pids.push(pid);
                }
            }
        }
        result
    }
}

fn wall_offset_ns() -> i64 {
    clock_ns(libc::CLOCK_REALTIME) - clock_ns(libc::CLOCK_MONOTONIC)
}

/// Draw times, reported at exit when `USDTOP_FRAME_STATS=path` is set (for bench/tui.sh).
#[derive(Default)]
struct FrameStats {
    micros: Vec<u32>,
}

impl FrameStats {
    fn record(&mut self, d: Duration) {
        if self.micros.len() < 1_000_000 {
            self.micros.push(d.as_micros().min(u32::MAX as u128) as u32);
        }
    }

    fn report(&mut self) {
        let Some(path) = std::env::var_os("USDTOP_FRAME_STATS") else {
            return;
        };
        if self.micros.is_empty() {
            return;
        }
        self.micros.sort_unstable();
        let n = self.micros.len();
        let pct = |q: f64| self.micros[((n as f64 * q) as usize).min(n - 1)];
        let mean = self.micros.iter().map(|&m| m as u64).sum::<u64>() / n as u64;
        let text = format!(
            "frames {n} mean_us {mean} p50_us {} p99_us {} max_us {}\n",
            pct(0.5),
            pct(0.99),
            self.micros[n - 1]
        );
        let _ = std::fs::write(path, text);
    }
}
