//! The code's shape, as the project's standards ask: every Rust file opens with a `//!` doc saying
//! what it is for, and no source file outside tests grows past 400 lines (the wire types of
//! `booking.*` in `contracts/` excepted: one struct per message, each with its checks).

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

/// Lines a source file may have.
const MAX_LINES: usize = 400;

/// Files allowed past [`MAX_LINES`], with the reason.
const EXEMPT: &[(&str, &str)] = &[(
    "contracts/src/booking.rs",
    "wire types: one struct per booking.* message with its checks",
)];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Every `.rs` file of the workspace, relative to its root (build output and npm packages left out).
fn rust_files(dir: &Path, root: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if !matches!(name.as_str(), "target" | "node_modules" | ".git") {
                rust_files(&path, root, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path.strip_prefix(root).unwrap().to_path_buf());
        }
    }
}

/// A test file: under a `tests/` folder, or a `tests.rs` unit-test module.
fn is_test(path: &Path) -> bool {
    path.components().any(|c| c.as_os_str() == "tests") || path.ends_with("tests.rs")
}

#[test]
fn every_rust_file_opens_with_a_module_doc() {
    let root = root();
    let mut files = Vec::new();
    rust_files(&root, &root, &mut files);
    assert!(files.len() > 50, "found only {} files", files.len());
    let undocumented: Vec<_> = files
        .iter()
        .filter(|f| {
            let text = std::fs::read_to_string(root.join(f)).unwrap();
            !text.starts_with("//!")
        })
        .collect();
    assert!(
        undocumented.is_empty(),
        "files without a //! doc: {undocumented:?}"
    );
}

#[test]
fn no_source_file_outside_tests_passes_400_lines() {
    let root = root();
    let mut files = Vec::new();
    rust_files(&root, &root, &mut files);
    let mut long: Vec<(String, usize)> = files
        .iter()
        .filter(|f| !is_test(f))
        .map(|f| {
            let lines = std::fs::read_to_string(root.join(f))
                .unwrap()
                .lines()
                .count();
            (f.to_string_lossy().into_owned(), lines)
        })
        .filter(|(f, lines)| *lines > MAX_LINES && !EXEMPT.iter().any(|(e, _)| e == f))
        .collect();
    long.sort();
    assert!(
        long.is_empty(),
        "split these by concern (see README's layout): {long:?}"
    );
}

#[test]
fn the_exemptions_still_exist() {
    let root = root();
    for (file, why) in EXEMPT {
        assert!(
            root.join(file).exists(),
            "{file} ({why}) is gone: drop its exemption"
        );
    }
}

#[test]
fn unit_test_modules_and_test_folders_count_as_tests() {
    assert!(is_test(Path::new("simulator/src/checker/tests.rs")));
    assert!(is_test(Path::new("tests/booking.rs")));
    assert!(is_test(Path::new("course-stub/tests/stub.rs")));
    assert!(!is_test(Path::new("simulator/src/checker.rs")));
    assert!(!is_test(Path::new("service/src/handlers/create.rs")));
}
