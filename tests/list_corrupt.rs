//! Bad files named on the command line: each gives one line on stderr naming the file and what
//! is wrong, the exit status is 1, and the good files of the same invocation are still listed.

mod common;

use common::{fixtures, json_lines, readelf_section_offset, stderr, usdtop};
use std::path::{Path, PathBuf};

/// Run `usdtop list --json BAD GOOD` and return the one error line.
fn error_for(bad: &Path, good: &Path) -> String {
    let out = usdtop(&[
        "list",
        "--json",
        bad.to_str().unwrap(),
        good.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "exit status for {}",
        bad.display()
    );
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "exactly one line: {err:?}");
    assert!(
        err.starts_with(&format!("usdtop: {}: ", bad.display())),
        "names the file: {err:?}"
    );
    let listed = json_lines(&out);
    assert_eq!(listed.len(), 6, "the good file is still listed");
    assert!(listed.iter().all(|p| p["path"] == good.to_str().unwrap()));
    err
}

fn scratch(name: &str, bytes: &[u8]) -> PathBuf {
    let fx = fixtures();
    let dir = fx.dir.join("corrupt");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn a_file_that_is_not_elf() {
    let fx = fixtures();
    let text = scratch("notes.txt", b"just some text\n");
    assert!(error_for(&text, &fx.pie).ends_with(": not an ELF file\n"));
    let empty = scratch("empty", b"");
    assert!(error_for(&empty, &fx.pie).ends_with(": not an ELF file\n"));
}

#[test]
fn missing_files_and_directories() {
    let fx = fixtures();
    let missing = fx.dir.join("no-such-file");
    assert!(error_for(&missing, &fx.pie).contains("cannot read: No such file"));
    let err = error_for(&fx.dir, &fx.pie);
    assert!(
        err.ends_with(": not a regular file: it is a directory\n"),
        "{err}"
    );
}

#[test]
fn truncated_elf_files() {
    let fx = fixtures();
    let bytes = std::fs::read(&fx.nopie).unwrap();
    for (name, len) in [
        ("ident-only", 10),
        ("header-only", 64),
        ("half", bytes.len() / 2),
        ("all-but-one", bytes.len() - 1),
    ] {
        let cut = scratch(name, &bytes[..len]);
        let err = error_for(&cut, &fx.pie);
        assert!(err.contains("truncated"), "{name}: {err}");
    }
}

#[test]
fn corrupted_notes() {
    let fx = fixtures();
    let bytes = std::fs::read(&fx.nopie).unwrap();
    let notes = readelf_section_offset(&fx.nopie, ".note.stapsdt").unwrap() as usize;

    // The first note claims a name far longer than the section.
    let mut sizes = bytes.clone();
    sizes[notes..notes + 4].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
    let err = error_for(&scratch("bad-sizes", &sizes), &fx.pie);
    assert!(err.contains("corrupt .note.stapsdt note #0"), "{err}");
    assert!(err.contains("past the end of the section"), "{err}");

    // A descriptor too short for its three addresses.
    let mut short = bytes.clone();
    short[notes + 4..notes + 8].copy_from_slice(&8u32.to_le_bytes());
    let err = error_for(&scratch("short-desc", &short), &fx.pie);
    assert!(err.contains("corrupt .note.stapsdt note #0"), "{err}");

    // The provider string of the first note (after 12-byte header, "stapsdt\0", 3 addresses)
    // is no longer UTF-8.
    let mut strings = bytes.clone();
    let provider = notes + 12 + 8 + 24;
    assert_eq!(&strings[provider..provider + 4], b"demo");
    strings[provider] = 0xff;
    let err = error_for(&scratch("bad-provider", &strings), &fx.pie);
    assert!(err.contains("provider is not UTF-8"), "{err}");

    // A site whose pc is in no loadable segment cannot be attached: say so.
    let mut pc = bytes;
    pc[notes + 20..notes + 28].copy_from_slice(&0xdead_0000_0000u64.to_le_bytes());
    let err = error_for(&scratch("bad-pc", &pc), &fx.pie);
    assert!(err.contains("in no loadable segment"), "{err}");
}
