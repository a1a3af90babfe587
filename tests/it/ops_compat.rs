//! etcdctl 3.4 prints the same for Shoal as for etcd 3.4 when operating a
//! cluster: members, endpoints, alarms, defrag, snapshot save, move-leader.
//! Both sides are single-member clusters started with the same flags; what
//! legitimately differs (ids, ports, names, sizes, hashes, Raft indexes,
//! timings, the server version) is masked.

use regex::Regex;
use shoal_tests::etcdctl::Output;
use std::time::Duration;

use shoal_tests::ports::free_port;
use shoal_tests::wait;

use crate::etcdctl_compat::Pair;

fn mask(text: &str, sort_lines: bool) -> String {
    let rules: &[(&str, &str)] = &[
        (r"127\.0\.0\.1:\d+", "127.0.0.1:PORT"),
        (r"\b(ref|m0)\b", "NAME"),
        (r"Member +[0-9a-f]+ ", "Member ID "),
        (r"cluster +[0-9a-f]+\b", "cluster ID"),
        (r"(from|to) [0-9a-f]+\b", "$1 ID"),
        (r"(?m)^[0-9a-f]{10,16}, ", "ID, "),
        (r"\b3\.\d+\.\d+\b", "VERSION"),
        (r"\b\d+(\.\d+)? [kMG]?B\b", "SIZE"),
        (r"(?m)^(\S+, )[0-9a-f]{10,16}, ", "${1}ID, "),
        // An id with a leading zero is one digit short of its column's width
        // (and etcdctl pads it on the left).
        (r"\| +[0-9a-f]{10,16} +\|", "| ID |"),
        (r"(true|false)( *[,|] *)(true|false)( *[,|] *)\d+( *[,|] *)\d+( *[,|] *)\d+", "${1}${2}${3}${4}N${5}N${6}N"),
        (r"took = [0-9.]+[µmn]?s", "took = T"),
        (r"(?m)^(\S*127\.0\.0\.1:PORT), \d+$", "${1}, HASH"),
        (r"memberID:\d+", "memberID:N"),
        (r#""(ts|target|caller)":"[^"]*""#, "\"$1\":\"-\""),
    ];
    let mut out = text.to_string();
    for (pattern, replacement) in rules {
        out = Regex::new(pattern).expect("valid regex").replace_all(&out, *replacement).into_owned();
    }
    // Members are listed by id, and ids differ between the clusters.
    let initial = Regex::new(r#"ETCD_INITIAL_CLUSTER="([^"]*)""#).expect("valid regex");
    out = initial
        .replace_all(&out, |c: &regex::Captures<'_>| {
            let mut parts: Vec<&str> = c[1].split(',').collect();
            parts.sort();
            format!("ETCD_INITIAL_CLUSTER=\"{}\"", parts.join(","))
        })
        .into_owned();
    // Table columns are as wide as their widest cell, and cells differ.
    let runs = Regex::new(r"  +|--+").expect("valid regex");
    out = out
        .lines()
        .map(|l| {
            if l.starts_with('|') || l.starts_with('+') {
                runs.replace_all(l, |c: &regex::Captures<'_>| c[0][..1].to_string()).into_owned()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + if out.ends_with('\n') { "\n" } else { "" };
    if sort_lines {
        let mut lines: Vec<&str> = out.lines().collect();
        lines.sort();
        out = lines.join("\n");
    }
    out
}

fn masked(out: &Output, sort_lines: bool) -> Output {
    Output { stdout: mask(&out.stdout, sort_lines), stderr: mask(&out.stderr, sort_lines), success: out.success }
}

impl Pair {
    /// Runs the same command on both; the masked output must be identical.
    fn same_ops(&self, args: &[&str]) -> Output {
        let expected = masked(&self.etcd.run(args), args.contains(&"list"));
        let got = masked(&self.shoal.run(args), args.contains(&"list"));
        assert_eq!(got, expected, "etcdctl {args:?} differs from etcd 3.4");
        got
    }

    /// Runs a command on both with per-side arguments (member ids differ).
    fn same_each(&self, etcd: &[&str], shoal: &[&str]) -> Output {
        let expected = masked(&self.etcd.run(etcd), false);
        let got = masked(&self.shoal.run(shoal), false);
        assert_eq!(got, expected, "etcdctl {shoal:?} differs from etcd 3.4 ({etcd:?})");
        got
    }

    /// The id (hex) of the member whose `member list` line contains `needle`.
    fn member_ids(&self, needle: &str) -> (String, String) {
        let find = |ctl: &shoal_tests::Etcdctl| {
            let list = ctl.run(&["member", "list"]);
            list.stdout
                .lines()
                .find(|l| l.contains(needle))
                .and_then(|l| l.split(',').next())
                .unwrap_or_else(|| panic!("no member with {needle} in {list:?}"))
                .to_string()
        };
        (find(&self.etcd), find(&self.shoal))
    }
}

fn unix_second() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_commands_print_what_etcd_prints() {
    let (pair, _etcd, _cluster) = Pair::start_single(&[]).await;
    pair.same_ops(&["member", "list"]);
    pair.same_ops(&["member", "list", "-w", "table"]);
    let learner_url = format!("http://127.0.0.1:{}", free_port());
    let out = pair.same_ops(&["member", "add", "newbie", "--learner", &format!("--peer-urls={learner_url}")]);
    assert!(out.success, "{out:?}");
    let added_in = unix_second();
    pair.same_ops(&["member", "list"]);
    pair.same_ops(&["member", "list", "-w", "table"]);
    let (etcd_learner, shoal_learner) = pair.member_ids(&learner_url);
    // Not caught up (it never started): refused.
    let out = pair.same_each(&["member", "promote", &etcd_learner], &["member", "promote", &shoal_learner]);
    assert!(out.stderr.contains("can only promote a learner member which is in sync with leader"), "{out:?}");
    // A second learner is one too many.
    let second = format!("http://127.0.0.1:{}", free_port());
    let out = pair.same_ops(&["member", "add", "second", "--learner", &format!("--peer-urls={second}")]);
    assert!(out.stderr.contains("too many learner members in cluster"), "{out:?}");
    // Its peer URL is taken. etcd derives a new member's id from its URLs
    // and the current second, so within the second of the first add it
    // reports the id as taken instead: wait for the next second.
    wait::until(Duration::from_secs(3), "the next second", || async { (unix_second() > added_in).then_some(()) }).await;
    let out = pair.same_ops(&["member", "add", "again", "--learner", &format!("--peer-urls={learner_url}")]);
    assert!(!out.success, "{out:?}");
    pair.same_each(&["member", "remove", &etcd_learner], &["member", "remove", &shoal_learner]);
    pair.same_ops(&["member", "list"]);
    let out = pair.same_ops(&["member", "remove", "1234"]);
    assert!(out.stderr.contains("etcdserver: member not found"), "{out:?}");
    let out = pair.same_ops(&["member", "promote", "1234"]);
    assert!(!out.success, "{out:?}");
    // Move the only member's peer URL and back.
    let (etcd_self, shoal_self) = pair.member_ids("started");
    let moved = format!("--peer-urls=http://127.0.0.1:{}", free_port());
    pair.same_each(&["member", "update", &etcd_self, &moved], &["member", "update", &shoal_self, &moved]);
    pair.same_ops(&["member", "list"]);
    let out = pair.same_ops(&["member", "update", "1234", &moved]);
    assert!(out.stderr.contains("etcdserver: member not found"), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_defrag_snapshot_and_move_leader_print_what_etcd_prints() {
    let (pair, _etcd, _cluster) = Pair::start_single(&[]).await;
    for i in 0..5 {
        pair.same_ops(&["put", &format!("k{i}"), "v"]);
    }
    pair.same_ops(&["endpoint", "status"]);
    pair.same_ops(&["endpoint", "status", "-w", "table"]);
    pair.same_ops(&["endpoint", "health"]);
    pair.same_ops(&["endpoint", "hashkv"]);
    pair.same_ops(&["endpoint", "hashkv", "--rev", "3"]);
    let out = pair.same_ops(&["endpoint", "hashkv", "--rev", "100"]);
    assert!(out.stderr.contains("future revision"), "{out:?}");
    pair.same_ops(&["compaction", "3"]);
    let out = pair.same_ops(&["endpoint", "hashkv", "--rev", "3"]);
    assert!(out.stderr.contains("compacted"), "{out:?}");
    pair.same_ops(&["defrag"]);
    pair.same_ops(&["alarm", "list"]);
    pair.same_ops(&["alarm", "disarm"]);

    let dir = tempfile::tempdir().expect("temp dir");
    let (etcd_file, shoal_file) = (dir.path().join("etcd.db"), dir.path().join("shoal.db"));
    let etcd_save = pair.etcd.run(&["snapshot", "save", &etcd_file.display().to_string()]);
    let shoal_save = pair.shoal.run(&["snapshot", "save", &shoal_file.display().to_string()]);
    assert!(etcd_save.success && shoal_save.success, "{etcd_save:?}\n{shoal_save:?}");
    assert_eq!(
        shoal_save.stdout.replace("shoal.db", "X"),
        etcd_save.stdout.replace("etcd.db", "X"),
        "snapshot save prints what it prints for etcd"
    );

    let (etcd_self, shoal_self) = pair.member_ids("started");
    pair.same_each(&["move-leader", &etcd_self], &["move-leader", &shoal_self]);
    let out = pair.same_ops(&["move-leader", "1234"]);
    assert!(out.stderr.contains("etcdserver: bad leader transferee"), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nospace_alarm_prints_what_etcd_prints() {
    let quota = "--quota-backend-bytes=1000000";
    let (pair, _etcd, _cluster) = Pair::start_single(&[quota]).await;
    let value = "x".repeat(100_000);
    // Each side fills up at its own pace; the refusal reads the same.
    let fill = |ctl: &shoal_tests::Etcdctl| -> Output {
        for i in 0..100 {
            let out = ctl.run(&["put", &format!("big{i}"), &value]);
            if !out.success {
                return out;
            }
        }
        panic!("the quota was never reached");
    };
    let (etcd_refusal, shoal_refusal) = (fill(&pair.etcd), fill(&pair.shoal));
    assert_eq!(masked(&shoal_refusal, false), masked(&etcd_refusal, false));
    assert!(shoal_refusal.stderr.contains("etcdserver: mvcc: database space exceeded"), "{shoal_refusal:?}");
    pair.same_ops(&["alarm", "list"]);
    pair.same_ops(&["endpoint", "status"]);
    pair.same_ops(&["put", "small", "v"]);
    pair.same_ops(&["get", "small"]);
    pair.same_ops(&["alarm", "disarm"]);
    pair.same_ops(&["alarm", "list"]);
}
