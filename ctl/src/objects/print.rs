//! Printing objects as kubectl does: tables by default (`-o wide` adds
//! columns), or the objects themselves as JSON or YAML; a listing in JSON
//! or YAML is a `List`.

use std::time::Duration;

use serde::Serialize;
use shoal_proto::objects::{time, Deployment, Lease, Node, Object, Pod, ReplicaSet};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Wide,
    Json,
    Yaml,
}

/// `5s`, `3m`, `2h`, `4d`: kubectl's age column.
pub fn age(timestamp: Option<&str>) -> String {
    let Some(age) = timestamp.and_then(time::age) else { return "<unknown>".into() };
    let s = age.as_secs();
    match s {
        0..120 => format!("{s}s"),
        120..7200 => format!("{}m", s / 60),
        7200..172_800 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// Columns aligned with three spaces between them, as kubectl aligns them.
pub fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}   ", width = widths[c]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The object itself, or a `List` of them, as JSON or YAML.
pub fn document<T: Serialize>(items: &[T], single: bool, format: Format) -> anyhow::Result<String> {
    let value = if single && items.len() == 1 {
        serde_json::to_value(&items[0])?
    } else {
        serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items, "metadata": {"resourceVersion": ""}})
    };
    Ok(match format {
        Format::Json => serde_json::to_string_pretty(&value)? + "\n",
        _ => yaml_serde::to_string(&value)?,
    })
}

/// One kind's table: its header and a row per object.
pub trait Columns: Object {
    fn header(wide: bool) -> Vec<&'static str>;
    fn row(&self, wide: bool) -> Vec<String>;
}

impl Columns for Pod {
    fn header(wide: bool) -> Vec<&'static str> {
        let mut h = vec!["NAME", "READY", "STATUS", "RESTARTS", "AGE"];
        if wide {
            h.extend(["IP", "NODE", "PORTS"]);
        }
        h
    }

    fn row(&self, wide: bool) -> Vec<String> {
        let statuses = self.status.as_ref().map(|s| s.container_statuses.as_slice()).unwrap_or_default();
        let ready = statuses.iter().filter(|c| c.ready).count();
        let restarts: i32 = statuses.iter().map(|c| c.restart_count).sum();
        let status = if self.metadata.deletion_timestamp.is_some() {
            "Terminating".to_string()
        } else {
            let finished = matches!(self.phase(), "Succeeded" | "Failed");
            statuses
                .iter()
                .find_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone())
                // A finished pod shows how it ended (Completed, Error), as kubectl does.
                .or_else(|| {
                    let mut ended =
                        statuses.iter().filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.reason.clone());
                    ended.next_back().filter(|_| finished)
                })
                .unwrap_or_else(|| self.phase().to_string())
        };
        let mut row = vec![
            self.metadata.name.clone(),
            format!("{ready}/{}", self.spec.containers.len()),
            status,
            restarts.to_string(),
            age(self.metadata.creation_timestamp.as_deref()),
        ];
        if wide {
            row.push(self.status.as_ref().and_then(|s| s.pod_ip.clone()).unwrap_or_else(|| "<none>".into()));
            row.push(self.spec.node_name.clone().unwrap_or_else(|| "<none>".into()));
            row.push(pod_ports(self));
        }
        row
    }
}

impl Columns for Deployment {
    fn header(wide: bool) -> Vec<&'static str> {
        let mut h = vec!["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"];
        if wide {
            h.extend(["CONTAINERS", "IMAGES", "SELECTOR"]);
        }
        h
    }

    fn row(&self, wide: bool) -> Vec<String> {
        let s = self.status.clone().unwrap_or_default();
        let mut row = vec![
            self.metadata.name.clone(),
            format!("{}/{}", s.ready_replicas, self.replicas()),
            s.updated_replicas.to_string(),
            s.available_replicas.to_string(),
            age(self.metadata.creation_timestamp.as_deref()),
        ];
        if wide {
            let containers = &self.spec.template.spec.containers;
            row.push(containers.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(","));
            row.push(containers.iter().map(|c| c.image.as_deref().unwrap_or("<none>")).collect::<Vec<_>>().join(","));
            row.push(selector_text(&self.spec.selector));
        }
        row
    }
}

impl Columns for ReplicaSet {
    fn header(wide: bool) -> Vec<&'static str> {
        let mut h = vec!["NAME", "DESIRED", "CURRENT", "READY", "AGE"];
        if wide {
            h.extend(["CONTAINERS", "SELECTOR"]);
        }
        h
    }

    fn row(&self, wide: bool) -> Vec<String> {
        let s = self.status.clone().unwrap_or_default();
        let mut row = vec![
            self.metadata.name.clone(),
            self.replicas().to_string(),
            s.replicas.to_string(),
            s.ready_replicas.to_string(),
            age(self.metadata.creation_timestamp.as_deref()),
        ];
        if wide {
            row.push(self.spec.template.spec.containers.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(","));
            row.push(selector_text(&self.spec.selector));
        }
        row
    }
}

