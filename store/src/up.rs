//! `shoal up`: a local 3-member cluster on loopback, each member a separate
//! `shoal` process (the same binary an operator runs), plus the control
//! plane — `shoal-controllers`, and two `shoal-agent`s as two nodes — when
//! they sit next to `shoal`. The nodes share this machine, so each has a
//! loopback address of its own (node-1 on 127.0.0.2, node-2 on 127.0.0.3):
//! their Service listeners never collide. Each node gives its pods
//! addresses from a pod CIDR of its own (node-1 10.88.1.0/24, node-2
//! 10.88.2.0/24), on a bridge of its own; the host routes between them.
//! Everything is supervised: a process that dies
//! is restarted with backoff; Ctrl-C stops them all cleanly, the
//! containers too (the agents stop them before they exit). A second run on
//! the same `--data-dir` resumes the same cluster, and the agents start the
//! pods bound to them again. Each process's pid is in `DIR/<name>.pid`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use shoal_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use shoal_proto::etcdserverpb::StatusRequest;
use tokio::process::{Child, Command};

#[derive(Args, Debug, Clone)]
pub struct UpArgs {
    /// Directory for the members' data and logs (one sub-directory each).
    #[arg(long, default_value = "shoal-up.data")]
    pub data_dir: PathBuf,
    /// Added to every port: clients on 2379/22379/32379, peers on 2380/22380/32380.
    #[arg(long, default_value_t = 0)]
    pub port_offset: u16,
    /// Log level of the members.
    #[arg(long, default_value = "info")]
    pub log_level: String,
    /// One node (an agent) per address, each listening there for its
    /// containers and Services: node-1 on the first, node-2 on the second...
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.2,127.0.0.3")]
    pub node_addresses: Vec<std::net::IpAddr>,
    /// The nodes' pod CIDRs, one per node address (default: 10.88.N.0/24
    /// for node-N).
    #[arg(long, value_delimiter = ',')]
    pub pod_cidrs: Vec<String>,
    /// Services' cluster IPs come from this range (the controllers'
    /// `--service-cluster-ip-range`).
    #[arg(long, default_value = "10.96.0.0/16")]
    pub service_cluster_ip_range: String,
}

const MEMBERS: [(&str, u16, u16); 3] = [("infra1", 2379, 2380), ("infra2", 22379, 22380), ("infra3", 32379, 32380)];
/// How long a process gets to stop after SIGTERM: an agent stops its
/// containers first, each within at most 5 s.
const STOP_GRACE: Duration = Duration::from_secs(20);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

struct Member {
    name: String,
    program: PathBuf,
    client_url: String,
    args: Vec<String>,
    log: PathBuf,
    /// Where its pid is written while it runs.
    pid_file: PathBuf,
    child: Option<Child>,
    backoff: Duration,
}

impl Member {
    /// A process named `name`, logging to and recording its pid in the data dir.
    fn new(name: &str, program: PathBuf, client_url: String, args: Vec<String>, data_dir: &Path) -> Member {
        Member {
            name: name.to_string(),
            program,
            client_url,
            args,
            log: data_dir.join(format!("{name}.log")),
            pid_file: data_dir.join(format!("{name}.pid")),
            child: None,
            backoff: Duration::from_millis(500),
        }
    }

    fn start(&mut self) -> std::io::Result<()> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log)?;
        let child = Command::new(&self.program)
            .args(&self.args)
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Own process group: Ctrl-C reaches the supervisor only, which
            // then stops the members in order.
            .process_group(0)
            .env("SHOAL_EXIT_WITH_PARENT", "1")
            .spawn()?;
        if let Some(pid) = child.id() {
            let _ = std::fs::write(&self.pid_file, format!("{pid}\n"));
        }
        self.child = Some(child);
        Ok(())
    }

    async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Some(pid) = child.id() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        }
        if tokio::time::timeout(STOP_GRACE, child.wait()).await.is_err() {
            let _ = child.kill().await;
        }
        let _ = std::fs::remove_file(&self.pid_file);
    }
}

