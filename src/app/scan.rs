//! Discovery's findings turned into the explorer's views. The discovery thread only sends what
//! it scanned ([`ProcessScan`]); the app makes the views, sharing one view per object across
//! the processes that map it.

use super::explorer::{ObjectView, ProbeView, ProcessView};
use crate::probes::discovery::hints::{Hints, ProcessFacts};
use crate::probes::discovery::process::{CachedObject, ObjectKey};
use crate::probes::{Probe, Site};
use std::collections::HashMap;
use std::sync::Arc;

/// One process as discovery scanned it.
#[derive(Debug, Clone)]
pub struct ProcessScan {
    pub pid: u32,
    pub comm: String,
    /// `/proc/PID/exe`, if it could be read.
    pub exe: Option<String>,
    pub objects: Vec<Arc<ScannedObject>>,
}

/// One mapped object and its parsed probes (or why they could not be read).
#[derive(Debug)]
pub struct ScannedObject {
    pub key: ObjectKey,
    /// The path as the process mapped it.
    pub path: String,
    /// Where usdtop opens it for attaching.
    pub attach_path: String,
    pub probes: CachedObject,
}

/// Views already made, by object identity and mapped path (never evicted: the set of
/// distinct objects on a machine is small).
#[derive(Default)]
pub(super) struct ViewCache {
    views: HashMap<(ObjectKey, String), Arc<ObjectView>>,
}

impl ViewCache {
    pub(super) fn processes(&mut self, scans: Vec<ProcessScan>, hints: &Hints) -> Vec<ProcessView> {
        scans
            .into_iter()
            .map(|p| ProcessView {
                hint: hints.missing_for(&facts(&p)).map(|h| h.text()),
                pid: p.pid,
                comm: p.comm,
                objects: p.objects.iter().map(|o| self.object(o)).collect(),
            })
            .collect()
    }

    fn object(&mut self, o: &ScannedObject) -> Arc<ObjectView> {
        self.views
            .entry((o.key, o.path.clone()))
            .or_insert_with(|| Arc::new(object_view(o)))
            .clone()
    }
}

/// A scanned process as the hints look at it: its executable (or name), objects and providers.
fn facts(p: &ProcessScan) -> ProcessFacts<'_> {
    ProcessFacts {
        exe: p.exe.as_deref().unwrap_or(&p.comm),
        objects: p.objects.iter().map(|o| o.path.as_str()).collect(),
        providers: p
            .objects
            .iter()
            .filter_map(|o| o.probes.as_ref().as_ref().ok())
            .flat_map(|o| o.probes.iter().map(|pr| pr.provider.as_str()))
            .collect(),
    }
}

fn object_view(o: &ScannedObject) -> ObjectView {
    let (probes, error) = match o.probes.as_ref() {
        Ok(obj) => (
            sorted_by_name(&obj.probes)
                .into_iter()
                .map(|p| ProbeView {
                    provider: p.provider.clone(),
                    name: p.name.clone(),
                    sites: p.sites.len(),
                    semaphore: p.semaphore,
                    args: p.arg_count(),
                    arg_specs: p.sites.first().map(site_specs).unwrap_or_default(),
                    specs_vary: p.sites.windows(2).any(|w| w[0].args_text != w[1].args_text),
                })
                .collect(),
            None,
        ),
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    ObjectView {
        path: o.path.clone(),
        attach_path: o.attach_path.clone(),
        probes,
        error,
    }
}

/// A site's argument specs as the note writes them.
fn site_specs(site: &Site) -> Vec<String> {
    site.args_text
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// Probes in name order, so a list is easy to scan (ELF order is arbitrary).
fn sorted_by_name(probes: &[Probe]) -> Vec<&Probe> {
    let mut v: Vec<&Probe> = probes.iter().collect();
    v.sort_by(|a, b| (&a.provider, &a.name).cmp(&(&b.provider, &b.name)));
    v
}
