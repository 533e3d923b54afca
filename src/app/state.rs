//! `App`: the whole TUI state and its `update` function (Action in, Commands out).

use super::action::{Action, Command, Pane};
use super::explorer::Explorer;
use super::live::{DrillDown, Live};
use super::pairing::{KernelLatency, PairingMode, PairingPolicy};
use super::scan::ViewCache;
use crate::aggregate::format_duration_ns;
use crate::probes::discovery::catalog::Catalog;
use crate::probes::discovery::select::ProbePattern;
use crate::probes::ProbeKey;
use std::collections::HashMap;
use std::sync::Arc;

/// Where a probe is in its attach life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachState {
    Pending,
    Attached { sites: usize },
    Failed(String),
}

/// The status line's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub text: String,
    pub error: bool,
}

pub struct App {
    pub focus: Pane,
    pub explorer: Explorer,
    pub live: Live,
    pub attached: HashMap<Arc<ProbeKey>, AttachState>,
    /// Why attaching cannot work at all here (not root, no BPF), if so.
    pub attach_unavailable: Option<String>,
    /// How probes are attached (shown in the help screen), once the tracer is up.
    pub attach_path: Option<String>,
    /// The overhead budget (a fraction of the CPU) and, once known, the fraction of time the
    /// probes were attached and the estimated cost of attaching all the time.
    pub budget: Option<f64>,
    pub sampled: Option<(f64, f64)>,
    pub status: Option<Status>,
    pub show_help: bool,
    pub quit: bool,
    /// Rows a page key moves (the UI sets it from the pane height).
    pub page_rows: usize,
    /// CLOCK_REALTIME − CLOCK_MONOTONIC, to show event times as times of day.
    pub wall_offset_ns: i64,
    /// Where the followed pair is paired (the runtime sets the mode at start).
    pub pairing: PairingPolicy,
    /// Views of the objects discovery found, shared between processes.
    views: ViewCache,
    /// The process whose hint (if any) the status line last got, so each selection says it
    /// once.
    hinted_pid: Option<u32>,
}

impl App {
    pub fn new(catalog: Arc<Catalog>) -> App {
        App {
            focus: Pane::Processes,
            explorer: Explorer::default(),
            live: Live::new(catalog),
            attached: HashMap::new(),
            attach_unavailable: None,
            attach_path: None,
            budget: None,
            sampled: None,
            status: None,
            show_help: false,
            quit: false,
            page_rows: 10,
            wall_offset_ns: 0,
            pairing: PairingPolicy::new(PairingMode::Auto, f64::INFINITY),
            views: ViewCache::default(),
            hinted_pid: None,
        }
    }

    pub fn attach_state(&self, probe: &ProbeKey) -> Option<&AttachState> {
        self.attached.get(probe)
    }

    /// Whether keys go to the `/` filter editor.
    pub fn editing_filter(&self) -> bool {
        self.explorer.editing.is_some()
    }

    pub(super) fn info(&mut self, text: impl Into<String>) {
        self.status = Some(Status {
            text: text.into(),
            error: false,
        });
    }

    pub(super) fn error(&mut self, text: impl Into<String>) {
        self.status = Some(Status {
            text: text.into(),
            error: true,
        });
    }

    /// Applies one action; returns what the runtime should do (every command must be run: an
    /// attach not run leaves its probe pending for ever).
    #[must_use = "the runtime must execute the commands"]
    pub fn update(&mut self, action: Action) -> Vec<Command> {
        let out = self.apply(action);
        self.say_hint_of_selection();
        out
    }

    /// When the selection moves to a process running a runtime without probes, the status
    /// line says why and what gives probes (once per selection).
    fn say_hint_of_selection(&mut self) {
        let Some(p) = self.explorer.selected_process() else {
            return;
        };
        if self.hinted_pid == Some(p.pid) {
            return;
        }
        self.hinted_pid = Some(p.pid);
        if let Some(hint) = &p.hint {
            let text = format!("{} {}: {hint}", p.pid, p.comm);
            self.info(text);
        }
    }

