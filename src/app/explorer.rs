//! The explorer: processes → the objects they map → the probes in each object. Plain data from
//! discovery (converted by the runtime), plus selection, sort, and a `/` filter per pane.

use super::action::Pane;
use crate::probes::discovery::select::{glob, ProbePattern};
use std::cmp::Reverse;
use std::sync::Arc;

/// One probe of an object, as the explorer lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeView {
    pub provider: String,
    pub name: String,
    pub sites: usize,
    /// The semaphore's address as the note has it, if the probe is guarded by one (the kernel
    /// raises it while attached).
    pub semaphore: Option<u64>,
    /// Arguments: the most any site has (specs belong to the site, and the sites of one probe
    /// may differ, e.g. postgres `sort__start`).
    pub args: usize,
    /// The first site's argument specs as written in the note (`-4@%esi`).
    pub arg_specs: Vec<String>,
    /// Whether other sites pass different arguments.
    pub specs_vary: bool,
}

impl ProbeView {
    pub fn full_name(&self) -> String {
        format!("{}:{}", self.provider, self.name)
    }
}

/// One mapped ELF object of a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectView {
    /// The path as the process mapped it (what people recognise).
    pub path: String,
    /// The path usdtop opens for attaching (differs from `path` for processes in containers
    /// or deleted files). Probe keys use `path`.
    pub attach_path: String,
    pub probes: Vec<ProbeView>,
    /// Why the object's notes could not be read, if they could not.
    pub error: Option<String>,
}

/// One probe in one object, found by [`Explorer::matching_probes`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeMatch {
    /// The lowest pid mapping the object.
    pub pid: u32,
    pub path: String,
    pub provider: String,
    pub name: String,
}

impl ProbeMatch {
    fn same_probe(&self, other: &ProbeMatch) -> bool {
        (&self.path, &self.provider, &self.name) == (&other.path, &other.provider, &other.name)
    }
}

/// One process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessView {
    pub pid: u32,
    pub comm: String,
    /// Objects shared between processes (libc, the same binary) are shared here too.
    pub objects: Vec<Arc<ObjectView>>,
    /// A runtime recognised without probes: why, and what gives probes (catalog hints).
    pub hint: Option<String>,
}

impl ProcessView {
    pub fn probe_count(&self) -> usize {
        self.objects.iter().map(|o| o.probes.len()).sum()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProcessSort {
    /// Most probes first, then by pid.
    #[default]
    Probes,
    Pid,
    Comm,
}

impl ProcessSort {
    pub fn next(self) -> ProcessSort {
        match self {
            ProcessSort::Probes => ProcessSort::Pid,
            ProcessSort::Pid => ProcessSort::Comm,
            ProcessSort::Comm => ProcessSort::Probes,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            ProcessSort::Probes => "probes",
            ProcessSort::Pid => "pid",
            ProcessSort::Comm => "name",
        }
    }
}

/// A cursor into a list of `len` rows; keeps itself in range.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cursor {
    pub index: usize,
}

impl Cursor {
    pub fn move_by(&mut self, delta: isize, len: usize) {
        if len == 0 {
            self.index = 0;
            return;
        }
        let max = len as isize - 1;
        self.index = (self.index as isize + delta).clamp(0, max) as usize;
    }

    pub fn clamp(&mut self, len: usize) {
        self.move_by(0, len);
    }
}

/// The `/` filter of one explorer pane: a glob when it has `*`, `?` or `[`, a substring
/// otherwise; either way without regard to case.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PaneFilter {
    pub text: String,
}

impl PaneFilter {
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    pub fn is_glob(&self) -> bool {
        self.text.contains(['*', '?', '['])
    }

    /// Whether a row passes: one of its `fields` (name, pid, path...) matches.
    pub fn admits<'a>(&self, fields: impl IntoIterator<Item = &'a str>) -> bool {
        if self.is_empty() {
            return true;
        }
        let want = self.text.to_lowercase();
        fields.into_iter().any(|f| {
            let f = f.to_lowercase();
            if self.is_glob() {
                glob(&want, &f)
            } else {
                f.contains(&want)
            }
        })
    }
}

/// The filters of the three explorer panes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    pub processes: PaneFilter,
    pub objects: PaneFilter,
    pub probes: PaneFilter,
}

