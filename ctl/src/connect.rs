//! Endpoints and connections: each command talks to the first member that
//! answers, or to every endpoint in turn.

use std::time::Duration;

use anyhow::{bail, Context};
use shoal_proto::etcdserverpb::cluster_client::ClusterClient;
use shoal_proto::etcdserverpb::kv_client::KvClient;
use shoal_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

pub struct Endpoints {
    /// Client URLs, with a scheme.
    pub urls: Vec<String>,
    pub timeout: Duration,
    /// For https endpoints: --cacert, --cert, --key.
    pub tls: Option<ClientTlsConfig>,
}

/// `host:port` as etcdctl prints an endpoint.
pub fn display(url: &str) -> &str {
    url.trim_start_matches("http://").trim_start_matches("https://")
}

/// Turns a gRPC status into an error that reads like etcdctl's.
pub fn status_error(status: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{}", status.message())
}

impl Endpoints {
    pub fn parse(text: &str, timeout: Duration, tls: Option<ClientTlsConfig>) -> anyhow::Result<Endpoints> {
        let urls: Vec<String> = text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| if s.contains("://") { s.to_string() } else { format!("http://{s}") })
            .collect();
        if urls.is_empty() {
            bail!("--endpoints is empty");
        }
        Ok(Endpoints { urls, timeout, tls })
    }

    /// A channel to `url` whose requests time out after --command-timeout.
    pub async fn channel_to(&self, url: &str) -> anyhow::Result<Channel> {
        self.open(url, Some(self.timeout)).await
    }

    async fn open(&self, url: &str, timeout: Option<Duration>) -> anyhow::Result<Channel> {
        let mut endpoint = Endpoint::from_shared(url.to_string())
            .with_context(|| format!("bad endpoint {url}"))?
            .connect_timeout(self.timeout);
        if let Some(timeout) = timeout {
            endpoint = endpoint.timeout(timeout);
        }
        if let (Some(tls), true) = (&self.tls, url.starts_with("https://")) {
            endpoint = endpoint.tls_config(tls.clone()).with_context(|| format!("TLS for {}", display(url)))?;
        }
        endpoint.connect().await.with_context(|| format!("cannot connect to {}", display(url)))
    }

    /// A channel to the first endpoint that accepts a connection.
    pub async fn channel(&self) -> anyhow::Result<Channel> {
        let mut last = None;
        for url in &self.urls {
            match self.channel_to(url).await {
                Ok(channel) => return Ok(channel),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("no endpoints")))
    }

    pub async fn kv(&self) -> anyhow::Result<KvClient<Channel>> {
        Ok(KvClient::new(self.channel().await?))
    }

    pub async fn cluster(&self) -> anyhow::Result<ClusterClient<Channel>> {
        Ok(ClusterClient::new(self.channel().await?))
    }

    pub async fn maintenance_at(&self, url: &str) -> anyhow::Result<MaintenanceClient<Channel>> {
        Ok(MaintenanceClient::new(self.channel_to(url).await?))
    }

    /// For streams that run as long as they need (snapshot save).
    pub async fn maintenance_untimed(&self, url: &str) -> anyhow::Result<MaintenanceClient<Channel>> {
        Ok(MaintenanceClient::new(self.open(url, None).await?).max_decoding_message_size(64 << 20))
    }
}
