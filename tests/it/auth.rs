//! Authentication and RBAC: etcdctl 3.4 prints the same for Shoal as for
//! etcd 3.4, every request kind is checked, tokens work on every member and
//! bad credentials are refused the way etcd refuses them.

use std::time::{Duration, Instant};

use etcd_client::{
    Client, ConnectOptions, GetOptions, LeaseGrantOptions, PermissionType, PutOptions, Txn, TxnOp, WatchOptions,
};
use shoal_proto::etcdserverpb::auth_client::AuthClient;
use shoal_proto::etcdserverpb::kv_client::KvClient;
use shoal_proto::etcdserverpb::{AuthRoleGrantPermissionRequest, AuthUserAddRequest, RangeRequest};
use shoal_tests::{wait, Cluster};
use tonic::Code;

use crate::etcdctl_compat::Pair;
use crate::watch::next_matching;

const ROOT: &[&str] = &["--user", "root:rootpw"];
const ALICE: &[&str] = &["--user", "alice:pw"];

fn with<'a>(who: &[&'a str], args: &[&'a str]) -> Vec<&'a str> {
    who.iter().chain(args).copied().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_prints_what_etcd_prints_for_users_roles_and_denials() {
    // One member each: etcdctl tries a failed login on every endpoint.
    let (pair, _etcd, _cluster) = Pair::start_single(&[]).await;
    pair.same(&["user", "add", "root:rootpw"]);
    pair.same(&["auth", "enable"]);
    pair.same(&["put", "foo", "bar"]);
    let admin: &[&[&str]] = &[
        &["put", "foo", "bar"],
        &["role", "add", "r1"],
        &["role", "add", "r1"],
        &["role", "add", "r2"],
        &["role", "grant-permission", "r1", "readwrite", "foo"],
        &["role", "grant-permission", "r1", "read", "--prefix", "bar/"],
        &["role", "grant-permission", "r1", "write", "zoo", "--from-key"],
        &["role", "grant-permission", "r1", "write", "a", "c"],
        &["role", "grant-permission", "r1", "readwrite", "a", "c"],
        &["role", "grant-permission", "nope", "read", "x"],
        &["role", "get", "r1"],
        &["role", "get", "r1", "-w", "json"],
        &["role", "get", "root"],
        &["role", "get", "nope"],
        &["role", "list"],
        &["role", "list", "-w", "json"],
        &["user", "add", "alice:pw"],
        &["user", "add", "alice:other"],
        &["user", "add", "bob", "--no-password"],
        &["user", "grant-role", "alice", "r1"],
        &["user", "grant-role", "alice", "r2"],
        &["user", "grant-role", "alice", "nope"],
        &["user", "grant-role", "nobody", "r1"],
        &["user", "get", "alice"],
        &["user", "get", "alice", "--detail"],
        &["user", "get", "alice", "-w", "json"],
        &["user", "get", "bob", "-w", "json"],
        &["user", "get", "nobody"],
        &["user", "list"],
        &["user", "list", "-w", "json"],
    ];
    for args in admin {
        pair.same(&with(ROOT, args));
    }
    let as_alice: &[&[&str]] = &[
        &["put", "foo", "1"],
        &["get", "foo"],
        &["put", "foo", "2", "--prev-kv"],
        &["put", "bar/x", "1"],
        &["get", "bar/", "--prefix"],
        &["get", "bar/x"],
        &["get", "", "--prefix"],
        &["put", "zoo/1", "z"],
        &["get", "zoo/1"],
        &["put", "b", "in-a-c"],
        &["del", "b"],
        &["del", "foo", "--prev-kv"],
        &["del", "a", "d"],
        &["role", "list"],
        &["user", "list"],
        &["user", "add", "mallory:x"],
        &["user", "get", "alice"],
        &["user", "get", "root"],
        &["role", "get", "r1"],
        &["role", "get", "root"],
        &["auth", "disable"],
        &["compaction", "1"],
    ];
    for args in as_alice {
        pair.same(&with(ALICE, args));
    }
    // A txn is refused when any branch touches what the user may not.
    let txn_in = b"value(\"foo\") = \"1\"\n\nput foo 3\n\nput bar/x 3\n\n";
    pair.same_with_stdin(&with(ALICE, &["txn"]), Some(txn_in));
    let txn_ok = b"value(\"foo\") = \"1\"\n\nput foo 3\n\nget bar/x\n\n";
    pair.same_with_stdin(&with(ALICE, &["txn"]), Some(txn_ok));
    for args in [&["--user", "alice:wrong", "get", "foo"][..], &["--user", "nobody:x", "get", "foo"]] {
        pair.same(args);
    }
    let changes: &[&[&str]] = &[
        &["user", "revoke-role", "alice", "r2"],
        &["user", "revoke-role", "alice", "r2"],
        &["role", "revoke-permission", "r1", "foo"],
        &["role", "revoke-permission", "r1", "foo"],
        &["role", "revoke-permission", "r1", "bar/", "--prefix"],
        &["role", "revoke-permission", "nope", "foo"],
        &["role", "delete", "root"],
        &["user", "delete", "root"],
        &["user", "revoke-role", "root", "root"],
        &["role", "delete", "r2"],
        &["role", "delete", "r2"],
        &["role", "get", "r1"],
    ];
    for args in changes {
        pair.same(&with(ROOT, args));
    }
    pair.same(&with(ALICE, &["put", "foo", "4"]));
    pair.same_with_stdin(&with(ROOT, &["user", "passwd", "alice", "--interactive=false"]), Some(b"pw2\n"));
    pair.same(&with(ALICE, &["get", "foo"]));
    pair.same(&["--user", "alice:pw2", "get", "zoo/1"]);
    pair.same(&["--user", "alice:pw2", "put", "zoo/2", "z"]);
    pair.same(&with(ROOT, &["role", "delete", "r1"]));
    pair.same(&with(ROOT, &["user", "get", "alice"]));
    pair.same(&with(ROOT, &["user", "delete", "alice"]));
    pair.same(&with(ROOT, &["user", "delete", "alice"]));
    pair.same(&with(ROOT, &["auth", "disable"]));
    pair.same(&["put", "foo", "after"]);
    pair.same(&["get", "foo"]);
    pair.same(&["user", "list"]);
}

async fn login(endpoints: &[String], user: &str, password: &str) -> Result<Client, etcd_client::Error> {
    Client::connect(endpoints, Some(ConnectOptions::new().with_user(user, password))).await
}

/// Root with its role, auth enabled, and `alice` with readwrite on `app/`.
async fn secured(cluster: &Cluster) -> Client {
    let mut open = cluster.client().await;
    open.user_add("root", "rootpw", None).await.expect("add root");
    open.user_grant_role("root", "root").await.expect("grant root");
    open.role_add("app").await.expect("add role");
    let perm = etcd_client::Permission::new(PermissionType::Readwrite, "app/").with_prefix();
    open.role_grant_permission("app", perm).await.expect("grant");
    open.user_add("alice", "pw", None).await.expect("add alice");
    open.user_grant_role("alice", "app").await.expect("grant app");
    open.auth_enable().await.expect("enable");
    login(&cluster.endpoints(), "root", "rootpw").await.expect("root login")
}

fn denied<T>(result: Result<T, etcd_client::Error>) -> String {
    match result {
        Err(etcd_client::Error::GRpcStatus(s)) => format!("{:?}: {}", s.code(), s.message()),
        Err(other) => panic!("expected a gRPC error, got {other:?}"),
        Ok(_) => panic!("expected a gRPC error, the request succeeded"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_kind_is_checked_and_tokens_work_on_every_member() {
    let cluster = Cluster::start(3).await;
    let mut root = secured(&cluster).await;
    const DENIED: &str = "PermissionDenied: etcdserver: permission denied";

    // A login on one member is honoured by every member.
    for i in 0..3 {
        let endpoint = [cluster.endpoints()[i].clone()];
        let mut alice = login(&endpoint, "alice", "pw").await.expect("alice logs in");
        alice.put(format!("app/{i}"), "v", None).await.expect("alice writes under app/");
        assert_eq!(denied(alice.put("other", "v", None).await), DENIED);
    }
    let mut alice = login(&cluster.endpoints(), "alice", "pw").await.expect("login");

    // Range, put with prev_kv, delete, txn (both branches), nested ranges.
    assert_eq!(alice.get("app/0", None).await.expect("read").kvs().len(), 1);
    assert_eq!(denied(alice.get("app", Some(GetOptions::new().with_prefix())).await), DENIED);
    assert_eq!(denied(alice.get("", Some(GetOptions::new().with_all_keys())).await), DENIED);
    alice.delete("app/0", None).await.expect("delete own key");
    assert_eq!(denied(alice.delete("other", None).await), DENIED);
    let txn = Txn::new().and_then([TxnOp::put("app/t", "1", None)]).or_else([TxnOp::delete("other", None)]);
    assert_eq!(denied(alice.txn(txn).await), DENIED);
    let txn = Txn::new().when([etcd_client::Compare::value("secret", etcd_client::CompareOp::Equal, "x")]);
    assert_eq!(denied(alice.txn(txn).await), DENIED, "compares read");
    let txn = Txn::new().and_then([TxnOp::put("app/t", "1", None)]).or_else([TxnOp::get("app/t", None)]);
    alice.txn(txn).await.expect("a txn within app/");

    // Watches: a permitted one sees events; a forbidden one is created and
    // canceled at once with etcd's reason.
    // The put waits for the created answer: a watch starts at the revision
    // its member has when the create arrives, so a put before that is missed.
    let mut stream = alice.watch("app/w", None).await.expect("watch app/w");
    let created = next_matching(&mut stream, |_| true).await;
    assert!(created.created() && !created.canceled());
    root.put("app/w", "1", None).await.expect("root writes");
    let events = next_matching(&mut stream, |_| true).await;
    assert_eq!(events.events().len(), 1);
    let mut stream = alice.watch("", Some(WatchOptions::new().with_all_keys())).await.expect("watch call");
    let refused = next_matching(&mut stream, |_| true).await;
    assert!(refused.canceled() && refused.created());
    assert_eq!(refused.cancel_reason(), "rpc error: code = PermissionDenied desc = etcdserver: permission denied");

    // Leases: revoking or extending needs write access to the attached keys.
    let lease = root.lease_grant(60, None).await.expect("grant").id();
    root.put("secret", "s", Some(PutOptions::new().with_lease(lease))).await.expect("attach");
    assert_eq!(denied(alice.lease_revoke(lease).await), DENIED);
    assert_eq!(denied(alice.put("app/l", "v", Some(PutOptions::new().with_lease(lease))).await), DENIED);
    let keys = etcd_client::LeaseTimeToLiveOptions::new().with_keys();
    assert_eq!(denied(alice.lease_time_to_live(lease, Some(keys)).await), DENIED);
    let own = alice.lease_grant(60, Some(LeaseGrantOptions::new())).await.expect("anyone may grant").id();
    alice.put("app/l", "v", Some(PutOptions::new().with_lease(own))).await.expect("attach own");
    alice.lease_revoke(own).await.expect("revoke own");

    // Admin-only requests.
    assert_eq!(denied(alice.user_list().await), DENIED);
    // etcd 3.4's maintenance service answers with its auth package's error.
    assert_eq!(denied(alice.hash_kv(0).await), "Unknown: auth: permission denied");
    assert_eq!(denied(alice.member_remove(1).await), DENIED);
    alice.status().await.expect("status is open to every user");

    // A revoked role takes effect at once, on every member.
    root.user_revoke_role("alice", "app").await.expect("revoke");
    assert_eq!(denied(alice.get("app/1", None).await), DENIED);

    // Users and roles survive a restart and reach a member that was down.
    let mut cluster = cluster;
    cluster.kill(2);
    wait::until(Duration::from_secs(30), "carol to be added with a member down", || {
        let mut root = root.clone();
        async move {
            match root.user_add("carol", "pw", None).await {
                Ok(_) => Some(()),
                // A retry of an add whose answer was lost on the dead member's connection.
                Err(etcd_client::Error::GRpcStatus(s)) => s.message().contains("already exists").then_some(()),
                Err(_) => None,
            }
        }
    })
    .await;
    cluster.restart(2);
    let member = [cluster.endpoints()[2].clone()];
    wait::until(Duration::from_secs(30), "carol to log in at the restarted member", || async {
        login(&member, "carol", "pw").await.ok()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_and_bad_requests_get_etcds_errors() {
    let cluster = Cluster::start_with(1, &["--auth-token-ttl", "1", "--bcrypt-cost", "4"]).await;
    let endpoint = cluster.endpoints()[0].clone();
    let mut open = cluster.client().await;
    // Before auth is on, logging in is refused; bad names are refused.
    assert_eq!(
        denied(login(&cluster.endpoints(), "root", "x").await),
        "FailedPrecondition: etcdserver: authentication is not enabled"
    );
    assert_eq!(denied(open.auth_enable().await), "FailedPrecondition: etcdserver: root user does not exist");
    assert_eq!(denied(open.user_add("", "x", None).await), "InvalidArgument: etcdserver: user name is empty");
    assert_eq!(denied(open.role_add("").await), "InvalidArgument: etcdserver: role name is empty");
    open.user_add("root", "rootpw", None).await.expect("add root");
    assert_eq!(denied(open.auth_enable().await), "FailedPrecondition: etcdserver: root user does not have root role");
    let mut raw = AuthClient::connect(endpoint.clone()).await.expect("connect");
    let no_perm = raw.role_grant_permission(AuthRoleGrantPermissionRequest { name: "x".into(), perm: None }).await;
    let status = no_perm.expect_err("no permission given");
    assert_eq!((status.code(), status.message()), (Code::InvalidArgument, "etcdserver: permission not given"));
    open.user_grant_role("root", "root").await.expect("grant root");
    open.auth_enable().await.expect("enable");

    // Without a token: "user name is empty"; with a made-up one: Unauthenticated.
    let mut kv = KvClient::connect(endpoint.clone()).await.expect("connect");
    let range = || RangeRequest { key: b"k".to_vec(), ..Default::default() };
    let status = kv.range(range()).await.expect_err("no token");
    assert_eq!((status.code(), status.message()), (Code::InvalidArgument, "etcdserver: user name is empty"));
    let mut forged = tonic::Request::new(range());
    forged.metadata_mut().insert("token", "abcdefghijklmnop.1".parse().expect("ascii"));
    let status = kv.range(forged).await.expect_err("forged token");
    assert_eq!((status.code(), status.message()), (Code::Unauthenticated, "etcdserver: invalid auth token"));

    // A token expires after --auth-token-ttl (1 s here) of disuse. Every use
    // extends a token's life, so each probe spends a token never used before.
    let refreshing = ConnectOptions::new().with_user("root", "rootpw").with_auto_token_refresh(true);
    let mut root = Client::connect(cluster.endpoints(), Some(refreshing)).await.expect("login");
    let mut auth = AuthClient::connect(endpoint.clone()).await.expect("connect");
    let mut unused = Vec::new();
    for _ in 0..80 {
        let req = shoal_proto::etcdserverpb::AuthenticateRequest { name: "root".into(), password: "rootpw".into() };
        unused.push(auth.authenticate(req).await.expect("authenticate").into_inner().token);
    }
    let with_token = |token: &str| {
        let mut request = tonic::Request::new(range());
        request.metadata_mut().insert("token", token.parse().expect("ascii"));
        request
    };
    kv.range(with_token(&unused.pop().expect("a token"))).await.expect("a fresh token works");
    let unused = std::sync::Mutex::new(unused);
    wait::until(Duration::from_secs(30), "unused tokens to expire", || {
        let (mut kv, token) = (kv.clone(), unused.lock().expect("lock").pop());
        let request = token.map(|t| with_token(&t));
        async move { kv.range(request?).await.err().filter(|s| s.code() == Code::Unauthenticated) }
    })
    .await;
    // The crate's client held an older token, expired too; it logs in again.
    root.put("k", "v", None).await.expect("the client crate logs in again by itself");

    // Guessing passwords is slowed down: each failure doubles the wait.
    let started = Instant::now();
    for _ in 0..5 {
        let guess = login(&cluster.endpoints(), "root", "guess").await;
        assert_eq!(denied(guess), "InvalidArgument: etcdserver: authentication failed, invalid user ID or password");
    }
    // 100 + 200 + 400 + 800 ms of enforced waiting before the 2nd to 5th guesses.
    assert!(started.elapsed() >= Duration::from_millis(1500), "guesses were not slowed: {:?}", started.elapsed());
    let status = raw
        .user_add(AuthUserAddRequest { name: "eve".into(), password: "x".into(), ..Default::default() })
        .await
        .expect_err("no token");
    assert_eq!((status.code(), status.message()), (Code::InvalidArgument, "etcdserver: user name is empty"));
    login(&cluster.endpoints(), "root", "rootpw").await.expect("the right password still works");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_roles_and_the_auth_switch_survive_a_snapshot_restore() {
    let mut old = Cluster::start(1).await;
    drop(secured(&old).await);
    let ctl = shoal_tests::Etcdctl::new(old.endpoints_csv());
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("backup.db");
    let saved = ctl.run(&with(&["--user", "root:rootpw"], &["snapshot", "save", &file.display().to_string()]));
    assert!(saved.success, "{saved:?}");
    old.kill(0);

    let mut new = Cluster::prepare(1, &[]);
    crate::backup::restore_member(&file, &new, 0);
    new.restart(0);
    new.leader().await;
    let ctl = shoal_tests::Etcdctl::new(new.endpoints_csv());
    let anonymous = ctl.run(&["put", "app/x", "1"]);
    assert!(anonymous.stderr.contains("etcdserver: user name is empty"), "auth is still on: {anonymous:?}");
    let alice = ["--user", "alice:pw"];
    assert!(ctl.run(&with(&alice, &["put", "app/x", "1"])).success, "alice's role came back");
    let denied = ctl.run(&with(&alice, &["put", "other", "1"]));
    assert!(denied.stderr.contains("etcdserver: permission denied"), "{denied:?}");
    let users = ctl.run(&with(ROOT, &["user", "list"]));
    assert_eq!(users.stdout, "alice\nroot\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_tokens_are_verified_by_every_member_go_stale_and_expire() {
    let keys = tempfile::tempdir().expect("temp dir");
    let key = rcgen::KeyPair::generate().expect("an ES256 key");
    let (private, public) = (keys.path().join("jwt.pem"), keys.path().join("jwt.pub"));
    std::fs::write(&private, key.serialize_pem()).expect("write the key");
    std::fs::write(&public, key.public_key_pem()).expect("write the public key");
    let option = format!("jwt,pub-key={},priv-key={},sign-method=ES256,ttl=5s", public.display(), private.display());
    let cluster = Cluster::start_with(3, &["--auth-token", &option, "--bcrypt-cost", "4"]).await;
    let mut root = secured(&cluster).await;
    let endpoints = cluster.endpoints();

    // Issued by member 0, honoured by member 2 with nothing replicated.
    let mut auth = AuthClient::connect(endpoints[0].clone()).await.expect("connect");
    let login = shoal_proto::etcdserverpb::AuthenticateRequest { name: "alice".into(), password: "pw".into() };
    let token = auth.authenticate(login.clone()).await.expect("authenticate").into_inner().token;
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    let mut kv = KvClient::connect(endpoints[2].clone()).await.expect("connect");
    let with_token = |token: &str| {
        let mut request = tonic::Request::new(RangeRequest { key: b"app/x".to_vec(), ..Default::default() });
        request.metadata_mut().insert("token", token.parse().expect("ascii"));
        request
    };
    kv.range(with_token(&token)).await.expect("member 2 accepts member 0's token");
    let forged = format!("{}x", token);
    let status = kv.range(with_token(&forged)).await.expect_err("forged");
    assert_eq!((status.code(), status.message()), (Code::Unauthenticated, "etcdserver: invalid auth token"));

    // A change to users or roles makes older tokens stale; clients log in again.
    root.role_add("other").await.expect("add a role");
    wait::until(Duration::from_secs(10), "the old token to be stale on member 2", || {
        let mut kv = kv.clone();
        let request = with_token(&token);
        async move {
            let status = kv.range(request).await.err()?;
            (status.message() == "etcdserver: revision of auth store is old").then_some(())
        }
    })
    .await;
    let token = auth.authenticate(login).await.expect("log in again").into_inner().token;
    kv.range(with_token(&token)).await.expect("a fresh token works");
    // A JWT's life is fixed at login (5 s here), however often it is used.
    wait::until(Duration::from_secs(30), "the token to expire", || {
        let mut kv = kv.clone();
        let request = with_token(&token);
        async move { kv.range(request).await.err().filter(|s| s.code() == Code::Unauthenticated) }
    })
    .await;
    let ctl = shoal_tests::Etcdctl::new(cluster.endpoints_csv());
    assert!(ctl.run(&["--user", "alice:pw", "put", "app/y", "1"]).success, "etcdctl logs in with JWTs too");
}
