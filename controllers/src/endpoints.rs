//! The endpoints controller. For each Service it
//! - gives it a cluster IP if it has none (it was written without one), and
//!   gives back the addresses of Services that are gone;
//! - decides whether a NodePort Service may have its ports: a node port
//!   serves one Service, so the first to hold it keeps it, and a later one
//!   asking for it gets `PortsAllocated=False` (reason `PortConflict`);
//! - keeps `/registry/endpoints/<ns>/<name>` equal to where the matching
//!   pods can be reached: each pod's node address with the port its
//!   container was given, ready pods in `addresses`, the others in
//!   `notReadyAddresses`. It writes only when that changes.
//!
//! A Service without a selector leaves its Endpoints to the user, as in
//! Kubernetes; a deleted Service's Endpoints are deleted.

use std::collections::BTreeMap;
use std::sync::Arc;

use shoal_client::cache::Change;
use shoal_client::queue::Action;
use shoal_client::ObjectKey;
use shoal_proto::objects::meta::set_condition;
use shoal_proto::objects::service::{EndpointAddress, EndpointPort, EndpointSubset, ObjectReference, PORTS_ALLOCATED};
use shoal_proto::objects::{time, Condition, Endpoints, IntOrString, ObjectMeta, Pod, Service};

use crate::context::Context;
use crate::owners::ignore_gone;
use crate::runner::{all_keys, own_key, Builder, Running};

pub fn start(context: Arc<Context>) -> Running {
    let informers = &context.informers;
    let services_changed = {
        let services = informers.services.clone();
        move |change: &Change<Service>| {
            // Freeing or taking a port concerns every Service that wants it.
            let mut keys = vec![change.key.clone()];
            let ports: Vec<String> = [&change.old, &change.new].into_iter().flatten().flat_map(|s| claims(s)).collect();
            services.read(|c| {
                for other in c.list(None) {
                    if claims(&other).iter().any(|p| ports.contains(p)) {
                        keys.push(ObjectKey::of(other.as_ref()));
                    }
                }
            });
            keys.sort();
            keys.dedup();
            keys
        }
    };
    let pods_changed = {
        let services = informers.services.clone();
        move |change: &Change<Pod>| {
            let mut keys = Vec::new();
            for pod in [&change.old, &change.new].into_iter().flatten() {
                services.read(|c| {
                    for service in c.list(Some(pod.metadata.namespace_or_default())) {
                        if selects(&service, pod) {
                            keys.push(ObjectKey::of(service.as_ref()));
                        }
                    }
                });
            }
            keys.sort();
            keys.dedup();
            keys
        }
    };
    let builder = Builder::new("endpoints")
        .watches(&informers.services, services_changed)
        .watches(&informers.pods, pods_changed)
        // An edited Endpoints object is put right, if its Service is there
        // (Endpoints written before their Service are left alone).
        .watches(&informers.endpoints, {
            let services = informers.services.clone();
            move |change: &Change<Endpoints>| {
                if services.get(&change.key).is_some() {
                    own_key(change)
                } else {
                    Vec::new()
                }
            }
        })
        .resyncs(all_keys(&informers.services));
    let workers = context.config.workers;
    builder.run(workers, move |key| {
        let context = context.clone();
        async move { reconcile(&context, &key).await }
    })
}

/// The node ports a Service asks for, as `port/protocol` (a NodePort
/// Service's; others take none).
fn claims(service: &Service) -> Vec<String> {
    if !service.spec.is_node_port() {
        return Vec::new();
    }
    service.spec.ports.iter().map(|p| format!("{}/{}", p.port, p.protocol())).collect()
}

fn selects(service: &Service, pod: &Pod) -> bool {
    let selector = &service.spec.selector;
    !selector.is_empty() && selector.iter().all(|(k, v)| pod.metadata.labels.get(k) == Some(v))
}