    /// The text of the `/` filter being typed.
    fn edit_filter(&mut self, edit: impl FnOnce(&mut String)) {
        let Some(pane) = self.explorer.editing else {
            return;
        };
        let Some(mut text) = self.explorer.filters.of(pane).map(|f| f.text.clone()) else {
            return;
        };
        edit(&mut text);
        self.explorer.set_filter(pane, text);
    }

    fn apply(&mut self, action: Action) -> Vec<Command> {
        let mut out = Vec::new();
        match action {
            Action::FocusNext => self.cycle_focus(1),
            Action::FocusPrev => self.cycle_focus(-1),
            Action::Focus(p) => self.focus = p,
            Action::Up => self.move_cursor(-1),
            Action::Down => self.move_cursor(1),
            Action::PageUp => self.move_cursor(-(self.page_rows.max(1) as isize)),
            Action::PageDown => self.move_cursor(self.page_rows.max(1) as isize),
            Action::Home => self.move_cursor(isize::MIN / 2),
            Action::End => self.move_cursor(isize::MAX / 2),
            Action::Enter => self.enter(),
            Action::Back => self.back(),
            Action::Toggle => out.extend(self.toggle()),
            Action::StartFilter => {
                // The live panes have no filter of their own: `/` there filters processes.
                if !self.focus.is_explorer() {
                    self.focus = Pane::Processes;
                }
                self.explorer.editing = Some(self.focus);
            }
            Action::FilterInput(c) => self.edit_filter(|f| f.push(c)),
            Action::FilterBackspace => self.edit_filter(|f| {
                f.pop();
            }),
            Action::FilterDone => self.explorer.editing = None,
            Action::CycleSort => match self.focus {
                Pane::Top => self.live.top_sort = self.live.top_sort.next(),
                _ => self.explorer.cycle_sort(),
            },
            Action::CycleWindow => self.live.window = self.live.window.next(),
            Action::CyclePair => self.cycle_pair(),
            Action::TogglePause => self.live.toggle_pause(),
            Action::Clear => {
                self.live.clear();
                self.info("cleared the log and the aggregations");
            }
            Action::ToggleHelp => self.show_help = !self.show_help,
            Action::CycleBudget => {
                let next = match self.budget {
                    None => Some(0.01),
                    Some(b) if b < 0.05 => Some(0.05),
                    Some(_) => None,
                };
                out.push(Command::SetBudget(next));
            }
            Action::BudgetSet { budget, result } => match result {
                Ok(()) => {
                    self.budget = budget;
                    self.sampled = None;
                    match budget {
                        Some(b) => self.info(format!(
                            "overhead budget {:.0}%: above it the probes are attached for a \
                             slice of each second; the panes show what the slices saw",
                            b * 100.0
                        )),
                        None => self.info("overhead budget off: attached all the time"),
                    }
                }
                Err(why) => self.error(format!("overhead budget: {why}")),
            },
            Action::Gap => self.live.gap(),
            Action::Sampled {
                fraction,
                full_overhead,
            } => self.sampled = Some((fraction, full_overhead)),
            Action::Quit => {
                self.quit = true;
                out.push(Command::Quit);
            }
            Action::SelectProcess(pid) => self.explorer.select_pid(pid),
            Action::Processes(list) => self.explorer.set_processes(list),
            Action::Scanned(scans) => {
                let list = self.views.processes(scans, self.live.catalog().hints());
                self.explorer.set_processes(list);
            }
            Action::AttachUnavailable(why) => {
                self.error(format!("cannot attach probes: {why}"));
                self.attach_unavailable = Some(why);
            }
            Action::Attached { probe, sites } => {
                self.live.adopt_pair_of(&probe.full_name());
                self.info(format!("attached {} ({sites} sites)", probe.full_name()));
                self.attached.insert(probe, AttachState::Attached { sites });
            }
            Action::AttachFailed { probe, why } => {
                self.error(format!("attaching {} failed: {why}", probe.full_name()));
                self.attached.insert(probe, AttachState::Failed(why));
            }
            Action::Sampling(sampling) => self.live.set_sampling(sampling),
            Action::KernelLatency {
                now_ns,
                samples,
                sample_every,
            } => self.live.push_kernel_latency(
                now_ns,
                &KernelLatency {
                    samples,
                    sample_every,
                    ..KernelLatency::default()
                },
            ),
            Action::Detached { probe } => {
                self.info(format!("detached {}", probe.full_name()));
                self.attached.remove(&probe);
            }
            Action::Events(events) => self.live.push_events(events),
            Action::ProbeCounts {
                hits,
                dropped,
                too_slow,
                unreadable,
            } => {
                self.live.set_hits(hits, dropped, too_slow);
                self.live.unreadable = self.live.unreadable.max(unreadable);
            }
            Action::PairingTick {
                now_ns,
                kernel_pair,
            } => out = self.pairing_tick(kernel_pair, now_ns),
            Action::PairingReport {
                now_ns,
                report,
                kernel_unsupported,
            } => out = self.pairing_report(now_ns, report, kernel_unsupported),
            Action::PairedInKernel { pair, rate, result } => {
                self.paired_in_kernel(pair, rate, result)
            }
            Action::PairedInStream { cooled, result } => self.paired_in_stream(cooled, result),
            Action::Resize {
                page_rows,
                hist_rows,
            } => {
                self.page_rows = page_rows.max(1);
                self.live.hist_rows = hist_rows;
            }
            Action::Tick { now_ns } => self.live.tick(now_ns),
            Action::Status(text) => self.info(text),
            Action::Error(text) => self.error(text),
        }
        out
    }

