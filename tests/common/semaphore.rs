//! Reading a USDT semaphore inside a running process (what the kernel raises on attach).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// The u16 semaphore at link-time `vaddr` of `object` inside process `pid`. For a PIE or
/// shared object the load base (start of its offset-0 mapping) is added; non-PIE is absolute.
pub fn semaphore_value(pid: u32, object: &Path, position_independent: bool, vaddr: u64) -> u16 {
    let addr = if position_independent {
        load_base(pid, object).expect("object mapped in process") + vaddr
    } else {
        vaddr
    };
    let mem = File::open(format!("/proc/{pid}/mem")).expect("open /proc/PID/mem");
    let mut b = [0u8; 2];
    mem.read_exact_at(&mut b, addr).expect("read semaphore");
    u16::from_le_bytes(b)
}

fn load_base(pid: u32, object: &Path) -> Option<u64> {
    let want = std::fs::canonicalize(object).ok()?;
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
    maps.lines().find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() >= 6 && Path::new(f[5]) == want && u64::from_str_radix(f[2], 16).ok()? == 0 {
            u64::from_str_radix(f[0].split('-').next()?, 16).ok()
        } else {
            None
        }
    })
}

/// Waits (bounded by PATIENCE) until the semaphore satisfies `ok`.
pub fn wait_semaphore(
    pid: u32,
    object: &Path,
    pie: bool,
    vaddr: u64,
    ok: impl Fn(u16) -> bool,
) -> u16 {
    let start = std::time::Instant::now();
    loop {
        let v = semaphore_value(pid, object, pie, vaddr);
        if ok(v) || start.elapsed() > super::PATIENCE {
            return v;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