async fn reconcile(context: &Context, key: &ObjectKey) -> Result<Action, shoal_client::Error> {
    let Some(service) = context.informers.services.get(key) else {
        let services = context.informers.services.read(|c| c.list(None));
        shoal_client::service_ips::release_unused(context.services.store(), &services).await?;
        if let Some(endpoints) = context.informers.endpoints.get(key) {
            ignore_gone(context.endpoints.delete(&key.namespace, &key.name, endpoints.metadata.revision()).await)?;
        }
        return Ok(Action::Done);
    };
    if service.metadata.deletion_timestamp.is_some() {
        return Ok(Action::Done);
    }
    match shoal_client::service_ips::assign(&context.services, &service).await {
        // The Service comes back through the watch, with its address.
        Ok(Some(_)) => return Ok(Action::Done),
        Ok(None) => {}
        Err(shoal_client::Error::Invalid(e)) => tracing::warn!(service = %key, error = %e, "no cluster IP"),
        Err(e) => return Err(e),
    }
    if service.spec.is_node_port() {
        allocate_ports(context, &service).await?;
    }
    if service.spec.selector.is_empty() {
        return Ok(Action::Done);
    }
    let pods = context.informers.pods.read(|c| c.list(Some(&key.namespace)));
    let subsets = subsets(&service, &pods);
    match context.informers.endpoints.get(key) {
        Some(current) if current.subsets == subsets && current.metadata.labels == service.metadata.labels => {}
        Some(current) => {
            let mut updated = current.as_ref().clone();
            updated.subsets = subsets;
            updated.metadata.labels = service.metadata.labels.clone();
            ignore_gone(context.endpoints.update(&updated).await)?;
        }
        None => {
            let endpoints = Endpoints {
                metadata: ObjectMeta {
                    name: key.name.clone(),
                    namespace: Some(key.namespace.clone()),
                    labels: service.metadata.labels.clone(),
                    ..Default::default()
                },
                subsets,
                ..Default::default()
            };
            context.endpoints.create(&endpoints).await?;
        }
    }
    Ok(Action::Done)
}

/// Who holds a node port first: a Service that already holds its ports,
/// then the oldest, then by name.
fn precedence(service: &Service) -> (bool, String, ObjectKey) {
    let created = service.metadata.creation_timestamp.clone().unwrap_or_default();
    (!service.ports_allocated(), created, ObjectKey::of(service))
}

/// Sets `PortsAllocated`: True when no Service ahead of this one asks for
/// any of its ports.
async fn allocate_ports(context: &Context, service: &Arc<Service>) -> Result<(), shoal_client::Error> {
    let me = ObjectKey::of(service.as_ref());
    let ours = precedence(service);
    // The Services ahead of this one that are not going away, with what they ask for.
    let ahead: Vec<(ObjectKey, Vec<String>)> = context.informers.services.read(|c| {
        c.list(None)
            .iter()
            .filter(|o| o.metadata.deletion_timestamp.is_none() && ObjectKey::of(o.as_ref()) != me)
            .filter(|o| o.spec.is_node_port())
            .filter(|o| precedence(o) < ours)
            .map(|o| (ObjectKey::of(o.as_ref()), claims(o)))
            .collect()
    });
    let conflict = claims(service).into_iter().enumerate().find_map(|(i, claim)| {
        let (holder, _) = ahead.iter().find(|(_, theirs)| theirs.contains(&claim))?;
        Some(format!("spec.ports[{i}].port: port {claim} is already allocated to Service {holder}"))
    });
    let condition = match &conflict {
        None => Condition { type_: PORTS_ALLOCATED.into(), status: "True".into(), ..Default::default() },
        Some(message) => Condition {
            type_: PORTS_ALLOCATED.into(),
            status: "False".into(),
            reason: Some("PortConflict".into()),
            message: Some(message.clone()),
            ..Default::default()
        },
    };
    let mut updated = service.as_ref().clone();
    let status = updated.status.get_or_insert_with(Default::default);
    if set_condition(&mut status.conditions, condition, &time::now()) {
        if let Some(message) = &conflict {
            tracing::warn!(service = %me, %message, "port conflict");
        }
        ignore_gone(context.services.update(&updated).await)?;
    }
    Ok(())
}

