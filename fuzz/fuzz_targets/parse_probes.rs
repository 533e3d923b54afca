//! Any bytes given to the note reader yield probes or an `ElfError`, never a panic.
//! Seed the corpus with real objects for depth, e.g.
//! `mkdir -p corpus/parse_probes && cp /usr/bin/python3.11 corpus/parse_probes/`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    if let Ok(object) = usdtop::probes::discovery::elf::parse_probes(Path::new("fuzz"), data) {
        // Whatever was accepted must be self-consistent enough to print.
        for probe in &object.probes {
            assert!(!probe.sites.is_empty());
            let _ = probe.full_name();
        }
    }
});
