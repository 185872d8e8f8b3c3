//! Unit tests of `charts`.

#![allow(clippy::unwrap_used)]

#[test]
fn a_written_report_has_its_page() {
    let r = crate::report::tests::sample();
    let dir = tempfile::tempdir().unwrap();
    super::write(&r, dir.path()).unwrap();
    assert!(dir.path().join("index.html").exists());
    assert!(dir.path().join("report.json").exists());
}
