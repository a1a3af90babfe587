//! The environment variables Kubernetes gives a container for every
//! Service of its namespace that has a cluster IP when the container
//! starts: `WEB_SERVICE_HOST`, `WEB_SERVICE_PORT`, one
//! `WEB_SERVICE_PORT_<PORT NAME>` per named port, and the Docker-link style
//! `WEB_PORT`, `WEB_PORT_8080_TCP`, `..._PROTO`, `..._PORT`, `..._ADDR`.

use std::sync::Arc;

use shoal_proto::objects::Service;

/// What the Services of a namespace give a container starting now.
pub type ServiceEnv = Arc<dyn Fn(&str) -> Vec<(String, String)> + Send + Sync>;

/// No Services: for pod syncs that run without a store.
pub fn none() -> ServiceEnv {
    Arc::new(|_| Vec::new())
}

/// `my-web` → `MY_WEB`.
fn env_name(name: &str) -> String {
    name.to_ascii_uppercase().replace('-', "_")
}

/// The variables of `services` that are in `namespace`, in name order.
pub fn variables(services: &[Arc<Service>], namespace: &str) -> Vec<(String, String)> {
    let mut mine: Vec<&Arc<Service>> =
        services.iter().filter(|s| s.metadata.namespace_or_default() == namespace).collect();
    mine.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut env = Vec::new();
    for service in mine {
        let (Some(ip), Some(first)) = (service.spec.cluster_ip(), service.spec.ports.first()) else { continue };
        let name = env_name(&service.metadata.name);
        env.push((format!("{name}_SERVICE_HOST"), ip.to_string()));
        env.push((format!("{name}_SERVICE_PORT"), first.port.to_string()));
        for port in &service.spec.ports {
            if !port.name().is_empty() {
                env.push((format!("{name}_SERVICE_PORT_{}", env_name(port.name())), port.port.to_string()));
            }
        }
        let protocol = first.protocol().to_ascii_lowercase();
        env.push((format!("{name}_PORT"), format!("{protocol}://{ip}:{}", first.port)));
        for port in &service.spec.ports {
            let (protocol, number) = (port.protocol().to_ascii_lowercase(), port.port);
            let prefix = format!("{name}_PORT_{number}_{}", port.protocol());
            env.push((prefix.clone(), format!("{protocol}://{ip}:{number}")));
            env.push((format!("{prefix}_PROTO"), protocol));
            env.push((format!("{prefix}_PORT"), number.to_string()));
            env.push((format!("{prefix}_ADDR"), ip.to_string()));
        }
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(namespace: &str, name: &str, spec: serde_json::Value) -> Arc<Service> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": name, "namespace": namespace}, "spec": spec}))
                .expect("service"),
        )
    }

    #[test]
    fn services_of_the_namespace_with_an_address_give_kubernetes_variables() {
        let services = [
            service(
                "default",
                "my-web",
                json!({"clusterIP": "10.96.0.10", "ports": [{"name": "http", "port": 8080}, {"name": "admin-ui", "port": 9090}]}),
            ),
            service("default", "headless", json!({"clusterIP": "None", "ports": [{"port": 80}]})),
            service("default", "pending", json!({"ports": [{"port": 80}]})),
            service("other", "db", json!({"clusterIP": "10.96.0.11", "ports": [{"port": 5432}]})),
        ];
        let env = variables(&services, "default");
        let get = |key: &str| env.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
        assert_eq!(get("MY_WEB_SERVICE_HOST"), Some("10.96.0.10"));
        assert_eq!(get("MY_WEB_SERVICE_PORT"), Some("8080"));
        assert_eq!(get("MY_WEB_SERVICE_PORT_HTTP"), Some("8080"));
        assert_eq!(get("MY_WEB_SERVICE_PORT_ADMIN_UI"), Some("9090"));
        assert_eq!(get("MY_WEB_PORT"), Some("tcp://10.96.0.10:8080"));
        assert_eq!(get("MY_WEB_PORT_9090_TCP"), Some("tcp://10.96.0.10:9090"));
        assert_eq!(get("MY_WEB_PORT_9090_TCP_PROTO"), Some("tcp"));
        assert_eq!(get("MY_WEB_PORT_9090_TCP_PORT"), Some("9090"));
        assert_eq!(get("MY_WEB_PORT_9090_TCP_ADDR"), Some("10.96.0.10"));
        assert!(env.iter().all(|(k, _)| k.starts_with("MY_WEB_")), "only Services with an address here: {env:?}");
        assert_eq!(variables(&services, "other").first().map(|(k, _)| k.as_str()), Some("DB_SERVICE_HOST"));
    }
}
