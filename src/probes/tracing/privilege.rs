//! What the kernel asks of a tracer, so that a refusal names the capability this process lacks.
//!
//! Measured on Linux 6.18 as a non-root user with ambient capabilities: CAP_SYS_ADMIN alone
//! traces (it also passes the kernel's CAP_BPF and CAP_PERFMON checks). CAP_BPF + CAP_PERFMON
//! trace on the uprobe-multi path (a BPF link, no perf event), but on the per-site path
//! `perf_event_open` of a uprobe answers EACCES, because `perf_uprobe_event_init` requires
//! CAP_SYS_ADMIN again since Linux 6.16 (commit ba677dbe77af, also in the stable kernels of July
//! 2025). `kernel.perf_event_paranoid` plays no part.

/// Bit numbers from `<linux/capability.h>`.
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// The privilege sentence shared by the README and every permission error.
pub const TRACING_NEEDS: &str = "tracing needs root, or CAP_BPF and CAP_PERFMON on the \
     uprobe-multi path (Linux 6.10 and later), or CAP_SYS_ADMIN on the per-site path (uprobe \
     perf events require it since Linux 6.16)";

/// The hint to append to a permission error: what tracing needs and whether this process has it.
pub fn hint() -> String {
    let status = std::fs::read_to_string("/proc/self/status").ok();
    hint_for(status.as_deref().and_then(effective_caps))
}

/// The effective capability mask (`CapEff:`) of a `/proc/PID/status` text.
fn effective_caps(status: &str) -> Option<u64> {
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

fn hint_for(effective: Option<u64>) -> String {
    let has = |cap: u32| effective.is_some_and(|caps| caps & (1 << cap) != 0);
    match effective {
        None => TRACING_NEEDS.to_string(),
        // With the capability in hand, the refusal comes from elsewhere; say where to look.
        Some(_) if has(CAP_SYS_ADMIN) => format!(
            "{TRACING_NEEDS}; this process has CAP_SYS_ADMIN, so something else refuses \
             (a user namespace, a security module or kernel lockdown)"
        ),
        Some(_) if has(CAP_BPF) && has(CAP_PERFMON) => format!(
            "{TRACING_NEEDS}; this process has CAP_BPF and CAP_PERFMON but lacks CAP_SYS_ADMIN, \
             which the per-site path needs"
        ),
        Some(_) => format!(
            "{TRACING_NEEDS}; this process lacks CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_effective_mask_is_read_from_proc_status() {
        let status = "Name:\tusdtop\nCapInh:\t0000000000000000\nCapEff:\t000000c000000000\n";
        assert_eq!(effective_caps(status), Some(0xc0_0000_0000));
        assert_eq!(effective_caps("Name:\tx\n"), None);
    }

    #[test]
    fn a_process_with_only_cap_bpf_and_cap_perfmon_is_told_the_per_site_path_needs_cap_sys_admin() {
        let bpf_perfmon = (1 << 39) | (1 << 38);
        let text = hint_for(Some(bpf_perfmon));
        assert!(text.contains("tracing needs root"), "{text}");
        assert!(
            text.ends_with("lacks CAP_SYS_ADMIN, which the per-site path needs"),
            "{text}"
        );
    }

    #[test]
    fn a_process_without_capabilities_is_told_what_it_lacks() {
        let text = hint_for(Some(0));
        assert!(
            text.ends_with("this process lacks CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN)"),
            "{text}"
        );
    }

    #[test]
    fn a_process_that_has_cap_sys_admin_is_pointed_elsewhere() {
        let text = hint_for(Some(1 << CAP_SYS_ADMIN));
        assert!(text.contains("this process has CAP_SYS_ADMIN"), "{text}");
        assert!(!text.contains("lacks"), "{text}");
    }
}
