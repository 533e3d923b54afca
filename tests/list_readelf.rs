//! `usdtop list --json` reports exactly what `readelf -n` reports, for real USDT programs and
//! for our own C fixtures: every site, pc, semaphore and argument string, plus file offsets
//! checked independently.

mod common;

use common::{assert_matches_readelf, fixtures, json_lines, require, usdtop, Counts};

fn check_installed(path: &str) -> Counts {
    assert_matches_readelf(&require(path))
}

#[test]
fn postgres_has_57_probes_at_71_sites() {
    let c = check_installed("/usr/lib/postgresql/15/bin/postgres");
    assert_eq!(
        c,
        Counts {
            probes: 57,
            sites: 71
        }
    );
}

#[test]
fn python_non_pie_matches_readelf() {
    let c = check_installed("/usr/bin/python3.11");
    assert!(c.sites >= 8, "{c:?}");
}

#[test]
fn php_has_11_probes_at_14_sites() {
    let c = check_installed("/usr/bin/php8.2");
    assert_eq!(
        c,
        Counts {
            probes: 11,
            sites: 14
        }
    );
}

#[test]
fn libstdcxx_probes_in_a_shared_library_match_readelf() {
    check_installed("/usr/lib/x86_64-linux-gnu/libstdc++.so.6");
}

#[test]
fn libjvm_has_531_sites() {
    let c = check_installed("/usr/lib/jvm/java-17-openjdk-amd64/lib/server/libjvm.so");
    assert_eq!(c.sites, 531);
}

#[test]
fn cargo_nextest_hyphenated_names_match_readelf() {
    let nextest = require("cargo-nextest");
    let c = assert_matches_readelf(&nextest);
    assert!(c.sites > 0);
    let out = usdtop(&["list", "--json", nextest.to_str().unwrap()]);
    assert!(json_lines(&out)
        .iter()
        .any(|p| p["name"].as_str().unwrap().contains('-')));
}

#[test]
fn fixtures_pie_non_pie_and_shared_library_match_readelf() {
    let fx = fixtures();
    for exe in [&fx.pie, &fx.nopie] {
        assert_eq!(
            assert_matches_readelf(exe),
            Counts {
                probes: 6,
                sites: 9
            },
            "{}",
            exe.display()
        );
    }
    assert_eq!(
        assert_matches_readelf(&fx.lib),
        Counts {
            probes: 1,
            sites: 1
        }
    );
}