fn members(args: &UpArgs, exe: &Path) -> Result<Vec<Member>, String> {
    let port = |p: u16| {
        p.checked_add(args.port_offset).ok_or_else(|| format!("--port-offset {} is too large", args.port_offset))
    };
    let mut cluster = Vec::new();
    for (name, _, peer) in MEMBERS {
        cluster.push(format!("{name}=http://127.0.0.1:{}", port(peer)?));
    }
    let cluster = cluster.join(",");
    let mut out = Vec::new();
    for (name, client, peer) in MEMBERS {
        let client_url = format!("http://127.0.0.1:{}", port(client)?);
        let peer_url = format!("http://127.0.0.1:{}", port(peer)?);
        let data_dir = args.data_dir.join(name);
        let member_args = vec![
            "--name".into(),
            name.into(),
            "--data-dir".into(),
            data_dir.display().to_string(),
            "--listen-client-urls".into(),
            client_url.clone(),
            "--advertise-client-urls".into(),
            client_url.clone(),
            "--listen-peer-urls".into(),
            peer_url.clone(),
            "--initial-advertise-peer-urls".into(),
            peer_url,
            "--initial-cluster".into(),
            cluster.clone(),
            "--initial-cluster-token".into(),
            "shoal-up".into(),
            "--initial-cluster-state".into(),
            "new".into(),
            "--log-level".into(),
            args.log_level.clone(),
        ];
        out.push(Member::new(name, exe.to_path_buf(), client_url, member_args, &args.data_dir));
    }
    Ok(out)
}

/// Two `shoal-controllers` under leader election (one leads, the other
/// stands by), if it was built next to `shoal`.
fn controllers(args: &UpArgs, exe: &Path, members: &[Member]) -> Vec<Member> {
    let program = exe.with_file_name("shoal-controllers");
    if !program.exists() {
        println!("(no shoal-controllers next to {}: running the store only)", exe.display());
        return Vec::new();
    }
    ["controllers-1", "controllers-2"]
        .into_iter()
        .map(|name| {
            let flags = vec![
                "--endpoints".into(),
                endpoints(members),
                "--identity".into(),
                name.into(),
                "--service-cluster-ip-range".into(),
                args.service_cluster_ip_range.clone(),
                "--log-level".into(),
                args.log_level.clone(),
            ];
            Member::new(name, program.clone(), String::new(), flags, &args.data_dir)
        })
        .collect()
}

/// A `shoal-agent` per node, if it was built next to `shoal`.
fn agents(args: &UpArgs, exe: &Path, members: &[Member]) -> Vec<Member> {
    let program = exe.with_file_name("shoal-agent");
    if !program.exists() {
        return Vec::new();
    }
    args.node_addresses
        .iter()
        .enumerate()
        .map(|(i, address)| {
            let (name, node) = (format!("agent-{}", i + 1), format!("node-{}", i + 1));
            let pod_cidr = args.pod_cidrs.get(i).cloned().unwrap_or_else(|| format!("10.88.{}.0/24", i + 1));
            let flags = vec![
                "--endpoints".into(),
                endpoints(members),
                "--node-name".into(),
                node,
                // Ctrl-C stops everything, the containers too; the next run starts them again.
                "--stop-pods-on-exit".into(),
                "--address".into(),
                address.to_string(),
                "--pod-cidr".into(),
                pod_cidr,
                "--data-dir".into(),
                args.data_dir.join(&name).to_string_lossy().into_owned(),
                "--log-level".into(),
                args.log_level.clone(),
            ];
            Member::new(&name, program.clone(), String::new(), flags, &args.data_dir)
        })
        .collect()
}

/// The members' client URLs, comma-separated, for `--endpoints`.
fn endpoints(members: &[Member]) -> String {
    members.iter().map(|m| m.client_url.as_str()).collect::<Vec<_>>().join(",")
}

