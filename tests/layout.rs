//! The code's shape, as the project's standards ask: every Rust file opens with a `//!` doc saying
//! what it is for, no source file outside tests grows past 400 lines (the wire types of
//! `booking.*` in `contracts/` excepted: one struct per message, each with its checks), and no
//! crate's top-level modules import each other in a circle.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
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

/// The source folders whose modules must not import each other in a circle.
const CRATES: &[&str] = &[
    "contracts/src",
    "service/src",
    "course-stub/src",
    "simulator/src",
    "simulator/world/src",
    "xtask/src",
    "benches",
];

/// Which top-level modules of the crate in `src` each top-level module names (`crate::x`), from
/// code outside comments and unit tests.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let root = root();
    let mut files = Vec::new();
    rust_files(&root.join(src), &root.join(src), &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files.iter().filter(|f| !is_test(f)) {
        let first = file
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let module = first.trim_end_matches(".rs").to_owned();
        if matches!(module.as_str(), "lib" | "main" | "bin") {
            continue;
        }
        let text = std::fs::read_to_string(root.join(src).join(file)).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        let deps = graph.entry(module.clone()).or_default();
        for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
            for (i, _) in line.match_indices("crate::") {
                let rest = &line[i + "crate::".len()..];
                if let Some(stripped) = rest.strip_prefix('{') {
                    // `use crate::{a, b::c}`: each item's first segment.
                    let inner = stripped.split('}').next().unwrap_or_default();
                    deps.extend(inner.split(',').filter_map(|item| {
                        let name = item.trim().split("::").next()?.trim();
                        (!name.is_empty()).then(|| name.to_owned())
                    }));
                } else {
                    let name: String = rest
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    deps.insert(name);
                }
            }
        }
        deps.remove(&module);
    }
    graph
}

/// A circle in `graph`, if there is one.
fn circle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        graph: &BTreeMap<String, BTreeSet<String>>,
        node: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut found = path[at..].to_vec();
            found.push(node.to_owned());
            return Some(found);
        }
        if !done.insert(node.to_owned()) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(found) = visit(graph, next, path, done) {
                return Some(found);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(graph, node, &mut Vec::new(), &mut done))
}

#[test]
fn no_crate_has_an_import_circle() {
    for src in CRATES {
        let graph = module_graph(Path::new(src));
        assert!(
            graph.len() > 1 || *src == "benches",
            "{src}: no modules found"
        );
        assert_eq!(
            circle(&graph),
            None,
            "{src}: modules import each other in a circle"
        );
    }
}

#[test]
fn a_circle_is_found() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("app", vec!["course"]),
        ("course", vec!["metrics"]),
        ("metrics", vec!["app"]),
        ("store", vec![]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.into_iter().map(str::to_owned).collect()))
    .collect();
    assert_eq!(
        circle(&graph),
        Some(vec![
            "app".into(),
            "course".into(),
            "metrics".into(),
            "app".into()
        ])
    );
}