/// Where the Service's pods can be reached: pods grouped by the ports they
/// give the Service, in a stable order so that equal sets compare equal.
pub fn subsets(service: &Service, pods: &[Arc<Pod>]) -> Vec<EndpointSubset> {
    type Addresses = (Vec<EndpointAddress>, Vec<EndpointAddress>);
    let mut groups: BTreeMap<Vec<EndpointPort>, Addresses> = BTreeMap::new();
    for pod in pods.iter().filter(|p| p.is_active() && selects(service, p)) {
        // Its own address, or the node's for a pod on the host's network.
        let Some(ip) = pod.status.as_ref().and_then(|s| s.pod_ip.clone()).filter(|ip| !ip.is_empty()) else {
            continue;
        };
        let ports: Vec<EndpointPort> = service
            .spec
            .ports
            .iter()
            .filter_map(|sp| {
                let port = match sp.target() {
                    IntOrString::Int(n) => n,
                    IntOrString::String(name) => pod.named_port(&name)?,
                };
                Some(EndpointPort { name: sp.name.clone(), port, protocol: Some(sp.protocol().into()) })
            })
            .collect();
        if ports.is_empty() {
            continue;
        }
        let address = EndpointAddress {
            ip,
            node_name: pod.spec.node_name.clone(),
            target_ref: Some(ObjectReference {
                kind: "Pod".into(),
                namespace: Some(pod.metadata.namespace_or_default().to_string()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
        };
        let group = groups.entry(ports).or_default();
        if pod.is_ready() {
            group.0.push(address);
        } else {
            group.1.push(address);
        }
    }
    groups
        .into_iter()
        .map(|(ports, (mut addresses, mut not_ready_addresses))| {
            addresses.sort();
            not_ready_addresses.sort();
            EndpointSubset { addresses, not_ready_addresses, ports }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, ip: &str, port: i32, ready: bool) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"), "labels": {"app": "web"}},
                "spec": {"nodeName": "n1", "containers": [{"name": "c", "command": ["x"], "ports": [{"name": "http", "containerPort": 0}]}]},
                "status": {
                    "hostIP": "127.0.0.9",
                    "podIP": ip,
                    "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
                    "containerStatuses": [{"name": "c", "ports": [{"name": "http", "containerPort": port}]}]
                }
            }))
            .expect("pod"),
        )
    }

    fn service(target: serde_json::Value) -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 8080, "targetPort": target}]}
        }))
        .expect("service")
    }

    #[test]
    fn named_target_ports_find_each_pods_allocated_port() {
        let pods = vec![
            pod("b", "10.88.1.3", 20001, true),
            pod("a", "10.88.1.2", 20001, true),
            pod("c", "10.88.1.4", 20002, false),
        ];
        let subsets = subsets(&service(json!("http")), &pods);
        assert_eq!(subsets.len(), 2, "{subsets:?}");
        let ips: Vec<&str> = subsets[0].addresses.iter().map(|a| a.ip.as_str()).collect();
        assert_eq!(ips, ["10.88.1.2", "10.88.1.3"], "sorted, so that equal sets compare equal");
        assert_eq!(subsets[0].ports[0].port, 20001);
        assert!(subsets[1].addresses.is_empty());
        assert_eq!(subsets[1].not_ready_addresses[0].target_ref.as_ref().map(|r| r.name.as_str()), Some("c"));
    }

    #[test]
    fn pods_without_the_port_an_address_or_a_match_are_left_out() {
        let mut unplaced = pod("u", "", 20001, true).as_ref().clone();
        unplaced.status.as_mut().expect("status").pod_ip = None;
        let mut other = pod("o", "127.0.0.2", 20001, true).as_ref().clone();
        other.metadata.labels.insert("app".into(), "db".into());
        let pods = vec![Arc::new(unplaced), Arc::new(other)];
        assert!(subsets(&service(json!("http")), &pods).is_empty());
        assert!(subsets(&service(json!("metrics")), &[pod("a", "127.0.0.2", 1, true)]).is_empty());
        let by_number = subsets(&service(json!(9000)), &[pod("a", "127.0.0.2", 1, true)]);
        assert_eq!(by_number[0].ports[0].port, 9000);
    }
}
