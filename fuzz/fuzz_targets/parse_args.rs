//! Any text given to the SDT argument parser yields specs or an `ArgSpecError`, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(args) = usdtop::probes::discovery::argspec::parse_args(text) {
            for arg in args {
                assert!(matches!(arg.size, 1 | 2 | 4 | 8));
            }
        }
    }
});
