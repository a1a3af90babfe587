//! The JSON gateway, driven by real `curl` as etcd's docs drive it: the same
//! requests to etcd 3.4 and to Shoal answer the same JSON (ids and terms
//! aside), watches stream, and bad input gets grpc-gateway's error shape.

use std::io::Write;
use std::process::{Command, Stdio};

use shoal_tests::{Cluster, Etcd};

/// (HTTP status, body) of `curl -X POST url+path -d body`, with extra args.
/// The body goes through stdin (`-d @-`), so it may be large.
fn curl(url: &str, path: &str, body: &str, extra: &[&str]) -> (u16, String) {
    let mut child = Command::new("curl")
        .args(["-s", "-X", "POST", "-w", "\n%{http_code}", "--max-time", "10", "-d", "@-"])
        .args(extra)
        .arg(format!("{url}{path}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run curl (./dev test installs it)");
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(body.as_bytes()).expect("write the body");
    }
    let out = child.wait_with_output().expect("curl's output");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or((&text, "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// What differs between two clusters: ids, terms, lease ids.
fn normalized(text: &str) -> String {
    let ids = regex::Regex::new(r#""(cluster_id|member_id|raft_term|ID|leader|raftTerm)":"\d+""#).expect("regex");
    let urls = regex::Regex::new(r#"http://127\.0\.0\.1:\d+"#).expect("regex");
    let names = regex::Regex::new(r#""name":"[^"]*""#).expect("regex");
    let text = ids.replace_all(text, "\"$1\":\"N\"");
    let text = urls.replace_all(&text, "URL");
    names.replace_all(&text, "\"name\":\"NAME\"").into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_round_trips_answer_what_etcds_gateway_answers() {
    let (etcd, cluster) = tokio::join!(Etcd::start(), Cluster::start(1));
    let (etcd_url, shoal_url) = (etcd.client_url.clone(), cluster.endpoints()[0].clone());
    // Keys and values are base64: foo = Zm9v, bar = YmFy, foo0 = Zm9vMA==.
    let script: &[(&str, &str)] = &[
        ("/v3/kv/put", r#"{"key":"Zm9v","value":"YmFy"}"#),
        ("/v3/kv/put", r#"{"key": "Zm9v", "value": "YmF6", "prev_kv": true}"#),
        ("/v3/kv/range", r#"{"key":"Zm9v"}"#),
        ("/v3/kv/range", r#"{"key":"Zm9v","range_end":"Zm9w","count_only":true}"#),
        ("/v3/kv/range", r#"{"key":"Zm9v","countOnly":true,"keysOnly":true}"#),
        ("/v3/kv/range", r#"{"key":"AA==","range_end":"AA==","sort_order":"DESCEND","limit":"1"}"#),
        ("/v3/kv/range", r#"{"key":"Zm9v","revision":"2"}"#),
        (
            "/v3/kv/txn",
            r#"{"compare":[{"target":"CREATE","key":"Zm9v","createRevision":"2"}],
                "success":[{"requestPut":{"key":"Zm9v","value":"YmFy"}}],
                "failure":[{"requestRange":{"key":"Zm9v"}}]}"#,
        ),
        (
            "/v3/kv/txn",
            r#"{"compare":[{"target":"VALUE","key":"Zm9v","value":"eA=="}],"failure":[{"request_range":{"key":"Zm9v"}}]}"#,
        ),
        ("/v3/kv/deleterange", r#"{"key":"Zm9v","prev_kv":true}"#),
        ("/v3/kv/compaction", r#"{"revision":"2"}"#),
        ("/v3/kv/range", r#"{"key":"Zm9v","revision":"1"}"#),
        ("/v3/lease/grant", r#"{"TTL":"60","ID":"7"}"#),
        ("/v3/kv/put", r#"{"key":"Zm9vMA==","value":"YmFy","lease":"7"}"#),
        ("/v3/lease/timetolive", r#"{"ID":"7","keys":true}"#),
        ("/v3/kv/lease/revoke", r#"{"ID":"7"}"#),
        ("/v3/lease/revoke", r#"{"ID":"7"}"#),
        ("/v3/lease/keepalive", r#"{"ID":"7"}"#),
        ("/v3/cluster/member/list", "{}"),
        ("/v3/maintenance/alarm", r#"{"action":"GET"}"#),
        ("/v3/auth/authenticate", r#"{"name":"root","password":"x"}"#),
        // Bad input: no key, a wrong type, an unknown path.
        ("/v3/kv/range", r#"{"key":""}"#),
        ("/v3/kv/put", r#"{"value":"YmFy"}"#),
        ("/v3/lease/grant", r#"{"TTL":"99999999999"}"#),
        ("/v3/nope", "{}"),
    ];
    let ttl = regex::Regex::new(r#""TTL":"\d+""#).expect("regex");
    for (path, body) in script {
        let expected = curl(&etcd_url, path, body, &[]);
        let got = curl(&shoal_url, path, body, &[]);
        assert_eq!(got.0, expected.0, "HTTP status of {path} {body}");
        let (got, expected) = (normalized(&got.1), normalized(&expected.1));
        // A lease's remaining TTL ticks on its own clock.
        assert_eq!(ttl.replace_all(&got, "TTL"), ttl.replace_all(&expected, "TTL"), "{path} {body}");
    }

    // A watch streams one JSON object per line; this one replays history
    // from revision 2 and is cut by curl's own timeout.
    let watch = r#"{"create_request":{"key":"Zm9v","start_revision":"3"}}"#;
    let at = |url: &str| normalized(&curl(url, "/v3/watch", watch, &["--max-time", "2", "-N"]).1);
    let (expected, got) = (at(&etcd_url), at(&shoal_url));
    assert_eq!(got, expected);
    assert!(got.lines().count() >= 2 && got.contains("\"created\":true") && got.contains("\"events\""), "{got}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_json_tokens_and_oversized_bodies_are_refused() {
    let cluster = Cluster::start_with(1, &["--max-request-bytes", "1024", "--bcrypt-cost", "4"]).await;
    let url = cluster.endpoints()[0].clone();
    let shape = regex::Regex::new(r#"^\{"error":"[^"]+","message":"[^"]+","code":(\d+)\}$"#).expect("regex");
    let code_of = |body: &str| shape.captures(body).map(|c| c[1].to_string()).unwrap_or_else(|| body.to_string());

    for body in ["{bad", r#"{"key":5}"#, r#"{"key":"not base64!"}"#, "[1,2]", r#"{"limit":"x"}"#] {
        let (status, answer) = curl(&url, "/v3/kv/range", body, &[]);
        assert_eq!((status, code_of(&answer).as_str()), (400, "3"), "{body}: {answer}");
    }
    let big = format!(r#"{{"key":"Zm9v","value":"{}"}}"#, "A".repeat(1 << 20));
    let (status, answer) = curl(&url, "/v3/kv/put", &big, &[]);
    assert_eq!(status, 400, "{answer}");
    assert!(answer.contains("etcdserver: request is too large"), "{answer}");
    let (status, _) = curl(&url, "/v3/kv/range", r#"{"key":"Zm9v"}"#, &["-X", "GET"]);
    assert_eq!(status, 405);

    // With auth on: a token from /v3/auth/authenticate in Authorization.
    let adds = [
        ("/v3/auth/user/add", r#"{"name":"root","password":"pw"}"#),
        ("/v3/auth/user/grant", r#"{"user":"root","role":"root"}"#),
        ("/v3/auth/enable", "{}"),
    ];
    for (path, body) in adds {
        assert_eq!(curl(&url, path, body, &[]).0, 200, "{path}");
    }
    let (status, answer) = curl(&url, "/v3/kv/put", r#"{"key":"Zm9v","value":"YmFy"}"#, &[]);
    assert_eq!((status, answer.contains("user name is empty")), (400, true), "{answer}");
    let (status, answer) = curl(&url, "/v3/auth/authenticate", r#"{"name":"root","password":"pw"}"#, &[]);
    assert_eq!(status, 200, "{answer}");
    let token: serde_json::Value = serde_json::from_str(&answer).expect("json");
    let token = token["token"].as_str().expect("a token").to_string();
    let header = format!("Authorization: {token}");
    let (status, answer) = curl(&url, "/v3/kv/put", r#"{"key":"Zm9v","value":"YmFy"}"#, &["-H", &header]);
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = curl(&url, "/v3/kv/range", r#"{"key":"Zm9v"}"#, &["-H", "Authorization: forged.1"]);
    assert_eq!((status, code_of(&answer).as_str()), (401, "16"), "{answer}");
    assert!(answer.contains("etcdserver: invalid auth token"), "{answer}");
    let (status, answer) = curl(&url, "/v3/auth/authenticate", r#"{"name":"root","password":"no"}"#, &[]);
    assert_eq!(status, 400, "{answer}");
    assert!(answer.contains("authentication failed, invalid user ID or password"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_and_election_over_curl_answer_what_etcds_gateway_answers() {
    let (etcd, cluster) = tokio::join!(Etcd::start(), Cluster::start(1));
    let (etcd_url, shoal_url) = (etcd.client_url.clone(), cluster.endpoints()[0].clone());
    // job = am9i, job/1111 = am9iLzExMTE=, vote = dm90ZQ==, vote/1111 = dm90ZS8xMTEx,
    // a = YQ==, b = Yg==; lease 0x1111 = 4369. Revisions: the lock's put is 2,
    // the unlock 3, the campaign's put 4.
    let leader = r#"{"name":"dm90ZQ==","key":"dm90ZS8xMTEx","rev":"4","lease":"4369"}"#;
    let proclaim = format!(r#"{{"leader":{leader},"value":"Yg=="}}"#);
    let resign = format!(r#"{{"leader":{leader}}}"#);
    let script: &[(&str, &str)] = &[
        ("/v3/lease/grant", r#"{"TTL":"60","ID":"4369"}"#),
        ("/v3/lock/lock", r#"{"name":"am9i","lease":"4369"}"#),
        ("/v3/lock/unlock", r#"{"key":"am9iLzExMTE="}"#),
        ("/v3/election/leader", r#"{"name":"dm90ZQ=="}"#),
        ("/v3/election/campaign", r#"{"name":"dm90ZQ==","value":"YQ==","lease":"4369"}"#),
        ("/v3/election/proclaim", &proclaim),
        ("/v3/election/leader", r#"{"name":"dm90ZQ=="}"#),
        ("/v3/election/resign", &resign),
        ("/v3/election/proclaim", &proclaim),
        // Bad input.
        ("/v3/lock/lock", r#"{"name":"am9i","lease":"99"}"#),
        ("/v3/lock/unlock", "{}"),
        ("/v3/election/campaign", r#"{"name":"dm90ZQ==","lease":"99"}"#),
        ("/v3/election/resign", "{}"),
        ("/v3/election/proclaim", r#"{"value":"Yg=="}"#),
    ];
    for (path, body) in script {
        let expected = curl(&etcd_url, path, body, &[]);
        let got = curl(&shoal_url, path, body, &[]);
        assert_eq!(got.0, expected.0, "HTTP status of {path} {body}");
        assert_eq!(normalized(&got.1), normalized(&expected.1), "{path} {body}");
    }
    // Observe streams the leader, cut by curl's own timeout.
    let campaign = r#"{"name":"dm90ZQ==","value":"YQ==","lease":"4369"}"#;
    let observe = r#"{"name":"dm90ZQ=="}"#;
    let at = |url: &str| {
        assert_eq!(curl(url, "/v3/election/campaign", campaign, &[]).0, 200);
        normalized(&curl(url, "/v3/election/observe", observe, &["--max-time", "2", "-N"]).1)
    };
    let (expected, got) = (at(&etcd_url), at(&shoal_url));
    assert_eq!(got, expected);
    assert!(got.contains("\"result\"") && got.contains("\"kv\""), "{got}");
}
