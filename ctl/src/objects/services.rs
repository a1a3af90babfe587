//! Services and Endpoints as `get` and `describe` show them.

use std::fmt::Write;

use shoal_proto::objects::selector::LabelSelector;
use shoal_proto::objects::service::PORTS_ALLOCATED;
use shoal_proto::objects::{Endpoints, IntOrString, Service};

use super::print::{age, Columns};

/// `8080/TCP`; a NodePort Service's node port after a colon, as kubectl
/// shows it (here the node port is the port).
fn port_text(port: &shoal_proto::objects::service::ServicePort, node_port: bool) -> String {
    match node_port {
        true => format!("{}:{}/{}", port.port, port.port, port.protocol()),
        false => format!("{}/{}", port.port, port.protocol()),
    }
}

/// `8080/TCP,9090/TCP`, with a conflict said plainly.
fn ports_column(service: &Service) -> String {
    let node_port = service.spec.is_node_port();
    let ports: Vec<String> = service.spec.ports.iter().map(|p| port_text(p, node_port)).collect();
    let conflicted = service
        .status
        .as_ref()
        .and_then(|s| shoal_proto::objects::meta::condition(&s.conditions, PORTS_ALLOCATED))
        .is_some_and(|c| !c.is_true());
    let ports = if ports.is_empty() { "<none>".to_string() } else { ports.join(",") };
    if conflicted {
        format!("{ports} (PortConflict)")
    } else {
        ports
    }
}

fn selector_text(service: &Service) -> String {
    let selector = LabelSelector { match_labels: service.spec.selector.clone(), ..Default::default() };
    super::print::selector_text(&selector)
}

impl Columns for Service {
    fn header(wide: bool) -> Vec<&'static str> {
        let mut h = vec!["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"];
        if wide {
            h.push("SELECTOR");
        }
        h
    }

    fn row(&self, wide: bool) -> Vec<String> {
        let mut row = vec![
            self.metadata.name.clone(),
            self.spec.type_().to_string(),
            self.spec.cluster_ip.clone().unwrap_or_else(|| "<pending>".into()),
            "<none>".into(),
            ports_column(self),
            age(self.metadata.creation_timestamp.as_deref()),
        ];
        if wide {
            row.push(selector_text(self));
        }
        row
    }
}

/// `127.0.0.2:20001,127.0.0.3:20002 + 2 more...`, as kubectl shortens it.
pub fn endpoints_text(endpoints: &Endpoints) -> String {
    let mut all = Vec::new();
    for subset in &endpoints.subsets {
        for address in &subset.addresses {
            for port in &subset.ports {
                all.push(format!("{}:{}", address.ip, port.port));
            }
        }
    }
    match all.len() {
        0 => "<none>".into(),
        1..=3 => all.join(","),
        n => format!("{} + {} more...", all[..3].join(","), n - 3),
    }
}

impl Columns for Endpoints {
    fn header(_: bool) -> Vec<&'static str> {
        vec!["NAME", "ENDPOINTS", "AGE"]
    }

    fn row(&self, _: bool) -> Vec<String> {
        vec![self.metadata.name.clone(), endpoints_text(self), age(self.metadata.creation_timestamp.as_deref())]
    }
}

/// The Service part of `describe service`, after the common header.
pub fn describe_service(out: &mut String, service: &Service, endpoints: Option<&Endpoints>) {
    let _ = writeln!(out, "Selector:     {}", selector_text(service));
    let _ = writeln!(out, "Type:         {}", service.spec.type_());
    let _ = writeln!(out, "IP:           {}", service.spec.cluster_ip.as_deref().unwrap_or("<pending>"));
    for port in &service.spec.ports {
        let name = if port.name().is_empty() { "<unset>" } else { port.name() };
        let target = match port.target() {
            IntOrString::Int(n) => n.to_string(),
            IntOrString::String(s) => s,
        };
        let _ = writeln!(out, "Port:         {name}  {}", port_text(port, false));
        if service.spec.is_node_port() {
            let _ = writeln!(out, "NodePort:     {name}  {}/{}", port.port, port.protocol());
        }
        let _ = writeln!(out, "TargetPort:   {target}/{}", port.protocol());
        let ready: Vec<String> =
            endpoints.map(|e| e.ready(port.name()).iter().map(|a| a.to_string()).collect()).unwrap_or_default();
        let shown = if ready.is_empty() { "<none>".to_string() } else { ready.join(",") };
        let _ = writeln!(out, "Endpoints:    {shown}");
    }
}

/// The Endpoints part of `describe endpoints`, after the common header.
pub fn describe_endpoints(out: &mut String, endpoints: &Endpoints) {
    out.push_str("Subsets:\n");
    if endpoints.subsets.is_empty() {
        out.push_str("  <none>\n");
    }
    for subset in &endpoints.subsets {
        let list = |addresses: &[shoal_proto::objects::service::EndpointAddress]| {
            let shown: Vec<String> = addresses
                .iter()
                .map(|a| match &a.target_ref {
                    Some(pod) => format!("{} ({})", a.ip, pod.name),
                    None => a.ip.clone(),
                })
                .collect();
            if shown.is_empty() {
                "<none>".to_string()
            } else {
                shown.join(",")
            }
        };
        let _ = writeln!(out, "  Addresses:          {}", list(&subset.addresses));
        let _ = writeln!(out, "  NotReadyAddresses:  {}", list(&subset.not_ready_addresses));
        out.push_str("  Ports:\n    Name      Port    Protocol\n    ----      ----    --------\n");
        for port in &subset.ports {
            let name = port.name.as_deref().filter(|n| !n.is_empty()).unwrap_or("<unset>");
            let protocol = port.protocol.as_deref().unwrap_or("TCP");
            let _ = writeln!(out, "    {name:<9} {:<7} {protocol}", port.port);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_endpoints_column_shortens_as_kubectl_does() {
        let endpoints: Endpoints = serde_json::from_value(json!({"metadata": {"name": "web"}, "subsets": [{
            "addresses": [{"ip": "127.0.0.2"}, {"ip": "127.0.0.3"}, {"ip": "127.0.0.4"}, {"ip": "127.0.0.5"}],
            "ports": [{"port": 20001}]
        }]}))
        .expect("endpoints");
        assert_eq!(endpoints_text(&endpoints), "127.0.0.2:20001,127.0.0.3:20001,127.0.0.4:20001 + 1 more...");
        assert_eq!(endpoints_text(&Endpoints::default()), "<none>");
    }

    #[test]
    fn a_conflicted_service_says_so_in_its_ports() {
        let service: Service = serde_json::from_value(json!({
            "metadata": {"name": "web"},
            "spec": {"ports": [{"port": 8080}], "type": "NodePort"},
            "status": {"conditions": [{"type": "PortsAllocated", "status": "False", "reason": "PortConflict"}]}
        }))
        .expect("service");
        assert_eq!(ports_column(&service), "8080:8080/TCP (PortConflict)");
    }
}