impl Columns for Node {
    fn header(wide: bool) -> Vec<&'static str> {
        let mut h = vec!["NAME", "STATUS", "AGE"];
        if wide {
            h.extend(["INTERNAL-IP", "TAINTS"]);
        }
        h
    }

    fn row(&self, wide: bool) -> Vec<String> {
        let mut status = if self.is_ready() { "Ready".to_string() } else { "NotReady".to_string() };
        if self.spec.unschedulable {
            status.push_str(",SchedulingDisabled");
        }
        let mut row = vec![self.metadata.name.clone(), status, age(self.metadata.creation_timestamp.as_deref())];
        if wide {
            let ip = self
                .status
                .as_ref()
                .and_then(|s| s.addresses.iter().find(|a| a.type_ == "InternalIP"))
                .map(|a| a.address.clone());
            row.push(ip.unwrap_or_else(|| "<none>".into()));
            row.push(self.spec.taints.len().to_string());
        }
        row
    }
}

impl Columns for Lease {
    fn header(_: bool) -> Vec<&'static str> {
        vec!["NAME", "HOLDER", "AGE"]
    }

    fn row(&self, _: bool) -> Vec<String> {
        vec![
            self.metadata.name.clone(),
            self.spec.holder_identity.clone().unwrap_or_default(),
            age(self.metadata.creation_timestamp.as_deref()),
        ]
    }
}

/// `http:20001,metrics:20002`: the ports the pod's containers were given
/// (or declare, before they run).
fn pod_ports(pod: &Pod) -> String {
    let given: Vec<_> =
        pod.status.iter().flat_map(|s| s.container_statuses.iter()).flat_map(|c| c.ports.iter()).collect();
    let declared: Vec<_> = pod.spec.containers.iter().flat_map(|c| c.ports.iter()).collect();
    let ports = if given.is_empty() { declared } else { given };
    let shown: Vec<String> = ports
        .iter()
        .map(|p| {
            let number = if p.container_port == 0 { "?".to_string() } else { p.container_port.to_string() };
            match p.name.as_deref() {
                Some(name) => format!("{name}:{number}"),
                None => number,
            }
        })
        .collect();
    if shown.is_empty() {
        "<none>".into()
    } else {
        shown.join(",")
    }
}

pub fn selector_text(selector: &shoal_proto::objects::selector::LabelSelector) -> String {
    let mut parts: Vec<String> = selector.match_labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    for r in &selector.match_expressions {
        parts.push(format!("{} {} ({})", r.key, r.operator, r.values.join(",")));
    }
    if parts.is_empty() {
        "<none>".into()
    } else {
        parts.join(",")
    }
}

/// A table of `objects`, with a NAMESPACE column when they span namespaces.
pub fn objects_table<K: Columns>(objects: &[K], wide: bool, all_namespaces: bool) -> String {
    let mut rows = Vec::new();
    let mut header: Vec<String> = K::header(wide).into_iter().map(String::from).collect();
    if all_namespaces && K::NAMESPACED {
        header.insert(0, "NAMESPACE".into());
    }
    rows.push(header);
    for o in objects {
        let mut row = o.row(wide);
        if all_namespaces && K::NAMESPACED {
            row.insert(0, o.meta().namespace_or_default().to_string());
        }
        rows.push(row);
    }
    table(&rows)
}

/// How long ago, for describe.
pub fn ago(timestamp: Option<&str>) -> String {
    match timestamp.and_then(time::age) {
        Some(d) if d < Duration::from_secs(1) => "just now".into(),
        Some(_) => format!("{} ago", age(timestamp)),
        None => "<unknown>".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_like_kubectl() {
        let rows = vec![vec!["NAME".to_string(), "READY".to_string()], vec!["web-1".to_string(), "1/1".to_string()]];
        assert_eq!(table(&rows), "NAME    READY\nweb-1   1/1\n");
    }

    #[test]
    fn a_listing_is_a_list() {
        let one = document(&[serde_json::json!({"kind": "Pod"})], true, Format::Json).expect("json");
        assert!(one.contains("\"kind\": \"Pod\"") && !one.contains("List"));
        let many = document(&[serde_json::json!({"kind": "Pod"})], false, Format::Json).expect("json");
        let value: serde_json::Value = serde_json::from_str(&many).expect("parses");
        assert_eq!(value["kind"], "List");
        assert_eq!(value["apiVersion"], "v1");
        let yaml = document(&[serde_json::json!({"kind": "Pod"})], true, Format::Yaml).expect("yaml");
        assert_eq!(yaml, "kind: Pod\n");
    }
}
