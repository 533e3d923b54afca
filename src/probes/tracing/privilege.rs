//! What the kernel asks of a tracer, so that a refusal names the capability this process lacks.
//!
//! Measured on Linux 6.18 as a non-root user with ambient capabilities: CAP_SYS_ADMIN alone
//! traces (it also passes the kernel's CAP_BPF and CAP_PERFMON checks); CAP_BPF + CAP_PERFMON
//! load the program but `perf_event_open` of a uprobe answers EACCES, because
//! `perf_uprobe_event_init` requires CAP_SYS_ADMIN again since Linux 6.16 (commit ba677dbe77af,
//! also in the stable kernels of July 2025). `kernel.perf_event_paranoid` plays no part.

/// Bit numbers from `<linux/capability.h>`.
const CAP_SYS_ADMIN: u32 = 21;

/// The privilege sentence shared by the README and every permission error.
pub const TRACING_NEEDS: &str = "tracing needs root or CAP_SYS_ADMIN (uprobes require it since \
     Linux 6.16; CAP_BPF and CAP_PERFMON are not enough)";

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
    match effective {
        Some(caps) if caps & (1 << CAP_SYS_ADMIN) == 0 => {
            format!("{TRACING_NEEDS}; this process lacks CAP_SYS_ADMIN")
        }
        // With the capability in hand, the refusal comes from elsewhere; say where to look.
        Some(_) => format!(
            "{TRACING_NEEDS}; this process has CAP_SYS_ADMIN, so something else refuses \
             (a user namespace, a security module or kernel lockdown)"
        ),
        None => TRACING_NEEDS.to_string(),
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
    fn a_process_with_only_cap_bpf_and_cap_perfmon_is_told_it_lacks_cap_sys_admin() {
        let bpf_perfmon = (1 << 39) | (1 << 38);
        let text = hint_for(Some(bpf_perfmon));
        assert!(text.contains("needs root or CAP_SYS_ADMIN"), "{text}");
        assert!(text.ends_with("this process lacks CAP_SYS_ADMIN"), "{text}");
    }

    #[test]
    fn a_process_that_has_cap_sys_admin_is_pointed_elsewhere() {
        let text = hint_for(Some(1 << CAP_SYS_ADMIN));
        assert!(text.contains("this process has CAP_SYS_ADMIN"), "{text}");
        assert!(!text.contains("lacks"), "{text}");
    }
}
