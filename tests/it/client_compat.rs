//! The `etcd-client` crate gets the same answers from Shoal as from etcd 3.4.

use etcd_client::{
    Client, CompactionOptions, Compare, CompareOp, DeleteOptions, GetOptions, PutOptions, SortOrder, SortTarget, Txn,
    TxnOp,
};
use shoal_tests::answers::{assert_same_answers, outcome};
use shoal_tests::{Cluster, Etcd};

/// Runs a fixed sequence of operations and records every answer.
async fn script(client: &mut Client) -> Vec<String> {
    let mut log = Vec::new();
    log.push(outcome(client.put("a", "1", None).await));
    log.push(outcome(client.put("a", "2", Some(PutOptions::new().with_prev_key())).await));
    for (k, v) in [("p/1", "x"), ("p/2", "y"), ("p/3", "z"), ("q", "w")] {
        log.push(outcome(client.put(k, v, None).await));
    }
    log.push(outcome(client.get("a", None).await));
    log.push(outcome(client.get("a", Some(GetOptions::new().with_revision(2))).await));
    log.push(outcome(client.get("p/", Some(GetOptions::new().with_prefix().with_limit(2))).await));
    log.push(outcome(client.get("p/", Some(GetOptions::new().with_prefix().with_count_only())).await));
    log.push(outcome(
        client.get("p/", Some(GetOptions::new().with_prefix().with_keys_only().with_serializable())).await,
    ));
    log.push(outcome(
        client.get("p/", Some(GetOptions::new().with_prefix().with_sort(SortTarget::Value, SortOrder::Descend))).await,
    ));
    log.push(outcome(client.get("p/", Some(GetOptions::new().with_prefix().with_min_mod_revision(5))).await));
    log.push(outcome(client.get("p/2", Some(GetOptions::new().with_from_key())).await));
    log.push(outcome(client.get("a", Some(GetOptions::new().with_range("p/2"))).await));
    let txn = Txn::new()
        .when([Compare::value("a", CompareOp::Equal, "2"), Compare::version("q", CompareOp::Greater, 0)])
        .and_then([
            TxnOp::put("t", "1", None),
            TxnOp::get("t", None),
            TxnOp::delete("q", Some(DeleteOptions::new().with_prev_key())),
            TxnOp::txn(
                Txn::new().when([Compare::mod_revision("t", CompareOp::Less, 2)]).or_else([TxnOp::put("u", "1", None)]),
            ),
        ])
        .or_else([TxnOp::put("f", "1", None)]);
    log.push(outcome(client.txn(txn).await));
    log.push(outcome(client.get("u", None).await));
    log.push(outcome(client.delete("p/", Some(DeleteOptions::new().with_prefix().with_prev_key())).await));
    log.push(outcome(client.delete("nothing", None).await));
    // Bad input and stale or future revisions.
    log.push(outcome(client.put("", "v", None).await));
    log.push(outcome(client.get("a", Some(GetOptions::new().with_revision(1000))).await));
    log.push(outcome(client.compact(4, None).await));
    log.push(outcome(client.get("a", Some(GetOptions::new().with_revision(3))).await));
    log.push(outcome(client.compact(3, None).await));
    log.push(outcome(client.compact(1000, None).await));
    log.push(outcome(client.compact(6, Some(CompactionOptions::new().with_physical())).await));
    log.push(outcome(client.txn(Txn::new().and_then([TxnOp::put("d", "1", None), TxnOp::put("d", "2", None)])).await));
    log.push(outcome(client.put("l", "v", Some(PutOptions::new().with_lease(77))).await));
    log.push(outcome(client.get("", Some(GetOptions::new().with_all_keys())).await));
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_client_sees_what_it_sees_on_etcd() {
    let (etcd, cluster) = tokio::join!(Etcd::start(), Cluster::start(3));
    let mut reference = Client::connect([etcd.client_url.clone()], None).await.expect("connect to etcd");
    let mut shoal = cluster.client().await;
    let expected = script(&mut reference).await;
    let got = script(&mut shoal).await;
    assert_same_answers(&got, &expected);
}
