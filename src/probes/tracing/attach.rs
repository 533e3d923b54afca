//! The per-site attach path (the fallback of [`super::multi`]): one uprobe perf event per site, opened with
//! `perf_event_open(2)` so the kernel manages the probe's semaphore (`ref_ctr_offset`, which aya
//! cannot pass), then `BPF_LINK_CREATE` with the site's cookie. Closing the fds detaches and the
//! kernel lowers the semaphore again, even if usdtop dies.

use super::multi::bpf;
use aya_obj::generated::{bpf_attach_type, bpf_attr, bpf_cmd};
use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::OnceLock;
use thiserror::Error;

const UPROBE_PMU: &str = "/sys/bus/event_source/devices/uprobe";
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 8;
/// PERF_ATTR_SIZE_VER8: every field up to `config3`.
const PERF_ATTR_SIZE: u32 = 136;

#[derive(Debug, Error)]
pub enum AttachError {
    #[error("the kernel has no uprobe PMU ({UPROBE_PMU}): {0}; a kernel with CONFIG_UPROBE_EVENTS is needed")]
    NoUprobePmu(String),
    // Fields are `error`, not `source`: the text already includes it, and anyhow's `{:#}` would
    // print a `source` twice.
    #[error("not permitted to {what}: {error}; {hint}", hint = super::privilege::hint())]
    NotPermitted {
        what: &'static str,
        error: io::Error,
    },
    #[error("cannot open a uprobe on {path} at file offset {offset:#x}{}: {error}{}",
        .ref_ctr.map(|r| format!(" (semaphore {r:#x})")).unwrap_or_default(),
        if .error.raw_os_error() == Some(libc::EINVAL) {
            "; if another tracer (bpftrace, bcc) holds this site with a different semaphore setting, \
             the kernel refuses a second one (dmesg: ref_ctr_offset mismatch)"
        } else { "" })]
    PerfEvent {
        path: String,
        offset: u64,
        ref_ctr: Option<u64>,
        error: io::Error,
    },
    #[error("cannot link the BPF program to the uprobe at {path}:{offset:#x}: {error}")]
    Link {
        path: String,
        offset: u64,
        error: io::Error,
    },
    #[error("cannot attach the {sites} sites in {path}{} with a uprobe-multi link: {error}",
        .pid.map(|p| format!(" for process {p}")).unwrap_or_default())]
    Multi {
        path: String,
        sites: usize,
        pid: Option<u32>,
        error: io::Error,
    },
    #[error(
        "out of file descriptors ({limit} open files allowed) while attaching {what}; \
             raise the hard limit (`ulimit -Hn`, LimitNOFILE= in a unit) or attach fewer probes"
    )]
    OutOfFiles { limit: u64, what: String },
}

impl AttachError {
    /// The error of a uprobe-multi link for `sites` sites in `path`.
    pub fn multi(path: &Path, sites: usize, pid: Option<u32>, error: io::Error) -> AttachError {
        if is_permission(&error) {
            AttachError::NotPermitted {
                what: "create uprobe-multi links",
                error,
            }
        } else if error.raw_os_error() == Some(libc::EMFILE) {
            AttachError::OutOfFiles {
                limit: super::limits::nofile_limit(),
                what: format!("{sites} sites in {}", path.display()),
            }
        } else {
            AttachError::Multi {
                path: path.display().to_string(),
                sites,
                pid,
                error,
            }
        }
    }
}

/// `struct perf_event_attr` up to `config3` (the libc crate does not define it).
#[repr(C)]
#[derive(Default)]
struct PerfEventAttr {
    type_: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
    config2: u64,
    branch_sample_type: u64,
    sample_regs_user: u64,
    sample_stack_user: u32,
    clockid: i32,
    sample_regs_intr: u64,
    aux_watermark: u32,
    sample_max_stack: u16,
    _reserved2: u16,
    aux_sample_size: u32,
    _reserved3: u32,
    sig_data: u64,
    config3: u64,
}

/// The uprobe PMU's type and the bit where `ref_ctr_offset` goes in `config`.
struct UprobePmu {
    type_: u32,
    ref_ctr_shift: u32,
}

