//! Process limits and kernel facts the attach path depends on.

/// Raises the soft limit of open files to the hard one: the per-site path needs an fd per site
/// and per-process links one per probe and process, and the common soft limit (1024) ran out
/// with `hotspot_jni:* hotspot:*` (DESIGN.md §3). Returns the limit now in force.
pub fn raise_nofile() -> u64 {
    let Some(lim) = nofile() else { return 0 };
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit with a valid rlimit struct.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return raised.rlim_cur;
        }
    }
    lim.rlim_cur
}

/// The soft limit of open files.
pub fn nofile_limit() -> u64 {
    nofile().map_or(0, |l| l.rlim_cur)
}

fn nofile() -> Option<libc::rlimit> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit with a valid rlimit struct.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0).then_some(lim)
}

/// The running kernel's (major, minor) version.
pub fn kernel_version() -> Option<(u32, u32)> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    parse_version(&release)
}

fn parse_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.trim().split(['.', '-', '+']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions_are_read_from_release_strings() {
        assert_eq!(parse_version("6.18.0-1-amd64\n"), Some((6, 18)));
        assert_eq!(parse_version("6.1.0-28-cloud-amd64"), Some((6, 1)));
        assert_eq!(parse_version("5.15"), Some((5, 15)));
        assert_eq!(parse_version("garbage"), None);
    }

    #[test]
    fn the_soft_file_limit_is_raised_to_the_hard_one() {
        let raised = raise_nofile();
        let lim = nofile().expect("getrlimit");
        assert_eq!(lim.rlim_cur, lim.rlim_max);
        assert_eq!(raised, lim.rlim_cur);
        assert_eq!(nofile_limit(), lim.rlim_cur);
    }
}