#[test]
fn fixture_probe_shapes_are_reported_per_site() {
    let fx = fixtures();
    let out = usdtop(&["list", "--json", fx.pie.to_str().unwrap()]);
    let probes = json_lines(&out);
    let probe = |name: &str| {
        probes
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no probe {name}"))
    };
    // No arguments: an empty list, not a missing field.
    assert_eq!(probe("no_args")["sites"][0]["args"], serde_json::json!([]));
    assert!(probe("no_args")["semaphore"].is_null());
    // One name, three sites, each with its own argument count.
    let counts: Vec<usize> = probe("many_sites")["sites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["args"].as_array().unwrap().len())
        .collect();
    assert_eq!(counts, [1, 2, 3]);
    assert_eq!(
        probe("six_args")["sites"][0]["args"]
            .as_array()
            .unwrap()
            .len(),
        6
    );
    assert_eq!(probe("hyphen-ated")["provider"], "demo");
    // Semaphores: both guarded probes have one, each its own, shared by all sites.
    let g = probe("guarded")["semaphore"].as_u64().unwrap();
    let g2 = probe("guarded_twice")["semaphore"].as_u64().unwrap();
    assert_ne!(g, g2);
    assert_eq!(probe("guarded_twice")["sites"].as_array().unwrap().len(), 2);
}

#[test]
fn text_output_shows_sites_semaphores_and_arguments() {
    let fx = fixtures();
    let out = usdtop(&["list", fx.nopie.to_str().unwrap()]);
    assert!(out.status.success());
    let text = common::stdout(&out);
    assert!(text.starts_with(&format!(
        "{}  (fixed address; 6 probes, 9 sites)",
        fx.nopie.display()
    )));
    assert!(text.contains("demo:many_sites"), "{text}");
    assert!(text.contains("3 sites  no semaphore"), "{text}");
    assert!(text.contains("(no arguments)"), "{text}");
    assert!(text.contains("-8@fixture_counter(%rip)"), "{text}");
    assert!(text.contains("semaphore 0x"), "{text}");
}

#[test]
fn provider_and_name_filters() {
    let fx = fixtures();
    let exe = fx.pie.to_str().unwrap();
    let names = |args: &[&str]| -> Vec<String> {
        let mut a = vec!["list", "--json"];
        a.extend_from_slice(args);
        a.push(exe);
        let out = usdtop(&a);
        assert!(out.status.success(), "{}", common::stderr(&out));
        json_lines(&out)
            .iter()
            .map(|p| {
                format!(
                    "{}:{}",
                    p["provider"].as_str().unwrap(),
                    p["name"].as_str().unwrap()
                )
            })
            .collect()
    };
    assert_eq!(
        names(&["-n", "guarded*"]),
        ["demo:guarded", "demo:guarded_twice"]
    );
    assert_eq!(
        names(&["--name", "demo:*_args"]),
        ["demo:no_args", "demo:six_args"]
    );
    assert_eq!(names(&["-P", "nope"]), Vec::<String>::new());
    assert_eq!(
        names(&["-P", "de?o", "-n", "hyphen-*"]),
        ["demo:hyphen-ated"]
    );
}

/// Prelink moves an object after the notes were written: the notes keep the old addresses and
/// `.stapsdt.base` shows how far it moved. Simulate it by lowering every address in the notes
/// (pc, base, semaphore) by 0x10: the reported pcs are the notes' values, but the file offsets
/// must still land on the real instructions and semaphores.
#[test]
fn prelinked_addresses_are_adjusted_by_the_stapsdt_base_section() {
    let fx = fixtures();
    let original = std::fs::read(&fx.nopie).unwrap();
    let start = common::readelf_section_offset(&fx.nopie, ".note.stapsdt").unwrap() as usize;
    let size = common::readelf_section_size(&fx.nopie, ".note.stapsdt").unwrap() as usize;
    let mut bytes = original.clone();
    let u32_at =
        |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as usize;
    let mut pos = start;
    while pos < start + size {
        let (namesz, descsz) = (u32_at(&bytes, pos), u32_at(&bytes, pos + 4));
        let desc = pos + 12 + namesz.next_multiple_of(4);
        for field in 0..3 {
            let at = desc + 8 * field;
            let v = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
            if v != 0 {
                bytes[at..at + 8].copy_from_slice(&(v - 0x10).to_le_bytes());
            }
        }
        pos = (desc + descsz).next_multiple_of(4);
    }
    let moved = fx.dir.join("prelinked");
    std::fs::write(&moved, &bytes).unwrap();

    let before = json_lines(&usdtop(&["list", "--json", fx.nopie.to_str().unwrap()]));
    let after = json_lines(&usdtop(&["list", "--json", moved.to_str().unwrap()]));
    assert_eq!(before.len(), after.len());
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(a["name"], b["name"]);
        assert_eq!(
            a["semaphore_offset"], b["semaphore_offset"],
            "{}",
            a["name"]
        );
        if let Some(s) = b["semaphore"].as_u64() {
            assert_eq!(a["semaphore"], s - 0x10);
        }
        for (sb, sa) in b["sites"]
            .as_array()
            .unwrap()
            .iter()
            .zip(a["sites"].as_array().unwrap())
        {
            assert_eq!(sa["pc"], sb["pc"].as_u64().unwrap() - 0x10);
            assert_eq!(sa["file_offset"], sb["file_offset"]);
        }
    }
}

/// `usdtop list | head -1`: a reader that goes away is not an error and not a panic.
#[test]
fn a_closed_pipe_ends_the_listing_quietly() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let fx = fixtures();
    // Enough output to fill the pipe: the same file many times.
    let paths: Vec<&std::path::Path> = std::iter::repeat_n(fx.pie.as_path(), 2000).collect();
    let mut child = Command::new(env!("CARGO_BIN_EXE_usdtop"))
        .arg("list")
        .args(&paths)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with(fx.pie.to_str().unwrap()));
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(common::stderr(&out), "");
}
