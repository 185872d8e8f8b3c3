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

/// The page a k6 user reads: HTML tables (no markdown), an error-share column, a legend of the
/// codes that occurred, the scenario's parameters and the host.
#[test]
fn the_page_has_tables_a_code_legend_parameters_and_host() {
    let mut r = crate::report::tests::sample();
    if let Some(create) = r.ops.values_mut().next() {
        create.codes.insert("BUS_004".into(), 3);
    }
    let page = super::html(&r).unwrap();
    assert!(!page.contains("<pre>"), "markdown left in the page");
    assert!(!page.contains("**"), "markdown left in the page");
    assert!(page.contains("<th>error share</th>"));
    assert!(page.contains("<h2>Error codes</h2>") && page.contains("Expected when many users"));
    assert!(page.contains("<h2>Scenario</h2>") && page.contains("duration"));
    assert!(page.contains("<h2>Host</h2>") && page.contains("cores"));
}
