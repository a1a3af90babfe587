//! `shoal-controllers` flags, validated once.

use std::time::Duration;

use clap::Parser;
use shoal_client::store::{parse_endpoints, DEFAULT_ENDPOINT, ENDPOINTS_ENV};
use shoal_proto::objects::time::parse_duration;

pub const ALL: [&str; 6] = ["scheduler", "replicaset", "deployment", "nodelifecycle", "gc", "endpoints"];

#[derive(Parser, Debug, Clone)]
#[command(name = "shoal-controllers", version, about = "The scheduler and the controllers of Shoal's control plane")]
pub struct Cli {
    /// Store client URLs, comma-separated.
    #[arg(long, env = ENDPOINTS_ENV, default_value = DEFAULT_ENDPOINT)]
    pub endpoints: String,
    #[command(flatten)]
    pub tls: shoal_client::TlsArgs,
    /// Which controllers run: a comma-separated list of scheduler,
    /// replicaset, deployment, nodelifecycle, gc, endpoints; or `*` for all.
    #[arg(long, default_value = "*")]
    pub controllers: String,
    /// Elect one active instance among replicas; `false` only for a single instance.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    /// TTL of the leader key's lease: how soon another replica takes over.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub leader_elect_lease_duration: Duration,
    /// How long a node may stay NotReady before its pods are evicted.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub pod_eviction_timeout: Duration,
    /// When most nodes are NotReady at once, evict one node's pods at most this often.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub disrupted_eviction_interval: Duration,
    /// Concurrent reconciles per controller.
    #[arg(long, default_value_t = 4)]
    pub workers: usize,
    /// This instance's name in the leader key (default: host and pid).
    #[arg(long)]
    pub identity: Option<String>,
    /// Log level (error, warn, info, debug).
    #[arg(long, default_value = "info")]
    pub log_level: String,
    /// Serve the controllers' own Prometheus metrics (`/metrics`) at this address.
    #[arg(long)]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Services' cluster IPs come from this range; recorded in the store
    /// the first time, and the recorded one holds from then on.
    #[arg(long, default_value = shoal_client::service_ips::DEFAULT_RANGE)]
    pub service_cluster_ip_range: String,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub endpoints: Vec<String>,
    /// For https endpoints.
    pub tls: Option<tonic::transport::ClientTlsConfig>,
    pub metrics_addr: Option<std::net::SocketAddr>,
    pub controllers: Vec<&'static str>,
    pub leader_elect: bool,
    pub lease_duration: Duration,
    pub pod_eviction_timeout: Duration,
    pub disrupted_eviction_interval: Duration,
    pub workers: usize,
    pub identity: String,
    pub service_cluster_ip_range: shoal_proto::objects::cidr::Cidr,
}

impl Cli {
    pub fn validate(&self) -> Result<Config, String> {
        let endpoints = parse_endpoints(&self.endpoints);
        if endpoints.is_empty() {
            return Err("--endpoints is empty".into());
        }
        let mut controllers = Vec::new();
        for name in self.controllers.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if name == "*" {
                controllers.extend(ALL);
            } else if let Some(known) = ALL.iter().find(|c| **c == name) {
                controllers.push(*known);
            } else {
                return Err(format!("unknown controller {name:?} (known: {})", ALL.join(", ")));
            }
        }
        controllers.sort();
        controllers.dedup();
        if self.leader_elect_lease_duration < Duration::from_secs(2) {
            return Err("--leader-elect-lease-duration must be at least 2s".into());
        }
        let identity = self.identity.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            format!("{}-{}", host.trim(), std::process::id())
        });
        Ok(Config {
            endpoints,
            tls: self.tls.config().map_err(|e| e.to_string())?,
            metrics_addr: self.metrics_addr,
            controllers,
            leader_elect: self.leader_elect,
            lease_duration: self.leader_elect_lease_duration,
            pod_eviction_timeout: self.pod_eviction_timeout,
            disrupted_eviction_interval: self.disrupted_eviction_interval,
            workers: self.workers.max(1),
            identity,
            service_cluster_ip_range: self
                .service_cluster_ip_range
                .parse()
                .map_err(|e| format!("--service-cluster-ip-range {e}"))?,
        })
    }
}

impl Config {
    pub fn runs(&self, controller: &str) -> bool {
        self.controllers.contains(&controller)
    }
}
