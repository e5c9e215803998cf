//! Replays every input kept in `fuzz/regressions/` through the fuzz
//! target's check, so a crash the fuzzer once found stays fixed.

mod common;

use std::fs;
use std::path::PathBuf;

#[test]
fn fuzz_regressions_stay_fixed() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions");
    let mut entries: Vec<_> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.is_file())
        // The README explains the directory; it is not an input.
        .filter(|path| {
            !path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("README"))
        })
        .collect();
    entries.sort();
    assert!(
        !entries.is_empty(),
        "no regression inputs in {}",
        dir.display()
    );
    for path in entries {
        let data = fs::read(&path).expect("readable regression input");
        let outcome = std::panic::catch_unwind(|| common::decode_roundtrip_check(&data));
        assert!(outcome.is_ok(), "regression input {} fails", path.display());
    }
}