    /// Pairs worth following: catalog pairs with a probe attached, in catalog order.
    pub fn candidate_pairs(&self) -> Vec<crate::probes::discovery::catalog::Pair> {
        let attached: Vec<String> = self
            .attached
            .iter()
            .filter(|(_, s)| !matches!(s, AttachState::Failed(_)))
            .map(|(k, _)| k.full_name())
            .collect();
        self.live
            .catalog()
            .pairs()
            .iter()
            .filter(|p| attached.contains(&p.start) || attached.contains(&p.done))
            .cloned()
            .collect()
    }

    fn cycle_pair(&mut self) {
        let pairs = self.candidate_pairs();
        if pairs.is_empty() {
            self.info("no start/done pair has an attached probe (attach one, e.g. a query__start)");
            return;
        }
        let current = self.live.pair().cloned();
        let next = match current.and_then(|c| pairs.iter().position(|p| *p == c)) {
            Some(i) => pairs[(i + 1) % pairs.len()].clone(),
            None => pairs[0].clone(),
        };
        self.info(format!("latency of {} → {}", next.start, next.done));
        self.live.set_pair(next);
    }

    fn cycle_focus(&mut self, step: isize) {
        let i = Pane::ORDER
            .iter()
            .position(|p| *p == self.focus)
            .unwrap_or(0) as isize;
        let n = Pane::ORDER.len() as isize;
        self.focus = Pane::ORDER[((i + step).rem_euclid(n)) as usize];
    }

    fn move_cursor(&mut self, delta: isize) {
        match self.focus {
            Pane::Processes => self.explorer.move_process(delta),
            Pane::Objects => self.explorer.move_object(delta),
            Pane::Probes => self.explorer.move_probe(delta),
            Pane::Log => {
                // Up goes towards newer lines (the top), down scrolls into the past.
                let max = self.live.log_len().saturating_sub(1) as isize;
                self.live.log_scroll = (self.live.log_scroll as isize)
                    .saturating_add(delta)
                    .clamp(0, max.max(0)) as usize;
            }
            Pane::Histogram => {
                let n = self.live.buckets().len();
                self.live.hist_cursor.move_by(delta, n);
            }
            Pane::Top => {
                let n = self.live.top_len();
                self.live.top_cursor.move_by(delta, n);
            }
        }
    }

