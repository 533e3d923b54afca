//! Shared test helpers: run the built `usdtop`, read the same facts with `readelf`, and build
//! the C fixtures in tests/fixtures/ with `cc` at run time.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// Run the built usdtop binary.
pub fn usdtop(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_usdtop"))
        .args(args)
        .output()
        .expect("run usdtop")
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Parse the `--json` output of a finished run: one JSON object per line.
pub fn json_lines(out: &Output) -> Vec<Value> {
    super::parse_json_lines(&stdout(out))
}

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn hex(s: &str) -> u64 {
    u64::from_str_radix(s.trim().trim_start_matches("0x"), 16)
        .unwrap_or_else(|e| panic!("not hex: {s:?}: {e}"))
}

/// One `NT_STAPSDT` note as `readelf -n` prints it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ReadelfNote {
    pub provider: String,
    pub name: String,
    pub pc: u64,
    pub base: u64,
    pub semaphore: u64,
    pub args: Vec<String>,
}

/// Every stapsdt note of `path`, parsed from `readelf -n`.
pub fn readelf_notes(path: &Path) -> Vec<ReadelfNote> {
    let text = run("readelf", &["-n", path.to_str().unwrap()]);
    let mut notes = Vec::new();
    let mut provider = None;
    let mut name = None;
    let mut location = None;
    for line in text.lines() {
        let line = line.trim_start();
        if let Some(p) = line.strip_prefix("Provider: ") {
            provider = Some(p.to_string());
        } else if let Some(n) = line.strip_prefix("Name: ") {
            name = Some(n.to_string());
        } else if let Some(rest) = line.strip_prefix("Location: ") {
            // Location: 0x..., Base: 0x..., Semaphore: 0x...
            let fields: Vec<u64> = rest
                .split(", ")
                .map(|f| hex(f.rsplit(' ').next().unwrap()))
                .collect();
            location = Some((fields[0], fields[1], fields[2]));
        } else if let Some(args) = line.strip_prefix("Arguments:") {
            let (pc, base, semaphore) = location.take().expect("Location before Arguments");
            notes.push(ReadelfNote {
                provider: provider.take().expect("Provider"),
                name: name.take().expect("Name"),
                pc,
                base,
                semaphore,
                args: args.split_whitespace().map(String::from).collect(),
            });
        }
    }
    notes
}

/// A `PT_LOAD` program header from `readelf -lW`.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    pub offset: u64,
    pub vaddr: u64,
    pub filesz: u64,
    pub memsz: u64,
}

pub fn readelf_loads(path: &Path) -> Vec<Load> {
    run("readelf", &["-lW", path.to_str().unwrap()])
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.first() == Some(&"LOAD")).then(|| Load {
                offset: hex(f[1]),
                vaddr: hex(f[2]),
                filesz: hex(f[4]),
                memsz: hex(f[5]),
            })
        })
        .collect()
}

/// Address of a section (from `readelf -SW`), e.g. `.stapsdt.base`.
pub fn readelf_section_addr(path: &Path, section: &str) -> Option<u64> {
    run("readelf", &["-SW", path.to_str().unwrap()])
        .lines()
        .find_map(|l| {
            let l = l.split_once(']')?.1;
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.first() == Some(&section)).then(|| hex(f[2]))
        })
}

/// File offset of a section (from `readelf -SW`).
pub fn readelf_section_offset(path: &Path, section: &str) -> Option<u64> {
    run("readelf", &["-SW", path.to_str().unwrap()])
        .lines()
        .find_map(|l| {
            let l = l.split_once(']')?.1;
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.first() == Some(&section)).then(|| hex(f[3]))
        })
}

/// Size of a section (from `readelf -SW`).
pub fn readelf_section_size(path: &Path, section: &str) -> Option<u64> {
    run("readelf", &["-SW", path.to_str().unwrap()])
        .lines()
        .find_map(|l| {
            let l = l.split_once(']')?.1;
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.first() == Some(&section)).then(|| hex(f[4]))
        })
}

/// File offset of a link-time address, by the PT_LOAD arithmetic.
pub fn offset_of(loads: &[Load], vaddr: u64) -> u64 {
    let l = loads
        .iter()
        .find(|l| vaddr >= l.vaddr && vaddr < l.vaddr + l.memsz)
        .unwrap_or_else(|| panic!("{vaddr:#x} in no PT_LOAD"));
    vaddr - l.vaddr + l.offset
}

/// What one object's comparison found, for count assertions.
#[derive(Debug, PartialEq, Eq)]
pub struct Counts {
    pub probes: usize,
    pub sites: usize,
}

