//! The `shoal` command line: etcd's member flags with etcd's defaults, plus
//! the `up` subcommand. Validated once into a [`MemberConfig`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::ids;
use crate::tls::TlsFiles;
use crate::urls::{self, Url, UrlError};

/// The etcd release whose behaviour Shoal implements, reported as the server
/// version (`Maintenance.Status`, `/version`). Clients gate features on it:
/// kube-apiserver serves consistent reads from its watch cache only from
/// etcd 3.5.13 on, the first 3.5 release whose progress requests are
/// answered only once every watcher of the stream has caught up, as Shoal
/// answers them.
pub const ETCD_SERVER_VERSION: &str = "3.5.13";
/// The cluster version, as etcd reports it: major.minor.0.
pub const ETCD_CLUSTER_VERSION: &str = "3.5.0";

#[derive(Parser, Debug)]
#[command(
    name = "shoal",
    version,
    about = "Shoal: an etcd-compatible, Raft-replicated key-value store",
    long_version = concat!(env!("CARGO_PKG_VERSION"), " (etcd API ", "3.5.13", ")"),
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub member: MemberArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a local 3-member cluster on loopback, supervised, until Ctrl-C.
    Up(crate::up::UpArgs),
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum ClusterState {
    New,
    Existing,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum CompactionMode {
    Periodic,
    Revision,
}

/// What auto compaction keeps, validated from etcd's two flags.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum AutoCompaction {
    Off,
    /// Keep this much time of history.
    Periodic(Duration),
    /// Keep this many revisions.
    Revision(i64),
}