    fn enter(&mut self) {
        match self.focus {
            Pane::Processes => self.focus = Pane::Objects,
            Pane::Objects => self.focus = Pane::Probes,
            Pane::Top => {
                let rows = self.live.top_rows(usize::MAX);
                if let Some(row) = rows.get(self.live.top_cursor.index) {
                    self.live.push_filter(DrillDown::Key(row.key.clone()));
                    self.info(format!("showing only {} (Esc goes back)", row.key));
                }
            }
            Pane::Histogram => {
                let buckets = self.live.buckets();
                if let Some(b) = buckets.get(self.live.hist_cursor.index) {
                    self.live.push_filter(DrillDown::Latency {
                        lo_ns: b.lo_ns,
                        hi_ns: b.hi_ns,
                    });
                    self.focus = Pane::Log;
                    self.info(format!(
                        "showing only requests that took {}–{} (Esc goes back)",
                        format_duration_ns(b.lo_ns),
                        format_duration_ns(b.hi_ns)
                    ));
                }
            }
            Pane::Probes | Pane::Log => {}
        }
    }

    fn back(&mut self) {
        if self.show_help {
            self.show_help = false;
        } else if let Some(pane) = self.explorer.editing.take() {
            self.explorer.set_filter(pane, String::new());
        } else if self
            .explorer
            .filters
            .of(self.focus)
            .is_some_and(|f| !f.is_empty())
        {
            self.explorer.set_filter(self.focus, String::new());
        } else if self.live.pop_filter() {
            self.status = None;
        } else if self.focus == Pane::Probes {
            self.focus = Pane::Objects;
        } else if self.focus == Pane::Objects {
            self.focus = Pane::Processes;
        }
    }

    /// The probe key Space acts on: the selected probe of the selected object.
    pub fn selected_probe_key(&self) -> Option<Arc<ProbeKey>> {
        let obj = self.explorer.selected_object()?;
        let probe = self.explorer.selected_probe()?;
        Some(Arc::new(ProbeKey {
            path: obj.path.clone(),
            provider: probe.provider,
            name: probe.name,
        }))
    }

    fn toggle(&mut self) -> Option<Command> {
        if self.focus != Pane::Probes {
            self.info("select a probe in the Probes pane (Tab) and press Space to attach it");
            return None;
        }
        let key = self.selected_probe_key()?;
        match self.attached.get(&key) {
            Some(AttachState::Pending) | Some(AttachState::Attached { .. }) => {
                Some(Command::Detach { probe: key })
            }
            _ => {
                if let Some(why) = &self.attach_unavailable {
                    let text = format!("cannot attach {}: {why}", key.full_name());
                    self.error(text);
                    return None;
                }
                let pid = self.explorer.selected_process().map(|p| p.pid);
                self.attached.insert(key.clone(), AttachState::Pending);
                self.info(format!("attaching {}…", key.full_name()));
                Some(Command::Attach { probe: key, pid })
            }
        }
    }

    /// Start-up (`-a PATTERN`): attaches every probe `pattern` selects, in process `pid`'s
    /// objects (recording only that process and its children) or, without `pid`, in every
    /// object that has it (recording all processes running it); selects the first match.
    /// `None` if nothing matches; probes already attached are not attached twice.
    pub fn attach_matching(
        &mut self,
        pattern: &ProbePattern,
        pid: Option<u32>,
    ) -> Option<Vec<Command>> {
        let matches = self.explorer.matching_probes(pattern, pid);
        let first = matches.first()?;
        self.explorer.select_pid(first.pid);
        self.explorer
            .select_probe_named(&first.path, &format!("{}:{}", first.provider, first.name));
        if let Some(why) = &self.attach_unavailable {
            let text = format!("cannot attach {pattern}: {why}");
            self.error(text);
            return Some(Vec::new());
        }
        let mut out = Vec::new();
        for m in matches {
            let probe = Arc::new(ProbeKey {
                path: m.path,
                provider: m.provider,
                name: m.name,
            });
            if self.attached.contains_key(&probe) {
                continue;
            }
            self.attached.insert(probe.clone(), AttachState::Pending);
            out.push(Command::Attach { probe, pid });
        }
        Some(out)
    }
}
