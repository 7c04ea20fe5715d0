//! Golden tests over `test_data/`: each `ok/*.filter` holds one filter whose parse tree is
//! in the `.ast` next to it (preceded by the canonical printed form), each `err/*.filter` one
//! filter whose error (Display and code) is in the `.txt` next to it.
//!
//! A missing expectation file is created and the test fails, asking you to check it by eye;
//! `UPDATE_EXPECT=1 cargo test -p stela-query` rewrites the files that differ.

use std::fs;
use std::path::{Path, PathBuf};

use stela_query::parse_filter;

/// The test inputs of one directory, sorted, with their text (one trailing newline removed).
pub(crate) fn inputs(dir: &str) -> Vec<(PathBuf, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("test_data").join(dir);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "filter"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = fs::read_to_string(&path).expect("readable test input");
            let text = text.strip_suffix('\n').unwrap_or(&text).to_owned();
            (path, text)
        })
        .collect()
}

/// Compares `actual` with the expectation file, creating or updating it as described above;
/// returns a failure description.
fn check_expectation(path: &Path, actual: &str) -> Option<String> {
    let update = std::env::var_os("UPDATE_EXPECT").is_some_and(|v| v == "1");
    match fs::read_to_string(path) {
        Ok(expected) if expected == actual => None,
        Ok(_) if update => {
            fs::write(path, actual).expect("writable expectation");
            None
        }
        Ok(expected) => Some(format!(
            "{} differs (UPDATE_EXPECT=1 to accept)\n--- expected\n{expected}--- actual\n{actual}",
            path.display()
        )),
        Err(_) => {
            fs::write(path, actual).expect("writable expectation");
            Some(format!("{} was missing and has been created: check it by eye", path.display()))
        }
    }
}

fn report(failures: Vec<String>) {
    assert!(
        failures.is_empty(),
        "{} golden failures:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn ok_cases_parse_print_and_round_trip() {
    let cases = inputs("ok");
    assert!(cases.len() >= 40, "expected at least 40 ok cases, found {}", cases.len());
    let mut failures = Vec::new();
    for (path, input) in cases {
        let expr = match parse_filter(&input) {
            Ok(expr) => expr,
            Err(error) => {
                failures.push(format!("{}: unexpected error: {error}", path.display()));
                continue;
            }
        };
        let printed = expr.to_string();
        match parse_filter(&printed) {
            Ok(reparsed) if reparsed == expr => {}
            Ok(reparsed) => failures.push(format!(
                "{}: round trip changed the tree\nprinted: {printed}\n{}",
                path.display(),
                reparsed.to_tree()
            )),
            Err(error) => failures.push(format!(
                "{}: printed form does not parse: {printed}\n{error}",
                path.display()
            )),
        }
        let actual = format!("canonical: {printed}\n{}", expr.to_tree());
        failures.extend(check_expectation(&path.with_extension("ast"), &actual));
    }
    report(failures);
}

#[test]
fn err_cases_fail_with_the_expected_message() {
    let cases = inputs("err");
    assert!(cases.len() >= 20, "expected at least 20 err cases, found {}", cases.len());
    let mut failures = Vec::new();
    for (path, input) in cases {
        match parse_filter(&input) {
            Ok(expr) => failures.push(format!(
                "{}: expected an error, parsed as\n{}",
                path.display(),
                expr.to_tree()
            )),
            Err(error) => {
                let actual = format!("{error}\ncode: {:?}\n", error.code());
                failures.extend(check_expectation(&path.with_extension("txt"), &actual));
            }
        }
    }
    report(failures);
}
