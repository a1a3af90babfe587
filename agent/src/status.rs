//! A pod's status from its containers' states: phase, conditions and one
//! status per container, as Kubernetes shapes them.

use shoal_proto::objects::meta::set_condition;
use shoal_proto::objects::pod::{
    ContainerState, ContainerStatus, PodIp, PodStatus, StateRunning, StateTerminated, StateWaiting,
};
use shoal_proto::objects::{Condition, Pod};

use crate::runtime::Run;

/// What the sync knows of one container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub name: String,
    pub run: Run,
    pub restarts: i32,
    /// Why it is not running, when it waits (CrashLoopBackOff, CreateContainerError, ...).
    pub waiting: Option<(String, String)>,
    /// Whether it will be started (again).
    pub will_run: bool,
    /// Whether its readiness probe (if any) passes.
    pub probed_ready: bool,
    /// The ports it was given.
    pub ports: Vec<shoal_proto::objects::pod::ContainerPort>,
}

fn state(seen: &Seen) -> ContainerState {
    if let Some((reason, message)) = &seen.waiting {
        return ContainerState {
            waiting: Some(StateWaiting { reason: Some(reason.clone()), message: Some(message.clone()) }),
            ..Default::default()
        };
    }
    match &seen.run {
        Run::Running { pid, started_at } => ContainerState {
            running: Some(StateRunning { started_at: Some(started_at.clone()), pid: (*pid > 0).then_some(*pid) }),
            ..Default::default()
        },
        Run::Exited { code, signal, oom, started_at, finished_at, message } => ContainerState {
            terminated: Some(StateTerminated {
                exit_code: *code,
                signal: *signal,
                reason: Some(
                    if message.is_some() {
                        "StartError"
                    } else if *oom {
                        "OOMKilled"
                    } else if *code == 0 {
                        "Completed"
                    } else {
                        "Error"
                    }
                    .into(),
                ),
                message: message.clone(),
                started_at: Some(started_at.clone()),
                finished_at: Some(finished_at.clone()),
            }),
            ..Default::default()
        },
        Run::Gone => ContainerState {
            waiting: Some(StateWaiting { reason: Some("ContainerCreating".into()), message: None }),
            ..Default::default()
        },
    }
}

/// The phase: Running while any container runs or will run again, else
/// Succeeded if every container exited 0, Failed otherwise; Pending before
/// anything ran.
pub fn phase(seen: &[Seen]) -> &'static str {
    let running = seen.iter().any(|s| matches!(s.run, Run::Running { .. }));
    let exited: Vec<i32> =
        seen.iter().filter_map(|s| if let Run::Exited { code, .. } = s.run { Some(code) } else { None }).collect();
    if running {
        "Running"
    } else if !seen.is_empty() && exited.len() == seen.len() && seen.iter().all(|s| !s.will_run) {
        if exited.iter().all(|c| *c == 0) {
            "Succeeded"
        } else {
            "Failed"
        }
    } else if seen.iter().any(|s| s.restarts > 0 || matches!(s.run, Run::Exited { .. })) {
        "Running"
    } else {
        "Pending"
    }
}

/// The status to write for `pod`, keeping what others set (PodScheduled).
pub fn compute(pod: &Pod, seen: &[Seen], host_ip: &str, pod_ip: Option<String>, now: &str) -> PodStatus {
    let mut status = pod.status.clone().unwrap_or_default();
    status.phase = Some(phase(seen).into());
    status.host_ip = Some(host_ip.into());
    // A pod on the host's network has the node's address; one with a
    // network of its own has none until its network is made.
    let pod_ip = if pod.spec.host_network() { Some(host_ip.to_string()) } else { pod_ip.or(status.pod_ip.take()) };
    status.pod_ips = pod_ip.iter().map(|ip| PodIp { ip: ip.clone() }).collect();
    status.pod_ip = pod_ip;
    if status.start_time.is_none() {
        status.start_time = Some(now.into());
    }
    status.container_statuses = seen
        .iter()
        .map(|s| ContainerStatus {
            name: s.name.clone(),
            ready: matches!(s.run, Run::Running { .. }) && s.waiting.is_none() && s.probed_ready,
            restart_count: s.restarts,
            state: Some(state(s)),
            ports: s.ports.clone(),
        })
        .collect();
    let all_ready = !seen.is_empty() && status.container_statuses.iter().all(|c| c.ready);
    let flag = |ok: bool| if ok { "True" } else { "False" };
    for (type_, ok) in [("Initialized", true), ("ContainersReady", all_ready), ("Ready", all_ready)] {
        let condition = Condition { type_: type_.into(), status: flag(ok).into(), ..Default::default() };
        set_condition(&mut status.conditions, condition, now);
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(run: Run, restarts: i32, will_run: bool) -> Seen {
        Seen { name: "c".into(), run, restarts, waiting: None, will_run, probed_ready: true, ports: Vec::new() }
    }

    fn exited(code: i32) -> Run {
        Run::Exited { code, signal: None, oom: false, started_at: "t0".into(), finished_at: "t1".into(), message: None }
    }

    #[test]
    fn phases_follow_the_containers() {
        assert_eq!(phase(&[seen(Run::Gone, 0, true)]), "Pending");
        assert_eq!(phase(&[seen(Run::Running { pid: 1, started_at: "t".into() }, 0, true)]), "Running");
        assert_eq!(phase(&[seen(exited(0), 0, false)]), "Succeeded");
        assert_eq!(phase(&[seen(exited(0), 0, false), seen(exited(1), 0, false)]), "Failed");
        assert_eq!(phase(&[seen(exited(1), 3, true)]), "Running", "crash looping is still Running, as in Kubernetes");
    }

    #[test]
    fn terminated_states_say_why() {
        let oom = Run::Exited {
            code: 137,
            signal: Some(9),
            oom: true,
            started_at: "a".into(),
            finished_at: "b".into(),
            message: None,
        };
        let s = state(&seen(oom, 0, false));
        assert_eq!(s.terminated.and_then(|t| t.reason).as_deref(), Some("OOMKilled"));
        let mut waiting = seen(exited(1), 2, true);
        waiting.waiting = Some(("CrashLoopBackOff".into(), "back-off 20s".into()));
        assert_eq!(state(&waiting).waiting.and_then(|w| w.reason).as_deref(), Some("CrashLoopBackOff"));
    }
}
