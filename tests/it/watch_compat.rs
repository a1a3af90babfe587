//! `etcdctl watch` prints the same for Shoal as for etcd 3.4: live events,
//! history replay, prev-kv, JSON, and a watch on a compacted revision.

use shoal_tests::etcdctl::Output;

use crate::etcdctl_compat::Pair;

fn revision(pair: &Pair) -> i64 {
    let out = pair.same(&["get", "anything", "-w", "json"]);
    let out = if out.success { pair.etcd.run(&["get", "anything", "-w", "json"]) } else { out };
    let json: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    json["header"]["revision"].as_i64().expect("a revision")
}

fn count(text: &str, marker: &str) -> usize {
    text.lines().filter(|l| *l == marker).count()
}

fn normalized(text: String) -> String {
    Output { stdout: text, stderr: String::new(), success: true }.normalized().stdout
}

/// Runs the same live watch on both, performs `writes` on both, and compares
/// once each has printed `events` events.
async fn live(pair: &Pair, watch: &[&str], writes: &[&[&str]], events: usize) {
    let next = (revision(pair) + 1).to_string();
    let mut args: Vec<&str> = watch.to_vec();
    args.extend(["--rev", &next]);
    let (etcd, shoal) = (pair.etcd.watch(&args), pair.shoal.watch(&args));
    for write in writes {
        pair.same(write);
    }
    let json = watch.contains(&"json");
    let done = |t: &str| {
        let seen = if json { t.matches("\"kv\":").count() } else { count(t, "PUT") + count(t, "DELETE") };
        seen >= events
    };
    let expected = etcd.finish("etcd's watch", done).await;
    let got = shoal.finish("shoal's watch", done).await;
    assert_eq!(normalized(got), normalized(expected), "etcdctl watch {watch:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_prints_what_etcd_prints() {
    let (pair, _etcd, _cluster) = Pair::start().await;
    live(&pair, &["foo"], &[&["put", "foo", "1"], &["put", "foo/x", "no"], &["put", "foo", "2"], &["del", "foo"]], 3)
        .await;
    live(&pair, &["--prefix", "foo"], &[&["put", "foo/a", "1"], &["put", "fop", "no"], &["del", "foo", "--prefix"]], 3)
        .await;
    live(&pair, &["a", "c"], &[&["put", "a", "1"], &["put", "b", "2"], &["put", "c", "no"], &["put", "b", "3"]], 3)
        .await;
    live(&pair, &["--prev-kv", "k"], &[&["put", "k", "1"], &["put", "k", "2"], &["del", "k"]], 3).await;
    live(&pair, &["k", "-w", "json"], &[&["put", "k", "json"]], 1).await;

    // History replay, in one response, as JSON.
    for args in [&["foo", "--rev", "2", "-w", "json"][..], &["--prefix", "", "--rev", "1", "--prev-kv"][..]] {
        let expected = pair.etcd.watch(args).finish("etcd's replay", |t| !t.is_empty()).await;
        let got = pair.shoal.watch(args).finish("shoal's replay", |t| !t.is_empty()).await;
        assert_eq!(normalized(got), normalized(expected), "etcdctl watch {args:?}");
    }

    // A watch on a compacted revision is canceled with the compact revision.
    pair.same(&["compaction", "5"]);
    for args in [&["foo", "--rev", "2", "-w", "json"][..], &["foo", "--rev", "3"][..]] {
        let expected = pair.etcd.watch(args).exit().await;
        let got = pair.shoal.watch(args).exit().await;
        assert_eq!(normalized(got), normalized(expected), "etcdctl watch {args:?} after compaction");
    }
}
