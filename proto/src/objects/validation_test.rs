//! Bad objects get Kubernetes' messages, naming the field; good ones pass.

use serde_json::json;

use super::*;
use crate::objects::AnyObject;

fn deployment(value: serde_json::Value) -> Deployment {
    serde_json::from_value(value).expect("decodes")
}

fn good_deployment() -> serde_json::Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{
                    "name": "main",
                    "command": ["/bin/sleep", "3600"],
                    "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "1"}},
                    "readinessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 1}
                }]}
            },
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": "25%"}}
        }
    })
}

fn message(value: serde_json::Value) -> String {
    validate(&deployment(value)).expect_err("invalid").to_string()
}

#[test]
fn a_good_deployment_passes() {
    assert_eq!(validate(&deployment(good_deployment())), Ok(()));
}

#[test]
fn negative_replicas_are_named() {
    let mut d = good_deployment();
    d["spec"]["replicas"] = json!(-1);
    assert_eq!(
        message(d),
        "Deployment.apps \"web\" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0"
    );
}

#[test]
fn a_missing_name_is_required() {
    let mut d = good_deployment();
    d["metadata"] = json!({});
    assert_eq!(
        message(d),
        "Deployment.apps \"\" is invalid: metadata.name: Required value: name or generateName is required"
    );
}

#[test]
fn several_errors_are_listed_together() {
    let mut d = good_deployment();
    d["metadata"]["name"] = json!("Web_1");
    d["spec"]["template"]["metadata"]["labels"] = json!({"app": "other"});
    d["spec"]["template"]["spec"]["containers"][0]["name"] = json!("");
    d["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] = json!("lots");
    let text = message(d);
    assert!(text.starts_with("Deployment.apps \"Web_1\" is invalid: [metadata.name: Invalid value: \"Web_1\": a lowercase RFC 1123 subdomain"), "{text}");
    for part in [
        "spec.template.metadata.labels: Invalid value: {\"app\":\"other\"}: `selector` does not match template `labels`",
        "spec.template.spec.containers[0].name: Required value",
        "spec.template.spec.containers[0].resources.requests[cpu]: Invalid value: \"lots\": quantities must match",
    ] {
        assert!(text.contains(part), "{part}\n in {text}");
    }
}

#[test]
fn pod_spec_rules() {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "p"},
        "spec": {
            "containers": [
                {"name": "a", "command": ["x"], "ports": [{"containerPort": 70000}],
                 "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}},
                 "livenessProbe": {"periodSeconds": 1}},
                {"name": "a", "image": "busybox"}
            ],
            "restartPolicy": "Sometimes",
            "tolerations": [{"key": "k", "operator": "Exists", "value": "v"}, {"key": "k", "tolerationSeconds": 5}]
        }
    }))
    .expect("decodes");
    let text = validate(&pod).expect_err("invalid").to_string();
    for part in [
        "spec.containers[1].name: Duplicate value: \"a\"",
        "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 0 and 65535, inclusive (0 asks the node for a free port)",
        "spec.containers[0].resources.requests: Invalid value: \"2\": must be less than or equal to cpu limit of 1",
        "spec.containers[0].livenessProbe: Required value: must specify a handler type",
        "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"",
        "spec.tolerations[0].operator: Invalid value: \"v\": value must be empty when `operator` is 'Exists'",
        "spec.tolerations[1].effect: Invalid value: \"\": effect must be 'NoExecute' when `tolerationSeconds` is set",
    ] {
        assert!(text.contains(part), "{part}\n in {text}");
    }
}

