//! The note reader never panics: arbitrary bytes and real ELF images with corrupted bytes give
//! probes or an `ElfError`, nothing else. (Bounded and fast; the open-ended search is the
//! cargo-fuzz target in fuzz/.)

mod common;

use proptest::prelude::*;
use std::path::Path;
use usdtop::probes::discovery::elf::{parse_probes, read_probes};

fn image() -> (Vec<u8>, usize, usize) {
    let fx = common::fixtures();
    let bytes = std::fs::read(&fx.nopie).unwrap();
    let notes = common::readelf_section_offset(&fx.nopie, ".note.stapsdt").unwrap() as usize;
    (bytes, notes, 400)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = parse_probes(Path::new("fuzz"), &bytes);
    }

    #[test]
    fn elf_magic_then_arbitrary_bytes_never_panic(
        class in 1u8..=2, data in 1u8..=2,
        rest in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        let mut bytes = vec![0x7f, b'E', b'L', b'F', class, data, 1];
        bytes.extend(rest);
        let _ = parse_probes(Path::new("fuzz"), &bytes);
    }

    #[test]
    fn corrupted_notes_of_a_real_image_never_panic(
        edits in proptest::collection::vec((0usize..400, any::<u8>()), 1..12),
    ) {
        let (mut bytes, notes, span) = image();
        let span = span.min(bytes.len() - notes);
        for (at, value) in edits {
            bytes[notes + at % span] = value;
        }
        let _ = parse_probes(Path::new("fuzz"), &bytes);
    }

    #[test]
    fn corrupted_headers_anywhere_never_panic(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in any::<usize>(),
    ) {
        let (mut bytes, _, _) = image();
        let len = bytes.len();
        for (at, value) in edits {
            bytes[at % len] = value;
        }
        bytes.truncate(len - cut % 64);
        let _ = parse_probes(Path::new("fuzz"), &bytes);
    }

    /// `read_probes` reads headers from the file before deciding to read it all: corrupt the
    /// ELF header and the section header table on disk.
    #[test]
    fn read_probes_on_corrupted_files_never_panics(
        edits in proptest::collection::vec((0usize..64, any::<u8>()), 1..6),
        table_edits in proptest::collection::vec((0usize..1024, any::<u8>()), 0..6),
    ) {
        let (mut bytes, _, _) = image();
        let len = bytes.len();
        for (at, value) in edits {
            bytes[at] = value;
        }
        for (at, value) in table_edits {
            bytes[len - 1 - at] = value;
        }
        let path = common::fixtures().dir.join(format!(
            "prop-{:?}",
            std::thread::current().id()
        ));
        std::fs::write(&path, &bytes).unwrap();
        let _ = read_probes(&path);
    }
}

#[test]
fn the_unmodified_image_parses() {
    let (bytes, _, _) = image();
    let probes = parse_probes(Path::new("app_nopie"), &bytes).unwrap();
    assert_eq!(probes.site_count(), 9);
}
