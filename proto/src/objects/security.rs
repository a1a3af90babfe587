//! A container's `securityContext`, and the Linux capabilities it names.
//! Unprivileged containers keep only Docker's default capabilities (plus
//! what `capabilities.add` asks for, less what `drop` takes away), run with
//! `no_new_privs` unless `allowPrivilegeEscalation: true`, and see a /proc
//! with the host's sensitive files masked, under the runtime's default
//! seccomp filter (`seccompProfile` `RuntimeDefault`, unless it says
//! `Unconfined`); `privileged: true` lifts all of that.

use serde::{Deserialize, Serialize};

use super::validation::FieldErrors;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecurityContext {
    /// An image's root filesystem is read-only unless this is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only_root_filesystem: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_user: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_group: Option<i64>,
    /// Refuse to start the container as root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_non_root: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privileged: Option<bool>,
    /// Whether the process may gain privileges (setuid binaries, file
    /// capabilities); false, the default here, sets `no_new_privs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_privilege_escalation: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Capabilities>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seccomp_profile: Option<SeccompProfile>,
}

/// Which seccomp filter the container runs under.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeccompProfile {
    /// `RuntimeDefault`, `Unconfined` or `Localhost`.
    #[serde(rename = "type")]
    pub kind: String,
    /// A profile file on the node, for `Localhost`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub localhost_profile: Option<String>,
}

pub const SECCOMP_RUNTIME_DEFAULT: &str = "RuntimeDefault";
pub const SECCOMP_UNCONFINED: &str = "Unconfined";
pub const SECCOMP_LOCALHOST: &str = "Localhost";

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Capabilities {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drop: Vec<String>,
}

/// Every capability Linux knows, by number.
pub const CAPABILITIES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// Docker's (and containerd's) default set.
pub const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// A capability's number, from its name with or without `CAP_`, in any case.
pub fn capability(name: &str) -> Option<u8> {
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    CAPABILITIES.iter().position(|c| *c == bare).map(|i| i as u8)
}

impl SecurityContext {
    pub fn is_privileged(&self) -> bool {
        self.privileged == Some(true)
    }

    /// The capabilities the container keeps, by number: every one when
    /// privileged, else Docker's defaults, less `drop` (`ALL` drops every
    /// one), plus `add` (`ALL` adds every one).
    pub fn kept_capabilities(&self) -> Vec<u8> {
        if self.is_privileged() {
            return (0..CAPABILITIES.len() as u8).collect();
        }
        let wanted = self.capabilities.clone().unwrap_or_default();
        let all = |list: &[String]| list.iter().any(|c| c.eq_ignore_ascii_case("ALL"));
        let mut kept: Vec<u8> = if all(&wanted.drop) {
            Vec::new()
        } else {
            DEFAULT_CAPABILITIES.iter().filter_map(|c| capability(c)).collect()
        };
        kept.retain(|c| !wanted.drop.iter().any(|d| capability(d) == Some(*c)));
        if all(&wanted.add) {
            kept = (0..CAPABILITIES.len() as u8).collect();
        }
        kept.extend(wanted.add.iter().filter_map(|a| capability(a)));
        kept.sort_unstable();
        kept.dedup();
        kept
    }

    /// Whether the runtime's default seccomp filter applies: unless the
    /// container is privileged or asks for none. (Kubernetes leaves a
    /// container unconfined by default unless kubelet runs with
    /// `--seccomp-default`; Shoal's agent behaves as if it did.)
    pub fn default_seccomp(&self) -> bool {
        let kind = self.seccomp_profile.as_ref().map_or(SECCOMP_RUNTIME_DEFAULT, |p| p.kind.as_str());
        !self.is_privileged() && kind == SECCOMP_RUNTIME_DEFAULT
    }

    /// Whether `no_new_privs` is set.
    pub fn no_new_privileges(&self) -> bool {
        !self.is_privileged() && self.allow_privilege_escalation != Some(true)
    }
}

const ID_RANGE: &str = "must be between 0 and 2147483647, inclusive";

/// A container's `securityContext`, at `at`.
pub(super) fn validate(context: &SecurityContext, at: &str, errors: &mut FieldErrors) {
    for (field, id) in [("runAsUser", context.run_as_user), ("runAsGroup", context.run_as_group)] {
        if let Some(id) = id.filter(|id| !(0..=i64::from(i32::MAX)).contains(id)) {
            errors.invalid(format!("{at}.securityContext.{field}"), id, ID_RANGE);
        }
    }
    if context.is_privileged() && context.allow_privilege_escalation == Some(false) {
        errors.invalid(
            format!("{at}.securityContext"),
            "privileged",
            "cannot set `allowPrivilegeEscalation` to false and `privileged` to true",
        );
    }
    if context.run_as_non_root == Some(true) && context.run_as_user == Some(0) {
        errors.invalid(format!("{at}.securityContext.runAsNonRoot"), true, "must be false when runAsUser is 0");
    }
    if let Some(profile) = &context.seccomp_profile {
        validate_seccomp(profile, &format!("{at}.securityContext.seccompProfile"), errors);
    }
    let capabilities = context.capabilities.clone().unwrap_or_default();
    for (list, names) in [("add", &capabilities.add), ("drop", &capabilities.drop)] {
        for (i, name) in names.iter().enumerate() {
            if !name.eq_ignore_ascii_case("ALL") && capability(name).is_none() {
                errors.invalid(
                    format!("{at}.securityContext.capabilities.{list}[{i}]"),
                    name,
                    "not a Linux capability",
                );
            }
        }
    }
}

