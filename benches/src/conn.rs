//! gRPC connections spread round-robin over the endpoints.

use std::time::Duration;

use anyhow::Context;
use tonic::transport::{Channel, Endpoint};

pub async fn connect(endpoints: &[String], conns: usize) -> anyhow::Result<Vec<Channel>> {
    let mut channels = Vec::with_capacity(conns.max(1));
    for i in 0..conns.max(1) {
        let url = &endpoints[i % endpoints.len()];
        let channel = Endpoint::from_shared(url.clone())
            .with_context(|| format!("bad endpoint {url}"))?
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .with_context(|| format!("connecting to {url}"))?;
        channels.push(channel);
    }
    Ok(channels)
}
