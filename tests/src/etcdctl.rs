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
        let norm = |s: &str| {
            let s = json_ids.replace_all(s, "\"$1\":N");
            let s = field_ids.replace_all(&s, "\"$1\" : N");
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
