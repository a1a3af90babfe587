//! Real containers run by a real `shoal-agent`: isolation, restarts and
//! backoff, limits, graceful stops, probes and bad specs. These need root
//! (namespaces, cgroups) and return early without it.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use shoal_client::Api;
use shoal_proto::objects::pod::ContainerStatus;
use shoal_proto::objects::Pod;
use shoal_tests::agents::{alive, can_run_containers, running_pid, Agent};
use shoal_tests::control_plane::store;
use shoal_tests::{wait, Cluster};

use crate::one_node::{create, shoalctl, until_pod, OneNode};

fn container(pod: &Pod) -> ContainerStatus {
    pod.status.as_ref().and_then(|s| s.container_statuses.first().cloned()).unwrap_or_default()
}

fn waiting_reason(pod: &Pod) -> Option<String> {
    container(pod).state.and_then(|s| s.waiting).and_then(|w| w.reason)
}

fn terminated(pod: &Pod) -> Option<shoal_proto::objects::pod::StateTerminated> {
    container(pod).state.and_then(|s| s.terminated)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_is_pid_one_with_its_own_hostname_and_sees_only_its_image() {
    if !can_run_containers() {
        return;
    }
    let OneNode { cluster, agent: _agent, api, root } = OneNode::start().await;
    let script = "echo pid=$$; echo host=$(hostname); echo procs=$(ls /proc | grep -c '^[0-9]'); \
                  ls /work /var/tmp 2>&1 | head -1; touch /root-write 2>&1 || echo root-read-only; \
                  touch /tmp/x && echo tmp-writable";
    create(
        &api,
        "isolated",
        json!({"restartPolicy": "Never", "containers": [{
            "name": "main", "image": root.to_str(), "command": ["sh", "-c", script]
        }]}),
    )
    .await;
    let done = until_pod(&api, "isolated", "the container to finish", 30, |p| p.phase() == "Succeeded").await;
    assert_eq!(terminated(&done).map(|t| t.exit_code), Some(0));
    let (ok, logs, err) = shoalctl(&cluster, &["logs", "isolated"]);
    assert!(ok, "{err}");
    assert!(logs.contains("pid=1\n"), "the container is PID 1 in its namespace: {logs}");
    assert!(logs.contains("host=isolated\n"), "its hostname is the pod's name: {logs}");
    // Only the shell and its pipeline's processes: no host process is visible.
    let procs: usize = logs.lines().find_map(|l| l.strip_prefix("procs=")?.parse().ok()).expect("procs line");
    assert!(procs <= 5, "a container sees only its own processes, saw {procs}: {logs}");
    assert!(logs.contains("No such file or directory"), "the host's files are invisible: {logs}");
    assert!(logs.contains("root-read-only"), "the image's root is read-only: {logs}");
    assert!(logs.contains("tmp-writable"), "its /tmp is its own and writable: {logs}");

    // The host image sees the host's files, with the same isolation of processes.
    create(&api, "on-host", json!({"restartPolicy": "Never", "containers": [{
        "name": "main", "image": "host", "command": ["/bin/sh", "-c", "echo pid=$$; test -d /usr/bin && echo host-files; ls /tmp | wc -l"]
    }]}))
    .await;
    until_pod(&api, "on-host", "the host-image container to finish", 30, |p| p.phase() == "Succeeded").await;
    let (_, logs, _) = shoalctl(&cluster, &["logs", "pod/on-host"]);
    assert!(logs.contains("pid=1\n") && logs.contains("host-files"), "{logs}");
    assert!(logs.ends_with("0\n"), "the pod's /tmp starts empty: {logs}");

    // Bad log requests get kubectl's answers.
    let (ok, _, err) = shoalctl(&cluster, &["logs", "isolated", "-c", "nope"]);
    assert!(!ok && err.contains("container nope is not valid for pod isolated"), "{err}");
    let (ok, _, err) = shoalctl(&cluster, &["logs", "isolated", "--previous"]);
    assert!(!ok && err.contains("previous terminated container \"main\" in pod \"isolated\" not found"), "{err}");
    let (ok, _, err) = shoalctl(&cluster, &["logs", "missing"]);
    assert!(!ok && err.contains("pods \"missing\" not found"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_container_restarts_and_crash_loops_back_off_longer_each_time() {
    if !can_run_containers() {
        return;
    }
    let cluster = Cluster::start(1).await;
    let _agent = Agent::start(&cluster.endpoints_csv(), cluster.dir(), "n1", &[]);
    let api: Api<Pod> = Api::new(store(&cluster.endpoints()));
    create(
        &api,
        "sleeper",
        json!({"containers": [{"name": "main", "command": ["/bin/sh", "-c", "echo started; exec sleep 3600"]}]}),
    )
    .await;
    let first = until_pod(&api, "sleeper", "the container to run", 30, |p| running_pid(p).is_some()).await;
    let pid = running_pid(&first).expect("pid");
    // Kill it only once it has written its output: a pid is reported as soon
    // as the process exists, before the shell has run a line.
    wait::until(Duration::from_secs(30), "the first instance's output", || async {
        let (_, logs, _) = shoalctl(&cluster, &["logs", "sleeper"]);
        (logs == "started\n").then_some(())
    })
    .await;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL).expect("kill -9");
    let again = until_pod(&api, "sleeper", "a restart", 30, |p| {
        container(p).restart_count == 1 && running_pid(p).is_some_and(|p| p != pid)
    })
    .await;
    assert!(!alive(pid));
    let (_, previous, _) = shoalctl(&cluster, &["logs", "sleeper", "--previous"]);
    assert_eq!(previous, "started\n", "the previous instance's output is kept");
    assert_eq!(again.phase(), "Running");

    // A container that keeps failing waits longer before each restart.
    create(&api, "crasher", json!({"containers": [{"name": "main", "command": ["/bin/sh", "-c", "exit 3"]}]})).await;
    let mut seen_at: Vec<(i32, Instant)> = Vec::new();
    let mut saw_backoff = false;
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen_at.len() < 4 && Instant::now() < deadline {
        if let Ok(Some(pod)) = api.get_opt("default", "crasher").await {
            let count = container(&pod).restart_count;
            if seen_at.last().is_none_or(|(c, _)| *c != count) {
                seen_at.push((count, Instant::now()));
            }
            saw_backoff |= waiting_reason(&pod).as_deref() == Some("CrashLoopBackOff");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(seen_at.len() >= 4, "three restarts within a minute: {seen_at:?}");
    assert!(saw_backoff, "the reason CrashLoopBackOff is shown while it waits");
    let gaps: Vec<Duration> = seen_at.windows(2).map(|w| w[1].1 - w[0].1).collect();
    // Backoff 1s, 2s, 4s: each wait is longer than the one before.
    assert!(gaps[2] > gaps[0] + Duration::from_millis(1500), "backoff grows: {gaps:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_hog_is_oom_killed_and_a_fork_bomb_is_held_by_the_pids_limit() {
    if !can_run_containers() {
        return;
    }
    let OneNode { cluster, agent, api, root } = OneNode::start().await;
    create(
        &api,
        "hog",
        json!({"restartPolicy": "Never", "containers": [{
            "name": "main", "image": root.to_str(),
            "command": ["sh", "-c", "x=0123456789; while true; do x=$x$x; done"],
            "resources": {"limits": {"memory": "32Mi"}}
        }]}),
    )
    .await;
    let hog = until_pod(&api, "hog", "the memory hog to be killed", 60, |p| p.phase() == "Failed").await;
    let end = terminated(&hog).expect("terminated");
    assert_eq!(end.reason.as_deref(), Some("OOMKilled"), "{end:?}");
    assert_eq!(end.exit_code, 137);

    create(&api, "bomb", json!({"restartPolicy": "Never", "containers": [{
        "name": "main", "image": root.to_str(),
        "command": ["sh", "-c", "i=0; while [ $i -lt 100 ]; do sleep 600 & i=$((i+1)); done; echo forked; sleep 600"],
        "resources": {"limits": {"pids": "16"}}
    }]}))
    .await;
    // The shell forks until the limit refuses it (which ends it).
    until_pod(&api, "bomb", "the fork bomb to be stopped", 30, |p| p.phase() == "Failed").await;
    let pids_cgroup = std::fs::read_dir(agent.data_dir.join("containers"))
        .expect("containers")
        .filter_map(|e| e.ok())
        .find_map(|e| {
            let launch = shoal_agent::runtime::linux::record::Record::new(e.path()).launch().ok()?;
            (launch.pod_name == "bomb").then_some(launch.cgroups.into_iter().find(|c| c.join("pids.max").exists())?)
        })
        .expect("the bomb's pids cgroup");
    let read = |file: &str| std::fs::read_to_string(pids_cgroup.join(file)).unwrap_or_default();
    let peak: usize = read("pids.peak").trim().parse().expect("pids.peak");
    assert!((8..=16).contains(&peak), "the pids limit holds the bomb at 16 processes: {peak}");
    assert!(read("pids.events").lines().any(|l| l.starts_with("max ") && l != "max 0"), "{}", read("pids.events"));
    let (_, logs, _) = shoalctl(&cluster, &["logs", "bomb"]);
    assert!(logs.contains("can't fork") || logs.contains("Resource temporarily unavailable"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_container_gets_its_grace_period_and_one_that_ignores_it_is_killed() {
    if !can_run_containers() {
        return;
    }
    let cluster = Cluster::start(1).await;
    let _agent = Agent::start(&cluster.endpoints_csv(), cluster.dir(), "n1", &[]);
    let api: Api<Pod> = Api::new(store(&cluster.endpoints()));
    let polite = "trap 'echo stopping; sleep 1; exit 0' TERM; while true; do sleep 0.1; done";
    let stubborn = "trap '' TERM; while true; do sleep 0.1; done";
    // A long grace for the polite one, so that stopping on its own is told
    // apart from being killed at the deadline even on a busy machine.
    for (name, script, grace) in [("polite", polite, 20), ("stubborn", stubborn, 4)] {
        create(
            &api,
            name,
            json!({"terminationGracePeriodSeconds": grace, "containers": [{
                "name": "main", "command": ["/bin/sh", "-c", script]
            }]}),
        )
        .await;
    }
    let mut pids = Vec::new();
    for name in ["polite", "stubborn"] {
        let pod = until_pod(&api, name, "the container to run", 30, |p| running_pid(p).is_some()).await;
        pids.push(running_pid(&pod).expect("pid"));
    }
    for (i, name) in ["polite", "stubborn"].into_iter().enumerate() {
        let started = Instant::now();
        let (ok, out, err) = shoalctl(&cluster, &["delete", "pod", name]);
        assert!(ok, "{err}");
        assert_eq!(out, format!("pod \"{name}\" deleted\n"));
        let took = started.elapsed();
        assert!(api.get_opt("default", name).await.expect("get").is_none(), "deleted once stopped");
        assert!(!alive(pids[i]), "no process of {name} survives");
        if name == "polite" {
            assert!(
                took >= Duration::from_secs(1) && took < Duration::from_secs(15),
                "it stopped on its own: {took:?}"
            );
        } else {
            assert!(took >= Duration::from_secs(4), "killed at the deadline, not before: {took:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_liveness_probe_restarts_and_readiness_flips_ready() {
    if !can_run_containers() {
        return;
    }
    let OneNode { cluster: _cluster, agent, api, root } = OneNode::start().await;
    // Healthy for a while, then not.
    create(
        &api,
        "liveness",
        json!({"terminationGracePeriodSeconds": 1, "containers": [{
            "name": "main", "image": root.to_str(),
            "command": ["sh", "-c", "touch /tmp/healthy; sleep 2; rm /tmp/healthy; sleep 600"],
            "livenessProbe": {"exec": {"command": ["cat", "/tmp/healthy"]}, "periodSeconds": 1, "failureThreshold": 2}
        }]}),
    )
    .await;
    until_pod(&api, "liveness", "a restart by the liveness probe", 30, |p| container(p).restart_count >= 1).await;

    // Ready only while the probe passes: a tcp probe on the pod's own network.
    let pod = create(
        &api,
        "readiness",
        json!({"hostNetwork": false, "containers": [{
            "name": "main", "image": root.to_str(),
            "command": ["sh", "-c", "while [ ! -e /tmp/serve ]; do sleep 0.2; done; exec httpd -f -p 8080 -h /tmp"],
            "ports": [{"name": "web", "containerPort": 8080}],
            "readinessProbe": {"tcpSocket": {"port": "web"}, "periodSeconds": 1}
        }]}),
    )
    .await;
    let running = until_pod(&api, "readiness", "the container to run", 30, |p| running_pid(p).is_some()).await;
    assert!(!running.is_ready(), "not ready before the probe passes");
    let tmp = agent.data_dir.join("pods").join(&pod.metadata.uid).join("tmp");
    std::fs::write(tmp.join("serve"), "").expect("let it serve");
    until_pod(&api, "readiness", "Ready", 30, Pod::is_ready).await;
    let pid = running_pid(&running).expect("pid");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL).expect("kill");
    until_pod(&api, "readiness", "not Ready once the server is gone", 30, |p| !p.is_ready()).await;

    // Ready only while GET /ready answers 2xx: an HTTP probe, run in the pod's network.
    let pod = create(
        &api,
        "http-readiness",
        json!({"hostNetwork": false, "containers": [{
            "name": "main", "image": root.to_str(),
            "command": ["httpd", "-f", "-p", "8080", "-h", "/tmp"],
            "ports": [{"name": "web", "containerPort": 8080}],
            "readinessProbe": {
                "httpGet": {"path": "/ready", "port": "web", "httpHeaders": [{"name": "X-Probe", "value": "1"}]},
                "periodSeconds": 1, "failureThreshold": 1
            }
        }]}),
    )
    .await;
    let running = until_pod(&api, "http-readiness", "the server to run", 30, |p| running_pid(p).is_some()).await;
    let tmp = agent.data_dir.join("pods").join(&pod.metadata.uid).join("tmp");
    assert!(!running.is_ready(), "not Ready while GET /ready is 404");
    std::fs::write(tmp.join("ready"), "ok").expect("serve /ready");
    until_pod(&api, "http-readiness", "Ready once GET /ready is 200", 30, Pod::is_ready).await;
    std::fs::remove_file(tmp.join("ready")).expect("remove /ready");
    until_pod(&api, "http-readiness", "not Ready once GET /ready is 404 again", 30, |p| !p.is_ready()).await;
}

/// What a container may do, written to its /tmp: its bounding set and
/// no_new_privs, its uid and gid, and whether mount, hostname and reading
/// /proc/kcore worked.
const TRY_EVERYTHING: &str = "grep -E '^(CapBnd|NoNewPrivs|Seccomp):' /proc/self/status > /tmp/status; \
    id -u > /tmp/uid; id -g > /tmp/gid; \
    (mkdir -p /tmp/m && mount -t tmpfs none /tmp/m 2>/dev/null && echo mounted || echo refused) > /tmp/mount; \
    (hostname other 2>/dev/null && echo renamed || echo refused) > /tmp/hostname; \
    (head -c 1 /proc/kcore 2>/dev/null | wc -c) > /tmp/kcore; \
    (unshare -U true 2>/dev/null && echo made || echo refused) > /tmp/userns; \
    printf 'not a module' > /tmp/x.ko; \
    (insmod /tmp/x.ko 2>&1 | grep -q 'not permitted' && echo refused || echo tried) > /tmp/module; \
    (echo 1 > /proc/sys/kernel/ns_last_pid 2>/dev/null && echo written || echo refused) > /tmp/sysctl; \
    sleep 600";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_keep_dockers_capabilities_no_new_privs_and_seccomp_unless_privileged() {
    if !can_run_containers() {
        return;
    }
    let OneNode { cluster: _cluster, agent, api, root } = OneNode::start().await;
    let run = |security: Value| {
        json!({"terminationGracePeriodSeconds": 1, "containers": [{
            "name": "main", "image": root.to_str(), "command": ["sh", "-c", TRY_EVERYTHING],
            "securityContext": security
        }]})
    };
    let cases = [
        ("confined", json!({})),
        ("user", json!({"runAsUser": 1000, "runAsGroup": 2000})),
        ("admin", json!({"capabilities": {"add": ["SYS_ADMIN"], "drop": ["KILL"]}})),
        ("privileged", json!({"privileged": true})),
    ];
    let mut uids = Vec::new();
    for (name, security) in &cases {
        uids.push(create(&api, name, run(security.clone())).await.metadata.uid);
    }
    let read = |uid: &str, file: &str| {
        std::fs::read_to_string(agent.data_dir.join("pods").join(uid).join("tmp").join(file)).unwrap_or_default()
    };
    for (uid, (name, _)) in uids.iter().zip(&cases) {
        until_pod(&api, name, "the container to run", 30, |p| running_pid(p).is_some()).await;
        wait::until(Duration::from_secs(20), "the container to try everything", || async {
            (!read(uid, "sysctl").is_empty()).then_some(())
        })
        .await;
    }
    let status = |uid: &str| read(uid, "status");
    // Docker's default set, and nothing gained through exec.
    assert!(status(&uids[0]).contains("CapBnd:\t00000000a80425fb"), "{}", status(&uids[0]));
    assert!(status(&uids[0]).contains("NoNewPrivs:\t1"));
    // Under the default seccomp filter: no user namespace, though the host
    // lets anyone make one, and no module (not even a garbage one, which the
    // kernel would turn down for its format).
    assert!(status(&uids[0]).contains("Seccomp:\t2"), "{}", status(&uids[0]));
    let host_makes_user_namespaces =
        std::process::Command::new("unshare").args(["-U", "true"]).status().is_ok_and(|s| s.success());
    let refusals = [("mount", "refused"), ("hostname", "refused"), ("sysctl", "refused"), ("kcore", "0")];
    for (file, refused) in refusals.into_iter().chain([("userns", "refused"), ("module", "refused")]) {
        assert_eq!(read(&uids[0], file).trim(), refused, "{file} in a confined container");
    }
    assert_eq!((read(&uids[1], "uid").trim(), read(&uids[1], "gid").trim()), ("1000", "2000"));
    // SYS_ADMIN added (bit 21), KILL (bit 5) dropped: mount works, hostname too (its own UTS namespace).
    assert!(status(&uids[2]).contains("CapBnd:\t00000000a82425db"), "{}", status(&uids[2]));
    assert_eq!(read(&uids[2], "mount").trim(), "mounted");
    assert!(status(&uids[2]).contains("Seccomp:\t2"), "{}", status(&uids[2]));
    if host_makes_user_namespaces {
        // The filter lets SYS_ADMIN make namespaces, as Docker's does.
        assert_eq!(read(&uids[2], "userns").trim(), "made");
    }
    // Privileged: every capability, no no_new_privs, /proc as the kernel gives it.
    assert!(status(&uids[3]).contains("NoNewPrivs:\t0"), "{}", status(&uids[3]));
    assert!(!status(&uids[3]).contains("CapBnd:\t00000000a80425fb"));
    assert_eq!(read(&uids[3], "mount").trim(), "mounted");
    assert_eq!(read(&uids[3], "hostname").trim(), "renamed");
    assert!(status(&uids[3]).contains("Seccomp:\t0"), "{}", status(&uids[3]));
    assert_eq!(read(&uids[3], "module").trim(), "tried");
    if host_makes_user_namespaces {
        assert_eq!(read(&uids[3], "userns").trim(), "made");
    }
    // The host's hostname is untouched by any of them.
    assert_ne!(std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim(), "other");

    // runAsNonRoot without a user to run as is refused, as kubelet refuses it.
    let message = config_error(&api, "nonroot", &root, json!({"runAsNonRoot": true})).await;
    assert!(message.contains("container has runAsNonRoot and image will run as root"), "{message}");

    // A seccomp profile from a file on the node is not supported: said so, not ignored.
    let localhost = json!({"seccompProfile": {"type": "Localhost", "localhostProfile": "audit.json"}});
    let message = config_error(&api, "localhost", &root, localhost).await;
    assert!(message.contains("Localhost profiles are not supported"), "{message}");
}

/// Creates pod `name` whose container has `security`; waits until it is
/// refused with `CreateContainerConfigError`, and returns the message.
async fn config_error(api: &Api<Pod>, name: &str, root: &std::path::Path, security: Value) -> String {
    create(
        api,
        name,
        json!({"containers": [{"name": "main", "image": root.to_str(), "command": ["sleep", "600"],
               "securityContext": security}]}),
    )
    .await;
    let refused = until_pod(api, name, "the pod to be refused", 30, |p| {
        waiting_reason(p).as_deref() == Some("CreateContainerConfigError")
    })
    .await;
    container(&refused).state.and_then(|s| s.waiting).and_then(|w| w.message).unwrap_or_default()
}

/// A Python HTTPS server on 8443 with a self-signed certificate, passed in
/// its environment; its readiness probe is HTTPS, as kubelet runs it.
const HTTPS_SERVER: &str = r#"cd /tmp && printf '%s' "$CERT" > c.pem && printf '%s' "$KEY" > k.pem && exec python3 -c '
import http.server, ssl
server = http.server.HTTPServer(("0.0.0.0", 8443), http.server.SimpleHTTPRequestHandler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain("c.pem", "k.pem")
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()'"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_readiness_probe_passes_on_a_self_signed_server_and_fails_on_a_plain_one() {
    if !can_run_containers() {
        return;
    }
    let OneNode { cluster: _cluster, agent: _agent, api, root: _root } = OneNode::start().await;
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["web".into()]).expect("params").self_signed(&key).expect("cert");
    let https = |port: &str| json!({"httpGet": {"path": "/", "port": port, "scheme": "HTTPS"}, "periodSeconds": 1});
    create(
        &api,
        "tls",
        json!({"terminationGracePeriodSeconds": 1, "containers": [{
            "name": "main", "command": ["sh", "-c", HTTPS_SERVER],
            "env": [{"name": "CERT", "value": cert.pem()}, {"name": "KEY", "value": key.serialize_pem()}],
            "ports": [{"name": "https", "containerPort": 8443}],
            "readinessProbe": https("https")
        }]}),
    )
    .await;
    until_pod(&api, "tls", "Ready through an HTTPS probe", 60, Pod::is_ready).await;
    // The same probe against a server that speaks plain HTTP never passes.
    create(
        &api,
        "plain",
        json!({"terminationGracePeriodSeconds": 1, "containers": [{
            "name": "main", "command": ["sh", "-c", "cd /tmp && exec python3 -m http.server 8443"],
            "ports": [{"name": "https", "containerPort": 8443}],
            "readinessProbe": https("https")
        }]}),
    )
    .await;
    until_pod(&api, "plain", "the plain server to run", 30, |p| running_pid(p).is_some()).await;
    let deadline = Instant::now() + Duration::from_secs(4);
    while Instant::now() < deadline {
        let pod = api.get("default", "plain").await.expect("plain");
        assert!(!pod.is_ready(), "an HTTPS probe of a plain HTTP server fails");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_startup_probe_holds_the_other_probes_and_restarts_a_container_that_never_starts() {
    if !can_run_containers() {
        return;
    }
    let OneNode { cluster: _cluster, agent, api, root } = OneNode::start().await;
    // The liveness probe would restart it at its first failure; while the
    // startup probe (which counts its tries) has not passed, it does not run.
    let pod = create(
        &api,
        "slow-start",
        json!({"terminationGracePeriodSeconds": 1, "containers": [{
            "name": "main", "image": root.to_str(),
            "command": ["sleep", "600"],
            "startupProbe": {"exec": {"command": ["sh", "-c", "echo try >> /tmp/tries; test -f /tmp/started"]},
                             "periodSeconds": 1, "failureThreshold": 60},
            "livenessProbe": {"exec": {"command": ["test", "-f", "/tmp/alive"]}, "periodSeconds": 1, "failureThreshold": 1}
        }]}),
    )
    .await;
    let tmp = agent.data_dir.join("pods").join(&pod.metadata.uid).join("tmp");
    let tries = || std::fs::read_to_string(tmp.join("tries")).map(|t| t.lines().count()).unwrap_or(0);
    wait::until(Duration::from_secs(30), "the startup probe to fail three times", || async {
        (tries() >= 3).then_some(())
    })
    .await;
    let starting = api.get("default", "slow-start").await.expect("get");
    assert_eq!(container(&starting).restart_count, 0, "the liveness probe waited for the startup probe");
    assert!(!starting.is_ready(), "not ready before it has started");
    std::fs::write(tmp.join("alive"), "").expect("alive");
    std::fs::write(tmp.join("started"), "").expect("started");
    until_pod(&api, "slow-start", "Ready once started", 30, Pod::is_ready).await;
    // Started, the liveness probe now runs.
    std::fs::remove_file(tmp.join("alive")).expect("remove");

    until_pod(&api, "slow-start", "a restart by the liveness probe", 30, |p| container(p).restart_count >= 1).await;

    // A startup probe that never passes restarts the container.
    create(
        &api,
        "never-starts",
        json!({"terminationGracePeriodSeconds": 1, "containers": [{
            "name": "main", "image": root.to_str(),
            "command": ["sleep", "600"],
            "startupProbe": {"exec": {"command": ["false"]}, "periodSeconds": 1, "failureThreshold": 2}
        }]}),
    )
    .await;
    until_pod(&api, "never-starts", "a restart by the startup probe", 30, |p| container(p).restart_count >= 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_pod_specs_fail_with_a_clear_reason_and_nothing_crashes() {
    if !can_run_containers() {
        return;
    }
    let OneNode { cluster: _cluster, agent, api, root } = OneNode::start().await;
    let cases = [
        ("no-command", json!({"name": "main", "image": root.to_str()}), "CreateContainerError", "has no command"),
        (
            "no-image",
            json!({"name": "main", "image": "/no/such/rootfs", "command": ["sh"]}),
            "ErrImagePull",
            "no such directory",
        ),
        (
            "tiny-memory",
            json!({"name": "main", "command": ["/bin/true"], "resources": {"limits": {"memory": "1"}}}),
            "CreateContainerError",
            "below the 4Mi",
        ),
        ("no-binary", json!({"name": "main", "command": ["/no/such/binary"]}), "RunContainerError", "No such file"),
    ];
    for (name, container, _, _) in &cases {
        create(&api, name, json!({"containers": [container]})).await;
    }
    for (name, _, reason, message) in cases {
        let pod = until_pod(&api, name, reason, 30, |p| waiting_reason(p).as_deref() == Some(reason)).await;
        let waiting = container(&pod).state.and_then(|s| s.waiting).expect("waiting");
        assert!(waiting.message.as_deref().is_some_and(|m| m.contains(message)), "{name}: {waiting:?}");
    }
    // With restartPolicy Never, a command that cannot run fails the pod.
    create(
        &api,
        "never",
        json!({"restartPolicy": "Never", "containers": [{"name": "main", "command": ["/no/such/binary"]}]}),
    )
    .await;
    let failed = until_pod(&api, "never", "the pod to fail", 30, |p| p.phase() == "Failed").await;
    assert_eq!(terminated(&failed).and_then(|t| t.reason).as_deref(), Some("StartError"));
    // The agent is still there and still runs good pods.
    create(&api, "good", json!({"containers": [{"name": "main", "command": ["/bin/sleep", "600"]}]})).await;
    until_pod(&api, "good", "a good pod to run", 30, |p| p.is_ready()).await;
    assert!(agent.pid().is_some_and(alive), "the agent did not crash:\n{}", agent.log());
}