/// Waits until every member answers Status and they agree on a leader.
async fn wait_ready(members: &[Member], timeout: Duration) -> Option<u64> {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        let mut leaders = Vec::new();
        for member in members {
            let status = async {
                let mut client = MaintenanceClient::connect(member.client_url.clone()).await.ok()?;
                client.status(StatusRequest {}).await.ok().map(|r| r.into_inner())
            };
            if let Ok(Some(status)) = tokio::time::timeout(Duration::from_secs(1), status).await {
                leaders.push(status.leader);
            }
        }
        if leaders.len() == members.len() && leaders[0] != 0 && leaders.iter().all(|l| *l == leaders[0]) {
            return Some(leaders[0]);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

fn banner(members: &[Member], control_plane: &[Member], args: &UpArgs) {
    let endpoints = endpoints(members);
    println!("shoal up: 3 members on loopback, data in {}", args.data_dir.display());
    for member in members {
        println!("  {:<7} client {}  log {}", member.name, member.client_url, member.log.display());
    }
    for process in control_plane {
        println!("  {:<11} log {}", process.name, process.log.display());
    }
    println!();
    println!("Try:");
    println!("  etcdctl --endpoints={endpoints} put greeting hello");
    println!("  etcdctl --endpoints={endpoints} get greeting -w json");
    println!("  etcdctl --endpoints={endpoints} endpoint status -w table");
    println!("  shoalctl --endpoints={endpoints} member list");
    println!("  shoalctl --endpoints={} snapshot save backup.db", members[0].client_url);
    if control_plane.iter().any(|p| p.name.starts_with("agent")) {
        println!("  shoalctl --endpoints={endpoints} apply -f examples/web.yaml");
        println!("  shoalctl --endpoints={endpoints} get pods -o wide");
        println!("  shoalctl --endpoints={endpoints} get endpoints web");
        println!("  shoalctl --endpoints={endpoints} get svc web    (its CLUSTER-IP)");
        println!("  curl http://CLUSTER-IP:8080/    (the web Service, through the node proxies)");
    }
    println!();
    println!("Ctrl-C stops the cluster; running `shoal up` again on the same --data-dir resumes it.");
}

async fn supervise(args: UpArgs) -> Result<(), String> {
    use tokio::signal::unix::{signal, SignalKind};
    // Handlers first: Ctrl-C at any point must stop the members, not orphan them.
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the shoal executable: {e}"))?;
    if !args.pod_cidrs.is_empty() && args.pod_cidrs.len() != args.node_addresses.len() {
        return Err(format!(
            "--pod-cidrs has {} networks for {} --node-addresses: give one per node",
            args.pod_cidrs.len(),
            args.node_addresses.len()
        ));
    }
    std::fs::create_dir_all(&args.data_dir).map_err(|e| format!("cannot create {}: {e}", args.data_dir.display()))?;
    let mut members = members(&args, &exe)?;
    let mut control_plane: Vec<Member> =
        controllers(&args, &exe, &members).into_iter().chain(agents(&args, &exe, &members)).collect();
    for member in members.iter_mut().chain(control_plane.iter_mut()) {
        member.start().map_err(|e| format!("cannot start {}: {e}", member.name))?;
    }
    banner(&members, &control_plane, &args);
    let mut stopping = false;
    tokio::select! {
        ready = wait_ready(&members, Duration::from_secs(30)) => match ready {
            Some(leader) => println!("ready: leader is member {leader:x}"),
            None => println!("not ready after 30s; see the member logs"),
        },
        _ = term.recv() => stopping = true,
        _ = int.recv() => stopping = true,
    }
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    while !stopping {
        tokio::select! {
            _ = term.recv() => stopping = true,
            _ = int.recv() => stopping = true,
            _ = tick.tick() => {
                restart_exited(&mut members).await;
                restart_exited(&mut control_plane).await;
            }
        }
    }
    println!("stopping...");
    // The control plane first, all at once (the agents stop their containers,
    // each within its grace), while the store can still take its last writes.
    futures::future::join_all(control_plane.iter_mut().map(Member::stop)).await;
    for member in members.iter_mut() {
        member.stop().await;
    }
    println!("stopped");
    Ok(())
}

async fn restart_exited(members: &mut [Member]) {
    for member in members.iter_mut() {
        let Some(child) = member.child.as_mut() else {
            continue;
        };
        let Ok(Some(status)) = child.try_wait() else {
            continue;
        };
        member.child = None;
        eprintln!("{} exited ({status}); restarting in {:?}", member.name, member.backoff);
        tokio::time::sleep(member.backoff).await;
        member.backoff = (member.backoff * 2).min(MAX_BACKOFF);
        if let Err(e) = member.start() {
            eprintln!("cannot restart {}: {e}", member.name);
        }
    }
}

pub fn run(args: UpArgs) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("shoal up: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(supervise(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shoal up: {e}");
            ExitCode::FAILURE
        }
    }
}
