//! etcdctl 3.4 prints the same bytes for Shoal as for etcd 3.4 (ids and the
//! Raft term aside), command after command, on two fresh clusters.

use shoal_tests::etcdctl::Output;
use shoal_tests::{Cluster, Etcd, Etcdctl};

pub struct Pair {
    pub etcd: Etcdctl,
    pub shoal: Etcdctl,
}

impl Pair {
    pub async fn start() -> (Pair, Etcd, Cluster) {
        let (etcd, cluster) = tokio::join!(Etcd::start(), Cluster::start(3));
        let pair = Pair { etcd: Etcdctl::new(etcd.client_url.clone()), shoal: Etcdctl::new(cluster.endpoints_csv()) };
        (pair, etcd, cluster)
    }

    /// One etcd and one single-member Shoal, both with `extra` flags, so that
    /// cluster-shaped output (member lists, endpoint status) is comparable.
    pub async fn start_single(extra: &[&str]) -> (Pair, Etcd, Cluster) {
        let (etcd, cluster) = tokio::join!(Etcd::start_with(extra), Cluster::start_with(1, extra));
        let pair = Pair { etcd: Etcdctl::new(etcd.client_url.clone()), shoal: Etcdctl::new(cluster.endpoints_csv()) };
        (pair, etcd, cluster)
    }

    /// Runs the same command on both and insists on the same output.
    pub fn same(&self, args: &[&str]) -> Output {
        self.same_with_stdin(args, None)
    }

    pub fn same_with_stdin(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let expected = self.etcd.run_with_stdin(args, stdin).normalized();
        let got = self.shoal.run_with_stdin(args, stdin).normalized();
        assert_eq!(got, expected, "etcdctl {args:?} differs from etcd 3.4");
        got
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_get_del_print_what_etcd_prints() {
    let (pair, _etcd, _cluster) = Pair::start().await;
    let script: &[&[&str]] = &[
        &["put", "foo", "bar"],
        &["put", "foo", "bar2", "--prev-kv"],
        &["put", "foo/a", "1"],
        &["put", "foo/b", "2"],
        &["put", "foo/c", "3"],
        &["put", "zoo", "z", "-w", "json"],
        &["get", "foo"],
        &["get", "foo", "-w", "json"],
        &["get", "foo", "-w", "fields"],
        &["get", "foo", "--prefix"],
        &["get", "foo", "--prefix", "--keys-only"],
        &["get", "foo", "--prefix", "--print-value-only"],
        &["get", "foo", "--prefix", "--limit", "2", "-w", "json"],
        &["get", "foo/b", "--from-key"],
        &["get", "foo/a", "foo/c"],
        &["get", "foo", "--rev", "2"],
        &["get", "foo", "--rev", "3", "-w", "json"],
        &["get", "foo", "--prefix", "--sort-by=MODIFY", "--order=DESCEND"],
        &["get", "foo", "--prefix", "--sort-by=VALUE", "--order=ASCEND", "-w", "json"],
        &["get", "foo", "--prefix", "--sort-by=CREATE", "--order=DESCEND", "--limit", "2"],
        &["get", "foo", "--prefix", "--sort-by=VERSION", "--order=DESCEND"],
        &["get", "foo", "--prefix", "--order=DESCEND"],
        &["get", "foo", "--prefix", "--count-only", "-w", "json"],
        &["get", "nothing", "-w", "json"],
        &["get", "", "--prefix", "--keys-only"],
        &["del", "foo/a"],
        &["del", "nothing", "-w", "json"],
        &["del", "foo", "--prefix", "--prev-kv"],
        &["put", "a1", "1"],
        &["put", "a2", "2"],
        &["del", "a", "--from-key", "-w", "json"],
        &["get", "", "--from-key", "-w", "json"],
    ];
    for args in script {
        pair.same(args);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txn_prints_what_etcd_prints() {
    let (pair, _etcd, _cluster) = Pair::start().await;
    pair.same(&["put", "k1", "v1"]);
    pair.same(&["put", "k4", "v4"]);
    let txns: &[&str] = &[
        "value(\"k1\") = \"v1\"\n\nput k2 v2\nget k1\n\nput k3 v3\n\n",
        "value(\"k1\") = \"nope\"\n\nput k2 v2\n\nput k3 v3\nget k3\n\n",
        "mod(\"k1\") > \"1\"\nversion(\"k2\") = \"1\"\ncreate(\"k4\") < \"100\"\n\ndel k4\nget k --prefix\n\n\n",
        "\n\nget k1\nget k2 --rev=3\n\n\n",
        "value(\"missing\") != \"x\"\n\nput k5 v5\n\n\n",
    ];
    for txn in txns {
        pair.same_with_stdin(&["txn"], Some(txn.as_bytes()));
        pair.same_with_stdin(&["txn", "-w", "json"], Some(txn.as_bytes()));
    }
    pair.same(&["get", "k", "--prefix", "-w", "json"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_prints_what_etcd_prints() {
    let (pair, _etcd, _cluster) = Pair::start().await;
    for i in 0..6 {
        pair.same(&["put", "key", &format!("v{i}")]);
    }
    pair.same(&["get", "key", "--rev", "3"]);
    pair.same(&["compaction", "4"]);
    pair.same(&["get", "key", "--rev", "3"]);
    pair.same(&["get", "key", "--rev", "4", "-w", "json"]);
    pair.same(&["compaction", "4"]);
    pair.same(&["compaction", "2"]);
    pair.same(&["compaction", "--physical", "6"]);
    pair.same(&["compaction", "100"]);
    pair.same(&["get", "key", "-w", "json"]);
}
