//! Builds bpf/usdt.bpf.c into a BPF object that src/probes/tracing/bpf.rs embeds with include_bytes!.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const SOURCE: &str = "bpf/usdt.bpf.c";
const REMEDY: &str = "install it with: apt-get install clang-19 libbpf-dev";

fn find_clang() -> Option<PathBuf> {
    if let Ok(c) = env::var("CLANG") {
        return Some(PathBuf::from(c));
    }
    ["clang-19", "clang"].iter().find_map(|name| {
        env::var_os("PATH").and_then(|paths| {
            env::split_paths(&paths)
                .map(|dir| dir.join(name))
                .find(|p| p.is_file())
        })
    })
}

fn main() {
    println!("cargo:rerun-if-changed={SOURCE}");
    println!("cargo:rerun-if-changed=bpf/pair.bpf.h");
    println!("cargo:rerun-if-changed=bpf/top.bpf.h");
    println!("cargo:rerun-if-changed=bpf/toplat.bpf.h");
    println!("cargo:rerun-if-env-changed=CLANG");
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("usdt.bpf.o");
    let Some(clang) = find_clang() else {
        panic!("usdtop needs clang (clang-19 or clang) to build its BPF program; {REMEDY}");
    };
    if !Path::new("/usr/include/bpf/bpf_helpers.h").exists() {
        panic!("usdtop needs the libbpf headers (bpf/bpf_helpers.h) to build its BPF program; {REMEDY}");
    }
    let status = Command::new(&clang)
        .args(["-O2", "-g", "-Wall", "-target", "bpf"])
        .args(["-I/usr/include/x86_64-linux-gnu", "-c", SOURCE, "-o"])
        .arg(&out)
        .status()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}; {REMEDY}", clang.display()));
    if !status.success() {
        panic!("{} failed to compile {SOURCE} ({status})", clang.display());
    }
}
