//! etcdctl 3.4 (Debian's `etcd-client`), run as a real process.

use std::io::Write;
use std::process::{Command, Stdio};

/// What one etcdctl invocation printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub stdout: String,
    pub stderr: String,
    pub success: bool,
}

impl Output {
    /// The output with what legitimately differs between two clusters (member
    /// and cluster ids, the Raft term) replaced by placeholders.
    pub fn normalized(&self) -> Output {
        let json_ids = regex::Regex::new(r#""(cluster_id|member_id|raft_term)":\d+"#).expect("valid regex");
        let field_ids = regex::Regex::new(r#""(ClusterID|MemberID|RaftTerm)" : \d+"#).expect("valid regex");
        // etcdctl's client-side retry log lines carry a timestamp and a random target.
        let log_noise = regex::Regex::new(r#""(ts|target)":"[^"]*""#).expect("valid regex");
        // Lease ids are chosen by each server; remaining TTLs tick.
        let lease_hex = regex::Regex::new(r"\b[0-9a-f]{16}\b").expect("valid regex");
        let lease_json = regex::Regex::new(r#""(ID|id|lease)":-?[1-9]\d*"#).expect("valid regex");
        let remaining = regex::Regex::new(r"remaining\(\d+s\)").expect("valid regex");
        let ttl_json = regex::Regex::new(r#""ttl":\d+"#).expect("valid regex");
        let norm = |s: &str| {
            let s = json_ids.replace_all(s, "\"$1\":N");
            let s = field_ids.replace_all(&s, "\"$1\" : N");
            let s = lease_hex.replace_all(&s, "LEASE");
            let s = lease_json.replace_all(&s, "\"$1\":LEASE");
            let s = remaining.replace_all(&s, "remaining(Ns)");
            let s = ttl_json.replace_all(&s, "\"ttl\":N");
            log_noise.replace_all(&s, "\"$1\":\"-\"").into_owned()
        };
        Output { stdout: norm(&self.stdout), stderr: norm(&self.stderr), success: self.success }
    }
}

pub struct Etcdctl {
    endpoints: String,
}

impl Etcdctl {
    pub fn new(endpoints: impl Into<String>) -> Etcdctl {
        Etcdctl { endpoints: endpoints.into() }
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.run_with_stdin(args, None)
    }

    pub fn run_with_stdin(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let binary = std::env::var("ETCDCTL_BIN").unwrap_or_else(|_| "/usr/bin/etcdctl".into());
        let mut child = Command::new(&binary)
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoints))
            .args(args)
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {binary} (install Debian's etcd-client): {e}"));
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().expect("stdin pipe");
            pipe.write_all(input).expect("write etcdctl stdin");
        }
        let out = child.wait_with_output().expect("etcdctl output");
        Output {
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            success: out.status.success(),
        }
    }
}

/// A long-running etcdctl (`watch`, `lock`, `elect`), killed (by pid) when
/// dropped.
pub struct BackgroundEtcdctl {
    process: crate::process::Process,
    output: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl BackgroundEtcdctl {
    /// What it has printed so far (stdout and stderr, interleaved).
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.output).unwrap_or_default()
    }

    /// Waits until the output satisfies `done`, then stops etcdctl and returns the output.
    pub async fn finish(mut self, what: &str, done: impl Fn(&str) -> bool) -> String {
        self.wait_for(what, done).await;
        self.process.kill();
        self.output()
    }

    /// Waits until the output satisfies `done` (within 20 s); returns it.
    pub async fn wait_for(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let text = self.output();
            if done(&text) {
                return text;
            }
            assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}; got:\n{text}");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Interrupts etcdctl as Ctrl-C would: `lock` and `elect` then give up
    /// what they hold.
    pub fn interrupt(&self) {
        self.process.signal(nix::sys::signal::Signal::SIGINT);
    }

    /// Waits for etcdctl to exit on its own (a canceled watch, an interrupted
    /// lock or election), then returns the output.
    pub async fn exit(mut self) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while self.process.exited().is_none() {
            assert!(std::time::Instant::now() < deadline, "etcdctl watch did not exit:\n{}", self.output());
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        self.output()
    }
}

impl Etcdctl {
    /// Starts `etcdctl watch <args>` in the background.
    pub fn watch(&self, args: &[&str]) -> BackgroundEtcdctl {
        let mut all = vec!["watch"];
        all.extend_from_slice(args);
        self.background(&all)
    }

    /// Starts `etcdctl <args>` in the background.
    pub fn background(&self, args: &[&str]) -> BackgroundEtcdctl {
        let dir = tempfile::tempdir().expect("temp dir");
        let output = dir.path().join("etcdctl.out");
        let binary =
            std::path::PathBuf::from(std::env::var("ETCDCTL_BIN").unwrap_or_else(|_| "/usr/bin/etcdctl".into()));
        let mut all = vec![format!("--endpoints={}", self.endpoints)];
        all.extend(args.iter().map(|s| s.to_string()));
        let process = crate::process::Process::spawn(&binary, &all, output.clone());
        BackgroundEtcdctl { process, output, _dir: dir }
    }
}
