//! Checks an object field by field and explains what is wrong in
//! Kubernetes' words: `Deployment.apps "web" is invalid: spec.replicas:
//! Invalid value: -1: must be greater than or equal to 0`.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use serde_json::Value;

use super::pod::{Container, PodSpec, Probe, Toleration};
use super::quantity::Quantity;
use super::selector::{LabelSelector, OPERATORS};
use super::workload::{Deployment, PodTemplateSpec, ReplicaSet};
use super::{IntOrString, Node, Object, ObjectMeta, Pod};

/// One thing wrong with one field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub problem: Problem,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    Required(Option<String>),
    Invalid { value: String, detail: String },
    NotSupported { value: String, supported: Vec<&'static str> },
    Duplicate(String),
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.problem {
            Problem::Required(None) => write!(f, "{}: Required value", self.field),
            Problem::Required(Some(detail)) => write!(f, "{}: Required value: {detail}", self.field),
            Problem::Invalid { value, detail } => write!(f, "{}: Invalid value: {value}: {detail}", self.field),
            Problem::NotSupported { value, supported } => {
                let supported: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
                write!(f, "{}: Unsupported value: {value}: supported values: {}", self.field, supported.join(", "))
            }
            Problem::Duplicate(value) => write!(f, "{}: Duplicate value: {value}", self.field),
        }
    }
}

/// The errors found so far.
#[derive(Debug, Default)]
pub struct FieldErrors(pub Vec<FieldError>);

impl FieldErrors {
    pub fn required(&mut self, field: impl Into<String>) {
        self.0.push(FieldError { field: field.into(), problem: Problem::Required(None) });
    }

    pub fn required_because(&mut self, field: impl Into<String>, detail: &str) {
        self.0.push(FieldError { field: field.into(), problem: Problem::Required(Some(detail.into())) });
    }

    /// `value` is shown as JSON shows it: numbers bare, strings quoted.
    pub fn invalid(&mut self, field: impl Into<String>, value: impl serde::Serialize, detail: impl Into<String>) {
        let value = serde_json::to_string(&value).unwrap_or_default();
        self.0.push(FieldError { field: field.into(), problem: Problem::Invalid { value, detail: detail.into() } });
    }

    pub fn not_supported(&mut self, field: impl Into<String>, value: &str, supported: &[&'static str]) {
        self.0.push(FieldError {
            field: field.into(),
            problem: Problem::NotSupported { value: format!("{value:?}"), supported: supported.to_vec() },
        });
    }

    pub fn duplicate(&mut self, field: impl Into<String>, value: &str) {
        self.0.push(FieldError { field: field.into(), problem: Problem::Duplicate(format!("{value:?}")) });
    }
}

/// An object that failed validation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    /// `Pod`, `Deployment.apps`, ...
    pub kind: String,
    pub name: String,
    pub errors: Vec<FieldError>,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?} is invalid: ", self.kind, self.name)?;
        match self.errors.as_slice() {
            [one] => write!(f, "{one}"),
            many => {
                let all: Vec<String> = many.iter().map(|e| e.to_string()).collect();
                write!(f, "[{}]", all.join(", "))
            }
        }
    }
}

impl std::error::Error for Invalid {}

/// Checks metadata and spec.
pub fn validate<K: Object>(object: &K) -> Result<(), Invalid> {
    let mut errors = FieldErrors::default();
    meta(object.meta(), K::NAMESPACED, &mut errors);
    object.validate_spec(&mut errors);
    if errors.0.is_empty() {
        return Ok(());
    }
    let meta = object.meta();
    let name = if meta.name.is_empty() { meta.generate_name.clone() } else { meta.name.clone() };
    Err(Invalid { kind: K::qualified_kind(), name, errors: errors.0 })
}

const SUBDOMAIN: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const LABEL_VALUE: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
const NON_NEGATIVE: &str = "must be greater than or equal to 0";

fn is_label_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_lowercase() | b[0].is_ascii_digit()
        && b[b.len() - 1].is_ascii_lowercase() | b[b.len() - 1].is_ascii_digit()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

