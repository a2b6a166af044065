//! Helpers shared by the unit tests.

use std::path::PathBuf;

/// Compares `actual` with the fixture file `tests/fixtures/<name>`.
///
/// With `UPDATE_FIXTURES=1` in the environment the file is (re)written instead, so a deliberate
/// change of output is one command: `UPDATE_FIXTURES=1 cargo test`, then review the diff.
pub fn assert_matches_fixture(name: &str, actual: &str) {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests", "fixtures", name]
        .iter()
        .collect();
    if std::env::var_os("UPDATE_FIXTURES").is_some_and(|v| v == "1") {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create fixture folder");
        }
        std::fs::write(&path, actual).expect("write fixture");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run with UPDATE_FIXTURES=1 to create it",
            path.display()
        )
    });
    assert!(
        expected == actual,
        "output differs from {}; run with UPDATE_FIXTURES=1 to accept it\n--- expected\n{expected}\
         \n--- actual\n{actual}",
        path.display()
    );
}
