//! Which processes a filtered attach starts with: the given ones and their descendants now
//! alive (later forks are followed in the kernel by the `sched_process_fork` program).

use crate::probes::discovery::process::proc_stat;
use std::collections::HashMap;

/// The processes and all their current descendants (from /proc/*/stat parent ids).
pub fn with_descendants(pids: &[u32]) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let ppid = proc_stat(pid).map(|s| s.ppid);
            if let Some(ppid) = ppid {
                children.entry(ppid).or_default().push(pid);
            }
        }
    }
    let mut out: Vec<u32> = pids.to_vec();
    let mut i = 0;
    while i < out.len() {
        if let Some(kids) = children.get(&out[i]) {
            for k in kids {
                if !out.contains(k) {
                    out.push(*k);
                }
            }
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn a_child_of_ours_is_a_descendant() {
        let mut child = Command::new("sleep").arg("5").spawn().unwrap();
        let me = std::process::id();
        let all = with_descendants(&[me]);
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(all[0], me);
        assert!(all.contains(&child.id()));
    }
}