impl Filters {
    /// The filter of an explorer pane (the live panes have none: `None`).
    pub fn of(&self, pane: Pane) -> Option<&PaneFilter> {
        match pane {
            Pane::Processes => Some(&self.processes),
            Pane::Objects => Some(&self.objects),
            Pane::Probes => Some(&self.probes),
            _ => None,
        }
    }
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

#[derive(Debug, Default)]
pub struct Explorer {
    processes: Vec<ProcessView>,
    /// Indices into `processes` that pass the filter, in sort order.
    visible: Vec<usize>,
    pub filters: Filters,
    /// The pane whose filter is being typed, if one is.
    pub editing: Option<Pane>,
    pub sort: ProcessSort,
    pub proc_cursor: Cursor,
    pub obj_cursor: Cursor,
    pub probe_cursor: Cursor,
    /// The pid the selection should stay on across refreshes (and `-p PID`).
    selected_pid: Option<u32>,
    /// Set once a process list has arrived (before that the panes say "scanning").
    pub loaded: bool,
}

impl Explorer {
    /// Replaces the process list, keeping the selected process selected if it still exists.
    pub fn set_processes(&mut self, processes: Vec<ProcessView>) {
        self.processes = processes;
        self.loaded = true;
        self.rebuild();
    }

    /// Select `pid` now or, if it is not listed yet, as soon as it is.
    pub fn select_pid(&mut self, pid: u32) {
        self.selected_pid = Some(pid);
        self.rebuild();
    }

    fn rebuild(&mut self) {
        let filter = &self.filters.processes;
        let mut visible: Vec<usize> = self
            .processes
            .iter()
            .enumerate()
            .filter(|(_, p)| filter.admits([p.comm.as_str(), &p.pid.to_string()]))
            .map(|(i, _)| i)
            .collect();
        let procs = &self.processes;
        match self.sort {
            ProcessSort::Probes => {
                visible.sort_by_key(|&i| (Reverse(procs[i].probe_count()), procs[i].pid))
            }
            ProcessSort::Pid => visible.sort_by_key(|&i| procs[i].pid),
            ProcessSort::Comm => visible.sort_by(|&a, &b| {
                procs[a]
                    .comm
                    .cmp(&procs[b].comm)
                    .then(procs[a].pid.cmp(&procs[b].pid))
            }),
        }
        self.visible = visible;
        let before = self.selected_pid;
        match self
            .selected_pid
            .and_then(|pid| self.visible.iter().position(|&i| procs[i].pid == pid))
        {
            Some(pos) => self.proc_cursor.index = pos,
            None => self.proc_cursor.clamp(self.visible.len()),
        }
        // A pid asked for (-p) but not listed yet stays wanted; otherwise follow the cursor.
        if before.is_none() || self.selected_process().map(|p| p.pid) == before {
            self.selected_pid = self.selected_process().map(|p| p.pid);
        }
        self.obj_cursor.clamp(self.objects().len());
        self.probe_cursor.clamp(self.probes().len());
    }

    /// Processes in display order.
    pub fn processes(&self) -> impl Iterator<Item = &ProcessView> {
        self.visible.iter().map(|&i| &self.processes[i])
    }

    pub fn process_count(&self) -> usize {
        self.visible.len()
    }

    pub fn total_processes(&self) -> usize {
        self.processes.len()
    }

    pub fn selected_process(&self) -> Option<&ProcessView> {
        self.visible
            .get(self.proc_cursor.index)
            .map(|&i| &self.processes[i])
    }

    /// Objects of the selected process that pass the objects filter (by path or file
    /// name): those with probes first, then the rest (dimmed).
    pub fn objects(&self) -> Vec<&Arc<ObjectView>> {
        let Some(p) = self.selected_process() else {
            return Vec::new();
        };
        let filter = &self.filters.objects;
        let mut objs: Vec<&Arc<ObjectView>> = p
            .objects
            .iter()
            .filter(|o| filter.admits([o.path.as_str(), file_name(&o.path)]))
            .collect();
        objs.sort_by_key(|o| (o.probes.is_empty(), Reverse(o.probes.len())));
        objs
    }

    /// How many objects the selected process maps, filtered or not.
    pub fn total_objects(&self) -> usize {
        self.selected_process().map_or(0, |p| p.objects.len())
    }