/// Check `usdtop list --json PATH` against `readelf -n PATH`: every site, pc, semaphore and
/// argument string; each file_offset against PT_LOAD math and against the bytes there (a USDT
/// site is a `nop`); each semaphore_offset against PT_LOAD math.
pub fn assert_matches_readelf(path: &Path) -> Counts {
    let out = usdtop(&["list", "--json", path.to_str().unwrap()]);
    assert!(out.status.success(), "usdtop failed: {}", stderr(&out));
    assert_eq!(stderr(&out), "", "no diagnostics for a good file");
    let probes = json_lines(&out);

    let mut ours = Vec::new();
    for p in &probes {
        assert_eq!(p["path"], path.to_str().unwrap());
        assert!(p.get("pids").is_none(), "no pids when listing files");
        let semaphore = p["semaphore"].as_u64().unwrap_or(0);
        assert_eq!(
            p["semaphore"].is_null(),
            p["semaphore_offset"].is_null(),
            "semaphore and its offset come together: {p}"
        );
        for s in p["sites"].as_array().unwrap() {
            ours.push(ReadelfNote {
                provider: p["provider"].as_str().unwrap().to_string(),
                name: p["name"].as_str().unwrap().to_string(),
                pc: s["pc"].as_u64().unwrap(),
                base: 0,
                semaphore,
                args: s["args"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a.as_str().unwrap().to_string())
                    .collect(),
            });
        }
    }
    let mut theirs = readelf_notes(path);
    let bases: Vec<u64> = theirs.iter().map(|n| n.base).collect();
    for n in &mut theirs {
        n.base = 0;
    }
    ours.sort();
    theirs.sort();
    assert_eq!(ours.len(), theirs.len(), "site count of {}", path.display());
    for (a, b) in ours.iter().zip(&theirs) {
        assert_eq!(a, b, "site of {}", path.display());
    }
    let names: std::collections::BTreeSet<_> =
        theirs.iter().map(|n| (&n.provider, &n.name)).collect();
    assert_eq!(probes.len(), names.len(), "one JSON line per provider:name");

    // File offsets, independently: prelink delta from the section, then PT_LOAD arithmetic.
    let loads = readelf_loads(path);
    let base_section = readelf_section_addr(path, ".stapsdt.base");
    let delta = |base: u64| match base_section {
        Some(actual) if base != 0 => actual.wrapping_sub(base),
        _ => 0,
    };
    let bytes = std::fs::read(path).unwrap();
    let note_base = bases.first().copied().unwrap_or(0);
    for p in &probes {
        for s in p["sites"].as_array().unwrap() {
            let pc = s["pc"].as_u64().unwrap();
            let off = s["file_offset"].as_u64().unwrap();
            assert_eq!(off, offset_of(&loads, pc.wrapping_add(delta(note_base))));
            let at = &bytes[off as usize..];
            assert!(
                at[0] == 0x90 || (at[0] == 0x0f && at[1] == 0x1f),
                "{}: no nop at file offset {off:#x} of {}:{}",
                path.display(),
                p["provider"],
                p["name"]
            );
        }
        if let Some(sem) = p["semaphore"].as_u64() {
            let off = p["semaphore_offset"].as_u64().unwrap();
            assert_eq!(off, offset_of(&loads, sem.wrapping_add(delta(note_base))));
            // Semaphores start at zero in the file; the kernel counts tracers at run time.
            assert_eq!(&bytes[off as usize..off as usize + 2], &[0, 0]);
        }
    }
    Counts {
        probes: probes.len(),
        sites: ours.len(),
    }
}

/// The C fixtures, built once per test binary.
pub struct Fixtures {
    pub dir: PathBuf,
    /// PIE executable linked to `lib`.
    pub pie: PathBuf,
    /// Non-PIE (fixed address) executable linked to `lib`.
    pub nopie: PathBuf,
    /// Shared library `libusdtfix.so`.
    pub lib: PathBuf,
}

/// Build the fixtures with `cc` (once per test binary); fails the test, naming the package,
/// when there is no C compiler or no `<sys/sdt.h>`.
pub fn fixtures() -> &'static Fixtures {
    static BUILT: OnceLock<Fixtures> = OnceLock::new();
    BUILT.get_or_init(build_fixtures)
}

/// Fixture directories of test processes that have exited (each holds copies of libc for the
/// container tests); directories of test binaries still running are left alone.
fn remove_stale_fixtures(tmp: &Path) {
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix("fixtures-")) else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

fn build_fixtures() -> Fixtures {
    super::require("cc");
    assert!(
        Path::new("/usr/include/x86_64-linux-gnu/sys/sdt.h").exists()
            || Path::new("/usr/include/sys/sdt.h").exists(),
        "<sys/sdt.h> is not installed: it comes with systemtap-sdt-dev; `bash .ci/install-deps` \
         installs everything the tests need"
    );
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    remove_stale_fixtures(tmp);
    let dir = tmp.join(format!("fixtures-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let s = |f: &str| src.join(f).to_str().unwrap().to_string();
    let d = |f: &str| dir.join(f).to_str().unwrap().to_string();
    let cc = |args: &[String]| {
        let out = Command::new("cc").args(args).output().expect("run cc");
        assert!(
            out.status.success(),
            "cc {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    cc(&[
        "-O1".into(),
        "-fPIC".into(),
        "-shared".into(),
        "-Wl,-soname,libusdtfix.so".into(),
        s("lib.c"),
        "-o".into(),
        d("libusdtfix.so"),
    ]);
    let link = |pie: &[&str], out: &str| {
        let mut args: Vec<String> = pie.iter().map(|a| a.to_string()).collect();
        args.extend([
            "-O1".into(),
            s("app.c"),
            s("guarded.c"),
            format!("-L{}", dir.display()),
            "-lusdtfix".into(),
            format!("-Wl,-rpath,{}", dir.display()),
            "-o".into(),
            d(out),
        ]);
        cc(&args);
    };
    link(&["-fPIE", "-pie"], "app_pie");
    link(&["-fno-pie", "-no-pie"], "app_nopie");
    Fixtures {
        pie: dir.join("app_pie"),
        nopie: dir.join("app_nopie"),
        lib: dir.join("libusdtfix.so"),
        dir,
    }
}