#[test]
fn probes_need_a_known_scheme_header_names_and_one_success_to_start() {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "p"},
        "spec": {"containers": [{
            "name": "a", "command": ["x"],
            "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080, "scheme": "FTP",
                "httpHeaders": [{"name": "X-Good", "value": "1"}, {"name": "Bad Header", "value": "2"}]}},
            "livenessProbe": {"httpGet": {"port": 0}},
            "startupProbe": {"exec": {"command": ["true"]}, "successThreshold": 2}
        }]}
    }))
    .expect("decodes");
    let text = validate(&pod).expect_err("invalid").to_string();
    for part in [
        "spec.containers[0].readinessProbe.httpGet.scheme: Unsupported value: \"FTP\": supported values: \"HTTP\", \"HTTPS\"",
        "spec.containers[0].readinessProbe.httpGet.httpHeaders: Invalid value: \"Bad Header\": a valid HTTP header must consist of alphanumeric characters or '-'",
        "spec.containers[0].livenessProbe.port: Invalid value: 0: must be between 1 and 65535, inclusive",
        "spec.containers[0].startupProbe.successThreshold: Invalid value: 2: must be 1",
    ] {
        assert!(text.contains(part), "{part}\n in {text}");
    }
    assert!(!text.contains("X-Good"), "{text}");
}

#[test]
fn a_pod_needs_containers_with_an_image_or_a_command() {
    let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p"}})).expect("decodes");
    assert_eq!(
        validate(&pod).expect_err("invalid").to_string(),
        "Pod \"p\" is invalid: spec.containers: Required value"
    );
    let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]}}))
        .expect("decodes");
    assert!(validate(&pod).expect_err("invalid").to_string().contains("spec.containers[0].command: Required value"));
}

#[test]
fn strategy_rules() {
    let mut d = good_deployment();
    d["spec"]["strategy"] = json!({"rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}});
    assert!(message(d)
        .contains("spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0: may not be 0 when `maxSurge` is 0"));
    let mut d = good_deployment();
    d["spec"]["strategy"] = json!({"type": "Recreate", "rollingUpdate": {}});
    assert!(message(d).contains("may not be specified when strategy `type` is 'Recreate'"));
    let mut d = good_deployment();
    d["spec"]["strategy"] = json!({"rollingUpdate": {"maxSurge": "150%", "maxUnavailable": "x"}});
    let text = message(d);
    assert!(text.contains("maxSurge: Invalid value: \"150%\": must not be greater than 100%"), "{text}");
    assert!(text.contains("maxUnavailable: Invalid value: \"x\": a valid percent string"), "{text}");
}

#[test]
fn a_cluster_scoped_node_takes_no_namespace() {
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": "n1", "namespace": "default"},
        "spec": {"taints": [{"key": "k", "effect": "Sometimes"}]}
    }))
    .expect("decodes");
    let text = validate(&node).expect_err("invalid").to_string();
    assert!(text.contains("metadata.namespace: Invalid value: \"default\": not allowed on this type"), "{text}");
    assert!(text.contains("spec.taints[0].effect: Unsupported value: \"Sometimes\""), "{text}");
}

#[test]
fn unknown_kinds_and_fields_are_refused_by_name() {
    let err = AnyObject::from_value(json!({"kind": "Gadget", "metadata": {"name": "x"}})).expect_err("unknown kind");
    assert!(err.contains("no matches for kind \"Gadget\""), "{err}");
    let err = AnyObject::from_value(json!({"metadata": {"name": "x"}})).expect_err("no kind");
    assert_eq!(err, "Object 'Kind' is missing");
    let mut d = good_deployment();
    d["spec"]["replcas"] = json!(3);
    let err = AnyObject::from_value(d).expect_err("unknown field");
    assert!(err.contains("unknown field `replcas`"), "{err}");
}

#[test]
fn keys_follow_the_registry_layout() {
    let d = deployment(good_deployment());
    assert_eq!(d.key_of(), "/registry/deployments/default/web");
    assert_eq!(Node::key("", "n1"), "/registry/nodes/n1");
    assert_eq!(Pod::prefix(Some("kube")), "/registry/pods/kube/");
    assert_eq!(Pod::prefix(None), "/registry/pods/");
    assert_eq!(Node::prefix(Some("x")), "/registry/nodes/");
}
