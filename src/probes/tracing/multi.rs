//! The uprobe-multi attach path: one `BPF_LINK_CREATE` (attach type `BPF_TRACE_UPROBE_MULTI`,
//! Linux ≥ 6.6) carries every site of a probe in one object — file offsets, the semaphore
//! (`ref_ctr_offset`) and cookies — optionally for one process only. Closing the link detaches
//! all its sites after one RCU grace period, not one per site (DESIGN.md §3: 71 per-site perf
//! events took 7 s to detach).
//!
//! The kernel takes such a link only for a program loaded with `expected_attach_type =
//! BPF_TRACE_UPROBE_MULTI`, which aya 0.14 cannot ask for. aya's own object crate can, step by
//! step, do what aya's loader does (parse, CO-RE relocations against the kernel BTF, map and
//! call relocations), so this module does those steps on the same object and issues the one
//! `BPF_PROG_LOAD` itself, pointing at the maps aya created: both paths share every map.

use aya_obj::btf::{Btf, BtfFeatures};
use aya_obj::generated::{bpf_attach_type, bpf_attr, bpf_cmd, bpf_prog_type, BPF_F_SLEEPABLE};
use aya_obj::Object;
use std::collections::HashSet;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Programs of one BPF object, relocated once against a set of existing maps, ready to be
/// loaded for uprobe-multi links.
pub struct MultiLoader {
    obj: Object,
    btf: OwnedFd,
    // The relocated instructions name these fds; they must stay open until every load is done.
    _maps: Vec<OwnedFd>,
}

impl MultiLoader {
    /// Relocates `object` (the bytes aya loaded) against `maps` (each map's name in the object
    /// and an fd of the map aya created for it).
    pub fn new(object: &[u8], maps: Vec<(String, OwnedFd)>) -> Result<MultiLoader, String> {
        let mut obj = Object::parse(object).map_err(|e| format!("parsing the object: {e}"))?;
        // Every kernel with uprobe-multi (6.6+) has all these BTF kinds.
        let features = BtfFeatures::new(true, true, true, true, true, true, true, true);
        let btf_bytes = obj
            .fixup_and_sanitize_btf(&features)
            .map_err(|e| format!("the object's BTF: {e}"))?
            .ok_or("the object has no BTF")?
            .to_bytes();
        let btf = btf_load(&btf_bytes)?;
        let kernel_btf = Btf::from_sys_fs().map_err(|e| format!("no kernel BTF: {e}"))?;
        obj.relocate_btf(&kernel_btf)
            .map_err(|e| format!("CO-RE relocations: {e}"))?;
        let defs: Vec<(String, aya_obj::Map)> = obj.maps.drain().collect();
        let mut fds = Vec::new();
        for (name, _) in &defs {
            let (_, fd) = maps
                .iter()
                .find(|(n, _)| n == name)
                .ok_or_else(|| format!("map {name} was not created"))?;
            fds.push(fd.as_raw_fd());
        }
        let text: HashSet<usize> = obj.functions.keys().map(|(section, _)| *section).collect();
        obj.relocate_maps(
            defs.iter()
                .zip(&fds)
                .map(|((name, def), fd)| (name.as_str(), *fd, def)),
            &text,
        )
        .map_err(|e| format!("map relocations: {e}"))?;
        obj.relocate_calls(&text)
            .map_err(|e| format!("call relocations: {e}"))?;
        Ok(MultiLoader {
            obj,
            btf,
            _maps: maps.into_iter().map(|(_, fd)| fd).collect(),
        })
    }

