//! Ports: container ports, Services and Endpoints, checked with
//! Kubernetes' messages.

use std::collections::HashSet;

use super::{is_dns_label, labels, FieldErrors, LABEL};
use crate::objects::pod::Container;
use crate::objects::service::{EndpointPort, Endpoints, Service, HEADLESS};
use crate::objects::IntOrString;

const PORT_RANGE: &str = "must be between 1 and 65535, inclusive";
/// Protocols a container may declare; Services proxy TCP only.
const CONTAINER_PROTOCOLS: [&str; 3] = ["SCTP", "TCP", "UDP"];
const SERVICE_PROTOCOLS: [&str; 1] = ["TCP"];
const SERVICE_TYPES: [&str; 2] = ["ClusterIP", "NodePort"];

/// An IANA service name, as a named port must be: every rule it breaks.
pub fn port_name_problems(name: &str) -> Vec<&'static str> {
    let mut problems = Vec::new();
    if name.len() > 15 {
        problems.push("must be no more than 15 characters");
    }
    if !name.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-') {
        problems.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)");
    }
    if !name.bytes().any(|c| c.is_ascii_lowercase()) {
        problems.push("must contain at least one letter (a-z)");
    }
    if name.contains("--") {
        problems.push("must not contain consecutive hyphens (-)");
    }
    if name.starts_with('-') || name.ends_with('-') {
        problems.push("must not begin or end with a hyphen (-)");
    }
    problems
}

fn port_name(name: &str, field: &str, errors: &mut FieldErrors) {
    for problem in port_name_problems(name) {
        errors.invalid(field, name, problem);
    }
}

/// A container's ports: 0 asks the node for a free one, names are unique
/// in the pod. `fixed` collects `port/protocol` across the pod's containers.
pub(super) fn container_ports(
    container: &Container,
    at: &str,
    names: &mut HashSet<String>,
    fixed: &mut HashSet<String>,
    errors: &mut FieldErrors,
) {
    for (j, port) in container.ports.iter().enumerate() {
        let field = format!("{at}.ports[{j}]");
        if !(0..=65535).contains(&port.container_port) {
            errors.invalid(
                format!("{field}.containerPort"),
                port.container_port,
                "must be between 0 and 65535, inclusive (0 asks the node for a free port)",
            );
        }
        if let Some(name) = &port.name {
            port_name(name, &format!("{field}.name"), errors);
            if !names.insert(name.clone()) {
                errors.duplicate(format!("{field}.name"), name);
            }
        }
        let protocol = port.protocol.as_deref().unwrap_or("TCP");
        if !CONTAINER_PROTOCOLS.contains(&protocol) {
            errors.not_supported(format!("{field}.protocol"), protocol, &CONTAINER_PROTOCOLS);
        } else if port.container_port > 0 && !fixed.insert(format!("{}/{protocol}", port.container_port)) {
            errors.duplicate(format!("{field}.containerPort"), &format!("{}/{protocol}", port.container_port));
        }
    }
}

pub(in crate::objects) fn service(service: &Service, errors: &mut FieldErrors) {
    let spec = &service.spec;
    if let Some(kind) = spec.type_.as_deref().filter(|t| !SERVICE_TYPES.contains(t)) {
        errors.not_supported("spec.type", kind, &SERVICE_TYPES);
    }
    labels(&spec.selector, "spec.selector", errors);
    if let Some(ip) = spec.cluster_ip.as_deref().filter(|ip| !ip.is_empty() && *ip != HEADLESS) {
        if ip.parse::<std::net::Ipv4Addr>().is_err() {
            errors.invalid("spec.clusterIPs[0]", ip, "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)");
        }
    }
    if !spec.cluster_ips.is_empty() && spec.cluster_ips.first() != spec.cluster_ip.as_ref() {
        errors.invalid("spec.clusterIPs[0]", &spec.cluster_ips, "must match `spec.clusterIP`");
    }
    if spec.is_headless() && spec.is_node_port() {
        errors.invalid("spec.clusterIPs[0]", HEADLESS, "may not be set to 'None' for NodePort services");
    }
    if spec.ports.is_empty() {
        errors.required("spec.ports");
    }
    let (mut names, mut numbers) = (HashSet::new(), HashSet::new());
    for (i, port) in spec.ports.iter().enumerate() {
        let at = format!("spec.ports[{i}]");
        match port.name.as_deref().unwrap_or_default() {
            "" if spec.ports.len() > 1 => errors.required(format!("{at}.name")),
            "" => {}
            name if !is_dns_label(name) => errors.invalid(format!("{at}.name"), name, LABEL),
            name if !names.insert(name) => errors.duplicate(format!("{at}.name"), name),
            _ => {}
        }
        if !(1..=65535).contains(&port.port) {
            errors.invalid(format!("{at}.port"), port.port, PORT_RANGE);
        }
        if !SERVICE_PROTOCOLS.contains(&port.protocol()) {
            errors.not_supported(format!("{at}.protocol"), port.protocol(), &SERVICE_PROTOCOLS);
        }
        match &port.target_port {
            Some(IntOrString::Int(n)) if !(1..=65535).contains(n) => {
                errors.invalid(format!("{at}.targetPort"), n, PORT_RANGE)
            }
            Some(IntOrString::String(name)) => port_name(name, &format!("{at}.targetPort"), errors),
            _ => {}
        }
        let key = format!("{}/{}", port.port, port.protocol());
        if !numbers.insert(key.clone()) {
            errors.duplicate(at, &key);
        }
    }
}

