//! Connections to the store: one channel balanced over every member's
//! client URL. Requests go to whichever member is up; the store's members
//! forward writes to their leader themselves.

use std::time::Duration;

use shoal_proto::etcdserverpb::kv_client::KvClient;
use shoal_proto::etcdserverpb::lease_client::LeaseClient;
use shoal_proto::etcdserverpb::watch_client::WatchClient;
use tonic::transport::{Channel, Endpoint};

use crate::error::{Error, Result};

/// The endpoint list `shoalctl` and the binaries share: `--endpoints`, else
/// `SHOAL_ENDPOINTS`, else 127.0.0.1:2379.
pub const ENDPOINTS_ENV: &str = "SHOAL_ENDPOINTS";
pub const DEFAULT_ENDPOINT: &str = "127.0.0.1:2379";

/// Handles to the store, cheap to clone.
#[derive(Clone)]
pub struct Store {
    /// For unary calls: each times out.
    unary: Channel,
    /// For watch and keep-alive streams, which live as long as they are needed.
    streaming: Channel,
}

/// Splits `a,b,c` into URLs with a scheme.
pub fn parse_endpoints(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| if s.contains("://") { s.to_string() } else { format!("http://{s}") })
        .collect()
}

impl Store {
    /// Connects lazily to `endpoints`; calls fail (and may be retried) while
    /// no member answers.
    pub fn connect(endpoints: &[String], timeout: Duration) -> Result<Store> {
        let make = |timeout: Option<Duration>| -> Result<Vec<Endpoint>> {
            endpoints
                .iter()
                .map(|url| {
                    let endpoint = Endpoint::from_shared(url.clone())
                        .map_err(|e| Error::Connect(format!("bad endpoint {url}: {e}")))?
                        .connect_timeout(Duration::from_secs(1))
                        .tcp_nodelay(true)
                        .http2_keep_alive_interval(Duration::from_secs(2))
                        .keep_alive_timeout(Duration::from_secs(2));
                    Ok(match timeout {
                        Some(t) => endpoint.timeout(t),
                        None => endpoint,
                    })
                })
                .collect()
        };
        if endpoints.is_empty() {
            return Err(Error::Connect("no endpoints".into()));
        }
        Ok(Store {
            unary: Channel::balance_list(make(Some(timeout))?.into_iter()),
            streaming: Channel::balance_list(make(None)?.into_iter()),
        })
    }

    pub fn kv(&self) -> KvClient<Channel> {
        KvClient::new(self.unary.clone())
    }

    pub fn lease(&self) -> LeaseClient<Channel> {
        LeaseClient::new(self.unary.clone())
    }

    pub fn lease_stream(&self) -> LeaseClient<Channel> {
        LeaseClient::new(self.streaming.clone())
    }

    pub fn watch(&self) -> WatchClient<Channel> {
        WatchClient::new(self.streaming.clone())
    }
}
