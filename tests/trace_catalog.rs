//! The catalog's argument lists agree with the real binaries installed here: every catalogued
//! probe of a provider exists, with exactly as many arguments as its sites pass, and every probe
//! of a provider is catalogued (but for `hotspot_jni`, whose 200-odd probes are catalogued only
//! where they pass a string).

mod common;

use std::path::PathBuf;
use usdtop::probes::discovery::catalog::Catalog;
use usdtop::probes::read_probes;

/// Each provider with the binary that has it; a missing one fails the test, naming its package.
fn real_binaries() -> Vec<(&'static str, PathBuf)> {
    let libstdcxx = common::libstdcxx();
    vec![
        (
            "postgresql",
            PathBuf::from("/usr/lib/postgresql/15/bin/postgres"),
        ),
        ("python", PathBuf::from("/usr/bin/python3.11")),
        ("php", PathBuf::from("/usr/bin/php8.2")),
        ("libstdcxx", libstdcxx),
        ("nextest", PathBuf::from("/usr/local/bin/cargo-nextest")),
        ("ruby", PathBuf::from(LIBRUBY)),
        ("hotspot", PathBuf::from(LIBJVM)),
        ("hotspot_jni", PathBuf::from(LIBJVM)),
    ]
}

const LIBRUBY: &str = "/usr/lib/x86_64-linux-gnu/libruby-3.1.so.3.1";
const LIBJVM: &str = "/usr/lib/jvm/java-17-openjdk-amd64/lib/server/libjvm.so";
/// Providers catalogued in part: only their probes that pass strings.
const PARTIAL: &[&str] = &["hotspot_jni"];

#[test]
fn catalog_argument_counts_match_the_installed_binaries() {
    let catalog = Catalog::builtin();
    let mut checked = 0;
    for (provider, path) in real_binaries() {
        common::require(path.to_str().unwrap());
        let object = read_probes(&path).unwrap();
        for probe in object.probes.iter().filter(|p| p.provider == provider) {
            let name = probe.full_name();
            let Some(args) = catalog.args(&name) else {
                if PARTIAL.contains(&provider) {
                    continue;
                }
                panic!("{name} in {} is not in the catalog", path.display())
            };
            assert_eq!(
                args.len(),
                probe.arg_count(),
                "{name} in {}",
                path.display()
            );
            checked += 1;
        }
        // Nothing catalogued for this provider is missing from the binary.
        let present: Vec<String> = object.probes.iter().map(|p| p.full_name()).collect();
        for p in catalog_probes_of(&catalog, provider) {
            assert!(
                present.contains(&p),
                "{p} is catalogued but not in {}",
                path.display()
            );
        }
    }
    eprintln!("{checked} probes checked");
}

fn catalog_probes_of(catalog: &Catalog, provider: &str) -> Vec<String> {
    let text = include_str!("../assets/catalog.json");
    let v: serde_json::Value = serde_json::from_str(text).unwrap();
    v["probes"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| k.starts_with(&format!("{provider}:")))
        .filter(|k| catalog.args(k).is_some())
        .cloned()
        .collect()
}