pub(in crate::objects) fn endpoints(endpoints: &Endpoints, errors: &mut FieldErrors) {
    for (i, subset) in endpoints.subsets.iter().enumerate() {
        let at = format!("subsets[{i}]");
        let all = [("addresses", &subset.addresses), ("notReadyAddresses", &subset.not_ready_addresses)];
        for (list, addresses) in all {
            for (j, address) in addresses.iter().enumerate() {
                if address.ip.parse::<std::net::IpAddr>().is_err() {
                    errors.invalid(format!("{at}.{list}[{j}].ip"), &address.ip, "must be a valid IP address");
                }
            }
        }
        for (j, port) in subset.ports.iter().enumerate() {
            endpoint_port(port, &format!("{at}.ports[{j}]"), subset.ports.len() > 1, errors);
        }
    }
}

fn endpoint_port(port: &EndpointPort, at: &str, name_required: bool, errors: &mut FieldErrors) {
    match port.name.as_deref().unwrap_or_default() {
        "" if name_required => errors.required(format!("{at}.name")),
        "" => {}
        name if !is_dns_label(name) => errors.invalid(format!("{at}.name"), name, LABEL),
        _ => {}
    }
    if !(1..=65535).contains(&port.port) {
        errors.invalid(format!("{at}.port"), port.port, PORT_RANGE);
    }
    let protocol = port.protocol.as_deref().unwrap_or("TCP");
    if !CONTAINER_PROTOCOLS.contains(&protocol) {
        errors.not_supported(format!("{at}.protocol"), protocol, &CONTAINER_PROTOCOLS);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::objects::validation::validate;
    use crate::objects::{Endpoints, Pod, Service};

    fn service_message(spec: serde_json::Value) -> String {
        let service: Service =
            serde_json::from_value(json!({"metadata": {"name": "web"}, "spec": spec})).expect("decodes");
        validate(&service).err().map(|e| e.to_string()).unwrap_or_default()
    }

    #[test]
    fn a_good_service_passes() {
        let spec = json!({"selector": {"app": "web"}, "ports": [
            {"name": "http", "port": 8080, "targetPort": "http"},
            {"name": "admin", "port": 8081, "targetPort": 9000, "protocol": "TCP"}
        ]});
        assert_eq!(service_message(spec), "");
        assert_eq!(service_message(json!({"ports": [{"port": 80}], "type": "ClusterIP"})), "");
    }

    #[test]
    fn bad_services_get_kubernetes_messages() {
        assert_eq!(service_message(json!({})), "Service \"web\" is invalid: spec.ports: Required value");
        let text = service_message(json!({"ports": [{"port": 0}, {"name": "b--x", "port": 80, "protocol": "UDP"}]}));
        assert!(text.contains("spec.ports[0].name: Required value"), "{text}");
        assert!(
            text.contains("spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive"),
            "{text}"
        );
        assert!(
            text.contains("spec.ports[1].protocol: Unsupported value: \"UDP\": supported values: \"TCP\""),
            "{text}"
        );
        let text = service_message(json!({"ports": [
            {"name": "a", "port": 80, "targetPort": "Http_1"},
            {"name": "a", "port": 80, "targetPort": 70000}
        ]}));
        assert!(text.contains("spec.ports[0].targetPort: Invalid value: \"Http_1\": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)"), "{text}");
        assert!(text.contains("spec.ports[1].name: Duplicate value: \"a\""), "{text}");
        assert!(text.contains("spec.ports[1].targetPort: Invalid value: 70000"), "{text}");
        assert!(text.contains("spec.ports[1]: Duplicate value: \"80/TCP\""), "{text}");
        let text =
            service_message(json!({"ports": [{"port": 80}], "type": "LoadBalancer", "selector": {"app": "a b"}}));
        assert!(
            text.contains(
                "spec.type: Unsupported value: \"LoadBalancer\": supported values: \"ClusterIP\", \"NodePort\""
            ),
            "{text}"
        );
        assert!(text.contains("spec.selector: Invalid value: \"a b\""), "{text}");
        let text = service_message(json!({"ports": [{"port": 80}], "clusterIP": "10.96.0.300"}));
        assert!(
            text.contains("spec.clusterIPs[0]: Invalid value: \"10.96.0.300\": must be a valid IP address"),
            "{text}"
        );
        let text = service_message(json!({"ports": [{"port": 80}], "clusterIP": "None", "type": "NodePort"}));
        assert!(text.contains("may not be set to 'None' for NodePort services"), "{text}");
        let text =
            service_message(json!({"ports": [{"port": 80}], "clusterIP": "10.96.0.1", "clusterIPs": ["10.96.0.2"]}));
        assert!(text.contains("must match `spec.clusterIP`"), "{text}");
        assert_eq!(service_message(json!({"ports": [{"port": 80}], "clusterIP": "None"})), "");
    }

    #[test]
    fn container_ports_may_ask_for_a_free_port_and_names_are_unique_in_the_pod() {
        let pod = |ports_a: serde_json::Value, ports_b: serde_json::Value| -> String {
            let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"containers": [
                {"name": "a", "command": ["x"], "ports": ports_a},
                {"name": "b", "command": ["x"], "ports": ports_b}
            ]}}))
            .expect("decodes");
            validate(&pod).err().map(|e| e.to_string()).unwrap_or_default()
        };
        assert_eq!(pod(json!([{"name": "http", "containerPort": 0}]), json!([{"containerPort": 0}])), "");
        let text = pod(
            json!([{"name": "http", "containerPort": 8080}, {"name": "-x", "containerPort": -1}]),
            json!([{"name": "http", "containerPort": 8080}, {"name": "a-very-long-port-name", "containerPort": 1, "protocol": "ICMP"}]),
        );
        assert!(
            text.contains(
                "spec.containers[0].ports[1].name: Invalid value: \"-x\": must not begin or end with a hyphen (-)"
            ),
            "{text}"
        );
        assert!(text.contains("spec.containers[0].ports[1].containerPort: Invalid value: -1"), "{text}");
        assert!(text.contains("spec.containers[1].ports[0].name: Duplicate value: \"http\""), "{text}");
        assert!(text.contains("spec.containers[1].ports[0].containerPort: Duplicate value: \"8080/TCP\""), "{text}");
        assert!(
            text.contains(
                "ports[1].name: Invalid value: \"a-very-long-port-name\": must be no more than 15 characters"
            ),
            "{text}"
        );
        assert!(text.contains("spec.containers[1].ports[1].protocol: Unsupported value: \"ICMP\""), "{text}");
    }

    #[test]
    fn endpoints_need_ip_addresses_and_valid_ports() {
        let endpoints: Endpoints = serde_json::from_value(json!({"metadata": {"name": "web"}, "subsets": [
            {"addresses": [{"ip": "node-1"}], "ports": [{"port": 0}, {"name": "b", "port": 80}]}
        ]}))
        .expect("decodes");
        let text = validate(&endpoints).expect_err("invalid").to_string();
        assert!(
            text.contains("subsets[0].addresses[0].ip: Invalid value: \"node-1\": must be a valid IP address"),
            "{text}"
        );
        assert!(text.contains("subsets[0].ports[0].name: Required value"), "{text}");
        assert!(text.contains("subsets[0].ports[0].port: Invalid value: 0"), "{text}");
    }
}
