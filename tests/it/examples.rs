//! The examples in `examples/`, run as a user runs them. (`web.yaml` runs
//! in the `up` test, `backup-restore.sh` in the end-to-end tests.)

use std::path::{Path, PathBuf};
use std::time::Duration;

use shoal_tests::agents::{busybox_rootfs, can_run_containers, Agent};
use shoal_tests::cluster::shoalctl;
use shoal_tests::control_plane::Controllers;
use shoal_tests::process::Process;
use shoal_tests::{wait, Cluster, Etcdctl};

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples").join(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_greeter_answers_what_was_there_and_every_change_after() {
    let cluster = Cluster::start(1).await;
    let ctl = Etcdctl::new(cluster.endpoints_csv());
    assert!(ctl.run(&["put", "/greetings/ada", "Ada"]).success);
    let args = [example("greeter.sh").display().to_string(), cluster.endpoints_csv()];
    let greeter = Process::spawn_group(Path::new("bash"), &args, cluster.dir().join("greeter.log"));
    let reply = |name: &'static str| {
        let ctl = &ctl;
        move || async move {
            let got = ctl.run(&["get", &format!("/replies/{name}"), "--print-value-only"]);
            got.success.then(|| got.stdout.trim().to_string())
        }
    };
    let answer = |expected: &'static str, name: &'static str| {
        let reply = reply(name);
        async move {
            wait::until(Duration::from_secs(20), &format!("the answer to {name}"), || async {
                let got = reply().await?;
                (got == expected).then_some(())
            })
            .await
        }
    };
    answer("hello, Ada", "ada").await;
    assert!(ctl.run(&["put", "/greetings/grace", "Grace Hopper"]).success);
    answer("hello, Grace Hopper", "grace").await;
    assert!(ctl.run(&["del", "/greetings/ada"]).success);
    answer("", "ada").await;
    // The greeter logs each step after it has written it.
    let logged =
        |log: &str| log.contains("answered ada") && log.contains("answered grace") && log.contains("forgot ada");
    let outcome = wait::until(Duration::from_secs(20), "the greeter to log every step", || async {
        let log = std::fs::read_to_string(&greeter.log).unwrap_or_default();
        logged(&log).then_some(log)
    })
    .await;
    assert!(logged(&outcome), "{outcome}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_job_example_fails_once_then_completes_in_its_busybox_image() {
    if !can_run_containers() {
        return;
    }
    let cluster = Cluster::start(1).await;
    let endpoints = cluster.endpoints_csv();
    let image = busybox_rootfs(cluster.dir());
    let _agent = Agent::start(&endpoints, cluster.dir(), "n1", &[]);
    let _controllers = Controllers::start(&endpoints, cluster.dir(), "c1", &[]);
    let text = std::fs::read_to_string(example("job.yaml")).expect("the example");
    let manifest = cluster.dir().join("job.yaml");
    std::fs::write(&manifest, text.replace("/var/lib/shoal/images/busybox", &image.display().to_string()))
        .expect("write");
    let ctl = |args: &[&str]| {
        let mut all = vec!["--endpoints", &endpoints];
        all.extend_from_slice(args);
        shoalctl(&all)
    };
    let (ok, out, err) = ctl(&["apply", "-f", &manifest.display().to_string()]);
    assert!(ok && out == "pod/hello-job created\n", "{out}{err}");
    wait::until(Duration::from_secs(60), "the job to complete after one restart", || async {
        let (_, out, _) = ctl(&["get", "pod", "hello-job"]);
        let row: Vec<String> = out.lines().nth(1)?.split_whitespace().map(String::from).collect();
        (row.get(2).map(String::as_str) == Some("Completed") && row.get(3).map(String::as_str) == Some("1"))
            .then_some(())
    })
    .await;
    assert_eq!(ctl(&["logs", "hello-job"]).1, "second try: done\n");
    assert_eq!(ctl(&["logs", "hello-job", "--previous"]).1, "first try: failing\n");
}