pub fn is_dns_label(s: &str) -> bool {
    is_label_part(s)
}

pub fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_label_part)
}

fn is_label_value(s: &str) -> bool {
    let b = s.as_bytes();
    s.is_empty()
        || (b.len() <= 63
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter().all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(c)))
}

/// `prefix/name` with an optional DNS-subdomain prefix and a name of up to 63
/// characters.
fn is_qualified_name(s: &str) -> bool {
    let (prefix, name) = match s.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    prefix.is_none_or(is_dns_subdomain)
        && !name.is_empty()
        && name.len() <= 63
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric()
        && name.bytes().all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(&c))
}

fn labels(map: &BTreeMap<String, String>, field: &str, errors: &mut FieldErrors) {
    for (key, value) in map {
        if !is_qualified_name(key) {
            errors.invalid(field, key, "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character");
        }
        if !is_label_value(value) {
            errors.invalid(field, value, LABEL_VALUE);
        }
    }
}

fn meta(meta: &ObjectMeta, namespaced: bool, errors: &mut FieldErrors) {
    if meta.name.is_empty() {
        if meta.generate_name.is_empty() {
            errors.required_because("metadata.name", "name or generateName is required");
        }
    } else if !is_dns_subdomain(&meta.name) {
        errors.invalid("metadata.name", &meta.name, SUBDOMAIN);
    }
    match &meta.namespace {
        Some(ns) if !namespaced && !ns.is_empty() => {
            errors.invalid("metadata.namespace", ns, "not allowed on this type");
        }
        Some(ns) if !ns.is_empty() && !is_dns_label(ns) => errors.invalid("metadata.namespace", ns, LABEL),
        _ => {}
    }
    labels(&meta.labels, "metadata.labels", errors);
    for key in meta.annotations.keys().filter(|k| !is_qualified_name(k)) {
        errors.invalid("metadata.annotations", key, "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character");
    }
}

pub(super) fn pod(pod: &Pod, errors: &mut FieldErrors) {
    pod_spec(&pod.spec, "spec", errors);
}

pub(super) fn lease(lease: &super::Lease, errors: &mut FieldErrors) {
    if let Some(d) = lease.spec.lease_duration_seconds.filter(|d| *d <= 0) {
        errors.invalid("spec.leaseDurationSeconds", d, "must be greater than 0");
    }
}

pub(super) fn node(node: &Node, errors: &mut FieldErrors) {
    for (i, taint) in node.spec.taints.iter().enumerate() {
        let field = format!("spec.taints[{i}]");
        if taint.key.is_empty() {
            errors.required(format!("{field}.key"));
        } else if !is_qualified_name(&taint.key) {
            errors.invalid(format!("{field}.key"), &taint.key, "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character");
        }
        if !EFFECTS.contains(&taint.effect.as_str()) {
            errors.not_supported(format!("{field}.effect"), &taint.effect, &EFFECTS);
        }
    }
    if let Some(status) = &node.status {
        quantities(&status.capacity, "status.capacity", errors);
        quantities(&status.allocatable, "status.allocatable", errors);
    }
}

const EFFECTS: [&str; 3] = ["NoSchedule", "PreferNoSchedule", "NoExecute"];
const RESTART_POLICIES: [&str; 3] = ["Always", "OnFailure", "Never"];

