//! `shoal-agent` flags, validated once.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use shoal_client::store::{parse_endpoints, DEFAULT_ENDPOINT, ENDPOINTS_ENV};
use shoal_proto::objects::time::parse_duration;
use shoal_proto::objects::validation::is_dns_subdomain;

#[derive(Parser, Debug, Clone)]
#[command(name = "shoal-agent", version, about = "The node agent of Shoal's control plane")]
pub struct Cli {
    /// The Node's name (default: the host name).
    #[arg(long)]
    pub node_name: Option<String>,
    /// Store client URLs, comma-separated.
    #[arg(long, env = ENDPOINTS_ENV, default_value = DEFAULT_ENDPOINT)]
    pub endpoints: String,
    #[command(flatten)]
    pub tls: shoal_client::TlsArgs,
    /// Where the agent keeps its record of containers, images and logs.
    #[arg(long, default_value = "shoal-agent.data")]
    pub data_dir: PathBuf,
    /// CPUs to offer (default: the host's).
    #[arg(long)]
    pub cpus: Option<String>,
    /// Memory to offer, e.g. 8Gi (default: the host's).
    #[arg(long)]
    pub memory: Option<String>,
    /// Pods to offer at most.
    #[arg(long, default_value_t = 110)]
    pub max_pods: u32,
    /// TTL of the heartbeat's store lease; it is renewed every second.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub heartbeat_ttl: Duration,
    /// First restart delay of a crashing container; it doubles up to 5 minutes.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub restart_backoff: Duration,
    /// The node's address: its InternalIP, and where it serves container logs.
    #[arg(long, default_value = "127.0.0.1")]
    pub address: std::net::IpAddr,
    /// Port of the container logs endpoint (0: any free port; the Node records it).
    #[arg(long, default_value_t = 0)]
    pub logs_port: u16,
    /// Serve the agent's own Prometheus metrics (`/metrics`) at this address.
    #[arg(long)]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Node ports handed to containers that declare `containerPort: 0`.
    #[arg(long, default_value = "20000-32000")]
    pub port_range: String,
    /// The addresses this node gives its pods (those without hostNetwork):
    /// the first is the bridge's, the pods' gateway.
    #[arg(long, default_value = "10.88.0.0/24")]
    pub pod_cidr: String,
    /// The bridge the pods' veth pairs are plugged into (default: `shoal`
    /// and the pod CIDR's network in hex, e.g. shoal0a580000).
    #[arg(long)]
    pub pod_bridge: Option<String>,
    /// Serve every Service's port at --address, forwarding to its endpoints.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub proxy: bool,
    /// Stop every container when the agent stops (each with its pod's grace,
    /// at most 5s), as `shoal up` wants on Ctrl-C. By default containers keep
    /// running and the next agent adopts them, as with a kubelet.
    #[arg(long)]
    pub stop_pods_on_exit: bool,
    /// Size at which a container's log file is rotated (one older part is kept).
    #[arg(long, default_value = "10Mi")]
    pub container_log_max_size: String,
    /// Log level (error, warn, info, debug).
    #[arg(long, default_value = "info")]
    pub log_level: String,
    /// Run N hollow nodes instead (`<node-name>-0` ...): the same pod loop
    /// with a runtime that runs nothing, for measuring the control plane
    /// at scale. Needs no root.
    #[arg(long, default_value_t = 0)]
    pub hollow: u32,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub node_name: String,
    pub endpoints: Vec<String>,
    /// For https endpoints.
    pub tls: Option<tonic::transport::ClientTlsConfig>,
    pub data_dir: PathBuf,
    pub cpus: Option<String>,
    pub memory: Option<String>,
    pub max_pods: u32,
    pub heartbeat_ttl: Duration,
    pub restart_backoff: Duration,
    pub address: std::net::IpAddr,
    pub logs_port: u16,
    pub metrics_addr: Option<std::net::SocketAddr>,
    pub port_range: std::ops::RangeInclusive<u16>,
    pub pod_cidr: crate::net::cidr::Cidr,
    pub pod_bridge: String,
    pub proxy: bool,
    pub stop_pods_on_exit: bool,
    pub container_log_max_bytes: u64,
    /// Hollow nodes to run (0: this is a real node).
    pub hollow: u32,
}

impl Cli {
    pub fn validate(&self) -> Result<Config, String> {
        let node_name = match &self.node_name {
            Some(name) => name.clone(),
            None => crate::host::hostname(),
        };
        if !is_dns_subdomain(&node_name) {
            return Err(format!("--node-name {node_name:?} is not a valid node name (a lowercase RFC 1123 subdomain)"));
        }
        let endpoints = parse_endpoints(&self.endpoints);
        if endpoints.is_empty() {
            return Err("--endpoints is empty".into());
        }
        for (flag, value) in [("--cpus", &self.cpus), ("--memory", &self.memory)] {
            if let Some(v) = value {
                match shoal_proto::objects::quantity::Quantity::parse(v) {
                    Ok(q) if q.millis > 0 => {}
                    _ => return Err(format!("{flag} {v:?} is not a positive quantity")),
                }
            }
        }
        let container_log_max_bytes =
            match shoal_proto::objects::quantity::Quantity::parse(&self.container_log_max_size) {
                Ok(q) if q.value() >= 1024 => q.value() as u64,
                _ => {
                    return Err(format!(
                        "--container-log-max-size {:?} must be a quantity of at least 1Ki",
                        self.container_log_max_size
                    ))
                }
            };
        if self.heartbeat_ttl < Duration::from_secs(2) {
            return Err("--heartbeat-ttl must be at least 2s".into());
        }
        let pod_cidr: crate::net::cidr::Cidr = self.pod_cidr.parse().map_err(|e| format!("--pod-cidr {e}"))?;
        let pod_bridge = self.pod_bridge.clone().unwrap_or_else(|| crate::net::PodNetwork::default_bridge(&pod_cidr));
        if pod_bridge.is_empty() || pod_bridge.len() > 15 || pod_bridge.contains(['/', ':', ' ']) {
            return Err(format!(
                "--pod-bridge {pod_bridge:?} is not an interface name (1-15 bytes, no '/', ':' or space)"
            ));
        }
        Ok(Config {
            node_name,
            endpoints,
            tls: self.tls.config().map_err(|e| e.to_string())?,
            data_dir: self.data_dir.clone(),
            cpus: self.cpus.clone(),
            memory: self.memory.clone(),
            max_pods: self.max_pods,
            heartbeat_ttl: self.heartbeat_ttl,
            restart_backoff: self.restart_backoff,
            address: self.address,
            logs_port: self.logs_port,
            metrics_addr: self.metrics_addr,
            port_range: crate::ports::parse_range(&self.port_range)?,
            pod_cidr,
            pod_bridge,
            proxy: self.proxy,
            stop_pods_on_exit: self.stop_pods_on_exit,
            container_log_max_bytes,
            hollow: self.hollow,
        })
    }
}
