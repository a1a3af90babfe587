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
