//! `describe`: one object in prose, with its conditions in the order they
//! last changed, so recent status changes read like events.

use std::collections::BTreeMap;
use std::fmt::Write;

use shoal_client::{Api, Store};
use shoal_proto::objects::{Condition, Deployment, Endpoints, Node, Object, ObjectMeta, Pod, ReplicaSet, Service};

use super::print::{ago, selector_text, table};
use super::resource::Resource;
use super::services;
use super::{server_error, target, DescribeArgs};

fn map(out: &mut String, title: &str, values: &BTreeMap<String, String>) {
    let _ = write!(out, "{title:<14}");
    if values.is_empty() {
        out.push_str("<none>\n");
    }
    for (i, (k, v)) in values.iter().enumerate() {
        let pad = if i == 0 { "" } else { "              " };
        let _ = writeln!(out, "{pad}{k}={v}");
    }
}

fn header(out: &mut String, meta: &ObjectMeta, namespaced: bool) {
    let _ = writeln!(out, "Name:         {}", meta.name);
    if namespaced {
        let _ = writeln!(out, "Namespace:    {}", meta.namespace_or_default());
    }
    let _ = writeln!(out, "UID:          {}", meta.uid);
    let _ = writeln!(
        out,
        "Created:      {} ({})",
        meta.creation_timestamp.as_deref().unwrap_or("<unknown>"),
        ago(meta.creation_timestamp.as_deref())
    );
    map(out, "Labels:", &meta.labels);
    map(out, "Annotations:", &meta.annotations);
    if let Some(owner) = meta.controller() {
        let _ = writeln!(out, "Controlled By: {}/{}", owner.kind, owner.name);
    }
}

/// Conditions, most recently changed last.
fn conditions(out: &mut String, conditions: &[Condition]) {
    out.push_str("Conditions:\n");
    if conditions.is_empty() {
        out.push_str("  <none>\n");
        return;
    }
    let mut sorted: Vec<&Condition> = conditions.iter().collect();
    sorted.sort_by_key(|c| c.last_transition_time.clone());
    let mut rows = vec![["Type", "Status", "Reason", "Since", "Message"].map(String::from).to_vec()];
    for c in sorted {
        rows.push(vec![
            c.type_.clone(),
            c.status.clone(),
            c.reason.clone().unwrap_or_default(),
            ago(c.last_transition_time.as_deref()),
            c.message.clone().unwrap_or_default(),
        ]);
    }
    for line in table(&rows).lines() {
        let _ = writeln!(out, "  {line}");
    }
}

fn pod(p: &Pod) -> String {
    let mut out = String::new();
    header(&mut out, &p.metadata, true);
    let status = p.status.clone().unwrap_or_default();
    let _ = writeln!(out, "Node:         {}", p.spec.node_name.as_deref().unwrap_or("<none>"));
    let _ = writeln!(out, "Status:       {}", p.phase());
    let _ = writeln!(out, "IP:           {}", status.pod_ip.as_deref().unwrap_or("<none>"));
    out.push_str("Containers:\n");
    for c in &p.spec.containers {
        let _ = writeln!(out, "  {}:", c.name);
        let _ = writeln!(out, "    Image:    {}", c.image.as_deref().unwrap_or("<none>"));
        let _ = writeln!(out, "    Command:  {}", c.command.join(" "));
        if !c.resources.is_empty() {
            let _ = writeln!(out, "    Requests: {:?}", c.resources.requests);
            let _ = writeln!(out, "    Limits:   {:?}", c.resources.limits);
        }
        if let Some(s) = status.container_statuses.iter().find(|s| s.name == c.name) {
            let _ = writeln!(out, "    Ready:    {}", s.ready);
            let _ = writeln!(out, "    Restarts: {}", s.restart_count);
        }
    }
    conditions(&mut out, &status.conditions);
    out
}

fn deployment(d: &Deployment, sets: &[ReplicaSet]) -> String {
    let mut out = String::new();
    header(&mut out, &d.metadata, true);
    let s = d.status.clone().unwrap_or_default();
    let _ = writeln!(out, "Selector:     {}", selector_text(&d.spec.selector));
    let _ = writeln!(
        out,
        "Replicas:     {} desired | {} updated | {} total | {} available | {} unavailable",
        d.replicas(),
        s.updated_replicas,
        s.replicas,
        s.available_replicas,
        s.unavailable_replicas
    );
    let (surge, unavailable) = d.surge_and_unavailable();
    if d.is_recreate() {
        out.push_str("StrategyType: Recreate\n");
    } else {
        let _ = writeln!(out, "StrategyType: RollingUpdate ({surge} max surge, {unavailable} max unavailable)");
    }
    out.push_str("Pod Template:\n");
    for c in &d.spec.template.spec.containers {
        let _ = writeln!(
            out,
            "  {}: {}",
            c.name,
            c.image.as_deref().map(String::from).unwrap_or_else(|| c.command.join(" "))
        );
    }
    conditions(&mut out, &s.conditions);
    let owned: Vec<&ReplicaSet> =
        sets.iter().filter(|rs| rs.metadata.controller().is_some_and(|o| o.uid == d.metadata.uid)).collect();
    out.push_str("ReplicaSets:\n");
    let mut rows = vec![["Name", "Revision", "Replicas", "Ready"].map(String::from).to_vec()];
    for rs in owned {
        let revision = rs.metadata.annotations.get("deployment.kubernetes.io/revision").cloned().unwrap_or_default();
        let ready = rs.status.as_ref().map_or(0, |s| s.ready_replicas);
        rows.push(vec![rs.metadata.name.clone(), revision, rs.replicas().to_string(), ready.to_string()]);
    }
    for line in table(&rows).lines() {
        let _ = writeln!(out, "  {line}");
    }
    out
}