/// A member's flags, named and defaulted as etcd's.
#[derive(Args, Debug, Clone)]
pub struct MemberArgs {
    /// Human-readable name for this member.
    #[arg(long, default_value = "default")]
    pub name: String,
    /// Path to the data directory [default: ${name}.etcd].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// URLs to listen on for client traffic.
    #[arg(long, default_value = "http://localhost:2379")]
    pub listen_client_urls: String,
    /// URLs to serve /metrics and the health checks on (none by default);
    /// https ones use the client certificate (--cert-file, --key-file).
    #[arg(long, default_value = "")]
    pub listen_metrics_urls: String,
    /// Client URLs advertised to the rest of the cluster.
    #[arg(long, default_value = "http://localhost:2379")]
    pub advertise_client_urls: String,
    /// URLs to listen on for peer traffic.
    #[arg(long, default_value = "http://localhost:2380")]
    pub listen_peer_urls: String,
    /// This member's peer URLs, advertised to the rest of the cluster.
    #[arg(long, default_value = "http://localhost:2380")]
    pub initial_advertise_peer_urls: String,
    /// Initial cluster configuration for bootstrapping, as name=url,...
    /// [default: ${name}=${initial-advertise-peer-urls}].
    #[arg(long)]
    pub initial_cluster: Option<String>,
    /// `new` to bootstrap a cluster, `existing` to join one.
    #[arg(long, value_enum, default_value = "new")]
    pub initial_cluster_state: ClusterState,
    /// Token that makes member and cluster ids unique to this cluster.
    #[arg(long, default_value = "etcd-cluster")]
    pub initial_cluster_token: String,
    /// Maximum client request size in bytes the server will accept.
    #[arg(long, default_value_t = 1_572_864)]
    pub max_request_bytes: u32,
    /// Maximum number of operations permitted in a transaction.
    #[arg(long, default_value_t = 128)]
    pub max_txn_ops: u32,
    /// Time (in milliseconds) of a heartbeat interval.
    #[arg(long, default_value_t = 100)]
    pub heartbeat_interval: u64,
    /// Time (in milliseconds) for an election to timeout: the least leader
    /// silence after which a follower starts an election (at most 1.2×).
    #[arg(long, default_value_t = 1000)]
    pub election_timeout: u64,
    /// Number of committed transactions to trigger a snapshot to disk.
    #[arg(long, default_value_t = 100_000)]
    pub snapshot_count: u64,
    /// Log entries a lagging member can still catch up from before it is sent a snapshot.
    #[arg(long, default_value_t = 5_000)]
    pub experimental_snapshot_catchup_entries: u64,
    /// How often idle watchers that asked for progress notifications get one
    /// (a duration such as 10m, 30s or 500ms).
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub experimental_watch_progress_notify_interval: Duration,
    /// Log level: debug, info, warn or error.
    /// Backend size that raises the NOSPACE alarm; 0 means etcd's default
    /// (2 GiB), a negative value turns the quota off.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub quota_backend_bytes: i64,
    /// `periodic` (keep a window of time) or `revision` (keep a number of revisions).
    #[arg(long, value_enum, default_value = "periodic")]
    pub auto_compaction_mode: CompactionMode,
    /// How much history auto compaction keeps: hours or a duration ("30m")
    /// in periodic mode, a revision count in revision mode. 0 turns it off.
    #[arg(long, default_value = "0")]
    pub auto_compaction_retention: String,
    /// How often revision-mode auto compaction checks (etcd: fixed at 5m).
    #[arg(long, default_value = "5m", value_parser = parse_duration, hide = true)]
    pub experimental_auto_compaction_check_interval: Duration,
    /// Promote a learner to voter as soon as it has caught up with the leader.
    #[arg(long, default_value_t = false)]
    pub auto_promote_learners: bool,
    #[arg(long, default_value = "info")]
    pub log_level: String,
    /// Threads that serve requests and run Raft; 0 means half the cores,
    /// at least one. A write hops between several tasks, and every hop to
    /// another thread costs a wake-up and a context switch.
    #[arg(long, default_value_t = 0)]
    pub worker_threads: usize,
    /// Auth token type: `simple` (random tokens held by every member), or
    /// `jwt,pub-key=PATH,priv-key=PATH,sign-method=ES256,ttl=5m`.
    #[arg(long, default_value = "simple")]
    pub auth_token: String,
    /// Seconds an unused auth token stays valid.
    #[arg(long, default_value_t = 300)]
    pub auth_token_ttl: u64,
    /// bcrypt cost for hashing auth passwords (4 to 31).
    #[arg(long, default_value_t = 10)]
    pub bcrypt_cost: u32,
    /// Path to the client server TLS cert file.
    #[arg(long, default_value = "")]
    pub cert_file: String,
    /// Path to the client server TLS key file.
    #[arg(long, default_value = "")]
    pub key_file: String,
    /// Path to the client server TLS trusted CA cert file.
    #[arg(long, default_value = "")]
    pub trusted_ca_file: String,
    /// Enable client cert authentication.
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true")]
    pub client_cert_auth: bool,
    /// Client TLS using generated certificates.
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true")]
    pub auto_tls: bool,
    /// Path to the peer server TLS cert file.
    #[arg(long, default_value = "")]
    pub peer_cert_file: String,
    /// Path to the peer server TLS key file.
    #[arg(long, default_value = "")]
    pub peer_key_file: String,
    /// Path to the peer server TLS trusted CA file.
    #[arg(long, default_value = "")]
    pub peer_trusted_ca_file: String,
    /// Enable peer client cert authentication.
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true")]
    pub peer_client_cert_auth: bool,
    /// Peer TLS using generated certificates.
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true")]
    pub peer_auto_tls: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Url(#[from] UrlError),
    #[error("couldn't find local name {name:?} in the initial cluster configuration")]
    NameNotInCluster { name: String },
    #[error(
        "--initial-cluster has {name}={cluster_urls} but missing from --initial-advertise-peer-urls={advertised} \
         (the URLs must match)"
    )]
    PeerUrlMismatch { name: String, cluster_urls: String, advertised: String },
    #[error("--election-timeout[{election}ms] should be at least as 5 times as --heartbeat-interval[{heartbeat}ms]")]
    ElectionTooShort { election: u64, heartbeat: u64 },
    #[error("{flag} must not be empty")]
    Empty { flag: &'static str },
    #[error("error parsing CompactionRetention: {0}")]
    Retention(String),
    #[error("invalid --auth-token {0:?}: expected simple, or jwt,pub-key=...,priv-key=...,sign-method=...")]
    AuthToken(String),
    #[error("invalid bcrypt-cost {0} (it must be between 4 and 31)")]
    BcryptCost(u32),
    #[error("TLS key/cert ({flags}) must be provided for {side} url {url} with HTTPS scheme")]
    TlsMissing { flags: &'static str, side: &'static str, url: String },
    #[error("{0} needs {1} too")]
    TlsHalf(&'static str, &'static str),
    #[error("--listen-metrics-urls {0}: https needs the client certificate (--cert-file, --key-file, or --auto-tls)")]
    MetricsTls(String),
}