fn pod_spec(spec: &PodSpec, field: &str, errors: &mut FieldErrors) {
    if spec.containers.is_empty() {
        errors.required(format!("{field}.containers"));
    }
    let mut names = HashSet::new();
    let (mut port_names, mut fixed_ports) = (HashSet::new(), HashSet::new());
    for (i, container) in spec.containers.iter().enumerate() {
        let at = format!("{field}.containers[{i}]");
        if !container.name.is_empty() && !names.insert(container.name.as_str()) {
            errors.duplicate(format!("{at}.name"), &container.name);
        }
        container_spec(container, &at, errors);
        if let Some(context) = &container.security_context {
            super::security::validate(context, &at, errors);
        }
        ports::container_ports(container, &at, &mut port_names, &mut fixed_ports, errors);
    }
    if let Some(policy) = &spec.restart_policy {
        if !RESTART_POLICIES.contains(&policy.as_str()) {
            errors.not_supported(format!("{field}.restartPolicy"), policy, &RESTART_POLICIES);
        }
    }
    if let Some(grace) = spec.termination_grace_period_seconds.filter(|g| *g < 0) {
        errors.invalid(format!("{field}.terminationGracePeriodSeconds"), grace, NON_NEGATIVE);
    }
    labels(&spec.node_selector, &format!("{field}.nodeSelector"), errors);
    for (i, toleration) in spec.tolerations.iter().enumerate() {
        self::toleration(toleration, &format!("{field}.tolerations[{i}]"), errors);
    }
    if let Some(node) = spec.node_name.as_deref().filter(|n| !n.is_empty() && !is_dns_subdomain(n)) {
        errors.invalid(format!("{field}.nodeName"), node, SUBDOMAIN);
    }
}

fn container_spec(container: &Container, at: &str, errors: &mut FieldErrors) {
    if container.name.is_empty() {
        errors.required(format!("{at}.name"));
    } else if !is_dns_label(&container.name) {
        errors.invalid(format!("{at}.name"), &container.name, LABEL);
    }
    if container.image.as_deref().unwrap_or_default().is_empty() && container.command.is_empty() {
        errors.required_because(format!("{at}.command"), "a container needs an image or a command");
    }
    for (j, _) in container.env.iter().enumerate().filter(|(_, e)| e.name.is_empty()) {
        errors.required(format!("{at}.env[{j}].name"));
    }
    let requests = quantities(&container.resources.requests, &format!("{at}.resources.requests"), errors);
    let limits = quantities(&container.resources.limits, &format!("{at}.resources.limits"), errors);
    for (name, request) in &requests {
        if limits.get(name).is_some_and(|limit| request > limit) {
            let shown = container.resources.requests.get(name).cloned().unwrap_or_default();
            let limit = container.resources.limits.get(name).cloned().unwrap_or_default();
            errors.invalid(
                format!("{at}.resources.requests"),
                shown,
                format!("must be less than or equal to {name} limit of {limit}"),
            );
        }
    }
    let probes = [
        ("livenessProbe", &container.liveness_probe),
        ("readinessProbe", &container.readiness_probe),
        ("startupProbe", &container.startup_probe),
    ];
    for (name, probe) in probes {
        let Some(probe) = probe else { continue };
        self::probe(probe, &format!("{at}.{name}"), errors);
        // Only readiness may ask for more than one success in a row.
        if name != "readinessProbe" {
            if let Some(n) = probe.success_threshold.filter(|n| *n != 1) {
                errors.invalid(format!("{at}.{name}.successThreshold"), n, "must be 1");
            }
        }
    }
}

/// Parses each quantity, reporting the ones that do not parse or are negative.
fn quantities(map: &BTreeMap<String, String>, field: &str, errors: &mut FieldErrors) -> BTreeMap<String, Quantity> {
    let mut parsed = BTreeMap::new();
    for (name, text) in map {
        match Quantity::parse(text) {
            Ok(q) if q.millis < 0 => errors.invalid(format!("{field}[{name}]"), text, NON_NEGATIVE),
            Ok(q) => {
                parsed.insert(name.clone(), q);
            }
            Err(e) => errors.invalid(format!("{field}[{name}]"), text, e.to_string()),
        }
    }
    parsed
}

/// The schemes an HTTP probe may use, as Kubernetes lists them.
const SCHEMES: [&str; 2] = ["HTTP", "HTTPS"];
const HEADER_NAME: &str = "a valid HTTP header must consist of alphanumeric characters or '-' \
     (e.g. 'X-Header-Name', regex used for validation is '[-A-Za-z0-9]+')";

