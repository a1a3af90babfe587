//! The node's DNS for its pods, the part CoreDNS plays in Kubernetes, on
//! UDP port 53 of the node's bridge address (the pods' gateway, which each
//! pod's /etc/resolv.conf names). `NAME.NAMESPACE.svc.cluster.local` is
//! answered from the Services the agent watches: an A record with the
//! cluster IP, or NXDOMAIN when there is no such Service. Other names are
//! passed to the host's first nameserver, and its answer back.
//!
//! Messages are read and written with hickory-proto (the hickory DNS
//! project's wire format, maintained and fuzzed), rather than by hand: DNS
//! has name compression, EDNS and a long tail of record types that a
//! resolver may send.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};
use shoal_client::informer::{Informer, Shutdown};
use shoal_client::ObjectKey;
use shoal_proto::objects::Service;
use tokio::net::UdpSocket;

/// The cluster's domain, as in Kubernetes.
pub const CLUSTER_DOMAIN: &str = "cluster.local";
/// How long an answer may be cached: Services come and go.
const TTL: u32 = 5;
/// How long the host's nameserver gets to answer a passed-on query.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(3);

/// What a name is in the cluster's domain.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    /// A Service's cluster IP.
    Found(Ipv4Addr),
    /// A Service with no address (headless, or not given one yet).
    NoAddress,
    /// Nothing of that name in the cluster's domain.
    Missing,
    /// Not in the cluster's domain.
    Outside,
}

/// Looks `name` (lower case, with or without the final dot) up in `service`.
pub fn lookup(name: &str, service: impl Fn(&ObjectKey) -> Option<Arc<Service>>) -> Lookup {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let Some(rest) = name.strip_suffix(CLUSTER_DOMAIN).and_then(|r| r.strip_suffix('.')).or_else(|| {
        // The cluster's domain itself.
        (name == CLUSTER_DOMAIN).then_some("")
    }) else {
        return Lookup::Outside;
    };
    let labels: Vec<&str> = rest.split('.').collect();
    match labels.as_slice() {
        [service_name, namespace, "svc"] => match service(&ObjectKey::new(namespace, service_name)) {
            Some(found) => found.spec.cluster_ip().map_or(Lookup::NoAddress, Lookup::Found),
            None => Lookup::Missing,
        },
        _ => Lookup::Missing,
    }
}

/// The answer to `query` when it is about the cluster's domain; None when
/// it must be passed on (or is not a query at all).
pub fn answer(query: &[u8], service: impl Fn(&ObjectKey) -> Option<Arc<Service>>) -> Option<Vec<u8>> {
    let request = Message::from_vec(query).ok()?;
    if request.metadata.message_type != MessageType::Query {
        return None;
    }
    let mut response = Message::response(request.metadata.id, request.metadata.op_code);
    response.metadata.recursion_desired = request.metadata.recursion_desired;
    response.metadata.recursion_available = true;
    let Some(question) = request.queries.first().cloned() else {
        response.metadata.response_code = ResponseCode::FormErr;
        return response.to_vec().ok();
    };
    if request.metadata.op_code != OpCode::Query {
        response.metadata.response_code = ResponseCode::NotImp;
        response.add_query(question);
        return response.to_vec().ok();
    }
    let found = lookup(&question.name().to_ascii(), service);
    if found == Lookup::Outside {
        return None;
    }
    response.metadata.authoritative = true;
    match found {
        Lookup::Found(ip) if question.query_type() == RecordType::A => {
            response.add_answer(Record::from_rdata(question.name().clone(), TTL, RData::A(A(ip))));
        }
        // The name exists; it has no record of the type asked for.
        Lookup::Found(_) | Lookup::NoAddress => {}
        _ => response.metadata.response_code = ResponseCode::NXDomain,
    }
    response.add_query(question);
    response.to_vec().ok()
}

/// The host's first nameserver, from /etc/resolv.conf.
pub fn host_nameserver() -> Option<SocketAddr> {
    let text = std::fs::read_to_string("/etc/resolv.conf").ok()?;
    text.lines().find_map(|line| {
        let address = line.trim().strip_prefix("nameserver")?.trim();
        Some(SocketAddr::new(address.parse().ok()?, 53))
    })
}

/// What a pod's /etc/resolv.conf says: this node's DNS, and the search path
/// of its namespace.
pub fn resolv_conf(nameserver: Ipv4Addr, namespace: &str) -> String {
    format!(
        "search {namespace}.svc.{CLUSTER_DOMAIN} svc.{CLUSTER_DOMAIN} {CLUSTER_DOMAIN}\nnameserver {nameserver}\noptions ndots:5\n"
    )
}

