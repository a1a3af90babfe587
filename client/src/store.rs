//! Connections to the store: a lazily connected channel per member. Calls
//! go to the current member; a call that finds it unreachable moves on to
//! the next one and tries again, so a dead member costs one failed connect,
//! not an error. Members forward writes to their leader themselves.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use shoal_proto::etcdserverpb::kv_client::KvClient;
use shoal_proto::etcdserverpb::lease_client::LeaseClient;
use shoal_proto::etcdserverpb::watch_client::WatchClient;
use shoal_proto::etcdserverpb::{LeaseKeepAliveRequest, RangeRequest, RangeResponse, TxnRequest, TxnResponse};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use crate::error::{Error, Result};

/// The endpoint list `shoalctl` and the binaries share: `--endpoints`, else
/// `SHOAL_ENDPOINTS`, else 127.0.0.1:2379.
pub const ENDPOINTS_ENV: &str = "SHOAL_ENDPOINTS";
pub const DEFAULT_ENDPOINT: &str = "127.0.0.1:2379";

/// Handles to the store, cheap to clone (clones share the current member).
#[derive(Clone)]
pub struct Store {
    /// Per member, for unary calls: each times out.
    unary: Arc<Vec<Channel>>,
    /// Per member, for watch and keep-alive streams, which live as long as needed.
    streaming: Arc<Vec<Channel>>,
    current: Arc<AtomicUsize>,
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
    /// Prepares channels to `endpoints` without connecting yet. Must be
    /// called within a Tokio runtime.
    pub fn connect(endpoints: &[String], timeout: Duration) -> Result<Store> {
        Store::connect_tls(endpoints, timeout, None)
    }

    /// Like `connect`, with TLS settings for https endpoints.
    pub fn connect_tls(endpoints: &[String], timeout: Duration, tls: Option<ClientTlsConfig>) -> Result<Store> {
        if endpoints.is_empty() {
            return Err(Error::Connect("no endpoints".into()));
        }
        let mut unary = Vec::new();
        let mut streaming = Vec::new();
        for url in endpoints {
            let mut endpoint = Endpoint::from_shared(url.clone())
                .map_err(|e| Error::Connect(format!("bad endpoint {url}: {e}")))?
                .connect_timeout(Duration::from_secs(1))
                .tcp_nodelay(true)
                .http2_keep_alive_interval(Duration::from_secs(2))
                .keep_alive_timeout(Duration::from_secs(2));
            if let (Some(tls), true) = (&tls, url.starts_with("https://")) {
                endpoint =
                    endpoint.tls_config(tls.clone()).map_err(|e| Error::Connect(format!("TLS for {url}: {e}")))?;
            }
            streaming.push(endpoint.connect_lazy());
            unary.push(endpoint.timeout(timeout).connect_lazy());
        }
        Ok(Store { unary: Arc::new(unary), streaming: Arc::new(streaming), current: Arc::new(AtomicUsize::new(0)) })
    }

    fn at(&self) -> usize {
        self.current.load(Ordering::Relaxed) % self.unary.len()
    }

    /// Moves on to the next member.
    pub fn rotate(&self) {
        self.current.fetch_add(1, Ordering::Relaxed);
    }

    pub fn kv(&self) -> KvClient<Channel> {
        KvClient::new(self.unary[self.at()].clone())
    }

    pub fn lease(&self) -> LeaseClient<Channel> {
        LeaseClient::new(self.unary[self.at()].clone())
    }

    pub fn lease_stream(&self) -> LeaseClient<Channel> {
        LeaseClient::new(self.streaming[self.at()].clone())
    }

    pub fn watch(&self) -> WatchClient<Channel> {
        WatchClient::new(self.streaming[self.at()].clone())
    }

    /// One keep-alive round trip for `lease`: its remaining TTL (0 or less:
    /// it is gone), or None if the store did not answer.
    pub async fn keep_alive_once(&self, lease: i64) -> Option<i64> {
        let request = tokio_stream::iter([LeaseKeepAliveRequest { id: lease }]);
        let mut replies = self.lease_stream().lease_keep_alive(request).await.ok()?.into_inner();
        replies.message().await.ok().flatten().map(|r| r.ttl)
    }

    /// A Range, on whichever member answers.
    pub async fn range(&self, request: RangeRequest) -> Result<RangeResponse> {
        let response = self.call(|s| {
            let request = request.clone();
            async move { s.kv().range(request).await }
        });
        Ok(response.await?.into_inner())
    }

    /// A Txn, on whichever member answers.
    pub async fn txn(&self, txn: TxnRequest) -> Result<TxnResponse> {
        let response = self.call(|s| {
            let txn = txn.clone();
            async move { s.kv().txn(txn).await }
        });
        Ok(response.await?.into_inner())
    }

    /// Runs `call`, moving on to the next member while the current one is
    /// unavailable, once around all of them.
    pub async fn call<T, F, Fut>(&self, call: F) -> std::result::Result<T, tonic::Status>
    where
        F: Fn(Store) -> Fut,
        Fut: Future<Output = std::result::Result<T, tonic::Status>>,
    {
        let mut attempts = self.unary.len() + 1;
        loop {
            match call(self.clone()).await {
                Err(status) if status.code() == tonic::Code::Unavailable && attempts > 1 => {
                    attempts -= 1;
                    self.rotate();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                other => return other,
            }
        }
    }
}
