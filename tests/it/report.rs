//! `paytool report` on run directories it cannot read: exit 2, naming the file and why.

use crate::support::{paytool, temp_dir};

#[test]
fn an_unreadable_run_is_named_with_the_reason() {
    let runs = temp_dir();
    let corrupt = runs.path().join("corrupt");
    std::fs::create_dir(&corrupt).unwrap();
    // Cut off mid-object, as a run killed while writing would leave it.
    std::fs::write(corrupt.join("summary.json"), "{\n  \"run_id\": \"x\",\n").unwrap();
    let missing = runs.path().join("missing");
    std::fs::create_dir(&missing).unwrap();
    let corrupt = corrupt.to_str().unwrap();
    let missing = missing.to_str().unwrap();
    let cases: [(&[&str], &str, &str); 3] = [
        (
            &["show", corrupt],
            corrupt,
            "summary.json is corrupt: EOF while parsing a value at line 3 column 0",
        ),
        (
            &["diff", missing, corrupt],
            missing,
            "summary.json is missing",
        ),
        (
            &["diff", corrupt, missing],
            corrupt,
            "summary.json is corrupt",
        ),
    ];
    for (args, dir, reason) in cases {
        let out = paytool(&[&["report"], args].concat());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(dir) && err.contains(reason), "{args:?}: {err}");
    }
}