fn validate_seccomp(profile: &SeccompProfile, at: &str, errors: &mut FieldErrors) {
    let kinds = [SECCOMP_LOCALHOST, SECCOMP_RUNTIME_DEFAULT, SECCOMP_UNCONFINED];
    if profile.kind.is_empty() {
        errors.required(format!("{at}.type"));
    } else if !kinds.contains(&profile.kind.as_str()) {
        errors.not_supported(format!("{at}.type"), &profile.kind, &kinds);
    }
    match (&profile.localhost_profile, profile.kind == SECCOMP_LOCALHOST) {
        (None, true) => {
            errors.required_because(format!("{at}.localhostProfile"), "must be set when seccomp type is Localhost")
        }
        (Some(file), false) => {
            errors.invalid(format!("{at}.localhostProfile"), file, "can only be set when seccomp type is Localhost")
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn context(value: serde_json::Value) -> SecurityContext {
        serde_json::from_value(value).expect("a securityContext")
    }

    /// The capabilities as /proc/PID/status shows them.
    fn mask(kept: &[u8]) -> u64 {
        kept.iter().fold(0, |mask, c| mask | 1 << c)
    }

    #[test]
    fn containers_keep_dockers_capabilities_unless_told_otherwise() {
        assert_eq!(mask(&SecurityContext::default().kept_capabilities()), 0xa80425fb, "Docker's default set");
        let more = context(json!({"capabilities": {"add": ["NET_ADMIN", "cap_sys_time"], "drop": ["KILL"]}}));
        let kept = more.kept_capabilities();
        assert!(kept.contains(&12) && kept.contains(&25) && !kept.contains(&5));
        assert!(context(json!({"capabilities": {"drop": ["ALL"]}})).kept_capabilities().is_empty());
        let only = context(json!({"capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}));
        assert_eq!(only.kept_capabilities(), [10]);
        let privileged = context(json!({"privileged": true}));
        assert_eq!(privileged.kept_capabilities().len(), CAPABILITIES.len());
        assert!(!privileged.no_new_privileges() && SecurityContext::default().no_new_privileges());
        assert!(!context(json!({"allowPrivilegeEscalation": true})).no_new_privileges());
        assert!(SecurityContext::default().default_seccomp() && !privileged.default_seccomp());
        assert!(!context(json!({"seccompProfile": {"type": "Unconfined"}})).default_seccomp());
        assert!(context(json!({"seccompProfile": {"type": "RuntimeDefault"}})).default_seccomp());
    }

    #[test]
    fn bad_seccomp_profiles_are_named() {
        let text = |profile: serde_json::Value| {
            let mut errors = FieldErrors::default();
            validate(&context(json!({ "seccompProfile": profile })), "spec.containers[0]", &mut errors);
            errors.0.iter().map(|e| e.to_string()).collect::<Vec<_>>()
        };
        assert_eq!(
            text(json!({"type": "Strict"})),
            ["spec.containers[0].securityContext.seccompProfile.type: Unsupported value: \"Strict\": supported values: \"Localhost\", \"RuntimeDefault\", \"Unconfined\""]
        );
        assert_eq!(
            text(json!({"type": "Localhost"})),
            ["spec.containers[0].securityContext.seccompProfile.localhostProfile: Required value: must be set when seccomp type is Localhost"]
        );
        assert_eq!(
            text(json!({"type": "Unconfined", "localhostProfile": "a.json"})),
            ["spec.containers[0].securityContext.seccompProfile.localhostProfile: Invalid value: \"a.json\": can only be set when seccomp type is Localhost"]
        );
        assert!(text(json!({"type": "RuntimeDefault"})).is_empty());
    }

    #[test]
    fn bad_security_contexts_are_named() {
        let mut errors = FieldErrors::default();
        let bad = context(json!({
            "runAsUser": -1, "privileged": true, "allowPrivilegeEscalation": false,
            "capabilities": {"add": ["FLY"]}
        }));
        validate(&bad, "spec.containers[0]", &mut errors);
        let text: Vec<String> = errors.0.iter().map(|e| e.to_string()).collect();
        assert!(text.contains(&"spec.containers[0].securityContext.runAsUser: Invalid value: -1: must be between 0 and 2147483647, inclusive".to_string()), "{text:?}");
        assert!(text
            .iter()
            .any(|t| t.contains("cannot set `allowPrivilegeEscalation` to false and `privileged` to true")));
        assert!(text.iter().any(|t| t.contains("capabilities.add[0]: Invalid value: \"FLY\"")));
    }
}
