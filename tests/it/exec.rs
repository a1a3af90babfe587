//! `shoalctl exec` into real containers: output streamed, exit codes kept,
//! the container's own user, environment, namespaces and seccomp filter,
//! standard input, kubectl's refusals, and grants that only the store can
//! give, each used once. Also what a container may not reach: host
//! processes, to trace or to signal.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;
use shoal_client::exec::{write_grant, Grant};
use shoal_proto::objects::node::LOGS_ADDRESS_ANNOTATION;
use shoal_proto::objects::Node;
use shoal_tests::agents::{can_run_containers, running_pid};
use shoal_tests::cluster::shoalctl_binary;
use shoal_tests::control_plane::store;
use shoal_tests::wait;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::one_node::{create, shoalctl, until_pod, OneNode};

/// `shoalctl exec ARGS...`: (exit code, stdout, stderr).
fn exec(node: &OneNode, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(shoalctl_binary())
        .args(["--endpoints", &node.cluster.endpoints_csv(), "exec"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run shoalctl exec");
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

/// Sends a raw exec request for grant `id` with `secret` to the agent;
/// returns the answer's status line.
async fn raw_exec(address: &str, id: &str, secret: &str) -> String {
    raw(address, format!("POST /exec/{id} HTTP/1.1\r\nAuthorization: Bearer {secret}\r\n\r\n").as_bytes()).await
}

/// Sends `head` to the agent; returns the answer's status line.
async fn raw(address: &str, head: &[u8]) -> String {
    let mut stream = tokio::net::TcpStream::connect(address).await.expect("reach the agent");
    let _ = stream.write_all(head).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).lines().next().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_runs_in_the_container_as_it_runs_and_returns_the_exit_code() {
    if !can_run_containers() {
        return;
    }
    let node = OneNode::start().await;
    let root = node.root.to_str().expect("utf-8 path");
    let sleeper = |name: &str| json!({"name": name, "image": root, "command": ["sleep", "600"]});
    let mut main = sleeper("main");
    main["env"] = json!([{"name": "GREETING", "value": "hello"}]);
    main["workingDir"] = json!("/tmp");
    main["securityContext"] = json!({"runAsUser": 1000});
    // Exec probes run as the container's own processes do: as its user, under its filter.
    let as_the_container = "[ \"$(id -u)\" = 1000 ] && grep -q 'Seccomp:.2' /proc/self/status";
    main["readinessProbe"] = json!({"exec": {"command": ["sh", "-c", as_the_container]}, "periodSeconds": 1});
    create(&node.api, "box", json!({"terminationGracePeriodSeconds": 1, "containers": [main, sleeper("side")]})).await;
    create(
        &node.api,
        "done",
        json!({"restartPolicy": "Never", "containers": [{"name": "main", "image": root, "command": ["true"]}]}),
    )
    .await;
    until_pod(&node.api, "box", "box's exec probe to pass", 30, |p| {
        p.status.iter().flat_map(|s| &s.container_statuses).any(|c| c.name == "main" && c.ready)
    })
    .await;

    // Output on both streams, the container's user, directory, variables,
    // hostname and seccomp filter, and the exit code.
    let script =
        "echo out; echo err >&2; id -u; pwd; echo $GREETING; hostname; grep Seccomp: /proc/self/status; exit 3";
    let (code, out, err) = exec(&node, &["box", "--", "sh", "-c", script]);
    assert_eq!(code, 3, "{out}{err}");
    assert_eq!(out.lines().collect::<Vec<_>>(), ["out", "1000", "/tmp", "hello", "box", "Seccomp:\t2"], "{err}");
    assert!(err.contains("Defaulted container \"main\" out of: main, side"), "{err}");
    assert!(err.contains("err\n") && err.contains("command terminated with exit code 3"), "{err}");

    // The other container, in its own PID namespace: its PID 1 is its sleep.
    let (code, out, err) = exec(&node, &["box", "-c", "side", "--", "cat", "/proc/1/cmdline"]);
    assert_eq!((code, out.as_str()), (0, "sleep\x00600\x00"), "{err}");

    // Standard input with -i.
    let mut child = Command::new(shoalctl_binary())
        .args(["--endpoints", &node.cluster.endpoints_csv(), "exec", "-i", "box", "--", "tr", "a-z", "A-Z"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run shoalctl exec -i");
    child.stdin.take().expect("stdin").write_all(b"shout\n").expect("write stdin");
    let out = child.wait_with_output().expect("exec -i ends");
    assert_eq!((out.status.code(), String::from_utf8_lossy(&out.stdout).as_ref()), (Some(0), "SHOUT\n"));

    // kubectl's refusals.
    let (code, _, err) = exec(&node, &["nope", "--", "true"]);
    assert!(code != 0 && err.contains("pods \"nope\" not found"), "{err}");
    let (code, _, err) = exec(&node, &["box", "-c", "nope", "--", "true"]);
    assert!(code != 0 && err.contains("container nope is not valid for pod box"), "{err}");
    let (code, _, err) = exec(&node, &["box", "--", "no-such-command"]);
    assert!(code != 0 && err.contains("executable file not found"), "{err}");
    until_pod(&node.api, "done", "done to succeed", 30, |p| {
        p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Succeeded")
    })
    .await;
    let (code, _, err) = exec(&node, &["done", "--", "true"]);
    assert!(code != 0 && err.contains("cannot exec into a container in a completed pod; current phase is Succeeded"));
    let (code, _, err) = exec(&node, &["box"]);
    assert!(code != 0 && err.contains("required"), "a command is required: {err}");

    // The agent runs only what the store granted, once, to the grant's holder.
    let store = store(&node.cluster.endpoints());
    let n1: Node = shoal_client::Api::new(store.clone()).get("", "n1").await.expect("node n1");
    let address = n1.metadata.annotations.get(LOGS_ADDRESS_ANNOTATION).cloned().expect("the agent's address");
    let pod = node.api.get("default", "box").await.expect("box");
    let grant = Grant {
        namespace: "default".into(),
        pod: "box".into(),
        pod_uid: pod.metadata.uid.clone(),
        container: "main".into(),
        command: vec!["true".into()],
        stdin: false,
        secret_sha256: String::new(),
    };
    assert!(raw_exec(&address, &"0".repeat(32), "x").await.contains("403"), "an unknown grant");
    assert!(raw_exec(&address, "../../etc", "x").await.contains("403"), "not a grant id");
    // Exactly the agent's limit of 16 KiB, with no end of line.
    let endless = [b"POST /exec/".as_slice(), &[b'a'; 16 * 1024 - 11]].concat();
    assert!(raw(&address, &endless).await.contains("400"), "a request head without end");
    let mut empty = grant.clone();
    empty.command.clear();
    let (id, secret) = write_grant(&store, "n1", empty).await.expect("write a grant");
    assert!(raw_exec(&address, &id, &secret).await.contains("403"), "a grant with no command");
    let (id, secret) = write_grant(&store, "n1", grant.clone()).await.expect("write a grant");
    // A wrong secret is refused without using the grant up for its holder.
    assert!(raw_exec(&address, &id, "wrong").await.contains("403"), "the wrong secret");
    assert!(raw_exec(&address, &id, &secret).await.contains("200"), "a good grant");
    assert!(raw_exec(&address, &id, &secret).await.contains("403"), "used once");
    let (id, secret) = write_grant(&store, "n2", grant).await.expect("write a grant");
    assert!(raw_exec(&address, &id, &secret).await.contains("403"), "another node's grant");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_goes_away_takes_its_command_along() {
    if !can_run_containers() {
        return;
    }
    let node = OneNode::start().await;
    let root = node.root.to_str().expect("utf-8 path");
    create(
        &node.api,
        "box",
        json!({"terminationGracePeriodSeconds": 1,
               "containers": [{"name": "main", "image": root, "command": ["sleep", "600"]}]}),
    )
    .await;
    until_pod(&node.api, "box", "box to run", 30, |p| running_pid(p).is_some()).await;
    let mut caller = Command::new(shoalctl_binary())
        .args(["--endpoints", &node.cluster.endpoints_csv(), "exec", "box", "--", "sleep", "777"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run shoalctl exec");
    let sleeping = || host_pids_running(b"sleep\x00777\x00");
    wait::until(Duration::from_secs(20), "the exec'd sleep to run", || async {
        (!sleeping().is_empty()).then_some(())
    })
    .await;
    caller.kill().expect("kill our shoalctl");
    let _ = caller.wait();
    wait::until(Duration::from_secs(20), "the exec'd sleep to be gone", || async {
        sleeping().is_empty().then_some(())
    })
    .await;
}

/// Host pids whose command line is exactly `cmdline`.
fn host_pids_running(cmdline: &[u8]) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == cmdline))
        .collect()
}

/// Tries, from inside a container, to trace and to signal `HOST_PID`, then
/// to trace its own child.
const TRACE: &str = r#"
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
PTRACE_ATTACH, PTRACE_DETACH = 16, 17
host = int(sys.argv[1])
traced = libc.ptrace(PTRACE_ATTACH, host, 0, 0)
trace_errno = ctypes.get_errno()
try:
    os.kill(host, 0)
    signal = "signalled"
except ProcessLookupError:
    signal = "no such process"
child = os.fork()
if child == 0:
    time.sleep(30)
    os._exit(0)
own = libc.ptrace(PTRACE_ATTACH, child, 0, 0)
os.kill(child, 9)
print(traced, os.strerror(trace_errno), signal, "own child", own, sep="|")
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_cannot_trace_or_signal_the_hosts_processes() {
    if !can_run_containers() {
        return;
    }
    let node = OneNode::start().await;
    // On the host's filesystem, for python3.
    create(
        &node.api,
        "tracer",
        json!({"terminationGracePeriodSeconds": 1,
               "containers": [{"name": "main", "image": "host", "command": ["sleep", "600"]}]}),
    )
    .await;
    until_pod(&node.api, "tracer", "tracer to run", 30, |p| running_pid(p).is_some()).await;
    let agent = node.agent.pid().expect("the agent's pid").to_string();
    let (code, out, err) = exec(&node, &["tracer", "--", "python3", "-c", TRACE, &agent]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "-1|No such process|no such process|own child|0", "{err}");
    // The agent was never stopped by a tracer.
    assert!(shoalctl(&node.cluster, &["get", "pods"]).0);
}