/// A member of the initial cluster.
#[derive(Clone, Debug)]
pub struct InitialMember {
    pub id: u64,
    pub name: String,
    pub peer_urls: Vec<String>,
}

/// Validated member configuration.
#[derive(Clone, Debug)]
pub struct MemberConfig {
    pub name: String,
    pub data_dir: PathBuf,
    pub listen_client: Vec<SocketAddr>,
    /// Where /metrics and /health are served (may be none).
    pub listen_metrics: Vec<SocketAddr>,
    /// Whether each --listen-metrics-urls entry is https.
    pub listen_metrics_tls: Vec<bool>,
    pub advertise_client_urls: Vec<String>,
    pub listen_peer: Vec<SocketAddr>,
    pub peer_urls: Vec<String>,
    pub initial_cluster: Vec<InitialMember>,
    pub cluster_state: ClusterState,
    pub token: String,
    pub max_request_bytes: usize,
    pub max_txn_ops: usize,
    pub heartbeat: Duration,
    pub election_timeout: Duration,
    pub snapshot_count: u64,
    pub snapshot_catchup_entries: u64,
    pub watch_progress_interval: Duration,
    /// None: no quota.
    pub quota_bytes: Option<u64>,
    pub auto_compaction: AutoCompaction,
    pub auto_compaction_check_interval: Duration,
    pub auto_promote_learners: bool,
    pub auth_token_ttl: Duration,
    /// The options after `jwt,` of `--auth-token`; None: simple tokens.
    pub auth_jwt: Option<String>,
    pub bcrypt_cost: u32,
    /// Whether each --listen-client-urls entry is https.
    pub listen_client_tls: Vec<bool>,
    pub listen_peer_tls: Vec<bool>,
    pub client_tls: Option<TlsFiles>,
    pub peer_tls: Option<TlsFiles>,
}

impl MemberConfig {
    /// This member's id, from its advertised peer URLs and the token.
    pub fn member_id(&self) -> u64 {
        ids::member_id(&self.peer_urls, &self.token)
    }

    /// etcd's minimum lease TTL: 1.5 election timeouts, rounded up to whole seconds.
    pub fn min_lease_ttl(&self) -> i64 {
        let millis = self.election_timeout.as_millis() as i64 * 3 / 2;
        (millis + 999) / 1000
    }

    /// How long a client request may wait for Raft, as etcd computes it.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(5) + 2 * self.election_timeout
    }
}

fn addrs(flag: &'static str, list: &[Url]) -> Result<Vec<SocketAddr>, ConfigError> {
    if list.is_empty() {
        return Err(ConfigError::Empty { flag });
    }
    Ok(list.iter().map(|u| u.socket_addr(flag)).collect::<Result<_, _>>()?)
}