    /// The probes of `object` that pass the probes filter (by `provider:name` or name).
    fn probes_of(&self, object: &ObjectView) -> Vec<ProbeView> {
        let filter = &self.filters.probes;
        object
            .probes
            .iter()
            .filter(|p| filter.admits([p.full_name().as_str(), &p.name]))
            .cloned()
            .collect()
    }

    pub fn selected_object(&self) -> Option<Arc<ObjectView>> {
        self.objects()
            .get(self.obj_cursor.index)
            .map(|o| (*o).clone())
    }

    /// Probes of the selected object that pass the probes filter.
    pub fn probes(&self) -> Vec<ProbeView> {
        self.selected_object()
            .map(|o| self.probes_of(&o))
            .unwrap_or_default()
    }

    pub fn selected_probe(&self) -> Option<ProbeView> {
        self.probes().get(self.probe_cursor.index).cloned()
    }

    pub fn move_process(&mut self, delta: isize) {
        self.proc_cursor.move_by(delta, self.visible.len());
        self.selected_pid = self.selected_process().map(|p| p.pid);
        self.obj_cursor = Cursor::default();
        self.probe_cursor = Cursor::default();
    }

    pub fn move_object(&mut self, delta: isize) {
        self.obj_cursor.move_by(delta, self.objects().len());
        self.probe_cursor = Cursor::default();
    }

    pub fn move_probe(&mut self, delta: isize) {
        self.probe_cursor.move_by(delta, self.probes().len());
    }

    /// Sets the filter of explorer pane `pane` (the others have none); its cursor goes to the
    /// first row that passes, and so do the cursors of the panes it lists for.
    pub fn set_filter(&mut self, pane: Pane, text: String) {
        match pane {
            Pane::Processes => {
                self.filters.processes.text = text;
                self.selected_pid = None;
                self.proc_cursor = Cursor::default();
                self.obj_cursor = Cursor::default();
                self.probe_cursor = Cursor::default();
            }
            Pane::Objects => {
                self.filters.objects.text = text;
                self.obj_cursor = Cursor::default();
                self.probe_cursor = Cursor::default();
            }
            Pane::Probes => {
                self.filters.probes.text = text;
                self.probe_cursor = Cursor::default();
            }
            _ => return,
        }
        self.rebuild();
    }

    pub fn cycle_sort(&mut self) {
        self.sort = self.sort.next();
        self.rebuild();
    }

    pub fn has_process(&self, pid: u32) -> bool {
        self.processes.iter().any(|p| p.pid == pid)
    }

    /// The lowest pid of a process that maps an object with probe `full_name`.
    /// Every (object path, probe) that `pattern` selects, in the objects of process `pid` or,
    /// without one, of every process; each once, in pid order, with the lowest pid mapping
    /// it. A pattern's PATH matches the object's mapped path or the path usdtop opens.
    pub fn matching_probes(&self, pattern: &ProbePattern, pid: Option<u32>) -> Vec<ProbeMatch> {
        let mut found: Vec<ProbeMatch> = Vec::new();
        let mut procs: Vec<&ProcessView> = self
            .processes
            .iter()
            .filter(|p| pid.is_none_or(|pid| p.pid == pid))
            .collect();
        procs.sort_by_key(|p| p.pid);
        for p in procs {
            for o in &p.objects {
                if let Some(path) = &pattern.path {
                    if *path != o.path && *path != o.attach_path {
                        continue;
                    }
                }
                for pr in o.probes.iter() {
                    if !pattern.matches_name(&pr.provider, &pr.name) {
                        continue;
                    }
                    let m = ProbeMatch {
                        pid: p.pid,
                        path: o.path.clone(),
                        provider: pr.provider.clone(),
                        name: pr.name.clone(),
                    };
                    if !found.iter().any(|f| f.same_probe(&m)) {
                        found.push(m);
                    }
                }
            }
        }
        found
    }

    /// Selects the selected process's object at `path` and its probe `full_name`. Returns
    /// whether it was found.
    pub fn select_probe_named(&mut self, path: &str, full_name: &str) -> bool {
        let found = self
            .objects()
            .iter()
            .enumerate()
            .filter(|(_, o)| o.path == path)
            .find_map(|(oi, o)| {
                let probes = self.probes_of(o);
                let pi = probes.iter().position(|p| p.full_name() == full_name)?;
                Some((oi, pi))
            });
        let Some((oi, pi)) = found else {
            return false;
        };
        self.obj_cursor.index = oi;
        self.probe_cursor.index = pi;
        true
    }
}