fn probe(probe: &Probe, at: &str, errors: &mut FieldErrors) {
    let handlers = [probe.exec.is_some(), probe.http_get.is_some(), probe.tcp_socket.is_some()];
    match handlers.iter().filter(|h| **h).count() {
        0 => errors.required_because(at, "must specify a handler type"),
        1 => {}
        _ => errors.invalid(at, "", "may not specify more than 1 handler type"),
    }
    if probe.exec.as_ref().is_some_and(|e| e.command.is_empty()) {
        errors.required(format!("{at}.exec.command"));
    }
    for (name, value) in [
        ("initialDelaySeconds", probe.initial_delay_seconds),
        ("periodSeconds", probe.period_seconds),
        ("timeoutSeconds", probe.timeout_seconds),
        ("successThreshold", probe.success_threshold),
        ("failureThreshold", probe.failure_threshold),
    ] {
        if let Some(v) = value.filter(|v| *v < 0) {
            errors.invalid(format!("{at}.{name}"), v, NON_NEGATIVE);
        }
    }
    if let Some(http) = &probe.http_get {
        let scheme = http.scheme.as_deref().unwrap_or("HTTP");
        if !SCHEMES.contains(&scheme) {
            errors.not_supported(format!("{at}.httpGet.scheme"), scheme, &SCHEMES);
        }
        for header in &http.http_headers {
            let valid = !header.name.is_empty() && header.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
            if !valid {
                errors.invalid(format!("{at}.httpGet.httpHeaders"), &header.name, HEADER_NAME);
            }
        }
    }
    let port = probe.http_get.as_ref().map(|h| &h.port).or(probe.tcp_socket.as_ref().map(|t| &t.port));
    if let Some(IntOrString::Int(p)) = port.filter(|p| matches!(p, IntOrString::Int(n) if !(1..=65535).contains(n))) {
        errors.invalid(format!("{at}.port"), p, "must be between 1 and 65535, inclusive");
    }
}

fn toleration(t: &Toleration, at: &str, errors: &mut FieldErrors) {
    let operator = t.operator.as_deref().unwrap_or("Equal");
    match operator {
        "Equal" if t.key.is_empty() => {
            errors.invalid(
                format!("{at}.operator"),
                operator,
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            );
        }
        "Exists" if !t.value.is_empty() => {
            errors.invalid(format!("{at}.operator"), &t.value, "value must be empty when `operator` is 'Exists'");
        }
        "Equal" | "Exists" => {}
        other => errors.not_supported(format!("{at}.operator"), other, &["Equal", "Exists"]),
    }
    if !t.effect.is_empty() && !EFFECTS.contains(&t.effect.as_str()) {
        errors.not_supported(format!("{at}.effect"), &t.effect, &EFFECTS);
    }
    if t.toleration_seconds.is_some() && t.effect != "NoExecute" {
        errors.invalid(format!("{at}.effect"), &t.effect, "effect must be 'NoExecute' when `tolerationSeconds` is set");
    }
}