/// Serves DNS at `at` from `services` until `shutdown`.
pub async fn serve(at: SocketAddr, services: Informer<Service>, mut shutdown: Shutdown) {
    let mut said = String::new();
    let socket = loop {
        match UdpSocket::bind(at).await {
            Ok(socket) => break Arc::new(socket),
            Err(e) => {
                if e.to_string() != said {
                    said = e.to_string();
                    tracing::warn!(%at, error = %e, "cannot serve DNS yet; trying every second");
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shutdown.changed() => return,
                }
            }
        }
    };
    tracing::info!(%at, "serving DNS for the pods");
    let upstream = host_nameserver();
    let mut buffer = vec![0u8; 4096];
    loop {
        let (length, from) = tokio::select! {
            received = socket.recv_from(&mut buffer) => match received {
                Ok(received) => received,
                Err(e) => {
                    tracing::debug!(error = %e, "DNS receive failed");
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let query = buffer[..length].to_vec();
        match answer(&query, |key| services.get(key)) {
            Some(reply) => {
                let _ = socket.send_to(&reply, from).await;
            }
            None => {
                let Some(upstream) = upstream else { continue };
                let socket = socket.clone();
                tokio::spawn(async move {
                    if let Some(reply) = pass_on(&query, upstream).await {
                        let _ = socket.send_to(&reply, from).await;
                    }
                });
            }
        }
    }
}

/// Sends `query` to `upstream` and returns its answer.
async fn pass_on(query: &[u8], upstream: SocketAddr) -> Option<Vec<u8>> {
    let local: SocketAddr = if upstream.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
    let socket = UdpSocket::bind(local).await.ok()?;
    socket.send_to(query, upstream).await.ok()?;
    let mut buffer = vec![0u8; 4096];
    let (length, _) = tokio::time::timeout(UPSTREAM_TIMEOUT, socket.recv_from(&mut buffer)).await.ok()?.ok()?;
    buffer.truncate(length);
    Some(buffer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;
    use hickory_proto::rr::Name;
    use serde_json::json;

    fn services(key: &ObjectKey) -> Option<Arc<Service>> {
        let ip = match (key.namespace.as_str(), key.name.as_str()) {
            ("default", "web") => json!("10.96.0.10"),
            ("default", "headless") => json!("None"),
            _ => return None,
        };
        let service = json!({"metadata": {"name": key.name, "namespace": key.namespace}, "spec": {"clusterIP": ip, "ports": [{"port": 80}]}});
        Some(Arc::new(serde_json::from_value(service).expect("service")))
    }

    fn ask(name: &str, kind: RecordType) -> Option<Message> {
        let mut query = Message::query();
        query.metadata.id = 4242;
        query.add_query(Query::query(Name::from_ascii(name).expect("name"), kind));
        let reply = answer(&query.to_vec().expect("encode"), services)?;
        Some(Message::from_vec(&reply).expect("decode"))
    }

    #[test]
    fn service_names_are_answered_from_the_services() {
        let reply = ask("web.default.svc.cluster.local.", RecordType::A).expect("answered");
        assert_eq!(reply.metadata.id, 4242);
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
        let ips: Vec<String> = reply.answers.iter().map(|r| r.data.to_string()).collect();
        assert_eq!(ips, ["10.96.0.10"]);
        let upper = ask("WEB.default.svc.cluster.local.", RecordType::A).expect("answered");
        assert_eq!(upper.answers.len(), 1, "names are case-insensitive");
        let aaaa = ask("web.default.svc.cluster.local.", RecordType::AAAA).expect("answered");
        assert_eq!((aaaa.metadata.response_code, aaaa.answers.len()), (ResponseCode::NoError, 0));
        let headless = ask("headless.default.svc.cluster.local.", RecordType::A).expect("answered");
        assert_eq!((headless.metadata.response_code, headless.answers.len()), (ResponseCode::NoError, 0));
        for missing in ["db.default.svc.cluster.local.", "web.other.svc.cluster.local.", "x.cluster.local."] {
            let reply = ask(missing, RecordType::A).expect("answered");
            assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain, "{missing}");
        }
        assert!(ask("example.com.", RecordType::A).is_none(), "passed on");
        assert!(answer(b"not dns", services).is_none());
    }

    #[test]
    fn a_pods_resolv_conf_searches_its_namespace_first() {
        let text = resolv_conf(Ipv4Addr::new(10, 88, 1, 1), "shop");
        assert_eq!(
            text,
            "search shop.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.88.1.1\noptions ndots:5\n"
        );
    }
}