    /// Loads program `name` for uprobe-multi links (sleepable when asked).
    pub fn load(&self, name: &str, sleepable: bool) -> Result<OwnedFd, String> {
        let prog = self
            .obj
            .programs
            .get(name)
            .ok_or_else(|| format!("program {name} missing"))?;
        let func = &self.obj.functions[&prog.function_key()];
        let license = &self.obj.license;
        // The kernel keeps 15 bytes of a program's name.
        let mut prog_name = [0 as libc::c_char; 16];
        for (d, s) in prog_name.iter_mut().zip(name.bytes().take(15)) {
            *d = s as libc::c_char;
        }
        let attempt = |log: Option<&mut Vec<u8>>| {
            // SAFETY: an all-zero bpf_attr is valid; the fields set below describe buffers that
            // outlive the call.
            let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
            // SAFETY: writing plain integer fields of the union's prog-load member.
            let a = unsafe { &mut attr.__bindgen_anon_3 };
            a.prog_type = bpf_prog_type::BPF_PROG_TYPE_KPROBE as u32;
            a.expected_attach_type = bpf_attach_type::BPF_TRACE_UPROBE_MULTI as u32;
            a.insns = func.instructions.as_ptr() as u64;
            a.insn_cnt = func.instructions.len() as u32;
            a.license = license.as_ptr() as u64;
            a.prog_flags = if sleepable { BPF_F_SLEEPABLE } else { 0 };
            a.prog_name = prog_name;
            a.prog_btf_fd = self.btf.as_raw_fd() as u32;
            a.func_info_rec_size = func.func_info_rec_size as u32;
            a.func_info = func.func_info.func_info.as_ptr() as u64;
            a.func_info_cnt = func.func_info.func_info.len() as u32;
            a.line_info_rec_size = func.line_info_rec_size as u32;
            a.line_info = func.line_info.line_info.as_ptr() as u64;
            a.line_info_cnt = func.line_info.line_info.len() as u32;
            if let Some(log) = log {
                a.log_level = 1;
                a.log_buf = log.as_mut_ptr() as u64;
                a.log_size = log.len() as u32;
            }
            bpf(bpf_cmd::BPF_PROG_LOAD, &mut attr)
        };
        attempt(None).map_err(|error| {
            let mut log = vec![0u8; 1 << 20];
            let _ = attempt(Some(&mut log));
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            let log = String::from_utf8_lossy(&log[..end]);
            let tail: Vec<&str> = log.lines().rev().take(5).collect();
            format!(
                "loading {name} for uprobe-multi: {error}{}",
                if tail.is_empty() {
                    String::new()
                } else {
                    format!(
                        " (verifier: {})",
                        tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
                    )
                }
            )
        })
    }
}

/// One uprobe-multi link: dropping it detaches every site it carries.
#[derive(Debug)]
pub struct MultiLink(OwnedFd);

/// Attaches `prog` at `offsets` of the file at `path` (`cookies[i]` for site i), with site i's
/// semaphore at file offset `ref_ctrs[i]` (0: none; or no `ref_ctrs` at all), for process
/// `pid` only or for every process (`None`).
pub fn attach_multi(
    prog: BorrowedFd<'_>,
    path: &Path,
    offsets: &[u64],
    ref_ctrs: &[u64],
    cookies: &[u64],
    pid: Option<u32>,
) -> io::Result<MultiLink> {
    assert_eq!(offsets.len(), cookies.len());
    assert!(ref_ctrs.is_empty() || ref_ctrs.len() == offsets.len());
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let ref_ctrs = if ref_ctrs.iter().all(|&r| r == 0) {
        &[][..]
    } else {
        ref_ctrs
    };
    // SAFETY: an all-zero bpf_attr is valid; the pointers set below outlive the call.
    let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
    // SAFETY: writing plain integer fields of the union's link-create member.
    let l = unsafe { &mut attr.link_create };
    l.__bindgen_anon_1.prog_fd = prog.as_raw_fd() as u32;
    l.attach_type = bpf_attach_type::BPF_TRACE_UPROBE_MULTI as u32;
    // SAFETY: as above, the uprobe-multi member of the target union.
    let m = unsafe { &mut l.__bindgen_anon_3.uprobe_multi };
    m.path = c_path.as_ptr() as u64;
    m.offsets = offsets.as_ptr() as u64;
    m.ref_ctr_offsets = if ref_ctrs.is_empty() {
        0
    } else {
        ref_ctrs.as_ptr() as u64
    };
    m.cookies = cookies.as_ptr() as u64;
    m.cnt = offsets.len() as u32;
    m.pid = pid.unwrap_or(0);
    bpf(bpf_cmd::BPF_LINK_CREATE, &mut attr).map(MultiLink)
}

impl AsFd for MultiLink {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

fn btf_load(bytes: &[u8]) -> Result<OwnedFd, String> {
    // SAFETY: an all-zero bpf_attr is valid; `bytes` outlives the call.
    let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
    // SAFETY: writing plain integer fields of the union's BTF-load member.
    let b = unsafe { &mut attr.__bindgen_anon_7 };
    b.btf = bytes.as_ptr() as u64;
    b.btf_size = bytes.len() as u32;
    bpf(bpf_cmd::BPF_BTF_LOAD, &mut attr).map_err(|e| format!("loading the object's BTF: {e}"))
}

/// One `bpf(2)` call that returns a new fd (the per-site path's links use it too).
pub(super) fn bpf(cmd: bpf_cmd, attr: &mut bpf_attr) -> io::Result<OwnedFd> {
    // SAFETY: attr is a fully initialised bpf_attr of the size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            attr as *mut bpf_attr,
            std::mem::size_of::<bpf_attr>() as u32,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd returned by the kernel, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}
