//! Per-process links that follow a process tree (the uprobe-multi path with `-p`).
//!
//! A uprobe-multi link made for one process puts breakpoints and raises semaphores only in
//! that process, so unrelated processes running the same file pay nothing. Its children do not
//! inherit it (DESIGN.md §3), so each child gets its own link: the BPF fork hook (on_fork in
//! bpf/usdt.bpf.c) reports every child of a filtered process on the `follow` ring, waking this
//! thread, which links the child's sites for every followed probe. Between the fork and that
//! link the child hits the inherited breakpoint without running the program: hits in that
//! window are lost, and counted in [`FollowCounters`]: creating the first link after a quiet
//! spell waits for an RCU grace period in the kernel (uprobe registration takes the global
//! `dup_mmap_sem` for writing), about 10–15 ms here; later ones take tens of µs. Exits close
//! the process's links.

use super::abi::{RawFollowRec, FOLLOW_EXIT, FOLLOW_FORK};
use super::clock::monotonic_ns;
use super::multi::{attach_multi, MultiLink};
use aya::maps::{MapData, RingBuf};
use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// One probe attached per process: what a new process's link carries, and the links so far.
#[derive(Debug)]
pub(super) struct Group {
    /// The filter-slot bit of the probe's pid set: a fork is followed when its mask has it.
    pub bit: u64,
    pub prog: Arc<OwnedFd>,
    pub path: PathBuf,
    pub offsets: Vec<u64>,
    pub ref_ctrs: Vec<u64>,
    pub cookies: Vec<u64>,
    pub links: BTreeMap<u32, MultiLink>,
}

impl Group {
    /// Links `pid`'s sites unless they are linked already.
    pub fn link(&mut self, pid: u32) -> io::Result<()> {
        if self.links.contains_key(&pid) {
            return Ok(());
        }
        let link = attach_multi(
            self.prog.as_fd(),
            &self.path,
            &self.offsets,
            &self.ref_ctrs,
            &self.cookies,
            Some(pid),
        )?;
        self.links.insert(pid, link);
        Ok(())
    }
}

/// Groups by probe id, shared by the engine (attach, detach) and the follower thread.
pub(super) type Groups = Arc<Mutex<BTreeMap<u32, Group>>>;

/// What following forks did so far.
#[derive(Debug, Default)]
pub(super) struct FollowCounters {
    /// Forked children linked.
    pub children: AtomicU64,
    /// Children that could not be linked (not counting those that exited first).
    pub missed: AtomicU64,
    /// The longest time from a fork to its child's links, in ns: hits in it are not seen.
    pub worst_window_ns: AtomicU64,
}

/// The thread that links forked children and unlinks processes that exit.
pub(super) struct Follower {
    pub groups: Groups,
    pub stats: Arc<FollowCounters>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Follower {
    pub fn start(ring: RingBuf<MapData>) -> io::Result<Follower> {
        let groups = Groups::default();
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(FollowCounters::default());
        let thread = {
            let (groups, stop, stats) = (groups.clone(), stop.clone(), stats.clone());
            std::thread::Builder::new()
                .name("usdtop-follow".into())
                .spawn(move || follow_loop(ring, &groups, &stop, &stats))?
        };
        Ok(Follower {
            groups,
            stats,
            stop,
            thread: Some(thread),
        })
    }

    pub fn lock(&self) -> MutexGuard<'_, BTreeMap<u32, Group>> {
        self.groups.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn follow_loop(
    mut ring: RingBuf<MapData>,
    groups: &Groups,
    stop: &AtomicBool,
    stats: &FollowCounters,
) {
    let fd = ring.as_raw_fd();
    realtime_priority();
    while !stop.load(Ordering::Acquire) {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd. The timeout bounds how long a stop waits.
        unsafe { libc::poll(&mut pfd, 1, 100) };
        let mut recs = Vec::new();
        while let Some(item) = ring.next() {
            if item.len() >= std::mem::size_of::<RawFollowRec>() {
                // SAFETY: length checked; any bit pattern is a valid record; unaligned read.
                recs.push(unsafe {
                    std::ptr::read_unaligned(item.as_ptr().cast::<RawFollowRec>())
                });
            }
        }
        if recs.is_empty() {
            continue;
        }
        let mut closing = Vec::new();
        let mut groups = groups.lock().unwrap_or_else(|p| p.into_inner());
        for r in recs {
            let mut linked = false;
            for g in groups.values_mut() {
                if r.mask & g.bit == 0 {
                    continue;
                }
                match r.kind {
                    FOLLOW_FORK => match g.link(r.tgid) {
                        Ok(()) => linked = true,
                        // ESRCH: it exited before it could be linked; nothing was missed.
                        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
                        Err(_) => {
                            stats.missed.fetch_add(1, Ordering::Relaxed);
                        }
                    },
                    FOLLOW_EXIT => closing.extend(g.links.remove(&r.tgid)),
                    _ => {}
                }
            }
            if r.kind == FOLLOW_FORK && linked {
                // The window in which this child's hits were not seen.
                let window = monotonic_ns().saturating_sub(r.ts_ns);
                stats.children.fetch_add(1, Ordering::Relaxed);
                stats.worst_window_ns.fetch_max(window, Ordering::Relaxed);
            }
        }
        drop(groups);
        // Closing waits for the kernel to unregister; not while holding the lock.
        drop(closing);
    }
}

/// A child's first probe hits are lost until its links exist, so this thread must not wait
/// behind busy threads for a CPU: it asks for the lowest real-time priority (it sleeps in
/// poll() almost always). Without the privilege (CAP_SYS_NICE) it runs at normal priority.
fn realtime_priority() {
    let param = libc::sched_param { sched_priority: 1 };
    // SAFETY: sets the calling thread's policy with a valid sched_param.
    unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
}