/// What ReplicaSets and Deployments share: replicas, selector and template.
fn replicated(replicas: Option<i32>, selector: &LabelSelector, template: &PodTemplateSpec, errors: &mut FieldErrors) {
    if let Some(r) = replicas.filter(|r| *r < 0) {
        errors.invalid("spec.replicas", r, NON_NEGATIVE);
    }
    if selector.is_empty() {
        errors.required("spec.selector");
    } else {
        labels(&selector.match_labels, "spec.selector.matchLabels", errors);
        for (i, r) in selector.match_expressions.iter().enumerate() {
            let at = format!("spec.selector.matchExpressions[{i}]");
            match r.operator.as_str() {
                "In" | "NotIn" if r.values.is_empty() => errors
                    .required_because(format!("{at}.values"), "must be specified when `operator` is 'In' or 'NotIn'"),
                "Exists" | "DoesNotExist" if !r.values.is_empty() => errors.invalid(
                    format!("{at}.values"),
                    &r.values,
                    "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                ),
                op if !OPERATORS.contains(&op) => errors.not_supported(format!("{at}.operator"), op, &OPERATORS),
                _ => {}
            }
        }
        if !selector.matches(&template.metadata.labels) {
            errors.invalid(
                "spec.template.metadata.labels",
                &template.metadata.labels,
                "`selector` does not match template `labels`",
            );
        }
    }
    labels(&template.metadata.labels, "spec.template.metadata.labels", errors);
    pod_spec(&template.spec, "spec.template.spec", errors);
}

pub(super) fn replica_set(rs: &ReplicaSet, errors: &mut FieldErrors) {
    replicated(rs.spec.replicas, &rs.spec.selector, &rs.spec.template, errors);
    if rs.spec.min_ready_seconds < 0 {
        errors.invalid("spec.minReadySeconds", rs.spec.min_ready_seconds, NON_NEGATIVE);
    }
}

pub(super) fn deployment(d: &Deployment, errors: &mut FieldErrors) {
    replicated(d.spec.replicas, &d.spec.selector, &d.spec.template, errors);
    if d.spec.min_ready_seconds < 0 {
        errors.invalid("spec.minReadySeconds", d.spec.min_ready_seconds, NON_NEGATIVE);
    }
    if let Some(limit) = d.spec.revision_history_limit.filter(|l| *l < 0) {
        errors.invalid("spec.revisionHistoryLimit", limit, NON_NEGATIVE);
    }
    if let Some(deadline) = d.spec.progress_deadline_seconds.filter(|p| *p <= d.spec.min_ready_seconds) {
        errors.invalid("spec.progressDeadlineSeconds", deadline, "must be greater than minReadySeconds");
    }
    let Some(strategy) = &d.spec.strategy else { return };
    let kind = strategy.type_.as_deref().unwrap_or("RollingUpdate");
    match (kind, &strategy.rolling_update) {
        ("Recreate", Some(_)) => {
            errors.invalid("spec.strategy.rollingUpdate", "", "may not be specified when strategy `type` is 'Recreate'")
        }
        ("RollingUpdate", Some(rolling)) => {
            let surge =
                rolling.max_surge.as_ref().map(|v| int_or_percent(v, "spec.strategy.rollingUpdate.maxSurge", errors));
            let unavailable = rolling
                .max_unavailable
                .as_ref()
                .map(|v| int_or_percent(v, "spec.strategy.rollingUpdate.maxUnavailable", errors));
            if surge == Some(Some(true)) && unavailable == Some(Some(true)) {
                errors.invalid("spec.strategy.rollingUpdate.maxUnavailable", 0, "may not be 0 when `maxSurge` is 0");
            }
        }
        ("Recreate" | "RollingUpdate", None) => {}
        (other, _) => errors.not_supported("spec.strategy.type", other, &["Recreate", "RollingUpdate"]),
    }
}

/// Checks a count or percentage; returns Some(whether it is zero) if valid.
fn int_or_percent(value: &IntOrString, field: &str, errors: &mut FieldErrors) -> Option<bool> {
    match value {
        IntOrString::Int(n) if *n < 0 => {
            errors.invalid(field, n, NON_NEGATIVE);
            None
        }
        IntOrString::Int(n) => Some(*n == 0),
        IntOrString::String(s) => match s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) {
            Some(p) if (0..=100).contains(&p) => Some(p == 0),
            Some(_) => {
                errors.invalid(field, s, "must not be greater than 100%");
                None
            }
            None => {
                errors.invalid(field, s, "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')");
                None
            }
        },
    }
}

/// Parses JSON from the store or a manifest as `K`, naming what is wrong
/// (a `kind` other than `K`'s among it).
pub fn decode<K: Object>(bytes: &[u8]) -> Result<K, String> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    if let Some(kind) = value.get("kind").and_then(Value::as_str).filter(|k| !k.is_empty() && *k != K::KIND) {
        return Err(format!("kind is not {} but {kind}", K::KIND));
    }
    serde_json::from_value(value).map_err(|e| format!("{} is invalid: strict decoding error: {e}", K::KIND))
}

#[path = "validation_ports.rs"]
mod ports;
pub use ports::port_name_problems;
pub(super) use ports::{endpoints, service};

#[cfg(test)]
#[path = "validation_test.rs"]
mod tests;
