//! Recording what a client got, as text that compares equal between Shoal
//! and etcd 3.4 when the answers are the same.

use std::fmt::Debug;

/// Debug output with member/cluster ids and the term masked.
pub fn masked(value: &impl Debug) -> String {
    let ids = regex::Regex::new(r"(cluster_id|member_id|raft_term): \d+").expect("valid regex");
    ids.replace_all(&format!("{value:?}"), "$1: N").into_owned()
}

/// One call's answer: the masked response, or the gRPC code and message.
pub fn outcome<T: Debug>(result: Result<T, etcd_client::Error>) -> String {
    outcome_of(&result)
}

/// [`outcome`] of an answer the caller keeps.
pub fn outcome_of<T: Debug>(result: &Result<T, etcd_client::Error>) -> String {
    match result {
        Ok(value) => masked(value),
        Err(etcd_client::Error::GRpcStatus(status)) => format!("status {:?}: {}", status.code(), status.message()),
        Err(other) => format!("error: {other}"),
    }
}

/// Asserts that Shoal answered every step as etcd did, naming the first step that differs.
pub fn assert_same_answers(got: &[String], expected: &[String]) {
    for (i, (g, e)) in got.iter().zip(expected).enumerate() {
        assert_eq!(g, e, "step {i} differs from etcd 3.4");
    }
    assert_eq!(got.len(), expected.len(), "etcd 3.4 gave a different number of answers");
}

/// Runs a client's script, which prints one answer per line, and returns
/// the lines; the test fails, with all it printed, if the script does.
pub fn script_answers(script: &mut std::process::Command, what: &str) -> Vec<String> {
    let output = script.output().unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{what} failed:\n{stdout}\n{stderr}");
    stdout.lines().map(str::to_owned).collect()
}
