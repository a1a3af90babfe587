//! A Shoal cluster of real `shoal` processes on loopback.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use etcd_client::Client;

use crate::ports::free_port;
use crate::process::Process;
use crate::wait;

/// The `shoal` binary of this build: next to the test binary's `deps/` dir,
/// or wherever `SHOAL_BIN` says.
pub fn shoal_binary() -> PathBuf {
    binary("shoal", "SHOAL_BIN")
}

/// The `shoalctl` binary of this build, or wherever `SHOALCTL_BIN` says.
pub fn shoalctl_binary() -> PathBuf {
    binary("shoalctl", "SHOALCTL_BIN")
}

/// The `shoal-controllers` binary of this build, or wherever `SHOAL_CONTROLLERS_BIN` says.
pub fn controllers_binary() -> PathBuf {
    binary("shoal-controllers", "SHOAL_CONTROLLERS_BIN")
}

/// The `shoal-agent` binary of this build, or wherever `SHOAL_AGENT_BIN` says.
pub fn agent_binary() -> PathBuf {
    binary("shoal-agent", "SHOAL_AGENT_BIN")
}

fn binary(name: &str, env: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(env) {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(|deps| deps.parent()).expect("target dir");
    let path = dir.join(name);
    assert!(path.exists(), "{} is missing: build it first with `cargo build --bins`", path.display());
    path
}

/// Runs `shoalctl` with `args`; returns (success, stdout, stderr).
pub fn shoalctl(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(shoalctl_binary()).args(args).output().expect("run shoalctl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub struct Member {
    pub name: String,
    pub client_url: String,
    pub peer_url: String,
    pub data_dir: PathBuf,
    args: Vec<String>,
    /// A command prefix that runs the member elsewhere (its network namespace).
    launcher: Vec<String>,
    log: PathBuf,
    process: Option<Process>,
}

impl Member {
    pub fn is_running(&self) -> bool {
        self.process.is_some()
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().and_then(Process::pid)
    }

    pub fn process(&self) -> Option<&Process> {
        self.process.as_ref()
    }
}

/// Where a member listens.
struct Place {
    host: String,
    client: u16,
    peer: u16,
}

impl Place {
    fn loopback(client: u16, peer: u16) -> Place {
        Place { host: "127.0.0.1".into(), client, peer }
    }
}

/// The flags every member (Shoal's or etcd's) is started with: its name,
/// data dir, client and peer URLs, and the initial cluster.
pub fn member_flags(
    name: &str,
    data_dir: &std::path::Path,
    client_url: &str,
    peer_url: &str,
    initial_cluster: &str,
) -> Vec<String> {
    [
        "--name",
        name,
        "--data-dir",
        &data_dir.display().to_string(),
        "--listen-client-urls",
        client_url,
        "--advertise-client-urls",
        client_url,
        "--listen-peer-urls",
        peer_url,
        "--initial-advertise-peer-urls",
        peer_url,
        "--initial-cluster",
        initial_cluster,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn member(
    dir: &std::path::Path,
    i: usize,
    place: &Place,
    initial_cluster: &str,
    state: &str,
    extra: &[&str],
) -> Member {
    let name = format!("m{i}");
    let client_url = format!("http://{}:{}", place.host, place.client);
    let peer_url = format!("http://{}:{}", place.host, place.peer);
    let data_dir = dir.join(&name);
    let mut args = member_flags(&name, &data_dir, &client_url, &peer_url, initial_cluster);
    args.extend(["--initial-cluster-state", state, "--initial-cluster-token", "shoal-test"].map(String::from));
    args.extend(extra.iter().map(|s| s.to_string()));
    let log = dir.join(format!("{name}.log"));
    Member { name, client_url, peer_url, data_dir, args, launcher: Vec::new(), log, process: None }
}

pub struct Cluster {
    pub members: Vec<Member>,
    /// Set when members run in network namespaces that can be partitioned.
    /// Dropped after the members, whose processes go first.
    pub net: Option<crate::netns::Net>,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts `n` members with default settings and waits for a leader.
    pub async fn start(n: usize) -> Cluster {
        Cluster::start_with(n, &[]).await
    }

    /// Starts `n` members, each with `extra` flags added, and waits for a leader.
    pub async fn start_with(n: usize, extra: &[&str]) -> Cluster {
        let mut cluster = Cluster::prepare(n, extra);
        for i in 0..n {
            cluster.restart(i);
        }
        cluster.leader().await;
        cluster
    }

    /// Plans `n` members (ports, data dirs, flags) without starting them, so
    /// that a test can fill their data dirs first (a restore).
    pub fn prepare(n: usize, extra: &[&str]) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let initial_cluster = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
            .collect::<Vec<_>>()
            .join(",");
        let members = ports
            .iter()
            .enumerate()
            .map(|(i, (client, peer))| {
                member(dir.path(), i, &Place::loopback(*client, *peer), &initial_cluster, "new", extra)
            })
            .collect();
        Cluster { members, net: None, dir }
    }

    /// Starts `n` members, each in its own network namespace (see
    /// [`crate::netns`]), so that tests can cut the network between them.
    /// `spares` more namespaces wait for members added later
    /// ([`Cluster::prepare_joiner_in_net`]).
    pub async fn start_partitionable(n: usize, spares: usize, extra: &[&str]) -> Result<Cluster, String> {
        let net = crate::netns::Net::create(n + spares)?;
        let dir = tempfile::tempdir().expect("temp dir");
        let places: Vec<Place> =
            (0..n).map(|i| Place { host: net.addr(i).to_string(), client: 2379, peer: 2380 }).collect();
        let initial_cluster = places
            .iter()
            .enumerate()
            .map(|(i, p)| format!("m{i}=http://{}:{}", p.host, p.peer))
            .collect::<Vec<_>>()
            .join(",");
        let members = places
            .iter()
            .enumerate()
            .map(|(i, place)| Member {
                launcher: net.launcher(i),
                ..member(dir.path(), i, place, &initial_cluster, "new", extra)
            })
            .collect();
        let mut cluster = Cluster { members, net: Some(net), dir };
        for i in 0..n {
            cluster.restart(i);
        }
        cluster.leader().await;
        Ok(cluster)
    }

    /// Plans a member that joins the running cluster (`--initial-cluster-state
    /// existing`), after a test has added it with MemberAdd. Returns its index.
    pub fn prepare_joiner(&mut self, extra: &[&str]) -> usize {
        let i = self.members.len();
        let (client, peer) = (free_port(), free_port());
        let mut initial_cluster: Vec<String> =
            self.members.iter().map(|m| format!("{}={}", m.name, m.peer_url)).collect();
        initial_cluster.push(format!("m{i}=http://127.0.0.1:{peer}"));
        let place = Place::loopback(client, peer);
        let joiner = member(self.dir.path(), i, &place, &initial_cluster.join(","), "existing", extra);
        self.members.push(joiner);
        i
    }

    /// Plans a member that joins the running cluster from the next spare
    /// namespace. Returns its index.
    pub fn prepare_joiner_in_net(&mut self, extra: &[&str]) -> usize {
        let i = self.members.len();
        let net = self.net.as_ref().expect("a partitionable cluster");
        let place = Place { host: net.addr(i).to_string(), client: 2379, peer: 2380 };
        let mut initial_cluster: Vec<String> =
            self.members.iter().map(|m| format!("{}={}", m.name, m.peer_url)).collect();
        initial_cluster.push(format!("m{i}=http://{}:{}", place.host, place.peer));
        let launcher = net.launcher(i);
        let joiner = member(self.dir.path(), i, &place, &initial_cluster.join(","), "existing", extra);
        self.members.push(Member { launcher, ..joiner });
        i
    }

    /// Deletes the data dir of member `i`, which must not be running (before
    /// it joins again as a new member).
    pub fn wipe(&mut self, i: usize) {
        assert!(!self.members[i].is_running(), "wipe a stopped member only");
        let _ = std::fs::remove_dir_all(&self.members[i].data_dir);
    }

    /// HashKV at `revision` on each of `members`, once each has applied it.
    pub async fn hashes_at(&self, members: impl IntoIterator<Item = usize>, revision: i64) -> Vec<u32> {
        let mut hashes = Vec::new();
        for i in members {
            let member = self.member_client(i).await;
            let hash = wait::until(Duration::from_secs(30), "the member to apply the revision", || {
                let mut member = member.clone();
                async move { member.hash_kv(revision).await.ok().map(|h| h.hash()) }
            })
            .await;
            hashes.push(hash);
        }
        hashes
    }

    /// The member id of member `i`, as it reports it.
    pub async fn member_id(&self, i: usize) -> Option<u64> {
        self.status(i).await.and_then(|s| s.header().map(|h| h.member_id()))
    }

    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
    }

    pub fn endpoints_csv(&self) -> String {
        self.endpoints().join(",")
    }

    /// A client that knows every member.
    pub async fn client(&self) -> Client {
        Client::connect(self.endpoints(), None).await.expect("connect to the cluster")
    }

    /// A client talking to member `i` only.
    pub async fn member_client(&self, i: usize) -> Client {
        Client::connect([self.members[i].client_url.clone()], None).await.expect("connect to a member")
    }

    /// (Re)starts member `i` on its data dir.
    pub fn restart(&mut self, i: usize) {
        let member = &mut self.members[i];
        assert!(member.process.is_none(), "{} is already running", member.name);
        let process = match member.launcher.split_first() {
            None => Process::spawn(&shoal_binary(), &member.args, member.log.clone()),
            Some((program, prefix)) => {
                let mut args = prefix.to_vec();
                args.push(shoal_binary().display().to_string());
                args.extend(member.args.iter().cloned());
                Process::spawn(std::path::Path::new(program), &args, member.log.clone())
            }
        };
        member.process = Some(process);
    }

    /// Waits until member `i` exits on its own (a removed member does) and
    /// forgets its process. Returns whether it exited successfully.
    pub async fn wait_exit(&mut self, i: usize) -> bool {
        let process = self.members[i].process.as_mut().expect("member is running");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = process.exited() {
                break status;
            }
            assert!(std::time::Instant::now() < deadline, "the member did not exit:\n{}", process.log_tail());
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        self.members[i].process = None;
        status.success()
    }

    /// kill -9 of member `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut process) = self.members[i].process.take() {
            process.kill();
        }
    }

    /// Graceful stop (SIGTERM) of member `i`; returns whether it exited cleanly.
    pub fn stop(&mut self, i: usize) -> bool {
        self.members[i].process.take().is_some_and(|mut p| p.terminate(Duration::from_secs(20)))
    }

    /// Sets the storage failpoint `point` of member `i` to `action` (`off`
    /// clears it), through its client port; see `store/src/failpoints.rs`.
    /// A member restarted a moment ago may not listen yet: this waits for it.
    pub async fn failpoint(&self, i: usize, point: &str, action: &str) {
        let url = format!("{}/debug/failpoints/{point}", self.members[i].client_url);
        let put = || {
            let args = ["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", "-X", "PUT", "-d", action];
            let out = Command::new("curl").args(args).arg(&url).output().expect("run curl");
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let what = format!("member {i} to take {point}={action}");
        wait::until(Duration::from_secs(30), &what, || async { (put() == "204").then_some(()) }).await;
    }

    /// Status of member `i`, if it answers.
    pub async fn status(&self, i: usize) -> Option<etcd_client::StatusResponse> {
        let connect = Client::connect([self.members[i].client_url.clone()], None);
        let mut client = tokio::time::timeout(Duration::from_secs(1), connect).await.ok()?.ok()?;
        tokio::time::timeout(Duration::from_secs(1), client.status()).await.ok()?.ok()
    }

    /// Index of the leader that every running member agrees on.
    pub async fn leader(&self) -> usize {
        let timeout = Duration::from_secs(30);
        let found = wait::within(timeout, || async {
            let mut leaders = Vec::new();
            for (i, member) in self.members.iter().enumerate() {
                if member.is_running() {
                    leaders.push(self.status(i).await?.leader());
                }
            }
            let first = *leaders.first()?;
            if first == 0 || leaders.iter().any(|l| *l != first) {
                return None;
            }
            for (i, _) in self.members.iter().enumerate() {
                if self.status(i).await.is_some_and(|s| s.header().is_some_and(|h| h.member_id() == first)) {
                    return Some(i);
                }
            }
            None
        })
        .await;
        match found {
            Ok(leader) => leader,
            Err(how) => panic!(
                "timed out after {timeout:?} waiting for a leader all running members agree on{how}\n{}",
                self.log_tails(60)
            ),
        }
    }

    /// Index of a running member other than `not`.
    pub fn other_than(&self, not: &[usize]) -> usize {
        (0..self.members.len()).find(|i| !not.contains(i) && self.members[*i].is_running()).expect("another member")
    }

    /// Every member's log.
    pub fn logs(&self) -> String {
        self.log_tails(usize::MAX)
    }

    /// The last `lines` lines of every member's log, for failure messages.
    pub fn log_tails(&self, lines: usize) -> String {
        self.members
            .iter()
            .map(|m| {
                let log = std::fs::read_to_string(&m.log).unwrap_or_default();
                let all: Vec<&str> = log.lines().collect();
                format!("--- {} ---\n{}", m.name, all[all.len().saturating_sub(lines)..].join("\n"))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Cluster {
    /// A failing test shows what its members logged last, before the
    /// temporary directory holding the logs goes away.
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("member logs at the failure:\n{}", self.log_tails(80));
        }
    }
}