fn replica_set(rs: &ReplicaSet) -> String {
    let mut out = String::new();
    header(&mut out, &rs.metadata, true);
    let s = rs.status.clone().unwrap_or_default();
    let _ = writeln!(out, "Selector:     {}", selector_text(&rs.spec.selector));
    let _ = writeln!(out, "Replicas:     {} current / {} desired", s.replicas, rs.replicas());
    let _ = writeln!(out, "Pods Status:  {} ready / {} available", s.ready_replicas, s.available_replicas);
    conditions(&mut out, &s.conditions);
    out
}

fn node(n: &Node, pods: &[Pod]) -> String {
    let mut out = String::new();
    header(&mut out, &n.metadata, false);
    let status = n.status.clone().unwrap_or_default();
    let taints: Vec<String> = n.spec.taints.iter().map(|t| format!("{}={}:{}", t.key, t.value, t.effect)).collect();
    let _ = writeln!(out, "Taints:       {}", if taints.is_empty() { "<none>".into() } else { taints.join(", ") });
    let _ = writeln!(out, "Unschedulable: {}", n.spec.unschedulable);
    map(&mut out, "Capacity:", &status.capacity);
    map(&mut out, "Allocatable:", &status.allocatable);
    conditions(&mut out, &status.conditions);
    let here: Vec<&Pod> = pods
        .iter()
        .filter(|p| p.spec.node_name.as_deref() == Some(n.metadata.name.as_str()) && p.is_active())
        .collect();
    let _ = writeln!(out, "Non-terminated Pods: ({} in total)", here.len());
    for p in here {
        let _ = writeln!(out, "  {}/{}", p.metadata.namespace_or_default(), p.metadata.name);
    }
    out
}

pub async fn describe(store: &Store, args: DescribeArgs) -> anyhow::Result<()> {
    let (kind, name) = target(&args.resource, args.name.as_deref())?;
    let Some(name) = name else { anyhow::bail!("a name is required: describe {} NAME", args.resource) };
    let namespace = args.scope.namespace();
    let text = match kind {
        Resource::Pod => pod(&Api::<Pod>::new(store.clone()).get(namespace, &name).await.map_err(server_error)?),
        Resource::Deployment => {
            let d = Api::<Deployment>::new(store.clone()).get(namespace, &name).await.map_err(server_error)?;
            let sets = Api::<ReplicaSet>::new(store.clone()).list(Some(namespace)).await.map_err(server_error)?;
            deployment(&d, &sets.items)
        }
        Resource::ReplicaSet => {
            replica_set(&Api::<ReplicaSet>::new(store.clone()).get(namespace, &name).await.map_err(server_error)?)
        }
        Resource::Node => {
            let n = Api::<Node>::new(store.clone()).get("", &name).await.map_err(server_error)?;
            let pods = Api::<Pod>::new(store.clone()).list(None).await.map_err(server_error)?;
            node(&n, &pods.items)
        }
        Resource::Lease => {
            let lease =
                Api::<shoal_proto::objects::Lease>::new(store.clone()).get("", &name).await.map_err(server_error)?;
            let mut out = String::new();
            header(&mut out, lease.meta(), false);
            let _ = writeln!(out, "Holder:       {}", lease.spec.holder_identity.as_deref().unwrap_or("<none>"));
            out
        }
        Resource::Service => {
            let service = Api::<Service>::new(store.clone()).get(namespace, &name).await.map_err(server_error)?;
            let endpoints =
                Api::<Endpoints>::new(store.clone()).get_opt(namespace, &name).await.map_err(server_error)?;
            let mut out = String::new();
            header(&mut out, service.meta(), true);
            services::describe_service(&mut out, &service, endpoints.as_ref());
            conditions(&mut out, service.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or_default());
            out
        }
        Resource::Endpoints => {
            let endpoints = Api::<Endpoints>::new(store.clone()).get(namespace, &name).await.map_err(server_error)?;
            let mut out = String::new();
            header(&mut out, endpoints.meta(), true);
            services::describe_endpoints(&mut out, &endpoints);
            out
        }
    };
    print!("{text}");
    Ok(())
}