/// One side's TLS files: a certificate and key, or a generated pair in
/// `auto_dir` (--auto-tls, ignored when a certificate is given, as etcd does).
fn tls_files(
    (cert, cert_flag): (&str, &'static str),
    (key, key_flag): (&str, &'static str),
    trusted_ca: &str,
    client_cert_auth: bool,
    auto_dir: Option<PathBuf>,
) -> Result<Option<TlsFiles>, ConfigError> {
    let trusted_ca = (!trusted_ca.is_empty()).then(|| PathBuf::from(trusted_ca));
    match (cert.is_empty(), key.is_empty(), auto_dir) {
        (false, false, _) => {
            Ok(Some(TlsFiles { cert: cert.into(), key: key.into(), trusted_ca, client_cert_auth, auto: false }))
        }
        (false, true, _) => Err(ConfigError::TlsHalf(cert_flag, key_flag)),
        (true, false, _) => Err(ConfigError::TlsHalf(key_flag, cert_flag)),
        (true, true, Some(dir)) => Ok(Some(TlsFiles {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
            trusted_ca: None,
            client_cert_auth: false,
            auto: true,
        })),
        (true, true, None) => Ok(None),
    }
}

fn strings(list: &[Url]) -> Vec<String> {
    list.iter().map(Url::to_string).collect()
}

impl MemberArgs {
    /// The `--worker-threads` to run with: as given, or half the cores.
    pub fn worker_threads(&self) -> usize {
        match self.worker_threads {
            0 => std::thread::available_parallelism().map_or(1, |cores| cores.get() / 2).max(1),
            n => n,
        }
    }

    pub fn validate(&self) -> Result<MemberConfig, ConfigError> {
        if self.election_timeout < 5 * self.heartbeat_interval {
            return Err(ConfigError::ElectionTooShort {
                election: self.election_timeout,
                heartbeat: self.heartbeat_interval,
            });
        }
        let listen_client = urls::parse_list("--listen-client-urls", &self.listen_client_urls)?;
        let advertise_client = urls::parse_list("--advertise-client-urls", &self.advertise_client_urls)?;
        let listen_peer = urls::parse_list("--listen-peer-urls", &self.listen_peer_urls)?;
        let advertise_peer = urls::parse_list("--initial-advertise-peer-urls", &self.initial_advertise_peer_urls)?;
        if advertise_peer.is_empty() {
            return Err(ConfigError::Empty { flag: "--initial-advertise-peer-urls" });
        }
        let data_dir = self.data_dir.clone().unwrap_or_else(|| PathBuf::from(format!("{}.etcd", self.name)));
        let client_tls = tls_files(
            (&self.cert_file, "--cert-file"),
            (&self.key_file, "--key-file"),
            &self.trusted_ca_file,
            self.client_cert_auth,
            self.auto_tls.then(|| data_dir.join("fixtures").join("client")),
        )?;
        let peer_tls = tls_files(
            (&self.peer_cert_file, "--peer-cert-file"),
            (&self.peer_key_file, "--peer-key-file"),
            &self.peer_trusted_ca_file,
            self.peer_client_cert_auth,
            self.peer_auto_tls.then(|| data_dir.join("fixtures").join("peer")),
        )?;
        if let Some(url) = listen_client.iter().chain(&advertise_client).find(|u| u.tls && client_tls.is_none()) {
            let (flags, side) = ("--cert-file, --key-file", "client");
            return Err(ConfigError::TlsMissing { flags, side, url: url.to_string() });
        }
        if let Some(url) = listen_peer.iter().chain(&advertise_peer).find(|u| u.tls && peer_tls.is_none()) {
            let (flags, side) = ("--peer-cert-file, --peer-key-file", "peer");
            return Err(ConfigError::TlsMissing { flags, side, url: url.to_string() });
        }
        let metrics = urls::parse_list("--listen-metrics-urls", &self.listen_metrics_urls)?;
        if let Some(url) = metrics.iter().find(|u| u.tls && client_tls.is_none()) {
            return Err(ConfigError::MetricsTls(url.to_string()));
        }
        let auth_jwt = match self.auth_token.split_once(',') {
            _ if self.auth_token == "simple" => None,
            Some(("jwt", options)) => Some(options.to_string()),
            _ => return Err(ConfigError::AuthToken(self.auth_token.clone())),
        };
        if !(4..=31).contains(&self.bcrypt_cost) {
            return Err(ConfigError::BcryptCost(self.bcrypt_cost));
        }
        let initial_cluster_text = self
            .initial_cluster
            .clone()
            .unwrap_or_else(|| format!("{}={}", self.name, self.initial_advertise_peer_urls));
        let cluster = urls::parse_initial_cluster(&initial_cluster_text)?;
        let peer_urls = strings(&advertise_peer);
        let mine = cluster
            .iter()
            .find(|(name, _)| *name == self.name)
            .ok_or_else(|| ConfigError::NameNotInCluster { name: self.name.clone() })?;
        let mut listed = strings(&mine.1);
        let mut advertised = peer_urls.clone();
        listed.sort();
        advertised.sort();
        if listed != advertised {
            return Err(ConfigError::PeerUrlMismatch {
                name: self.name.clone(),
                cluster_urls: listed.join(","),
                advertised: advertised.join(","),
            });
        }
        let initial_cluster = cluster
            .iter()
            .map(|(name, urls)| {
                let peer_urls = strings(urls);
                InitialMember {
                    id: ids::member_id(&peer_urls, &self.initial_cluster_token),
                    name: name.clone(),
                    peer_urls,
                }
            })
            .collect();
        Ok(MemberConfig {
            name: self.name.clone(),
            data_dir,
            listen_client: addrs("--listen-client-urls", &listen_client)?,
            listen_metrics: metrics.iter().map(|u| u.socket_addr("--listen-metrics-urls")).collect::<Result<_, _>>()?,
            listen_metrics_tls: metrics.iter().map(|u| u.tls).collect(),
            advertise_client_urls: strings(&advertise_client),
            listen_peer: addrs("--listen-peer-urls", &listen_peer)?,
            peer_urls,
            initial_cluster,
            cluster_state: self.initial_cluster_state,
            token: self.initial_cluster_token.clone(),
            max_request_bytes: self.max_request_bytes as usize,
            max_txn_ops: self.max_txn_ops as usize,
            heartbeat: Duration::from_millis(self.heartbeat_interval),
            election_timeout: Duration::from_millis(self.election_timeout),
            snapshot_count: self.snapshot_count.max(1),
            snapshot_catchup_entries: self.experimental_snapshot_catchup_entries,
            watch_progress_interval: self.experimental_watch_progress_notify_interval.max(Duration::from_millis(10)),
            quota_bytes: match self.quota_backend_bytes {
                0 => Some(crate::server::quota::DEFAULT_QUOTA_BYTES),
                q if q < 0 => None,
                q => Some(q as u64),
            },
            auto_compaction: auto_compaction(self.auto_compaction_mode, &self.auto_compaction_retention)?,
            auto_compaction_check_interval: self
                .experimental_auto_compaction_check_interval
                .max(Duration::from_millis(10)),
            auto_promote_learners: self.auto_promote_learners,
            auth_token_ttl: Duration::from_secs(self.auth_token_ttl.max(1)),
            auth_jwt,
            bcrypt_cost: self.bcrypt_cost,
            listen_client_tls: listen_client.iter().map(|u| u.tls).collect(),
            listen_peer_tls: listen_peer.iter().map(|u| u.tls).collect(),
            client_tls,
            peer_tls,
        })
    }
}

/// etcd's reading of the retention: a bare integer is hours (periodic) or
/// revisions (revision); otherwise a duration, in periodic mode only.
fn auto_compaction(mode: CompactionMode, retention: &str) -> Result<AutoCompaction, ConfigError> {
    if let Ok(n) = retention.parse::<i64>() {
        if n < 0 {
            return Err(ConfigError::Retention(format!("negative retention {n}")));
        }
        return Ok(match (n, mode) {
            (0, _) => AutoCompaction::Off,
            (n, CompactionMode::Periodic) => AutoCompaction::Periodic(Duration::from_secs(n as u64 * 3600)),
            (n, CompactionMode::Revision) => AutoCompaction::Revision(n),
        });
    }
    match mode {
        CompactionMode::Periodic => match parse_duration(retention).map_err(ConfigError::Retention)? {
            d if d.is_zero() => Ok(AutoCompaction::Off),
            d => Ok(AutoCompaction::Periodic(d)),
        },
        CompactionMode::Revision => {
            Err(ConfigError::Retention(format!("invalid revision retention {retention:?} (expected an integer)")))
        }
    }
}

pub use shoal_proto::objects::time::parse_duration;

/// Go's flag package accepts `-name value` as well as `--name value`; etcd
/// users' scripts use both. Rewrites single-dash long flags to double-dash.
pub fn normalize_args(args: impl IntoIterator<Item = String>) -> Vec<String> {
    args.into_iter()
        .enumerate()
        .map(|(i, arg)| {
            let single_dash_long = i > 0
                && arg.starts_with('-')
                && !arg.starts_with("--")
                && arg.len() > 2
                && arg.as_bytes()[1].is_ascii_alphabetic();
            if single_dash_long {
                format!("-{arg}")
            } else {
                arg
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_urls_need_certificates_as_etcd_says() {
        let err = parse(&["--listen-client-urls", "https://127.0.0.1:2379"]).expect_err("no certificate");
        assert_eq!(
            err.to_string(),
            "TLS key/cert (--cert-file, --key-file) must be provided for client url https://127.0.0.1:2379 with HTTPS scheme"
        );
        assert!(matches!(parse(&["--cert-file", "c.pem"]), Err(ConfigError::TlsHalf("--cert-file", "--key-file"))));
        let auto = parse(&["--listen-client-urls", "https://127.0.0.1:2379", "--auto-tls"]).expect("auto tls");
        assert!(auto.client_tls.is_some_and(|t| t.auto) && auto.listen_client_tls == [true]);
        let explicit = parse(&["--cert-file", "c.pem", "--key-file", "k.pem", "--client-cert-auth=true"]).expect("tls");
        assert!(explicit.client_tls.is_some_and(|t| t.client_cert_auth && !t.auto));
    }

    fn parse(args: &[&str]) -> Result<MemberConfig, ConfigError> {
        let argv = normalize_args(std::iter::once("shoal").chain(args.iter().copied()).map(String::from));
        Cli::try_parse_from(argv).expect("flags parse").member.validate()
    }

    #[test]
    fn defaults_match_etcd() {
        let config = parse(&[]).expect("defaults are valid");
        assert_eq!(config.name, "default");
        assert_eq!(config.data_dir, PathBuf::from("default.etcd"));
        assert_eq!(config.max_request_bytes, 1_572_864);
        assert_eq!(config.max_txn_ops, 128);
        assert_eq!(config.initial_cluster.len(), 1);
        assert_eq!(config.listen_client[0].port(), 2379);
    }

    #[test]
    fn accepts_single_dash_flags_and_checks_the_cluster() {
        let config = parse(&[
            "-name",
            "b",
            "-initial-advertise-peer-urls",
            "http://127.0.0.1:2",
            "--initial-cluster=a=http://127.0.0.1:1,b=http://127.0.0.1:2",
        ])
        .expect("valid");
        assert_eq!(config.initial_cluster.len(), 2);
        assert_eq!(config.member_id(), config.initial_cluster[1].id);
        assert!(matches!(
            parse(&["--name", "c", "--initial-cluster", "a=http://127.0.0.1:1"]),
            Err(ConfigError::NameNotInCluster { .. })
        ));
        assert!(matches!(parse(&["--election-timeout", "100"]), Err(ConfigError::ElectionTooShort { .. })));
    }

    #[test]
    fn reads_auto_compaction_and_quota_as_etcd_does() {
        let hours = parse(&["--auto-compaction-retention", "2"]).expect("valid");
        assert_eq!(hours.auto_compaction, AutoCompaction::Periodic(Duration::from_secs(7200)));
        let revs =
            parse(&["--auto-compaction-mode", "revision", "--auto-compaction-retention", "1000"]).expect("valid");
        assert_eq!(revs.auto_compaction, AutoCompaction::Revision(1000));
        let minutes = parse(&["--auto-compaction-retention", "30m"]).expect("valid");
        assert_eq!(minutes.auto_compaction, AutoCompaction::Periodic(Duration::from_secs(1800)));
        assert!(parse(&["--auto-compaction-mode", "revision", "--auto-compaction-retention", "1h"]).is_err());
        assert!(parse(&["--auto-compaction-retention", "soon"]).is_err());
        assert_eq!(parse(&[]).expect("valid").quota_bytes, Some(2 << 30));
        assert_eq!(parse(&["--quota-backend-bytes", "-1"]).expect("valid").quota_bytes, None);
    }
}
