//! TLS: etcdctl over https prints what it prints for etcd 3.4; client
//! certificates are required, checked and name the user; rotated
//! certificates are picked up; members replicate over TLS peer links.

use std::time::Duration;

use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
use shoal_tests::cluster::{member_flags, shoal_binary};
use shoal_tests::etcdctl::Output;
use shoal_tests::ports::free_port;
use shoal_tests::process::Process;
use shoal_tests::tls::{etcdctl, start, Pair, Pki, Server};
use shoal_tests::{wait, Etcdctl};

fn run(ctl: &Etcdctl, tls: &[String], args: &[&str]) -> Output {
    let all: Vec<&str> = tls.iter().map(String::as_str).chain(args.iter().copied()).collect();
    ctl.run(&all)
}

fn server_flags(pki: &Pki, server: &Pair) -> Vec<String> {
    vec![
        format!("--cert-file={}", server.cert.display()),
        format!("--key-file={}", server.key.display()),
        format!("--trusted-ca-file={}", pki.ca_file.display()),
        "--client-cert-auth".to_string(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_over_tls_prints_what_etcd_prints_and_bad_certificates_are_refused() {
    let pki = Pki::new("ca");
    let server = pki.issue("server", "server", false);
    let client = pki.issue("client", "client", false);
    let flags = server_flags(&pki, &server);
    let ((_etcd, etcd_url), (_shoal, shoal_url)) = tokio::join!(
        start(Server::Etcd, pki.dir(), &flags, &pki.ca_file, Some(&client)),
        start(Server::Shoal, pki.dir(), &flags, &pki.ca_file, Some(&client)),
    );
    let (etcd, tls) = etcdctl(&etcd_url, &pki.ca_file, Some(&client));
    let (shoal, _) = etcdctl(&shoal_url, &pki.ca_file, Some(&client));
    let script: &[&[&str]] = &[
        &["put", "foo", "bar"],
        &["put", "foo", "baz", "--prev-kv", "-w", "json"],
        &["get", "foo"],
        &["get", "foo", "-w", "json"],
        &["del", "foo"],
        &["lease", "grant", "60"],
    ];
    for args in script {
        let (expected, got) = (run(&etcd, &tls, args).normalized(), run(&shoal, &tls, args).normalized());
        assert_eq!(got, expected, "etcdctl {args:?} over TLS");
    }

    // Without a client certificate, with one of a foreign CA, with an
    // expired one, or trusting the wrong server CA: refused, as by etcd.
    let foreign = Pki::new("foreign");
    let strangers = [
        (None, pki.ca_file.clone()),
        (Some(foreign.issue("stranger", "client", false)), pki.ca_file.clone()),
        (Some(pki.issue("expired", "client", true)), pki.ca_file.clone()),
        (Some(client.clone()), foreign.ca_file.clone()),
    ];
    for (cert, ca) in strangers {
        for url in [&etcd_url, &shoal_url] {
            let (ctl, tls) = etcdctl(url, &ca, cert.as_ref());
            let out = run(&ctl, &tls, &["--dial-timeout=1s", "get", "foo"]);
            assert!(!out.success, "{url} accepted {cert:?} / {}: {out:?}", ca.display());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_certificate_names_the_user_and_rotated_certificates_are_picked_up() {
    let pki = Pki::new("ca");
    let server = pki.issue("server", "server", false);
    let (admin, root, nobody) =
        (pki.issue("admin", "admin", false), pki.issue("root", "root", false), pki.issue("nobody", "nobody", false));
    let mut flags = server_flags(&pki, &server);
    let metrics_url = format!("https://127.0.0.1:{}", free_port());
    flags.push(format!("--listen-metrics-urls={metrics_url}"));
    let (_shoal, url) = start(Server::Shoal, pki.dir(), &flags, &pki.ca_file, Some(&admin)).await;
    let (ctl, as_admin) = etcdctl(&url, &pki.ca_file, Some(&admin));
    for args in [&["user", "add", "root:pw"][..], &["user", "grant-role", "root", "root"], &["auth", "enable"]] {
        let out = run(&ctl, &as_admin, args);
        assert!(out.success, "{args:?}: {out:?}");
    }
    // With auth on and no token, the certificate's CN is the user.
    let (_, as_root) = etcdctl(&url, &pki.ca_file, Some(&root));
    assert!(run(&ctl, &as_root, &["put", "k", "v"]).success);
    let (_, as_nobody) = etcdctl(&url, &pki.ca_file, Some(&nobody));
    let denied = run(&ctl, &as_nobody, &["put", "k", "v"]);
    assert!(!denied.success && denied.stderr.contains("etcdserver: permission denied"), "{denied:?}");

    // The etcd-client crate over TLS, with the root certificate.
    let pem = |p: &std::path::Path| std::fs::read(p).expect("read pem");
    let tls = TlsOptions::new()
        .ca_certificate(Certificate::from_pem(pem(&pki.ca_file)))
        .identity(Identity::from_pem(pem(&root.cert), pem(&root.key)));
    let mut client = Client::connect([url.clone()], Some(ConnectOptions::new().with_tls(tls))).await.expect("tls");
    assert_eq!(client.get("k", None).await.expect("get").kvs()[0].value(), b"v");

    // shoalctl takes etcdctl's TLS flags, for keys and for objects alike.
    let shoalctl = |args: &[&str]| {
        let tls = [
            format!("--cacert={}", pki.ca_file.display()),
            format!("--cert={}", root.cert.display()),
            format!("--key={}", root.key.display()),
        ];
        let out = std::process::Command::new(shoal_tests::cluster::shoalctl_binary())
            .arg(format!("--endpoints={url}"))
            .args(&tls)
            .args(args)
            .output()
            .expect("run shoalctl");
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    assert!(shoalctl(&["put", "k2", "v2"]).0);
    let (ok, got) = shoalctl(&["get", "k2"]);
    assert!(ok && got.contains("v2"), "{got}");
    assert!(shoalctl(&["get", "nodes"]).0, "objects through the client crate over TLS");

    // An https metrics URL serves with the client port's certificate.
    let scraped = std::process::Command::new("curl")
        .args(["-s", "--max-time", "10", "--cacert"])
        .arg(&pki.ca_file)
        .arg("--cert")
        .arg(&admin.cert)
        .arg("--key")
        .arg(&admin.key)
        .arg(format!("{metrics_url}/metrics"))
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&scraped.stdout);
    assert!(text.contains("etcd_server_has_leader 1"), "{text}");

    // A server certificate from another CA, written over the files, is
    // served to new connections without a restart.
    let next = Pki::new("next");
    let rotated = next.issue("rotated", "server", false);
    let (_, trusting_next) = etcdctl(&url, &next.ca_file, Some(&root));
    assert!(!run(&ctl, &trusting_next, &["--dial-timeout=1s", "get", "k"]).success);
    std::fs::copy(&rotated.key, &server.key).expect("rotate the key");
    std::fs::copy(&rotated.cert, &server.cert).expect("rotate the cert");
    wait::until(Duration::from_secs(30), "the rotated certificate to be served", || {
        let ok = run(&ctl, &trusting_next, &["get", "k"]).success;
        async move { ok.then_some(()) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_replicate_over_peer_auto_tls() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
    let cluster: Vec<String> =
        ports.iter().enumerate().map(|(i, (_, p))| format!("m{i}=https://127.0.0.1:{p}")).collect();
    let mut members = Vec::new();
    for (i, (client, peer)) in ports.iter().enumerate() {
        let (client_url, peer_url) = (format!("http://127.0.0.1:{client}"), format!("https://127.0.0.1:{peer}"));
        let name = format!("m{i}");
        let mut args = member_flags(&name, &dir.path().join(&name), &client_url, &peer_url, &cluster.join(","));
        args.push("--peer-auto-tls".to_string());
        members.push((Process::spawn(&shoal_binary(), &args, dir.path().join(format!("m{i}.log"))), client_url));
    }
    let first = Etcdctl::new(members[0].1.clone());
    wait::until(Duration::from_secs(30), "a write through TLS peers", || {
        let ok = first.run(&["put", "k", "over-tls"]).success;
        async move { ok.then_some(()) }
    })
    .await;
    let last = Etcdctl::new(members[2].1.clone());
    let got = last.run(&["get", "k", "--print-value-only"]);
    assert_eq!(got.stdout, "over-tls\n", "{got:?}");
    assert!(dir.path().join("m0/fixtures/peer/cert.pem").exists(), "auto TLS keeps its certificate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_client_cert_auth_a_certificate_names_no_user() {
    let pki = Pki::new("ca");
    let server = pki.issue("server", "server", false);
    let root = pki.issue("root", "root", false);
    // A trusted CA but no --client-cert-auth: certificates are optional and name nobody.
    let flags = vec![
        format!("--cert-file={}", server.cert.display()),
        format!("--key-file={}", server.key.display()),
        format!("--trusted-ca-file={}", pki.ca_file.display()),
    ];
    let (_shoal, url) = start(Server::Shoal, pki.dir(), &flags, &pki.ca_file, Some(&root)).await;
    let (ctl, tls) = etcdctl(&url, &pki.ca_file, Some(&root));
    for args in [&["user", "add", "root:pw"][..], &["user", "grant-role", "root", "root"], &["auth", "enable"]] {
        assert!(run(&ctl, &tls, args).success, "{args:?}");
    }
    let anonymous = run(&ctl, &tls, &["put", "k", "v"]);
    assert!(anonymous.stderr.contains("etcdserver: user name is empty"), "{anonymous:?}");
    assert!(run(&ctl, &tls, &["--user", "root:pw", "put", "k", "v"]).success);
}
