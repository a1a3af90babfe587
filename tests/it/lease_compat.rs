//! `etcdctl lease ...` and keys with leases print the same for Shoal as for
//! etcd 3.4 (lease ids and ticking TTLs aside).

use std::time::Duration;

use shoal_tests::wait;

use crate::etcdctl_compat::Pair;

fn lease_id(granted: &str) -> String {
    granted.split_whitespace().nth(1).expect("lease <id> granted ...").to_string()
}

/// etcd lists a lease's attached keys in map order: sort them.
fn sorted_keys(mut out: shoal_tests::etcdctl::Output) -> shoal_tests::etcdctl::Output {
    if let (Some(start), Some(end)) = (out.stdout.find("attached keys(["), out.stdout.find("])")) {
        let inner = start + "attached keys([".len();
        if inner <= end {
            let mut keys: Vec<&str> = out.stdout[inner..end].split(' ').collect();
            keys.sort();
            out.stdout = format!("{}{}{}", &out.stdout[..inner], keys.join(" "), &out.stdout[end..]);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_commands_print_what_etcd_prints() {
    let (pair, _etcd, _cluster) = Pair::start().await;
    pair.same(&["lease", "grant", "0"]);
    pair.same(&["lease", "grant", "1", "-w", "json"]);
    let a = (
        lease_id(&pair.etcd.run(&["lease", "grant", "300"]).stdout),
        lease_id(&pair.shoal.run(&["lease", "grant", "300"]).stdout),
    );
    for (ctl, id) in [(&pair.etcd, &a.0), (&pair.shoal, &a.1)] {
        let out = ctl.run(&["put", "leased", "v", &format!("--lease={id}")]);
        assert!(out.success, "{out:?}");
        let out = ctl.run(&["put", "leased2", "v", &format!("--lease={id}")]);
        assert!(out.success, "{out:?}");
    }
    pair.same(&["get", "leased", "-w", "json"]);
    // Same command, each side with its own id.
    let both = |args: &dyn Fn(&str) -> Vec<String>| {
        let e: Vec<String> = args(&a.0);
        let s: Vec<String> = args(&a.1);
        let e_out = sorted_keys(pair.etcd.run(&e.iter().map(String::as_str).collect::<Vec<_>>()).normalized());
        let s_out = sorted_keys(pair.shoal.run(&s.iter().map(String::as_str).collect::<Vec<_>>()).normalized());
        assert_eq!(s_out, e_out, "etcdctl {s:?}");
    };
    both(&|id| vec!["lease".into(), "timetolive".into(), id.into(), "--keys".into()]);
    both(&|id| vec!["lease".into(), "timetolive".into(), id.into(), "-w".into(), "json".into()]);
    both(&|id| vec!["lease".into(), "keep-alive".into(), "--once".into(), id.into()]);
    // The two short leases from the start expire on their own clocks: wait
    // until both are gone on both rather than racing them.
    wait::until(Duration::from_secs(15), "both to list the long lease alone", || async {
        let (etcd, shoal) = (pair.etcd.run(&["lease", "list"]), pair.shoal.run(&["lease", "list"]));
        (etcd.stdout.starts_with("found 1 leases") && shoal.stdout.starts_with("found 1 leases")).then_some(())
    })
    .await;
    pair.same(&["lease", "list"]);
    both(&|id| vec!["lease".into(), "revoke".into(), id.into()]);
    pair.same(&["get", "leased", "--prefix", "-w", "json"]);
    // Unknown and revoked leases.
    both(&|id| vec!["lease".into(), "keep-alive".into(), "--once".into(), id.into()]);
    both(&|id| vec!["lease".into(), "timetolive".into(), id.into()]);
    pair.same(&["lease", "revoke", "1234"]);
    pair.same(&["lease", "timetolive", "1234", "-w", "json"]);
    pair.same(&["lease", "keep-alive", "--once", "1234"]);
    pair.same(&["put", "k", "v", "--lease=1234"]);
    pair.same(&["lease", "grant", "9000000001"]);

    // Expiry deletes the attached keys on both.
    let b = (
        lease_id(&pair.etcd.run(&["lease", "grant", "2"]).stdout),
        lease_id(&pair.shoal.run(&["lease", "grant", "2"]).stdout),
    );
    for (ctl, id) in [(&pair.etcd, &b.0), (&pair.shoal, &b.1)] {
        assert!(ctl.run(&["put", "short", "v", &format!("--lease={id}")]).success);
    }
    for ctl in [&pair.etcd, &pair.shoal] {
        wait::until(Duration::from_secs(15), "the short lease to expire", || async {
            ctl.run(&["get", "short", "--print-value-only"]).stdout.is_empty().then_some(())
        })
        .await;
    }
    pair.same(&["get", "short", "-w", "json"]);
    pair.same(&["lease", "list"]);
}