fn pmu() -> Result<&'static UprobePmu, AttachError> {
    static PMU: OnceLock<Result<UprobePmu, String>> = OnceLock::new();
    PMU.get_or_init(|| {
        let read = |f: &str| {
            std::fs::read_to_string(format!("{UPROBE_PMU}/{f}")).map_err(|e| format!("{f}: {e}"))
        };
        let type_ = read("type")?
            .trim()
            .parse()
            .map_err(|e| format!("type: {e}"))?;
        // "config:32-63"
        let format = read("format/ref_ctr_offset")?;
        let ref_ctr_shift = format
            .trim()
            .strip_prefix("config:")
            .and_then(|r| r.split('-').next())
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("format/ref_ctr_offset: unexpected `{}`", format.trim()))?;
        Ok(UprobePmu {
            type_,
            ref_ctr_shift,
        })
    })
    .as_ref()
    .map_err(|e| AttachError::NoUprobePmu(e.clone()))
}

fn is_permission(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EPERM | libc::EACCES))
}

/// One attached site: dropping it closes the link and the perf event, which detaches.
#[derive(Debug)]
pub struct SiteLink {
    _link: OwnedFd,
    _perf: OwnedFd,
}

/// Opens a uprobe on `path` at `offset` for all processes, with the semaphore at `ref_ctr`
/// (a file offset), and links `prog` to it with `cookie`.
pub fn attach_site(
    prog: BorrowedFd<'_>,
    path: &Path,
    offset: u64,
    ref_ctr: Option<u64>,
    cookie: u64,
) -> Result<SiteLink, AttachError> {
    let pmu = pmu()?;
    let c_path = CString::new(path.as_os_str().as_bytes()).map_err(|_| AttachError::PerfEvent {
        path: path.display().to_string(),
        offset,
        ref_ctr,
        error: io::Error::from(io::ErrorKind::InvalidInput),
    })?;
    let attr = PerfEventAttr {
        type_: pmu.type_,
        size: PERF_ATTR_SIZE,
        config: ref_ctr.unwrap_or(0) << pmu.ref_ctr_shift,
        config1: c_path.as_ptr() as u64,
        config2: offset,
        ..Default::default()
    };
    // pid -1 with cpu 0 is how a uprobe is opened for every process (as libbpf does); the
    // process filter lives in the BPF program.
    // SAFETY: attr is a valid perf_event_attr of the size it declares; c_path outlives the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &attr as *const PerfEventAttr,
            -1 as libc::pid_t,
            0 as libc::c_int,
            -1 as libc::c_int,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    if fd < 0 {
        let error = io::Error::last_os_error();
        if is_permission(&error) {
            return Err(AttachError::NotPermitted {
                what: "open uprobe perf events",
                error,
            });
        }
        if error.raw_os_error() == Some(libc::EMFILE) {
            return Err(AttachError::OutOfFiles {
                limit: super::limits::nofile_limit(),
                what: format!("one uprobe per site ({}:{offset:#x})", path.display()),
            });
        }
        return Err(AttachError::PerfEvent {
            path: path.display().to_string(),
            offset,
            ref_ctr,
            error,
        });
    }
    // SAFETY: the syscall returned a fresh fd that nothing else owns.
    let perf = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let link = link_create(prog, perf.as_fd(), cookie).map_err(|error| {
        if is_permission(&error) {
            AttachError::NotPermitted {
                what: "create BPF links",
                error,
            }
        } else {
            AttachError::Link {
                path: path.display().to_string(),
                offset,
                error,
            }
        }
    })?;
    Ok(SiteLink {
        _link: link,
        _perf: perf,
    })
}

fn link_create(prog: BorrowedFd<'_>, perf: BorrowedFd<'_>, cookie: u64) -> io::Result<OwnedFd> {
    // SAFETY: an all-zero bpf_attr is valid.
    let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
    // SAFETY: writing plain integer fields of the union's link-create member.
    let l = unsafe { &mut attr.link_create };
    l.__bindgen_anon_1.prog_fd = prog.as_raw_fd() as u32;
    l.__bindgen_anon_2.target_fd = perf.as_raw_fd() as u32;
    l.attach_type = bpf_attach_type::BPF_PERF_EVENT as u32;
    l.__bindgen_anon_3.perf_event.bpf_cookie = cookie;
    bpf(bpf_cmd::BPF_LINK_CREATE, &mut attr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perf_event_attr_has_the_kernel_layout() {
        assert_eq!(
            std::mem::size_of::<PerfEventAttr>(),
            PERF_ATTR_SIZE as usize
        );
    }
}
